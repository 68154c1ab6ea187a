//! The completeness map a server commits in every checkpoint it signs (`candor-map/v1` line,
//! see `candor_log::map`), kept in memory and advanced from the log itself.
//!
//! The map is a function of the log's entries and the map secret (derived from the log
//! signing key, `LogSigner::map_salt`): every server of an installation computes the same root
//! for the same size, and `candor log verify` recomputes it. Nothing is stored: a server
//! rebuilds it from the entries on its first checkpoint after start-up (BENCHMARKS.md gives the
//! cost), then adds only the entries appended since. The maps of the last
//! [`SNAPSHOTS`] checkpoints are kept (sharing their unchanged parts) so a customer's proof can
//! be made against a checkpoint the witnesses have already cosigned.
//!
//! A missing entry stops the map (and so new checkpoints) with an error naming its index rather
//! than being skipped: a map built over a log with a hole would commit to a history that is
//! not the one earlier checkpoints committed to.

use std::collections::BTreeMap;

use candor_crypto::LogSigner;
use candor_log::Hash;
use candor_log::map::{Map, MapProof, entry_subjects, subject_key};
use candor_log::merkle::leaf_hash;
use candor_store::{Store, StoreError};

/// Maps of this many recent checkpoints are kept for proofs.
pub const SNAPSHOTS: usize = 16;
/// Entries read from the store at a time while advancing.
const BATCH: u64 = 1024;

#[derive(Default)]
struct Inner {
    map: Map,
    /// Entries `[0, size)` are in `map`.
    size: u64,
    snapshots: BTreeMap<u64, Map>,
}

/// The map and how far it has been built.
#[derive(Default)]
pub struct MapState {
    inner: tokio::sync::Mutex<Inner>,
}

/// A customer's map proof against the map at one checkpoint size.
pub struct SubjectMapProof {
    /// Their salt (the key is `subject_key(salt, subject id)`).
    pub salt: Hash,
    pub proof: MapProof,
}

impl MapState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the log head and brings the map up to it; returns (size, log root, map root).
    /// Holding the map's lock from reading the head to recording the snapshot means two
    /// checkpoints signed at once never see the map at the wrong size.
    pub async fn advance_to_head(
        &self,
        store: &dyn Store,
        signer: &LogSigner,
    ) -> Result<(u64, Hash, Hash), StoreError> {
        let mut inner = self.inner.lock().await;
        let (size, root) = store.log_head().await?;
        if size < inner.size {
            return Err(StoreError::Corrupt(format!(
                "the log holds {size} entries but the completeness map was built over {}: the log was truncated",
                inner.size
            )));
        }
        while inner.size < size {
            let start = inner.size;
            let end = (start + BATCH).min(size);
            let entries = store.log_entries(start, end).await?;
            let Inner { map, size: built, .. } = &mut *inner;
            for (index, bytes) in entries {
                if index != *built {
                    return Err(missing(*built));
                }
                add_entry(map, signer, index, &bytes);
                *built += 1;
            }
            if *built != end {
                return Err(missing(*built));
            }
        }
        let map_root = inner.map.root();
        let snapshot = inner.map.clone();
        inner.snapshots.insert(size, snapshot);
        while inner.snapshots.len() > SNAPSHOTS {
            inner.snapshots.pop_first();
        }
        Ok((size, root, map_root))
    }

    /// The proof for the customer `subject` against the map at `size`, if that map is still
    /// kept (it is for the last [`SNAPSHOTS`] checkpoints this server signed).
    pub async fn prove(&self, size: u64, subject: &str, signer: &LogSigner) -> Option<SubjectMapProof> {
        let inner = self.inner.lock().await;
        let map = inner.snapshots.get(&size)?;
        let salt = signer.map_salt(subject);
        Some(SubjectMapProof { salt, proof: map.prove(&subject_key(&salt, subject)) })
    }

    /// Takes a map built elsewhere from the same log's first `size` entries (`candor log
    /// verify` rebuilds it anyway), so the next advance reads only the entries after them.
    pub async fn seed(&self, map: Map, size: u64) {
        let mut inner = self.inner.lock().await;
        if inner.size < size {
            inner.map = map;
            inner.size = size;
        }
    }

    /// Sizes whose maps are kept, oldest first.
    pub async fn kept_sizes(&self) -> Vec<u64> {
        self.inner.lock().await.snapshots.keys().copied().collect()
    }
}

/// Adds the entry at `index` to the history of every customer it names.
pub fn add_entry(map: &mut Map, signer: &LogSigner, index: u64, bytes: &[u8]) {
    let subjects = entry_subjects(bytes);
    if subjects.is_empty() {
        return;
    }
    let leaf = leaf_hash(bytes);
    for s in subjects {
        map.append(subject_key(&signer.map_salt(&s), &s), index, &leaf);
    }
}

fn missing(index: u64) -> StoreError {
    StoreError::Corrupt(format!(
        "log entry {index} is missing, so the completeness map cannot be built and no checkpoint is signed; \
         run `candor log verify` to see what happened to the log"
    ))
}
