//! Witnesses: C2SP `tlog-witness` (the `add-checkpoint` protocol) and `tlog-cosignature`
//! (Ed25519 cosignatures, version 1), without I/O.
//!
//! A witness keeps, per log origin, the latest checkpoint it cosigned. A log sends it
//! `add-checkpoint` requests: the size the log believes the witness holds (`old N`), a consistency
//! proof from that size to the new checkpoint, a blank line and the signed checkpoint. The witness
//! cosigns only a checkpoint that extends what it cosigned before, so two parties holding
//! checkpoints cosigned by the same witness hold views of one and the same log.
//!
//! Formats (all lines end in `\n`, base64 is RFC 4648 standard with padding):
//!
//! * request body: `old <decimal>`, at most 63 lines of one base64 hash each, an empty line,
//!   then the signed checkpoint note;
//! * answer `200`: one or more signature lines `— <witness name> <base64(key id (4) ||
//!   timestamp (8, big-endian) || Ed25519 signature (64))>`; `409`: the size the witness holds,
//!   in decimal (content type `text/x.tlog.size`); `400` malformed, `403` not signed by a key the
//!   witness trusts for the origin, `404` unknown origin, `422` not consistent;
//! * cosigned message: `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint note's
//!   body (everything before the blank line, final newline included);
//! * witness key id: the first 4 bytes of SHA-256(name || "\n" || 0x04 || public key); its
//!   verifier key is written `<name>+<hex key id>+<base64(0x04 || public key)>`.
//!
//! ```
//! use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
//! use candor_log::note::{Checkpoint, VerifierKey, sign_checkpoint};
//! use candor_log::merkle::empty_root;
//! use candor_log::witness::{AddCheckpoint, CosignerKey, check_add_checkpoint, cosign, verify_cosigned};
//!
//! let log = Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
//! let log_key = VerifierKey::new("example.com/log", log.public_key().as_ref().try_into().unwrap());
//! let cp = Checkpoint { origin: "example.com/log".into(), size: 0, root: empty_root(), map_root: None };
//! let note = sign_checkpoint(&cp, &log_key, |m| log.sign(m).as_ref().try_into().unwrap());
//!
//! // The witness checks the request against what it holds (nothing yet) and cosigns.
//! let request = AddCheckpoint { old_size: 0, proof: vec![], note: note.clone() };
//! let accepted = check_add_checkpoint(&request, &[log_key.clone()], None).unwrap();
//! let w = Ed25519KeyPair::from_seed_unchecked(&[2; 32]).unwrap();
//! let w_key = CosignerKey::new("witness.example/w1", w.public_key().as_ref().try_into().unwrap());
//! let line = cosign(&note, &w_key, 1_700_000_000, |m| w.sign(m).as_ref().try_into().unwrap()).unwrap();
//!
//! // A verifier requiring 1 of the witnesses it trusts.
//! let cosigned = format!("{note}{line}");
//! let seen = verify_cosigned(&cosigned, &log_key, &[w_key], 1).unwrap();
//! assert_eq!(seen.checkpoint, accepted);
//! assert_eq!(seen.cosignatures[0].timestamp, 1_700_000_000);
//! ```

use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Hash;
use crate::merkle::{empty_root, verify_consistency};
use crate::note::{Checkpoint, NoteError, VerifierKey};

/// Signature type byte of Ed25519 cosignatures (tlog-cosignature v1).
pub const COSIGNATURE_ALG: u8 = 0x04;
/// Most consistency proof lines a request may carry (tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;
/// Content type of a `409 Conflict` answer: the size the witness holds.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";
const DASH: &str = "\u{2014} ";

/// What went wrong with a cosigned checkpoint or a witness key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("the witness key is malformed: {0}")]
    BadKey(&'static str),
    #[error("the cosignature by witness `{0}` is invalid")]
    BadCosignature(String),
    #[error("the cosignature line is malformed: {0}")]
    Malformed(&'static str),
    #[error("{found} of the required {required} witness cosignatures are present (valid from: {names})")]
    TooFewCosignatures { required: usize, found: usize, names: String },
}

/// A witness's public key (Ed25519, cosignature v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerKey {
    pub name: String,
    pub id: [u8; 4],
    pub public_key: [u8; 32],
}

