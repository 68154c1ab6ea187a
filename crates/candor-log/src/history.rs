//! A customer's **history proof bundle** and its offline verification: every log entry naming
//! the customer up to a checkpoint, each with its inclusion proof, the customer's completeness
//! map proof against the same checkpoint, the checkpoint with the witnesses' cosignatures, and
//! the public keys to check them with. [`verify_bundle`] says what it proved or which check
//! failed, naming the checkpoint. The JSON format is in `docs/proofs.md` ("History bundle").
//!
//! The keys inside a bundle are only as good as their source: a verifier that wants to trust
//! nothing the company sent pins the log key and the witnesses' keys it obtained elsewhere
//! ([`Trust`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::Hash;
use crate::map::{MapError, MapProof, MapValue, Terminal, subject_key, value_of};
use crate::merkle::{leaf_hash, verify_inclusion};
use crate::note::VerifierKey;
use crate::witness::{CosignerKey, SeenCosignature, WitnessError, verify_cosigned};

/// The `format` of a version 1 bundle.
pub const BUNDLE_FORMAT: &str = "candor-history-bundle/v1";

/// The bundle as written (JSON; hashes and bytes in standard base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryBundle {
    pub format: String,
    /// The customer's id, as log entries name them.
    pub subject: String,
    /// The log's verifier key (`name+id+base64`).
    pub log_key: String,
    /// The verifier keys of the witnesses the log reports to.
    #[serde(default)]
    pub witness_keys: Vec<String>,
    /// How many of them must have cosigned.
    #[serde(default)]
    pub witnesses_required: usize,
    /// The signed checkpoint note, with cosignatures.
    pub checkpoint: String,
    /// The customer's map salt (base64).
    pub map_salt: String,
    pub map_proof: WireMapProof,
    /// Every entry naming the customer in the checkpoint's tree, oldest first.
    pub entries: Vec<WireEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    pub index: u64,
    /// The entry's bytes (base64), as hashed.
    pub data: String,
    /// The RFC 9162 inclusion proof in the checkpoint's tree (base64 hashes).
    pub inclusion_proof: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMapProof {
    /// Sibling hashes from the root down (base64).
    pub siblings: Vec<String>,
    pub terminal: WireTerminal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireTerminal {
    /// The customer is in the map with this count and chain.
    Found { count: u64, chain: String },
    /// Nothing on the customer's path: no entry names them.
    Empty,
    /// One other key ends the path: no entry names them.
    Other { key: String, leaf: String },
}

impl WireMapProof {
    pub fn from_proof(p: &MapProof) -> Self {
        Self {
            siblings: p.siblings.iter().map(|h| STANDARD.encode(h)).collect(),
            terminal: match &p.terminal {
                Terminal::Found(v) => WireTerminal::Found { count: v.count, chain: STANDARD.encode(v.chain) },
                Terminal::Empty => WireTerminal::Empty,
                Terminal::Other { key, leaf } => {
                    WireTerminal::Other { key: STANDARD.encode(key), leaf: STANDARD.encode(leaf) }
                }
            },
        }
    }

    fn to_proof(&self) -> Result<MapProof, HistoryError> {
        let siblings = self.siblings.iter().map(|s| hash(s, "a map proof sibling")).collect::<Result<_, _>>()?;
        let terminal = match &self.terminal {
            WireTerminal::Found { count, chain } => {
                Terminal::Found(MapValue { count: *count, chain: hash(chain, "the map chain")? })
            }
            WireTerminal::Empty => Terminal::Empty,
            WireTerminal::Other { key, leaf } => {
                Terminal::Other { key: hash(key, "the other map key")?, leaf: hash(leaf, "the other map leaf")? }
            }
        };
        Ok(MapProof { siblings, terminal })
    }
}

fn hash(b64: &str, what: &'static str) -> Result<Hash, HistoryError> {
    STANDARD.decode(b64).ok().and_then(|b| b.try_into().ok()).ok_or(HistoryError::Malformed(what))
}

/// What the verifier trusts beyond the bundle.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The log key obtained independently: the bundle's must be this one.
    pub log_key: Option<VerifierKey>,
    /// Witness keys obtained independently: used instead of the bundle's.
    pub witnesses: Option<Vec<CosignerKey>>,
    /// Cosignatures required, at least (the bundle's own number applies if larger).
    pub required: Option<usize>,
}

