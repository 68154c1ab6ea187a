//! The completeness map a server commits in every checkpoint it signs (`candor-map/v1` line,
//! see `candor_log::map`), kept in memory and advanced from the log itself.
//!
//! The map is a function of the log's entries and the map secret (derived from the log
//! signing key, `LogSigner::map_salt`): every server of an installation computes the same root
//! for the same size, and `candor log verify` recomputes it. Nothing is stored: a server
//! rebuilds it from the entries on its first checkpoint after start-up (BENCHMARKS.md gives the
//! cost), then adds only the entries appended since. The maps of recent checkpoints are kept
//! (sharing their unchanged parts) so a customer's proof can be made against a checkpoint the
//! witnesses have already cosigned: at most [`SNAPSHOTS`], and an older one only while fewer
//! than [`CHANGES_KEPT`] customer histories changed after it (see [`evict`]).
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

/// Maps of at most this many recent checkpoints are kept for proofs.
pub const SNAPSHOTS: usize = 16;
/// A map older than the newest is kept only while fewer customer histories than this changed
/// after it. What a kept map costs beyond the newest is the paths that changed since (about a
/// kilobyte per change): sixteen checkpoints of a thousand changes each cost 17 MiB, but after
/// an import of a million customers the map of a checkpoint signed halfway through shares
/// almost nothing with the newest and would hold tens of MiB more until sixteen more
/// checkpoints pushed it out.
pub const CHANGES_KEPT: u64 = 16_384;
/// Entries read from the store at a time while advancing.
const BATCH: u64 = 1024;

struct Inner {
    map: Map,
    /// Entries `[0, size)` are in `map`.
    size: u64,
    /// Customer histories changed in `map` so far (one per customer an added entry names).
    changes: u64,
    /// Kept maps by checkpoint size, with `changes` when each was taken.
    snapshots: BTreeMap<u64, (Map, u64)>,
    /// See [`CHANGES_KEPT`].
    changes_kept: u64,
}

/// The map and how far it has been built.
pub struct MapState {
    inner: tokio::sync::Mutex<Inner>,
}

impl Default for MapState {
    fn default() -> Self {
        Self::keeping(CHANGES_KEPT)
    }
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

    /// A map state that keeps older maps only while fewer than `changes_kept` histories changed
    /// after them ([`CHANGES_KEPT`] for a server).
    pub fn keeping(changes_kept: u64) -> Self {
        let inner = Inner { map: Map::default(), size: 0, changes: 0, snapshots: BTreeMap::new(), changes_kept };
        Self { inner: tokio::sync::Mutex::new(inner) }
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
            let Inner { map, size: built, changes, .. } = &mut *inner;
            for (index, bytes) in entries {
                if index != *built {
                    return Err(missing(*built));
                }
                *changes += add_entry(map, signer, index, &bytes) as u64;
                *built += 1;
            }
            if *built != end {
                return Err(missing(*built));
            }
        }
        let map_root = inner.map.root();
        let snapshot = (inner.map.clone(), inner.changes);
        inner.snapshots.insert(size, snapshot);
        let (changes, changes_kept) = (inner.changes, inner.changes_kept);
        evict(&mut inner.snapshots, changes, changes_kept);
        Ok((size, root, map_root))
    }

    /// The proof for the customer `subject` against the map at `size`, if that map is still
    /// kept (see [`evict`]).
    pub async fn prove(&self, size: u64, subject: &str, signer: &LogSigner) -> Option<SubjectMapProof> {
        let inner = self.inner.lock().await;
        let (map, _) = inner.snapshots.get(&size)?;
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

/// Drops the oldest kept maps while more than [`SNAPSHOTS`] are kept or while more than
/// `changes_kept` histories changed after the oldest (`changes` now); the newest is always kept
/// (a checkpoint just signed is proved against it).
fn evict(snapshots: &mut BTreeMap<u64, (Map, u64)>, changes: u64, changes_kept: u64) {
    while snapshots.len() > 1
        && let Some((_, (_, taken_at))) = snapshots.first_key_value()
        && (snapshots.len() > SNAPSHOTS || changes - taken_at > changes_kept)
    {
        snapshots.pop_first();
    }
}

/// Adds the entry at `index` to the history of every customer it names; returns how many.
pub fn add_entry(map: &mut Map, signer: &LogSigner, index: u64, bytes: &[u8]) -> usize {
    let subjects = entry_subjects(bytes);
    if subjects.is_empty() {
        return 0;
    }
    let leaf = leaf_hash(bytes);
    for s in &subjects {
        map.append(subject_key(&signer.map_salt(s), s), index, &leaf);
    }
    subjects.len()
}

fn missing(index: u64) -> StoreError {
    StoreError::Corrupt(format!(
        "log entry {index} is missing, so the completeness map cannot be built and no checkpoint is signed; \
         run `candor log verify` to see what happened to the log"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(snapshots: &BTreeMap<u64, (Map, u64)>) -> Vec<u64> {
        snapshots.keys().copied().collect()
    }

    #[test]
    fn older_maps_go_once_too_many_histories_changed_after_them_or_too_many_are_kept() {
        // (size, changes when taken)
        let kept = |taken: &[(u64, u64)]| taken.iter().map(|&(size, at)| (size, (Map::default(), at))).collect();
        let mut s: BTreeMap<u64, (Map, u64)> = kept(&[(1, 0), (2, 50), (3, 120), (4, 130)]);
        evict(&mut s, 130, 100);
        assert_eq!(sizes(&s), [2, 3, 4], "130 changes after the first map, 80 after the second");
        evict(&mut s, 130, 10);
        assert_eq!(sizes(&s), [3, 4]);
        // The newest stays whatever changed.
        evict(&mut s, 1_000_000, 10);
        assert_eq!(sizes(&s), [4]);
        // Within the budget, still no more than SNAPSHOTS.
        let many: Vec<(u64, u64)> = (1..=SNAPSHOTS as u64 + 5).map(|i| (i, i)).collect();
        let mut s = kept(&many);
        evict(&mut s, SNAPSHOTS as u64 + 5, 1_000);
        assert_eq!(sizes(&s), (6..=SNAPSHOTS as u64 + 5).collect::<Vec<_>>());
    }
}