/// The 4-byte id of an Ed25519 cosigner key named `name`.
pub fn cosigner_key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut c = Context::new(&SHA256);
    c.update(name.as_bytes());
    c.update(b"\n");
    c.update(&[COSIGNATURE_ALG]);
    c.update(public_key);
    c.finish().as_ref()[..4].try_into().expect("4 bytes")
}

impl CosignerKey {
    pub fn new(name: &str, public_key: [u8; 32]) -> Self {
        Self { name: name.to_string(), id: cosigner_key_id(name, &public_key), public_key }
    }

    /// Parses `<name>+<hex id>+<base64(0x04 || key)>`.
    pub fn parse(text: &str) -> Result<Self, WitnessError> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let name = parts.next().filter(|n| valid_name(n)).ok_or(WitnessError::BadKey("missing or invalid name"))?;
        let id_hex = parts.next().ok_or(WitnessError::BadKey("missing key id"))?;
        let key_b64 = parts.next().ok_or(WitnessError::BadKey("missing key"))?;
        let raw = STANDARD.decode(key_b64).map_err(|_| WitnessError::BadKey("the key is not base64"))?;
        if raw.len() != 33 || raw[0] != COSIGNATURE_ALG {
            return Err(WitnessError::BadKey("not an Ed25519 cosignature (type 0x04) key"));
        }
        let key = Self::new(name, raw[1..].try_into().expect("32 bytes"));
        if id_hex != hex(&key.id) {
            return Err(WitnessError::BadKey("the key id does not match the key"));
        }
        Ok(key)
    }

    /// The `<name>+<hex id>+<base64>` form.
    pub fn to_text(&self) -> String {
        let mut raw = vec![COSIGNATURE_ALG];
        raw.extend_from_slice(&self.public_key);
        format!("{}+{}+{}", self.name, hex(&self.id), STANDARD.encode(raw))
    }

    /// Checks this witness's cosignature(s) on `note`, returning the newest timestamp. `Ok(None)`:
    /// the note carries no signature line of this key.
    pub fn verify(&self, note: &str) -> Result<Option<u64>, WitnessError> {
        let (body, lines) = split_note(note)?;
        let mut newest = None;
        for line in lines {
            let (name, raw) = parse_signature_line(line)?;
            if name != self.name || raw.len() != 76 || raw[..4] != self.id {
                continue;
            }
            let timestamp = u64::from_be_bytes(raw[4..12].try_into().expect("8 bytes"));
            UnparsedPublicKey::new(&ED25519, &self.public_key)
                .verify(&cosigned_message(body, timestamp), &raw[12..])
                .map_err(|_| WitnessError::BadCosignature(self.name.clone()))?;
            newest = newest.max(Some(timestamp));
        }
        Ok(newest)
    }
}

/// Key names: non-empty, no spaces, no `+`, no newlines (signed-note).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// The message an Ed25519 v1 cosignature signs.
pub fn cosigned_message(body: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{body}").into_bytes()
}