/// What a bundle proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryReport {
    pub subject: String,
    /// Entries naming the customer, all listed.
    pub count: u64,
    /// Of them, accesses that disclosed their data (reads, reports, exports, recipients'
    /// reads: `Action::discloses_personal_data`), not refused.
    pub reads: u64,
    pub checkpoint_size: u64,
    pub origin: String,
    /// The time of the newest entry listed (RFC 3339), if any.
    pub last_entry_time: Option<String>,
    /// Witnesses whose cosignature on the checkpoint verified.
    pub cosignatures: Vec<SeenCosignature>,
    /// The witness keys the check used came from the bundle itself (not pinned).
    pub witness_keys_from_bundle: bool,
    pub log_key_from_bundle: bool,
    pub log_key: String,
}

/// Why a bundle does not verify; every message names the checkpoint when one is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("the bundle is malformed: {0}")]
    Malformed(&'static str),
    #[error("this is not a Candor history bundle of a version this verifier knows (format `{0}`)")]
    Format(String),
    #[error("the bundle's log key is not the log key you trust ({0})")]
    LogKey(String),
    #[error("the checkpoint does not verify: {0}")]
    Checkpoint(#[from] WitnessError),
    #[error("the checkpoint of size {size} commits to no completeness map, so it cannot prove the list is complete")]
    NoMap { size: u64 },
    #[error("entry {index} is listed twice or out of order (checkpoint of size {size})")]
    Order { index: u64, size: u64 },
    #[error("entry {index} is beyond the checkpoint of size {size}")]
    Beyond { index: u64, size: u64 },
    #[error("entry {index} does not name you (checkpoint of size {size})")]
    NotYours { index: u64, size: u64 },
    #[error(
        "entry {index} is not in the log of the checkpoint of size {size}: its inclusion proof fails, so the entry was altered or never logged"
    )]
    NotIncluded { index: u64, size: u64 },
    #[error("the completeness proof does not verify against the checkpoint of size {size}: {error}")]
    MapProof { size: u64, error: MapError },
    #[error(
        "INCOMPLETE: the checkpoint of size {size} commits to {committed} entries about you, but the bundle lists {listed}: {missing} entries about you are missing from the history shown"
    )]
    Missing { size: u64, committed: u64, listed: u64, missing: u64 },
    #[error(
        "NOT THE SAME HISTORY: the checkpoint of size {size} commits to {committed} entries about you and the bundle lists {listed}, but they are not the same entries (one was altered, replaced, reordered or added)"
    )]
    Different { size: u64, committed: u64, listed: u64 },
}

