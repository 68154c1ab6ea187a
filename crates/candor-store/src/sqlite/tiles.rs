//! The log's Merkle tree on SQLite, as C2SP hash tiles (`candor_log::tiles`) in `log_tiles`.
//!
//! Appending an entry writes only its row (and its subject links): the one writer connection
//! extends the tiles for every entry of a transaction at once, just before that transaction
//! commits ([`tile_new_entries`]), so a group commit of 64 reads writes one leaf tile instead of
//! ~130 node rows. The tree's size is what the tiles cover ([`tree_size`]); it equals the
//! number of entries after every commit of the writer. Entries committed without tiles (a
//! migrated database, a write run alone) are tiled by [`tile_untiled_entries`].

use std::collections::HashMap;

use candor_log::merkle::{self, NodeRecorder, NodeSource, ProofError};
use candor_log::tiles::{self, Edge, TileSource};
use rusqlite::{Connection, OptionalExtension, params};

use super::{db_err, log_size, query_row_cached};
use crate::sql::proof_err;
use crate::{Hash, StoreError};

/// The number of leaves the stored tiles cover (the last leaf tile's index · 256 + its width).
pub(super) fn tree_size(c: &Connection) -> Result<u64, StoreError> {
    let last: Option<(i64, i64)> = query_row_cached(
        c,
        "SELECT idx, length(hashes) FROM log_tiles WHERE level = 0 ORDER BY idx DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(db_err)?;
    Ok(last.map_or(0, |(idx, len)| tiles::size_from_last_leaf_tile(idx as u64, len as usize / 32)))
}

fn read_tile(c: &Connection, level: u32, index: u64) -> Result<Option<Vec<Hash>>, StoreError> {
    let bytes: Option<Vec<u8>> = c
        .prepare_cached("SELECT hashes FROM log_tiles WHERE level = ?1 AND idx = ?2")
        .and_then(|mut s| s.query_row(params![level, index as i64], |r| r.get(0)).optional())
        .map_err(db_err)?;
    bytes.map(|b| tiles::decode(&b).map_err(proof_err)).transpose()
}

fn read_tiles(c: &Connection, wanted: &[(u32, u64)]) -> Result<HashMap<(u32, u64), Vec<Hash>>, StoreError> {
    let mut out = HashMap::with_capacity(wanted.len());
    for &(level, index) in wanted {
        if let Some(hashes) = read_tile(c, level, index)? {
            out.insert((level, index), hashes);
        }
    }
    Ok(out)
}

/// Runs a node-reading algorithm (a proof, a root) over the stored tiles: learn the nodes it
/// reads, read the tiles holding them once each, run it over them.
pub(super) fn with_tiles<T>(
    c: &Connection,
    f: impl Fn(&mut dyn NodeSource) -> Result<T, ProofError>,
) -> Result<T, StoreError> {
    let mut recorder = NodeRecorder::default();
    f(&mut recorder).map_err(proof_err)?;
    let mut src = TileSource::new(read_tiles(c, &tiles::tiles_for(&recorder.wanted))?);
    f(&mut src).map_err(proof_err)
}

/// The root of the tree of `size` leaves.
pub(super) fn root(c: &Connection, size: u64) -> Result<Hash, StoreError> {
    with_tiles(c, |src| merkle::root(src, size))
}

/// Extends the tiles over the entries appended since they were last extended, inside the
/// caller's transaction (the writer calls it just before each commit; a no-op when the tiles
/// are current). Each changed tile is written once.
pub(crate) fn tile_new_entries(c: &Connection) -> Result<(), StoreError> {
    let (tree, size) = (tree_size(c)?, log_size(c)?);
    if tree == size {
        return Ok(());
    }
    if tree > size {
        return Err(StoreError::Corrupt(format!(
            "the log's tiles cover {tree} entries but the log has {size}: entries were deleted"
        )));
    }
    let wanted: Vec<(u32, u64)> = tiles::partial_tiles(tree).into_iter().map(|(l, i, _)| (l, i)).collect();
    let mut edge = Edge::load(tree, &read_tiles(c, &wanted)?).map_err(proof_err)?;
    {
        let mut stmt =
            c.prepare_cached("SELECT idx, entry FROM log_entries WHERE idx >= ?1 ORDER BY idx").map_err(db_err)?;
        let mut rows = stmt.query(params![tree as i64]).map_err(db_err)?;
        while let Some(r) = rows.next().map_err(db_err)? {
            let idx: i64 = r.get(0).map_err(db_err)?;
            if idx as u64 != edge.size() {
                return Err(StoreError::Corrupt(format!("log entry {} is missing", edge.size())));
            }
            let entry = r.get_ref(1).map_err(db_err)?.as_blob().map_err(|e| db_err(e.into()))?;
            edge.push(merkle::leaf_hash(entry));
        }
    }
    write_tiles(c, edge.finish())
}

/// Tiles, in a transaction of its own, entries committed without their tiles: at open (an
/// older Candor's migrated log) and after a write run alone. Nothing to do costs two indexed
/// reads and no transaction. A log whose tiles cover more entries than it has (entries deleted
/// from the file) is left as it is, so that it still opens and `candor log verify` can name
/// what is missing; writing to it fails ([`tile_new_entries`]).
pub(super) fn tile_untiled_entries(c: &mut Connection) -> Result<(), StoreError> {
    if tree_size(c)? >= log_size(c)? {
        return Ok(());
    }
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db_err)?;
    tile_new_entries(&tx)?;
    tx.commit().map_err(db_err)
}

