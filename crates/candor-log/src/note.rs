//! Checkpoints (C2SP `tlog-checkpoint`) in signed notes (C2SP `signed-note`), Ed25519.
//!
//! A checkpoint body is three lines: the log's origin, the tree size in decimal, and the base64
//! root hash, then optional extension lines (tlog-checkpoint allows them; witnesses cosign the
//! whole body). Candor writes one: `candor-map/v1 <base64 map root>`, the root of the
//! completeness map ([`crate::map`]) after the first `size` entries. The signed note is the body, a blank line, and signature lines
//! `— <key name> <base64(key id (4 bytes) || signature)>`. The key id of an Ed25519 key is the
//! first 4 bytes of SHA-256(name || "\n" || 0x01 || public key). A verifier key is written
//! `<name>+<hex key id>+<base64(0x01 || public key)>`.

use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Hash;

const ED25519_ALG: u8 = 0x01;
const DASH: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("the checkpoint is malformed: {0}")]
    Malformed(&'static str),
    #[error("the verifier key is malformed: {0}")]
    BadKey(&'static str),
    #[error("no signature by key `{0}` on the checkpoint")]
    NotSigned(String),
    #[error("the checkpoint signature by `{0}` is invalid")]
    BadSignature(String),
    #[error("the checkpoint is for log `{found}`, expected `{expected}`")]
    WrongOrigin { expected: String, found: String },
}

/// A tree head: which log, how many entries, what root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The completeness map's root over the same entries (extension line `candor-map/v1`);
    /// `None` in checkpoints signed before the map was committed.
    pub map_root: Option<Hash>,
}

/// The prefix of the extension line that commits the completeness map's root.
pub const MAP_EXTENSION: &str = "candor-map/v1 ";

impl Checkpoint {
    /// The checkpoint body (what is signed).
    pub fn body(&self) -> String {
        let mut body = format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root));
        if let Some(m) = &self.map_root {
            body.push_str(&format!("{MAP_EXTENSION}{}\n", STANDARD.encode(m)));
        }
        body
    }

    fn parse_body(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(NoteError::Malformed("no origin line"))?;
        let size_text = lines.next().ok_or(NoteError::Malformed("no tree size line"))?;
        if size_text.is_empty() || (size_text.len() > 1 && size_text.starts_with('0')) {
            return Err(NoteError::Malformed("the tree size is not a decimal number"));
        }
        let size =
            size_text.parse::<u64>().map_err(|_| NoteError::Malformed("the tree size is not a decimal number"))?;
        let root_text = lines.next().ok_or(NoteError::Malformed("no root hash line"))?;
        let root: Hash = STANDARD
            .decode(root_text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(NoteError::Malformed("the root hash is not 32 bytes of base64"))?;
        // Extension lines: the map root is read, others are left to whoever defined them.
        let mut map_root = None;
        for line in lines.filter(|l| !l.is_empty()) {
            let Some(b64) = line.strip_prefix(MAP_EXTENSION) else { continue };
            if map_root.is_some() {
                return Err(NoteError::Malformed("two completeness map lines"));
            }
            map_root = Some(
                STANDARD
                    .decode(b64)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or(NoteError::Malformed("the completeness map root is not 32 bytes of base64"))?,
            );
        }
        Ok(Self { origin: origin.to_string(), size, root, map_root })
    }
}

/// The 4-byte id of an Ed25519 key named `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut c = Context::new(&SHA256);
    c.update(name.as_bytes());
    c.update(b"\n");
    c.update(&[ED25519_ALG]);
    c.update(public_key);
    c.finish().as_ref()[..4].try_into().expect("4 bytes")
}

/// A key that verifies checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub id: [u8; 4],
    pub public_key: [u8; 32],
}

impl VerifierKey {
    pub fn new(name: &str, public_key: [u8; 32]) -> Self {
        Self { name: name.to_string(), id: key_id(name, &public_key), public_key }
    }

    /// Parses `<name>+<hex id>+<base64(0x01 || key)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let text = text.trim();
        // Names never contain '+'; the base64 key may.
        let mut parts = text.splitn(3, '+');
        let name = parts.next().filter(|n| !n.is_empty()).ok_or(NoteError::BadKey("missing name"))?;
        let id_hex = parts.next().ok_or(NoteError::BadKey("missing key id"))?;
        let key_b64 = parts.next().ok_or(NoteError::BadKey("missing key"))?;
        let raw = STANDARD.decode(key_b64).map_err(|_| NoteError::BadKey("the key is not base64"))?;
        if raw.len() != 33 || raw[0] != ED25519_ALG {
            return Err(NoteError::BadKey("not an Ed25519 key"));
        }
        let public_key: [u8; 32] = raw[1..].try_into().expect("32 bytes");
        let key = Self::new(name, public_key);
        if id_hex.len() != 8 || id_hex != hex(&key.id) {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        Ok(key)
    }