/// Splits a signed note into its body (final newline included) and its signature lines.
pub fn split_note(note: &str) -> Result<(&str, Vec<&str>), NoteError> {
    let split = note.find("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (body, sigs) = note.split_at(split + 1);
    let sigs = &sigs[1..];
    if !sigs.is_empty() && !sigs.ends_with('\n') {
        return Err(NoteError::Malformed("the last signature line does not end in a newline"));
    }
    Ok((body, sigs.lines().collect()))
}

fn parse_signature_line(line: &str) -> Result<(&str, Vec<u8>), WitnessError> {
    let rest =
        line.strip_prefix(DASH).ok_or(WitnessError::Malformed("a signature line does not start with an em dash"))?;
    let (name, b64) = rest.split_once(' ').ok_or(WitnessError::Malformed("a signature line has no signature"))?;
    let raw = STANDARD.decode(b64).map_err(|_| WitnessError::Malformed("a signature is not base64"))?;
    Ok((name, raw))
}

/// Cosigns `note` (its body) at `timestamp` (POSIX seconds, not zero): the signature line
/// the witness answers with. `sign` returns the Ed25519 signature of the bytes it is given.
pub fn cosign(
    note: &str,
    key: &CosignerKey,
    timestamp: u64,
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Result<String, NoteError> {
    let (body, _) = split_note(note)?;
    let signature = sign(&cosigned_message(body, timestamp));
    let mut raw = Vec::with_capacity(76);
    raw.extend_from_slice(&key.id);
    raw.extend_from_slice(&timestamp.to_be_bytes());
    raw.extend_from_slice(&signature);
    Ok(format!("{DASH}{} {}\n", key.name, STANDARD.encode(raw)))
}

/// Adds signature lines (e.g. a witness's answer) to a signed note, skipping any it holds already.
pub fn add_signature_lines(note: &str, lines: &str) -> Result<String, NoteError> {
    split_note(note)?;
    let mut out = note.to_string();
    for line in lines.lines() {
        if !line.starts_with(DASH) {
            return Err(NoteError::Malformed("a signature line does not start with an em dash"));
        }
        if !note.lines().any(|l| l == line) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// One `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the log believes the witness cosigned last (0: none).
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub note: String,
}

impl AddCheckpoint {
    /// The request body.
    pub fn to_body(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        for h in &self.proof {
            out.push_str(&STANDARD.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.note);
        out
    }

    /// Parses a request body (`400 Bad Request` when malformed).
    pub fn parse(body: &str) -> Result<Self, Refusal> {
        let bad = |why: &'static str| Refusal::BadRequest(why);
        let (head, note) = body.split_once("\n\n").ok_or(bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines.next().and_then(|l| l.strip_prefix("old ")).ok_or(bad("the first line is not `old <size>`"))?;
        let old_size = decimal(old).ok_or(bad("the old size is not a decimal number without leading zeros"))?;
        let mut proof = Vec::new();
        for line in lines {
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad("more than 63 consistency proof lines"));
            }
            let hash: Hash = STANDARD
                .decode(line)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(bad("a consistency proof line is not a base64 hash of 32 bytes"))?;
            proof.push(hash);
        }
        Ok(Self { old_size, proof, note: note.to_string() })
    }
}

fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || (text.len() > 1 && text.starts_with('0')) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Why a witness refuses to cosign, with the HTTP status tlog-witness prescribes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    #[error("the old size {old} is larger than the checkpoint's size {size}")]
    OldSizeTooLarge { old: u64, size: u64 },
    #[error("this witness does not know the log `{0}`")]
    UnknownOrigin(String),
    #[error("the checkpoint is not validly signed by a key this witness trusts for `{0}`")]
    NotSigned(String),
    /// The witness holds another size: the body of the answer.
    #[error("this witness last cosigned size {latest}, not {old}")]
    Conflict { latest: u64, old: u64 },
    #[error("the checkpoint is not consistent with the one this witness cosigned: {0}")]
    Inconsistent(String),
}

impl Refusal {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) | Refusal::OldSizeTooLarge { .. } => 400,
            Refusal::NotSigned(_) => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Inconsistent(_) => 422,
        }
    }
}

/// The name of a log in a witness's monitoring path (`GET <prefix>/<origin hash>/checkpoint`):
/// the lowercase hex SHA-256 of the origin line.
pub fn origin_hash(origin: &str) -> String {
    hex(aws_lc_rs::digest::digest(&SHA256, origin.as_bytes()).as_ref())
}

/// The checkpoint's origin line, before any signature check (to find the log's keys and state).
pub fn note_origin(note: &str) -> Option<&str> {
    note.split('\n').next().filter(|o| !o.is_empty())
}