pub(super) fn write_tiles(c: &Connection, written: Vec<tiles::Tile>) -> Result<(), StoreError> {
    let mut stmt = c
        .prepare_cached(
            "INSERT INTO log_tiles (level, idx, hashes) VALUES (?1, ?2, ?3)
             ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes",
        )
        .map_err(db_err)?;
    for t in written {
        stmt.execute(params![t.level, t.index as i64, tiles::encode(&t.hashes)]).map_err(db_err)?;
    }
    Ok(())
}

/// Migration: the tiles from the node rows an older Candor stored (`log_nodes`, every complete
/// subtree), keeping exactly the hashes that were committed; then `log_nodes` goes. Inside the
/// migration's transaction.
pub(super) fn tiles_from_nodes(c: &Connection) -> Result<(), StoreError> {
    let mut level = 0u32;
    loop {
        let mut current: Option<tiles::Tile> = None;
        let mut any = false;
        {
            let mut stmt =
                c.prepare("SELECT idx, hash FROM log_nodes WHERE level = ?1 ORDER BY idx").map_err(db_err)?;
            let mut rows = stmt.query(params![level]).map_err(db_err)?;
            let mut expected = 0u64;
            while let Some(r) = rows.next().map_err(db_err)? {
                let idx = r.get::<_, i64>(0).map_err(db_err)? as u64;
                if idx != expected {
                    return Err(StoreError::Corrupt(format!(
                        "the log's stored node ({level}, {expected}) is missing: run `candor log verify` on a copy \
                         with the previous Candor"
                    )));
                }
                let hash = crate::sql::hash_of(r.get(1).map_err(db_err)?)?;
                let index = idx / tiles::WIDTH;
                match current.as_mut() {
                    Some(t) if t.index == index => t.hashes.push(hash),
                    _ => {
                        // One tile at a time: a long log's level 0 never sits in memory.
                        if let Some(done) = current.take() {
                            write_tiles(c, vec![done])?;
                        }
                        current = Some(tiles::Tile { level: level / tiles::HEIGHT, index, hashes: vec![hash] });
                    }
                }
                any = true;
                expected += 1;
            }
        }
        if let Some(done) = current {
            write_tiles(c, vec![done])?;
        }
        if !any {
            break;
        }
        level += tiles::HEIGHT;
    }
    c.execute_batch("DROP TABLE log_nodes").map_err(db_err)
}