    /// The `<name>+<hex id>+<base64>` form.
    pub fn to_text(&self) -> String {
        let mut raw = vec![ED25519_ALG];
        raw.extend_from_slice(&self.public_key);
        format!("{}+{}+{}", self.name, hex(&self.id), STANDARD.encode(raw))
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key).verify(message, signature).is_ok()
    }

    /// Verifies a signed checkpoint note and returns the checkpoint.
    pub fn open(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let split = note.find("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, sigs) = note.split_at(split + 1);
        let mut found = false;
        for line in sigs[1..].lines() {
            let Some(rest) = line.strip_prefix(DASH) else {
                return Err(NoteError::Malformed("a signature line does not start with an em dash"));
            };
            let Some((name, sig_b64)) = rest.split_once(' ') else {
                return Err(NoteError::Malformed("a signature line has no signature"));
            };
            if name != self.name {
                continue;
            }
            let raw = STANDARD.decode(sig_b64).map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if raw.len() != 68 || raw[..4] != self.id {
                continue;
            }
            found = true;
            UnparsedPublicKey::new(&ED25519, &self.public_key)
                .verify(text.as_bytes(), &raw[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
        }
        if !found {
            return Err(NoteError::NotSigned(self.name.clone()));
        }
        Checkpoint::parse_body(text)
    }
}

/// Signs a checkpoint: `sign` returns the Ed25519 signature of the bytes it is given (the key
/// itself stays with the caller).
pub fn sign_checkpoint(checkpoint: &Checkpoint, key: &VerifierKey, sign: impl FnOnce(&[u8]) -> [u8; 64]) -> String {
    let body = checkpoint.body();
    let signature = sign(body.as_bytes());
    let mut raw = Vec::with_capacity(68);
    raw.extend_from_slice(&key.id);
    raw.extend_from_slice(&signature);
    format!("{body}\n{DASH}{} {}\n", key.name, STANDARD.encode(raw))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    use super::*;

    fn keypair() -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap()
    }

    fn vkey(kp: &Ed25519KeyPair) -> VerifierKey {
        VerifierKey::new("candor.example/log", kp.public_key().as_ref().try_into().unwrap())
    }

    #[test]
    fn a_signed_checkpoint_round_trips_in_the_c2sp_format() {
        let kp = keypair();
        let key = vkey(&kp);
        let cp = Checkpoint { origin: "candor.example/log".into(), size: 42, root: [9u8; 32], map_root: None };
        let note = sign_checkpoint(&cp, &key, |m| kp.sign(m).as_ref().try_into().unwrap());
        assert!(note.starts_with("candor.example/log\n42\nCQkJ"), "{note}");
        assert!(note.contains("\n\n\u{2014} candor.example/log "), "{note}");
        assert_eq!(key.open(&note).unwrap(), cp);
        assert_eq!(VerifierKey::parse(&key.to_text()).unwrap(), key);
    }

    #[test]
    fn the_map_root_is_an_extension_line_that_is_signed_with_the_body() {
        let kp = keypair();
        let key = vkey(&kp);
        let cp =
            Checkpoint { origin: "candor.example/log".into(), size: 7, root: [9u8; 32], map_root: Some([3u8; 32]) };
        let note = sign_checkpoint(&cp, &key, |m| kp.sign(m).as_ref().try_into().unwrap());
        assert!(
            note.starts_with(&format!("candor.example/log\n7\n{}\ncandor-map/v1 AwMD", STANDARD.encode([9u8; 32])))
        );
        assert_eq!(key.open(&note).unwrap(), cp);
        // Changing the map line breaks the signature; unknown extension lines are ignored.
        let altered = note.replacen("candor-map/v1 AwMD", "candor-map/v1 BAMD", 1);
        assert_eq!(key.open(&altered), Err(NoteError::BadSignature(key.name.clone())));
        let body = format!("{}other-ext 1\n", cp.body());
        assert_eq!(Checkpoint::parse_body(&body).unwrap(), cp);
        let twice = format!("{}{}", cp.body(), format_args!("{MAP_EXTENSION}{}\n", STANDARD.encode([1u8; 32])));
        assert!(Checkpoint::parse_body(&twice).is_err());
    }

    #[test]
    fn verifier_keys_whose_base64_contains_a_plus_parse() {
        for seed in 0u8..64 {
            let kp = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
            let key = vkey(&kp);
            assert_eq!(VerifierKey::parse(&key.to_text()).unwrap(), key, "seed {seed}: {}", key.to_text());
        }
    }

    #[test]
    fn altered_or_foreign_checkpoints_are_refused() {
        let kp = keypair();
        let key = vkey(&kp);
        let cp = Checkpoint { origin: "candor.example/log".into(), size: 42, root: [9u8; 32], map_root: None };
        let note = sign_checkpoint(&cp, &key, |m| kp.sign(m).as_ref().try_into().unwrap());
        let altered = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(key.open(&altered), Err(NoteError::BadSignature(key.name.clone())));
        let other = Ed25519KeyPair::from_seed_unchecked(&[8u8; 32]).unwrap();
        let other_key = VerifierKey::new("candor.example/log", other.public_key().as_ref().try_into().unwrap());
        assert!(other_key.open(&note).is_err());
        assert!(key.open("candor.example/log\n42\n").is_err());
        let mut bad = key.to_text();
        bad.replace_range(bad.len() - 4.., "AAAA");
        assert!(VerifierKey::parse(&bad).is_err());
    }
}
