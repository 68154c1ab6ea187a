//! The log checked from inside: for an auditor (admin or a role with `audit = true`), every
//! stored entry is read, parsed and hashed again, and the tree they make is compared with the
//! latest signed checkpoint (its signature checked with the log key, its completeness map
//! rebuilt from the entries and compared with the root it commits to) and with the tree head the
//! store keeps. This is what `candor log verify` does against the database, done by the server
//! for the staff console; the independent check stays `candor log verify --url` (or any C2SP
//! tlog verifier) run somewhere the company does not control.

use candor_log::entry::LogEntry;
use candor_log::merkle::{RootBuilder, leaf_hash};

use super::{Principal, Vault, VaultError};

/// Entries read per store call.
const PAGE: u64 = 4096;

/// What checking the log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCheck {
    /// Entries in the log when the check ran.
    pub entries: u64,
    /// Entries the latest signed checkpoint covers.
    pub checkpoint_size: u64,
    /// The checkpoint's signature verifies with the log key.
    pub signature_ok: bool,
    /// The entries up to the checkpoint hash to the root it signs.
    pub checkpoint_matches: bool,
    /// All entries hash to the tree head the store keeps (so proofs it serves are of them).
    pub head_matches: bool,
    /// The completeness map the checkpoint commits to is the one its entries make (`None`: the
    /// checkpoint commits to no map).
    pub map_matches: Option<bool>,
    /// Entries whose stored leaf hash is not the hash of their bytes, by index (at most 10).
    pub altered: Vec<u64>,
    /// Entries that are not a log entry at all, by index (at most 10).
    pub malformed: Vec<u64>,
}

impl LogCheck {
    /// Whether the log passed every check.
    pub fn passed(&self) -> bool {
        self.signature_ok
            && self.checkpoint_matches
            && self.head_matches
            && self.map_matches != Some(false)
            && self.altered.is_empty()
            && self.malformed.is_empty()
    }
}

impl Vault {
    /// Checks the whole log (see the module documentation). Refused, and the refusal logged,
    /// for callers that do not audit.
    pub async fn check_log(&self, caller: &Principal) -> Result<LogCheck, VaultError> {
        self.require_audit(caller).await?;
        let note = self.latest_checkpoint().await?;
        let (signature_ok, checkpoint) = match self.verifier_key().open(&note) {
            Ok(cp) => (true, Some(cp)),
            Err(_) => (false, None),
        };
        let (size, head_root) = self.store.log_head().await?;
        let checkpoint_size = checkpoint.as_ref().map_or(0, |c| c.size);
        let mut tree = RootBuilder::new();
        // The customers' histories, rebuilt as the entries go by, when the checkpoint commits to them.
        let mut map = checkpoint.as_ref().and_then(|c| c.map_root).map(|_| candor_log::map::Map::new());
        let mut map_matches = checkpoint
            .as_ref()
            .and_then(|c| c.map_root.map(|root| c.size == 0 && root == candor_log::map::Map::new().root()));
        let signer = &self.log_context().signer;
        let mut checkpoint_matches = checkpoint.as_ref().is_some_and(|c| c.size == 0 && c.root == tree.root());
        let (mut altered, mut malformed) = (Vec::new(), Vec::new());
        let mut start = 0;
        while start < size {
            let end = (start + PAGE).min(size);
            for entry in self.log_entries(start, end).await? {
                let leaf = leaf_hash(&entry.bytes);
                if leaf != entry.leaf_hash && altered.len() < 10 {
                    altered.push(entry.index);
                }
                if LogEntry::from_bytes(&entry.bytes).is_none() && malformed.len() < 10 {
                    malformed.push(entry.index);
                }
                tree.push(leaf);
                if let Some(m) = map.as_mut()
                    && checkpoint.as_ref().is_some_and(|c| entry.index < c.size)
                {
                    crate::completeness::add_entry(m, signer, entry.index, &entry.bytes);
                }
                if let Some(c) = &checkpoint
                    && tree.size() == c.size
                {
                    checkpoint_matches = tree.root() == c.root;
                    if let (Some(m), Some(root)) = (&map, c.map_root) {
                        map_matches = Some(m.root() == root);
                    }
                }
            }
            start = end;
        }
        Ok(LogCheck {
            entries: size,
            checkpoint_size,
            signature_ok,
            checkpoint_matches,
            head_matches: tree.size() == size && tree.root() == head_root,
            map_matches,
            altered,
            malformed,
        })
    }
}