/// Verifies a bundle offline. `trust` overrides what the bundle says about keys.
pub fn verify_bundle(bundle: &HistoryBundle, trust: &Trust) -> Result<HistoryReport, HistoryError> {
    if bundle.format != BUNDLE_FORMAT {
        return Err(HistoryError::Format(bundle.format.clone()));
    }
    let bundled_key = VerifierKey::parse(&bundle.log_key).map_err(|_| HistoryError::Malformed("the log key"))?;
    if let Some(k) = &trust.log_key
        && *k != bundled_key
    {
        return Err(HistoryError::LogKey(k.to_text()));
    }
    let bundled_witnesses = bundle
        .witness_keys
        .iter()
        .map(|k| CosignerKey::parse(k).map_err(|_| HistoryError::Malformed("a witness key")))
        .collect::<Result<Vec<_>, _>>()?;
    let witnesses = trust.witnesses.clone().unwrap_or(bundled_witnesses);
    let required = trust.required.unwrap_or(0).max(bundle.witnesses_required);
    let verified = verify_cosigned(&bundle.checkpoint, &bundled_key, &witnesses, required)?;
    let cp = verified.checkpoint;
    let size = cp.size;
    let map_root = cp.map_root.ok_or(HistoryError::NoMap { size })?;

    let mut shown = Vec::with_capacity(bundle.entries.len());
    let mut reads = 0;
    let mut last_time = None;
    for e in &bundle.entries {
        let index = e.index;
        if shown.last().is_some_and(|(last, _)| index <= *last) {
            return Err(HistoryError::Order { index, size });
        }
        if index >= size {
            return Err(HistoryError::Beyond { index, size });
        }
        let bytes = STANDARD.decode(&e.data).map_err(|_| HistoryError::Malformed("an entry's data"))?;
        if !crate::map::entry_subjects(&bytes).contains(&bundle.subject) {
            return Err(HistoryError::NotYours { index, size });
        }
        let proof =
            e.inclusion_proof.iter().map(|h| hash(h, "an inclusion proof hash")).collect::<Result<Vec<_>, _>>()?;
        let leaf = leaf_hash(&bytes);
        verify_inclusion(&leaf, index, size, &proof, &cp.root)
            .map_err(|_| HistoryError::NotIncluded { index, size })?;
        if let Some(entry) = crate::entry::LogEntry::from_bytes(&bytes) {
            let discloses = crate::Action::parse(&entry.action).is_some_and(|a| a.discloses_personal_data());
            if discloses && entry.decision.as_deref() != Some("denied") {
                reads += 1;
            }
            last_time = Some(entry.time);
        }
        shown.push((index, leaf));
    }

    let salt = hash(&bundle.map_salt, "the map salt")?;
    let key = subject_key(&salt, &bundle.subject);
    let proven = bundle
        .map_proof
        .to_proof()?
        .verify(&key, &map_root)
        .map_err(|error| HistoryError::MapProof { size, error })?
        .unwrap_or(MapValue { count: 0, chain: crate::map::EMPTY_CHAIN });
    let listed = value_of(&shown);
    if listed != proven {
        let (committed, listed) = (proven.count, listed.count);
        if committed > listed {
            return Err(HistoryError::Missing { size, committed, listed, missing: committed - listed });
        }
        return Err(HistoryError::Different { size, committed, listed });
    }
    Ok(HistoryReport {
        subject: bundle.subject.clone(),
        count: proven.count,
        reads,
        checkpoint_size: size,
        origin: cp.origin,
        last_entry_time: last_time,
        cosignatures: verified.cosignatures,
        witness_keys_from_bundle: trust.witnesses.is_none(),
        log_key_from_bundle: trust.log_key.is_none(),
        log_key: bundled_key.to_text(),
    })
}

/// Why a later bundle does not extend an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    #[error("the earlier bundle: {0}")]
    Earlier(HistoryError),
    #[error("the later bundle: {0}")]
    Later(HistoryError),
    #[error("the two bundles are about different customers")]
    OtherCustomer,
    #[error("the bundles are of different logs (`{0}` and `{1}`)")]
    OtherLog(String, String),
    #[error("the \"later\" checkpoint (size {later}) is older than the earlier one (size {earlier})")]
    Backwards { earlier: u64, later: u64 },
    #[error(
        "REWRITTEN: entry {index}, listed in the earlier bundle (checkpoint of size {earlier}), is {what} in the later one (checkpoint of size {later})"
    )]
    Changed { index: u64, what: &'static str, earlier: u64, later: u64 },
    #[error(
        "REWRITTEN: entry {index} is listed in the later bundle (checkpoint of size {later}) but was not in the earlier one, whose checkpoint of size {earlier} covers it: the earlier history was incomplete or the log was forked"
    )]
    Inserted { index: u64, earlier: u64, later: u64 },
}

/// What an earlier and a later bundle proved together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionReport {
    pub earlier: HistoryReport,
    pub later: HistoryReport,
    /// Entries added since the earlier checkpoint.
    pub added: u64,
    /// Witnesses that cosigned both checkpoints: each cosigns only a log extending what it
    /// cosigned before, so they vouch that the later log extends the earlier one.
    pub common_witnesses: Vec<String>,
}