#[cfg(test)]
mod tests {
    use candor_log::merkle::{self, RootBuilder};

    use super::super::{LOG_TILES, SqliteStore, database_before, open_connection};
    use crate::Store;

    /// A database as Candor wrote it before tiles (schema 18: a row per complete subtree in
    /// `log_nodes`) is migrated to tiles holding exactly the committed hashes, and the log
    /// goes on from there.
    #[tokio::test]
    async fn a_log_stored_as_node_rows_is_migrated_to_tiles_and_keeps_growing() {
        let dir = tempfile::tempdir().unwrap();
        let (data, keys) = (dir.path().join("candor.db"), dir.path().join("keys.db"));
        let n = 70_000u64;
        let entries: Vec<Vec<u8>> = (0..n).map(|i| format!("{{\"old\":{i}}}").into_bytes()).collect();
        let mut builder = RootBuilder::new();
        {
            let mut conn = database_before(&data, &keys, LOG_TILES);
            let tx = conn.transaction().unwrap();
            for (i, e) in entries.iter().enumerate() {
                tx.execute("INSERT INTO log_entries (idx, entry) VALUES (?1, ?2)", rusqlite::params![i as i64, e])
                    .unwrap();
                let leaf = merkle::leaf_hash(e);
                tx.execute(
                    "INSERT INTO log_nodes (level, idx, hash) VALUES (0, ?1, ?2)",
                    rusqlite::params![i as i64, &leaf[..]],
                )
                .unwrap();
                builder.push_reporting(leaf, |level, index, hash| {
                    tx.execute(
                        "INSERT INTO log_nodes (level, idx, hash) VALUES (?1, ?2, ?3)",
                        rusqlite::params![level, index as i64, &hash[..]],
                    )
                    .unwrap();
                });
            }
            // An entry edited in the file before the upgrade: the tiles keep the hashes that
            // were committed, so the edit stays detectable (they are not recomputed from entries).
            tx.execute("UPDATE log_entries SET entry = X'00' WHERE idx = 5", []).unwrap();
            tx.commit().unwrap();
        }
        let old_root = builder.root();
        let store = SqliteStore::open(&data, &keys).await.unwrap();
        assert_eq!(store.log_head().await.unwrap(), (n, old_root), "the same tree, from tiles");
        let (leaf, proof) = store.log_inclusion_proof(n - 1, n).await.unwrap();
        merkle::verify_inclusion(&leaf, n - 1, n, &proof, &old_root).unwrap();
        let (leaf, _) = store.log_inclusion_proof(5, n).await.unwrap();
        assert_eq!(leaf, merkle::leaf_hash(&entries[5]), "the committed leaf hash, not the edited entry's");

        let more = crate::LogRecord { entry: b"{\"new\":1}".to_vec(), ..Default::default() };
        assert_eq!(store.append_log(vec![more.clone()]).await.unwrap(), n);
        builder.push(merkle::leaf_hash(&more.entry));
        let (size, root) = store.log_head().await.unwrap();
        assert_eq!((size, root), (n + 1, builder.root()));
        let (r1, r2, proof) = store.log_consistency_proof(n, n + 1).await.unwrap();
        merkle::verify_consistency(n, n + 1, &r1, &r2, &proof).unwrap();
        assert_eq!(r1, old_root);

        let conn = open_connection(&data, &keys).unwrap();
        let old_table: i64 =
            conn.query_row("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'log_nodes'", [], |r| r.get(0)).unwrap();
        assert_eq!(old_table, 0, "the node rows are gone");
        let tiles: i64 = conn.query_row("SELECT COUNT(*) FROM log_tiles", [], |r| r.get(0)).unwrap();
        assert_eq!(tiles, 277);
    }
}
