//! Importing customers in batches on SQLite (`candor import subjects`, `POST /v1/imports`): the
//! batch's keys committed first, then its customers and their log records, with the write
//! connection's page cache, checkpoints and WAL limit raised for the batch and set back after.

use std::collections::HashSet;

use candor_core::{BlindIndex, FieldName};
use rusqlite::{Connection, TransactionBehavior, params};

use super::{WAL_KEPT_BYTES, append_log_tx, db_err, execute_cached, holders_of, insert_subject_rows, log_size, tiles};
use crate::{ImportRow, LogRecord, NewSubject, StoreError};

/// Page cache of the write connection, per file (data and key store), while it writes an import
/// batch (SQLite's default is 2 MB; a batch's B-tree pages did not fit, and spilling them
/// mid-transaction cost a sixth of the writer's time; the key store's id index, a random page
/// per new key, was read back from the file on every batch until it got the same cache).
const IMPORT_CACHE_KIB: i64 = 64 * 1024;
/// SQLite's own page cache per file and checkpoint threshold, which every connection keeps
/// outside an import batch.
const DEFAULT_CACHE_KIB: i64 = 2000;
const DEFAULT_WAL_PAGES: i64 = 1000;
/// WAL pages (256 MB) after which a commit of an import batch copies the WAL into the database.
/// SQLite's default, 1,000 pages, made every batch's commit a checkpoint, and so did 16,384
/// once a database held a million customers (a batch's random index pages alone fill that):
/// a page that the next batches change again was written to the database file once per batch.
/// With room for several batches it is written once per checkpoint (a 1,000,000-row import:
/// 30 -> 24 KB written per row, +20% rows/s). The file shrinks back to [`WAL_KEPT_BYTES`]
/// at the next checkpoint that empties it.
const IMPORT_WAL_PAGES: i64 = 64 * 1024;

/// An import batch, on the write connection alone: the duplicate check and every new key in one
/// transaction (committed first, as a single create commits its key first), then every
/// customer's rows and log record in one more. No savepoint per customer: a failure rolls the
/// whole data transaction back (and removes the batch's keys), and the import stops there; a
/// re-run continues from its checkpoint. The connection's page cache and checkpoint interval are
/// raised for the batch and set back afterwards (an idle server keeps its footprint), and the
/// WALs are not cut back during the batch: cutting a 256 MB WAL to 16 MB at every checkpoint
/// made the file system allocate and zero its blocks again as it regrew (a 1,000,000-row import
/// +13% rows/s); the next checkpoint after the import cuts them back.
pub(super) fn import_subjects_tx(
    c: &mut Connection,
    rows: Vec<ImportRow>,
) -> Result<Vec<Option<FieldName>>, StoreError> {
    for schema in ["main", "keys"] {
        c.pragma_update(Some(schema), "cache_size", -IMPORT_CACHE_KIB).map_err(db_err)?;
        c.pragma_update(Some(schema), "journal_size_limit", -1).map_err(db_err)?;
    }
    c.pragma_update(None, "wal_autocheckpoint", IMPORT_WAL_PAGES).map_err(db_err)?;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| import_batch(c, rows)));
    // Whatever happened (even a panic mid-transaction), the connection goes back to how every
    // other write expects it: no transaction open, foreign keys checked, default cache.
    if !c.is_autocommit() {
        let _ = c.execute_batch("ROLLBACK");
    }
    let reset = c
        .pragma_update(None, "foreign_keys", "ON")
        .and_then(|()| c.pragma_update(Some("main"), "cache_size", -DEFAULT_CACHE_KIB))
        .and_then(|()| c.pragma_update(Some("keys"), "cache_size", -DEFAULT_CACHE_KIB))
        .and_then(|()| c.pragma_update(None, "wal_autocheckpoint", DEFAULT_WAL_PAGES))
        .and_then(|()| c.pragma_update(Some("main"), "journal_size_limit", WAL_KEPT_BYTES))
        .and_then(|()| c.pragma_update(Some("keys"), "journal_size_limit", WAL_KEPT_BYTES))
        .map_err(db_err);
    let outcome = match outcome {
        Ok(outcome) => outcome?,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    reset?;
    Ok(outcome)
}