/// The witness's decision on a request: `trusted` are the log keys it knows (key name = origin),
/// `latest` the (size, root) it last cosigned for the checkpoint's origin. On success, the
/// checkpoint to record as the latest and to cosign. The caller must hold the origin's state
/// locked from reading `latest` until it has durably recorded the result.
pub fn check_add_checkpoint(
    request: &AddCheckpoint,
    trusted: &[VerifierKey],
    latest: Option<(u64, Hash)>,
) -> Result<Checkpoint, Refusal> {
    let origin = note_origin(&request.note).ok_or(Refusal::BadRequest("the checkpoint has no origin line"))?;
    let keys: Vec<&VerifierKey> = trusted.iter().filter(|k| k.name == origin).collect();
    if keys.is_empty() {
        return Err(Refusal::UnknownOrigin(origin.to_string()));
    }
    let mut checkpoint = None;
    for key in keys {
        match key.open(&request.note) {
            Ok(cp) => checkpoint = Some(cp),
            Err(NoteError::NotSigned(_)) => {}
            Err(NoteError::Malformed(why)) => return Err(Refusal::BadRequest(why)),
            Err(_) => return Err(Refusal::NotSigned(origin.to_string())),
        }
    }
    let checkpoint = checkpoint.ok_or_else(|| Refusal::NotSigned(origin.to_string()))?;
    if checkpoint.origin != origin {
        return Err(Refusal::BadRequest("the origin line is not the checkpoint's origin"));
    }
    if request.old_size > checkpoint.size {
        return Err(Refusal::OldSizeTooLarge { old: request.old_size, size: checkpoint.size });
    }
    let (held_size, held_root) = latest.unwrap_or((0, empty_root()));
    if request.old_size != held_size {
        return Err(Refusal::Conflict { latest: held_size, old: request.old_size });
    }
    if checkpoint.size == 0 && checkpoint.root != empty_root() {
        return Err(Refusal::Inconsistent("a checkpoint of size 0 must have the empty tree's root".into()));
    }
    if request.old_size == 0 {
        if !request.proof.is_empty() {
            return Err(Refusal::Inconsistent("a proof from size 0 must be empty".into()));
        }
        return Ok(checkpoint);
    }
    if request.old_size == checkpoint.size && held_root != checkpoint.root {
        return Err(Refusal::Inconsistent(format!(
            "size {} was cosigned with another root hash: the log has been forked",
            checkpoint.size
        )));
    }
    verify_consistency(held_size, checkpoint.size, &held_root, &checkpoint.root, &request.proof).map_err(|e| {
        Refusal::Inconsistent(format!(
            "the consistency proof from size {held_size} to {} does not verify ({e}): the log has been forked or rewritten",
            checkpoint.size
        ))
    })?;
    Ok(checkpoint)
}

/// A cosignature found valid on a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCosignature {
    pub witness: String,
    /// POSIX seconds when the witness cosigned.
    pub timestamp: u64,
}

/// A checkpoint verified against the log key and at least the required number of witnesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    pub checkpoint: Checkpoint,
    /// Every trusted witness whose cosignature is on the note (each witness counted once).
    pub cosignatures: Vec<SeenCosignature>,
}