/// Checks both bundles, then that the later history keeps every earlier entry unchanged at its
/// place and adds only entries after the earlier checkpoint.
pub fn verify_extension(
    earlier: &HistoryBundle,
    later: &HistoryBundle,
    trust: &Trust,
) -> Result<ExtensionReport, ExtensionError> {
    let a = verify_bundle(earlier, trust).map_err(ExtensionError::Earlier)?;
    let b = verify_bundle(later, trust).map_err(ExtensionError::Later)?;
    if a.subject != b.subject {
        return Err(ExtensionError::OtherCustomer);
    }
    if a.origin != b.origin {
        return Err(ExtensionError::OtherLog(a.origin, b.origin));
    }
    let (es, ls) = (a.checkpoint_size, b.checkpoint_size);
    if ls < es {
        return Err(ExtensionError::Backwards { earlier: es, later: ls });
    }
    let old: std::collections::BTreeMap<u64, &str> =
        earlier.entries.iter().map(|e| (e.index, e.data.as_str())).collect();
    let new: std::collections::BTreeMap<u64, &str> = later.entries.iter().map(|e| (e.index, e.data.as_str())).collect();
    for (index, data) in &old {
        match new.get(index) {
            None => return Err(ExtensionError::Changed { index: *index, what: "missing", earlier: es, later: ls }),
            Some(d) if d != data => {
                return Err(ExtensionError::Changed { index: *index, what: "different", earlier: es, later: ls });
            }
            Some(_) => {}
        }
    }
    if let Some(index) = new.keys().find(|i| **i < es && !old.contains_key(i)) {
        return Err(ExtensionError::Inserted { index: *index, earlier: es, later: ls });
    }
    let common_witnesses = a
        .cosignatures
        .iter()
        .filter(|c| b.cosignatures.iter().any(|d| d.witness == c.witness))
        .map(|c| c.witness.clone())
        .collect();
    Ok(ExtensionReport { added: b.count - a.count, earlier: a, later: b, common_witnesses })
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use proptest::prelude::*;

    use super::*;
    use crate::entry::{Actor, LogEntry};
    use crate::map::Map;
    use crate::merkle::inclusion_proof_from_leaves;
    use crate::note::{Checkpoint, sign_checkpoint};
    use crate::witness::cosign;

    const ORIGIN: &str = "candor.example/log";

    fn subject(i: u8) -> String {
        format!("00000000-0000-4000-8000-0000000000{i:02x}")
    }

    fn entry(i: usize, subjects: &[u8]) -> Vec<u8> {
        LogEntry {
            v: 1,
            time: format!("2026-12-03T10:{:02}:{:02}.000Z", i / 60 % 60, i % 60),
            action: if i.is_multiple_of(2) { "subject.read" } else { "subject.update" }.into(),
            actor: Actor { token: "t".into(), role: "support_agent".into() },
            purpose: Some("customer_support".into()),
            subjects: subjects.iter().map(|s| subject(*s)).collect(),
            fields: vec![],
            decision: Some("full".into()),
            detail: None,
        }
        .to_bytes()
    }

    fn salt(s: &str) -> Hash {
        crate::merkle::leaf_hash(format!("secret salt of {s}").as_bytes())
    }

    struct Log {
        entries: Vec<Vec<u8>>,
        log: Ed25519KeyPair,
        witness: Ed25519KeyPair,
    }

    impl Log {
        fn new(owners: &[Vec<u8>]) -> Self {
            Self {
                entries: owners.iter().enumerate().map(|(i, o)| entry(i, o)).collect(),
                log: Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap(),
                witness: Ed25519KeyPair::from_seed_unchecked(&[2; 32]).unwrap(),
            }
        }
        fn log_key(&self) -> VerifierKey {
            VerifierKey::new(ORIGIN, self.log.public_key().as_ref().try_into().unwrap())
        }
        fn witness_key(&self) -> CosignerKey {
            CosignerKey::new("witness.example/w1", self.witness.public_key().as_ref().try_into().unwrap())
        }
        fn map(&self) -> Map {
            let mut map = Map::new();
            for (i, e) in self.entries.iter().enumerate() {
                for s in crate::map::entry_subjects(e) {
                    map.append(subject_key(&salt(&s), &s), i as u64, &leaf_hash(e));
                }
            }
            map
        }
        /// The honest bundle for customer `who`.
        fn bundle(&self, who: u8) -> HistoryBundle {
            let leaves: Vec<Hash> = self.entries.iter().map(|e| leaf_hash(e)).collect();
            let size = leaves.len() as u64;
            let mut root = crate::merkle::RootBuilder::new();
            leaves.iter().for_each(|l| root.push(*l));
            let map = self.map();
            let s = subject(who);
            let cp = Checkpoint { origin: ORIGIN.into(), size, root: root.root(), map_root: Some(map.root()) };
            let note = sign_checkpoint(&cp, &self.log_key(), |m| self.log.sign(m).as_ref().try_into().unwrap());
            let line = cosign(&note, &self.witness_key(), 1_764_756_000, |m| {
                self.witness.sign(m).as_ref().try_into().unwrap()
            })
            .unwrap();
            let entries = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| crate::map::entry_subjects(e).contains(&s))
                .map(|(i, e)| WireEntry {
                    index: i as u64,
                    data: STANDARD.encode(e),
                    inclusion_proof: inclusion_proof_from_leaves(&leaves, i as u64, size)
                        .unwrap()
                        .iter()
                        .map(|h| STANDARD.encode(h))
                        .collect(),
                })
                .collect();
            HistoryBundle {
                format: BUNDLE_FORMAT.into(),
                subject: s.clone(),
                log_key: self.log_key().to_text(),
                witness_keys: vec![self.witness_key().to_text()],
                witnesses_required: 1,
                checkpoint: format!("{note}{line}"),
                map_salt: STANDARD.encode(salt(&s)),
                map_proof: WireMapProof::from_proof(&map.prove(&subject_key(&salt(&s), &s))),
                entries,
            }
        }
    }

    fn owners() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(proptest::collection::vec(0u8..6, 0..3), 1..60)
    }

    #[test]
    fn a_customer_named_nowhere_is_proven_to_have_an_empty_history() {
        let log = Log::new(&[vec![1], vec![2, 3]]);
        let report = verify_bundle(&log.bundle(9), &Trust::default()).unwrap();
        assert_eq!((report.count, report.checkpoint_size, report.cosignatures.len()), (0, 2, 1));
    }

    #[test]
    fn pinned_keys_replace_the_bundles_and_a_foreign_log_key_is_refused() {
        let log = Log::new(&[vec![1], vec![1]]);
        let b = log.bundle(1);
        let other = Ed25519KeyPair::from_seed_unchecked(&[9; 32]).unwrap();
        let other_key = VerifierKey::new(ORIGIN, other.public_key().as_ref().try_into().unwrap());
        let trust = Trust { log_key: Some(other_key), ..Trust::default() };
        assert!(matches!(verify_bundle(&b, &trust), Err(HistoryError::LogKey(_))));
        // Requiring a witness the bundle's checkpoint does not carry fails.
        let w = Ed25519KeyPair::from_seed_unchecked(&[8; 32]).unwrap();
        let trust = Trust {
            witnesses: Some(vec![CosignerKey::new("other/w", w.public_key().as_ref().try_into().unwrap())]),
            required: Some(1),
            ..Trust::default()
        };
        assert!(matches!(
            verify_bundle(&b, &trust),
            Err(HistoryError::Checkpoint(WitnessError::TooFewCosignatures { .. }))
        ));
        let trust = Trust { log_key: Some(log.log_key()), witnesses: Some(vec![log.witness_key()]), required: Some(1) };
        let r = verify_bundle(&b, &trust).unwrap();
        assert!(!r.log_key_from_bundle && !r.witness_keys_from_bundle);
        assert_eq!((r.count, r.reads), (2, 1));
    }

    #[test]
    fn a_later_bundle_extends_an_earlier_one_unless_an_old_entry_changed() {
        let owners: Vec<Vec<u8>> = vec![vec![1], vec![2], vec![1, 2], vec![3]];
        let early = Log::new(&owners);
        let mut more = owners.clone();
        more.extend([vec![1], vec![4], vec![1]]);
        let late = Log::new(&more);
        let r = verify_extension(&early.bundle(1), &late.bundle(1), &Trust::default()).unwrap();
        assert_eq!((r.earlier.count, r.later.count, r.added), (2, 4, 2));
        assert_eq!(r.common_witnesses, vec!["witness.example/w1".to_string()]);
        assert!(matches!(
            verify_extension(&late.bundle(1), &early.bundle(1), &Trust::default()),
            Err(ExtensionError::Backwards { .. })
        ));
        // A rewritten log: entry 2 no longer names customer 1, entry 1 now does.
        let rewritten = Log::new(&[vec![1], vec![2, 1], vec![2], vec![3], vec![1], vec![4], vec![1]]);
        assert!(matches!(
            verify_extension(&early.bundle(1), &rewritten.bundle(1), &Trust::default()),
            Err(ExtensionError::Changed { index: 2, .. })
        ));
        assert!(verify_extension(&early.bundle(1), &late.bundle(2), &Trust::default()).is_err());
    }

    proptest! {
        /// Every customer's honest bundle verifies and counts exactly the entries naming them.
        #[test]
        fn honest_bundles_verify(owners in owners(), who in 0u8..6) {
            let log = Log::new(&owners);
            let report = verify_bundle(&log.bundle(who), &Trust::default()).unwrap();
            let expected = owners.iter().filter(|o| o.contains(&who)).count() as u64;
            prop_assert_eq!(report.count, expected);
        }

        /// Leaving out, reordering or altering any entry of a customer's history, or listing
        /// another customer's entry, is detected.
        #[test]
        fn omitting_reordering_or_altering_an_entry_is_detected(owners in owners(), who in 0u8..6, pick in any::<prop::sample::Index>(), change in 0u8..4) {
            let log = Log::new(&owners);
            let mut b = log.bundle(who);
            prop_assume!(!b.entries.is_empty());
            let i = pick.index(b.entries.len());
            match change {
                0 => { b.entries.remove(i); }
                1 => { prop_assume!(b.entries.len() >= 2); let j = (i + 1) % b.entries.len(); b.entries.swap(i, j); }
                2 => {
                    let mut bytes = STANDARD.decode(&b.entries[i].data).unwrap();
                    let text = String::from_utf8(bytes.clone()).unwrap().replacen("support_agent", "support_agenT", 1);
                    bytes = text.into_bytes();
                    b.entries[i].data = STANDARD.encode(bytes);
                }
                _ => {
                    // Another customer's entry slipped in (with a valid inclusion proof).
                    let other = log.entries.iter().position(|e| !crate::map::entry_subjects(e).contains(&subject(who)));
                    prop_assume!(other.is_some());
                    let mut ob = log.bundle(who);
                    let o = other.unwrap();
                    let leaves: Vec<Hash> = log.entries.iter().map(|e| leaf_hash(e)).collect();
                    ob.entries.push(WireEntry {
                        index: o as u64,
                        data: STANDARD.encode(&log.entries[o]),
                        inclusion_proof: inclusion_proof_from_leaves(&leaves, o as u64, leaves.len() as u64).unwrap().iter().map(|h| STANDARD.encode(h)).collect(),
                    });
                    ob.entries.sort_by_key(|e| e.index);
                    b = ob;
                }
            }
            prop_assert!(verify_bundle(&b, &Trust::default()).is_err());
        }

        /// A proof for customer B holds nothing of A: no entry naming A, and its map proof is the
        /// same whatever A's count (beyond one opaque sibling hash).
        #[test]
        fn a_proof_for_one_customer_reveals_nothing_of_anothers_count(owners in owners(), extra in 1usize..10) {
            let (a, b) = (1u8, 4u8);
            // A and B are both in the map; only A's count differs between the two logs.
            let owners: Vec<Vec<u8>> = [vec![a], vec![b]].into_iter().chain(owners).collect();
            let log1 = Log::new(&owners);
            let mut more = owners.clone();
            more.extend(std::iter::repeat_n(vec![a], extra));
            let log2 = Log::new(&more);
            let (b1, b2) = (log1.bundle(b), log2.bundle(b));
            for e in b1.entries.iter().chain(&b2.entries) {
                let bytes = STANDARD.decode(&e.data).unwrap();
                prop_assert!(!crate::map::entry_subjects(&bytes).contains(&subject(a)) || crate::map::entry_subjects(&bytes).contains(&subject(b)));
            }
            prop_assert_eq!(&b1.map_proof.terminal, &b2.map_proof.terminal);
            prop_assert_eq!(b1.map_proof.siblings.len(), b2.map_proof.siblings.len());
            let differing = b1.map_proof.siblings.iter().zip(&b2.map_proof.siblings).filter(|(x, y)| x != y).count();
            prop_assert!(differing <= 1);
        }

        /// Two different checkpoints of the same size (a split view) cannot both carry the
        /// witness's cosignature: a bundle whose checkpoint was swapped for another fails.
        #[test]
        fn a_bundle_against_another_view_of_the_log_fails(owners in owners(), who in 0u8..6) {
            let honest = Log::new(&owners);
            let mut forked_owners = owners.clone();
            forked_owners.pop();
            forked_owners.push(vec![who]);
            let forked = Log::new(&forked_owners);
            let mut b = honest.bundle(who);
            let f = forked.bundle(who);
            // The forked checkpoint without the witness's cosignature: refused when one is required.
            b.checkpoint = f.checkpoint.lines().take_while(|l| !l.contains("witness.example")).map(|l| format!("{l}\n")).collect();
            prop_assert!(verify_bundle(&b, &Trust::default()).is_err());
        }
    }
}