fn import_batch(c: &mut Connection, rows: Vec<ImportRow>) -> Result<Vec<Option<FieldName>>, StoreError> {
    // Phase 1: which rows may be stored (no customer, and no earlier row, holds a unique value),
    // and their keys.
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
    let mut by_field: Vec<(FieldName, Vec<BlindIndex>, Vec<usize>)> = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        for (field, tokens) in &row.unique {
            let k = match by_field.iter().position(|(f, ..)| f == field) {
                Some(k) => k,
                None => {
                    by_field.push((field.clone(), Vec::new(), Vec::new()));
                    by_field.len() - 1
                }
            };
            for t in tokens {
                by_field[k].1.push(t.clone());
                by_field[k].2.push(r);
            }
        }
    }
    let mut conflict: Vec<Option<FieldName>> = vec![None; rows.len()];
    for (field, tokens, owner) in &by_field {
        for (i, _) in holders_of(&tx, field, tokens)? {
            conflict[owner[i]].get_or_insert_with(|| field.clone());
        }
    }
    let mut taken: HashSet<(&str, &[u8])> = HashSet::new();
    for (r, row) in rows.iter().enumerate() {
        if conflict[r].is_some() {
            continue;
        }
        if let Some((field, _)) =
            row.unique.iter().find(|(f, tokens)| tokens.iter().any(|t| taken.contains(&(f.as_str(), t.as_bytes()))))
        {
            conflict[r] = Some(field.clone());
            continue;
        }
        for (f, tokens) in &row.unique {
            taken.extend(tokens.iter().map(|t| (f.as_str(), t.as_bytes())));
        }
    }
    let mark = log_size(&tx)? as i64;
    {
        let mut put = tx
            .prepare_cached(
                "INSERT INTO keys.subject_keys (subject_id, kek_version, dek_version, wrapped_dek, created_at, log_mark)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(db_err)?;
        // In id order: one pass over the key store's id index instead of a jump per key.
        let mut new_keys: Vec<(String, &NewSubject)> = rows
            .iter()
            .zip(&conflict)
            .filter(|(_, c)| c.is_none())
            .map(|(row, _)| (row.subject.id.to_string(), &row.subject))
            .collect();
        new_keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (id, s) in new_keys {
            put.execute(params![id, s.dek.kek_version, s.dek.dek_version, s.dek.wrapped.as_bytes(), s.now, mark])
                .map_err(db_err)?;
        }
    }
    tx.commit().map_err(db_err)?;
    // Phase 2: the customers and their log records. Customers go in in id order (nearby pages
    // of the id index one after the other; the ids are random); each gets the next internal
    // number, so their values and index rows go at the end of those tables. Log records go in
    // the batch's order. Foreign keys are not checked for this transaction: every value and
    // index row it writes belongs to a customer it writes just before (the setting cannot
    // change inside a transaction; it is set back right after).
    let stored: Vec<&ImportRow> = rows.iter().zip(&conflict).filter(|(_, c)| c.is_none()).map(|(r, _)| r).collect();
    let mut in_order: Vec<(String, &NewSubject)> =
        stored.iter().map(|r| (r.subject.id.to_string(), &r.subject)).collect();
    in_order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    c.pragma_update(None, "foreign_keys", "OFF").map_err(db_err)?;
    let data = (|| {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
        for (id, subject) in &in_order {
            insert_subject_rows(&tx, id, subject)?;
        }
        let logs: Vec<LogRecord> = stored.iter().map(|r| r.log.clone()).collect();
        append_log_tx(&tx, &logs)?;
        tiles::tile_new_entries(&tx)?;
        tx.commit().map_err(db_err)
    })();
    let checks_back = c.pragma_update(None, "foreign_keys", "ON").map_err(db_err);
    if let Err(e) = data {
        // The keys of customers that were never stored are removed (a crash here instead leaves
        // them unused, as a single create's would be).
        if let Ok(tx) = c.transaction_with_behavior(TransactionBehavior::Immediate) {
            for row in &stored {
                let _ = execute_cached(
                    &tx,
                    "DELETE FROM keys.subject_keys WHERE subject_id = ?1 AND destroyed_at IS NULL",
                    params![row.subject.id.to_string()],
                );
            }
            let _ = tx.commit();
        }
        return Err(e);
    }
    checks_back?;
    Ok(conflict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{keys, migrate, open_connection};

    #[test]
    fn an_import_batch_gives_the_connection_back_with_its_usual_cache_checkpoints_and_wal_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (data, keys) = (dir.path().join("candor.db"), dir.path().join("keystore.db"));
        let mut conn = open_connection(&data, &keys).unwrap();
        migrate(&mut conn).unwrap();
        keys::prepare_key_store(&mut conn).unwrap();
        import_subjects_tx(&mut conn, Vec::new()).unwrap();
        let pragma = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)).unwrap();
        for schema in ["main", "keys"] {
            assert_eq!(pragma(&format!("{schema}.journal_size_limit")), WAL_KEPT_BYTES, "{schema}");
            assert_eq!(pragma(&format!("{schema}.cache_size")), -DEFAULT_CACHE_KIB, "{schema}");
        }
        assert_eq!(pragma("wal_autocheckpoint"), DEFAULT_WAL_PAGES);
        assert_eq!(pragma("foreign_keys"), 1);
    }
}