/// Verifies a cosigned checkpoint: the log's signature, then the cosignatures of the trusted
/// `witnesses` (others are ignored); at least `required` distinct witnesses must have cosigned.
/// An invalid cosignature by a trusted witness fails the whole note (as signed-note says).
pub fn verify_cosigned(
    note: &str,
    log_key: &VerifierKey,
    witnesses: &[CosignerKey],
    required: usize,
) -> Result<VerifiedCheckpoint, WitnessError> {
    let checkpoint = log_key.open(note)?;
    let mut cosignatures = Vec::new();
    for w in witnesses {
        if cosignatures.iter().any(|c: &SeenCosignature| c.witness == w.name) {
            continue;
        }
        if let Some(timestamp) = w.verify(note)? {
            cosignatures.push(SeenCosignature { witness: w.name.clone(), timestamp });
        }
    }
    if cosignatures.len() < required {
        return Err(WitnessError::TooFewCosignatures {
            required,
            found: cosignatures.len(),
            names: if cosignatures.is_empty() {
                "none".into()
            } else {
                cosignatures.iter().map(|c| c.witness.as_str()).collect::<Vec<_>>().join(", ")
            },
        });
    }
    Ok(VerifiedCheckpoint { checkpoint, cosignatures })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    use super::*;
    use crate::merkle::{LeafSource, consistency_proof, leaf_hash, root};
    use crate::note::sign_checkpoint;

    const ORIGIN: &str = "candor.example/log";

    fn pair(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    fn public(kp: &Ed25519KeyPair) -> [u8; 32] {
        kp.public_key().as_ref().try_into().unwrap()
    }

    fn log_key() -> VerifierKey {
        VerifierKey::new(ORIGIN, public(&pair(1)))
    }

    fn sign(kp: &Ed25519KeyPair) -> impl Fn(&[u8]) -> [u8; 64] + '_ {
        |m| kp.sign(m).as_ref().try_into().unwrap()
    }

    /// A log of `entries` leaves (entry i = [tag, i]): its checkpoint note at `size` and proofs.
    struct Log {
        leaves: Vec<Hash>,
    }

    impl Log {
        fn new(tag: u8, n: u64) -> Self {
            Self { leaves: (0..n).map(|i| leaf_hash(&[tag, i as u8, (i >> 8) as u8])).collect() }
        }
        fn root(&self, size: u64) -> Hash {
            root(&mut LeafSource(&self.leaves), size).unwrap()
        }
        fn note(&self, size: u64) -> String {
            let cp = Checkpoint { origin: ORIGIN.into(), size, root: self.root(size), map_root: None };
            sign_checkpoint(&cp, &log_key(), sign(&pair(1)))
        }
        fn request(&self, old: u64, size: u64) -> AddCheckpoint {
            let proof = consistency_proof(&mut LeafSource(&self.leaves), old, size).unwrap();
            AddCheckpoint { old_size: old, proof, note: self.note(size) }
        }
    }

    #[test]
    fn a_growing_log_is_cosigned_and_the_cosignature_is_in_the_c2sp_format() {
        let log = Log::new(0, 20);
        let trusted = [log_key()];
        let first = check_add_checkpoint(&log.request(0, 7), &trusted, None).unwrap();
        assert_eq!(first.size, 7);
        let second = check_add_checkpoint(&log.request(7, 20), &trusted, Some((7, first.root))).unwrap();
        assert_eq!(second.root, log.root(20));
        // Same size, same root: cosigned again (a log re-asking after a restart).
        check_add_checkpoint(&log.request(20, 20), &trusted, Some((20, second.root))).unwrap();

        let w = pair(9);
        let key = CosignerKey::new("witness.example/w1", public(&w));
        let note = log.note(20);
        let line = cosign(&note, &key, 1_679_315_147, sign(&w)).unwrap();
        let raw = STANDARD.decode(line.trim_end().rsplit(' ').next().unwrap()).unwrap();
        assert_eq!(raw.len(), 4 + 8 + 64);
        assert_eq!(&raw[..4], &key.id);
        assert_eq!(u64::from_be_bytes(raw[4..12].try_into().unwrap()), 1_679_315_147);
        // The signed message is the header, the time line and the body.
        let body = note.split_once("\n\n").unwrap().0.to_string() + "\n";
        let message = format!("cosignature/v1\ntime 1679315147\n{body}");
        UnparsedPublicKey::new(&ED25519, &key.public_key).verify(message.as_bytes(), &raw[12..]).unwrap();
        assert_eq!(CosignerKey::parse(&key.to_text()).unwrap(), key);
        let vkey = key.to_text();
        let raw_key = STANDARD.decode(vkey.splitn(3, '+').nth(2).unwrap()).unwrap();
        assert_eq!((raw_key[0], &raw_key[1..]), (0x04, &key.public_key[..]), "{vkey}");
    }

    #[test]
    fn a_fork_is_refused_whatever_the_log_claims() {
        let honest = Log::new(0, 12);
        let forked = Log::new(1, 12);
        let trusted = [log_key()];
        let held = Some((8, honest.root(8)));
        // The fork starts from "nothing": 409 with the size held.
        assert_eq!(
            check_add_checkpoint(&forked.request(0, 12), &trusted, held),
            Err(Refusal::Conflict { latest: 8, old: 0 })
        );
        // The fork claims the right old size with its own proof: 422.
        let r = check_add_checkpoint(&forked.request(8, 12), &trusted, held).unwrap_err();
        assert_eq!(r.status(), 422, "{r}");
        // The same size with another root: 422.
        let r = check_add_checkpoint(&forked.request(8, 8), &trusted, held).unwrap_err();
        assert_eq!(r.status(), 422, "{r}");
        // A rollback to a smaller tree: 409.
        let r = check_add_checkpoint(&honest.request(0, 5), &trusted, held).unwrap_err();
        assert_eq!(r, Refusal::Conflict { latest: 8, old: 0 });
        let r = check_add_checkpoint(&honest.request(5, 5), &trusted, held).unwrap_err();
        assert_eq!(r.status(), 409);
    }

    #[test]
    fn bad_requests_get_the_status_the_spec_names() {
        let log = Log::new(0, 10);
        let trusted = [log_key()];
        // Unknown origin.
        let other = VerifierKey::new("other.example/log", public(&pair(1)));
        assert_eq!(check_add_checkpoint(&log.request(0, 3), &[other], None).unwrap_err().status(), 404);
        // Signed by an untrusted key of the right name.
        let impostor = VerifierKey::new(ORIGIN, public(&pair(2)));
        assert_eq!(check_add_checkpoint(&log.request(0, 3), &[impostor], None).unwrap_err().status(), 403);
        // A trusted key's signature that does not verify.
        let mut req = log.request(0, 3);
        req.note = req.note.replacen("\n3\n", "\n4\n", 1);
        assert_eq!(check_add_checkpoint(&req, &trusted, None).unwrap_err().status(), 403);
        // Old size beyond the checkpoint.
        let mut req = log.request(3, 3);
        req.old_size = 5;
        assert_eq!(check_add_checkpoint(&req, &trusted, Some((5, log.root(5)))).unwrap_err().status(), 400);
        // A proof from size 0.
        let mut req = log.request(0, 3);
        req.proof = vec![[0; 32]];
        assert_eq!(check_add_checkpoint(&req, &trusted, None).unwrap_err().status(), 422);
        // An empty tree with another root.
        let cp = Checkpoint { origin: ORIGIN.into(), size: 0, root: [7; 32], map_root: None };
        let req = AddCheckpoint { old_size: 0, proof: vec![], note: sign_checkpoint(&cp, &log_key(), sign(&pair(1))) };
        assert_eq!(check_add_checkpoint(&req, &trusted, None).unwrap_err().status(), 422);
        // Malformed bodies.
        for body in ["", "old 01\n\nx", "new 1\n\nx", "old 1\nnot base64!\n\nx", "old 1\nAAAA\n\nx"] {
            assert_eq!(AddCheckpoint::parse(body).unwrap_err().status(), 400, "{body:?}");
        }
        let mut body = "old 1\n".to_string();
        for _ in 0..64 {
            body.push_str(&STANDARD.encode([0u8; 32]));
            body.push('\n');
        }
        body.push('\n');
        assert_eq!(AddCheckpoint::parse(&body).unwrap_err().status(), 400);
    }

    #[test]
    fn requests_round_trip_through_their_text() {
        let log = Log::new(0, 100);
        let req = log.request(37, 100);
        assert!(!req.proof.is_empty());
        assert_eq!(AddCheckpoint::parse(&req.to_body()).unwrap(), req);
        let req = log.request(0, 100);
        assert!(req.to_body().starts_with("old 0\n\ncandor.example/log\n100\n"));
        assert_eq!(AddCheckpoint::parse(&req.to_body()).unwrap(), req);
    }

    #[test]
    fn n_of_m_cosignatures_are_counted_once_per_trusted_witness() {
        let log = Log::new(0, 5);
        let note = log.note(5);
        let (w1, w2, w3) = (pair(11), pair(12), pair(13));
        let k1 = CosignerKey::new("w1.example", public(&w1));
        let k2 = CosignerKey::new("w2.example", public(&w2));
        let k3 = CosignerKey::new("w3.example", public(&w3));
        let l1 = cosign(&note, &k1, 100, sign(&w1)).unwrap();
        let l1b = cosign(&note, &k1, 200, sign(&w1)).unwrap();
        let l2 = cosign(&note, &k2, 150, sign(&w2)).unwrap();
        let cosigned = add_signature_lines(&add_signature_lines(&note, &(l1.clone() + &l1b)).unwrap(), &l2).unwrap();
        let trusted = [k1.clone(), k2.clone(), k3.clone()];
        let seen = verify_cosigned(&cosigned, &log_key(), &trusted, 2).unwrap();
        assert_eq!(seen.cosignatures.len(), 2);
        assert_eq!(seen.cosignatures[0], SeenCosignature { witness: "w1.example".into(), timestamp: 200 });
        let err = verify_cosigned(&cosigned, &log_key(), &trusted, 3).unwrap_err();
        assert!(matches!(err, WitnessError::TooFewCosignatures { required: 3, found: 2, .. }), "{err}");
        // Witness 1's line twice counts once.
        let doubled = format!("{note}{l1}{l1}");
        assert!(verify_cosigned(&doubled, &log_key(), &trusted, 2).is_err());
        // An untrusted witness does not count, a tampered cosignature fails the note.
        assert!(verify_cosigned(&cosigned, &log_key(), &[k3], 1).is_err());
        let other_note = log.note(4);
        let moved = format!("{other_note}{l2}");
        assert_eq!(
            verify_cosigned(&moved, &log_key(), &trusted, 1),
            Err(WitnessError::BadCosignature("w2.example".into()))
        );
        // A cosignature does not stand in for the log's own signature.
        let forged_log = VerifierKey::new(ORIGIN, public(&pair(3)));
        assert!(verify_cosigned(&cosigned, &forged_log, &trusted, 1).is_err());
    }

    #[test]
    fn origin_hashes_are_lowercase_hex_sha256() {
        assert_eq!(origin_hash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn witness_keys_parse_only_in_their_own_form() {
        let k = CosignerKey::new("w.example/1", public(&pair(4)));
        assert_eq!(CosignerKey::parse(&k.to_text()).unwrap(), k);
        // A log key (type 0x01) is not a witness key.
        let log = VerifierKey::new("w.example/1", public(&pair(4))).to_text();
        assert!(CosignerKey::parse(&log).is_err());
        let mut wrong_id = k.to_text();
        wrong_id.replace_range(12..13, if &wrong_id[12..13] == "0" { "1" } else { "0" });
        assert!(CosignerKey::parse(&wrong_id).is_err());
        assert!(CosignerKey::parse("no spaces+00000000+AA").is_err());
    }

    proptest::proptest! {
        /// Any fork (a different entry anywhere in the held prefix) is refused, whatever old
        /// size and proof the forked log sends; any honest extension is accepted.
        #[test]
        fn forks_are_refused_and_extensions_accepted(held in 1u64..40, extra in 0u64..40, flip in 0u64..40, old in 0u64..80) {
            let size = held + extra;
            let honest = Log::new(0, size);
            let mut forked = Log::new(0, size);
            let at = flip % held;
            forked.leaves[at as usize] = leaf_hash(b"changed");
            let trusted = [log_key()];
            let state = Some((held, honest.root(held)));
            proptest::prop_assert!(check_add_checkpoint(&honest.request(held, size), &trusted, state).is_ok());
            let old = old.min(size);
            let req = AddCheckpoint { old_size: old, ..forked.request(old, size) };
            proptest::prop_assert!(check_add_checkpoint(&req, &trusted, state).is_err());
            // Even the honest log's proof with the forked checkpoint fails.
            let req = AddCheckpoint { note: forked.note(size), ..honest.request(held, size) };
            proptest::prop_assert!(check_add_checkpoint(&req, &trusted, state).is_err());
        }
    }
}
