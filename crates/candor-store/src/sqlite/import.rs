//! Importing customers in batches on SQLite (`candor import subjects`, `POST /v1/imports`): a
//! batch's keys committed first on a connection of the import's own, then its customers and
//! their log records on the write connection, while the next batch's keys are being written
//! (see [`store_keys`]).

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, mpsc};

use candor_core::{BlindIndex, FieldName};
use rusqlite::{Connection, ToSql, params};
use tokio::sync::oneshot;

use super::{WAL_KEPT_BYTES, append_log_tx, db_err, execute_cached, holders_of, log_size, tiles};
use crate::{ImportRow, LogRecord, NewSubject, StoreError};

/// Page cache for the file an import phase writes (data or key store), while it writes it
/// (SQLite's default is 2 MB; a batch's B-tree pages did not fit, and spilling them
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

/// An import batch is written in two transactions on two connections, so that the key store's
/// part of one batch is written while the data store's part of the one before is:
///
/// 1. [`store_keys`], on the import's own connection: every row's data key, committed in the
///    key store first, as a single create commits its key first (a crash after it leaves unused
///    keys, never a customer without one). It writes the key store alone and reads nothing but
///    the log's size, so it runs beside the writer.
/// 2. [`store_customers`], on the write connection: the duplicate check and every customer's
///    rows and log record in one transaction, which locks the data store alone (not the key
///    store, where the next batch's keys are being written). The check is in the same
///    transaction as the rows, so a customer created by anyone between the two phases (another
///    server, another import) is seen and never doubled. Keys of rows not stored are removed.
///
/// No savepoint per customer: a failure rolls the whole data transaction back (and removes the
/// batch's keys), and the import stops there; a re-run continues from its checkpoint.
///
/// Each connection's page cache and checkpoint interval are raised for its phase and set back
/// afterwards (an idle server keeps its footprint), and the WALs are not cut back during the
/// batch: cutting a 256 MB WAL to 16 MB at every checkpoint made the file system allocate and
/// zero its blocks again as it regrew (a 1,000,000-row import +13% rows/s); the next checkpoint
/// after the import cuts them back.
pub(super) fn store_keys(k: &mut Connection, rows: &[ImportRow]) -> Result<(), StoreError> {
    with_import_settings(k, "keys", |k| {
        // Deferred: it reads the data store's log size (a snapshot, no lock) and then writes the
        // key store only, so only the key store is locked.
        let tx = k.transaction().map_err(db_err)?;
        // The log's size now, at most its size when the keys' customers are stored: the pairing
        // check (`keys::check_key_store`) only needs a mark no higher than that.
        let mark = log_size(&tx)? as i64;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO keys.subject_keys (subject_id, kek_version, dek_version, wrapped_dek, created_at, log_mark)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db_err)?;
            // In id order: one pass over the key store's id index instead of a jump per key.
            let mut new_keys: Vec<(String, &NewSubject)> =
                rows.iter().map(|row| (row.subject.id.to_string(), &row.subject)).collect();
            new_keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (id, s) in new_keys {
                put.execute(params![id, s.dek.kek_version, s.dek.dek_version, s.dek.wrapped.as_bytes(), s.now, mark])
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    })
}

/// A thread of the import's own, started at the first import, that runs what is given to it
/// one after the other (the batches' keys, the copies of the WAL). One thread rather than
/// tokio's blocking pool: the memory a batch's page cache frees goes back to the allocator of
/// the thread that used it, and a pool spreads the batches over several threads, each keeping
/// its share (a million-row import over HTTP peaked 70 MiB higher on the pool).
#[derive(Default)]
pub(super) struct ImportThread {
    tasks: Mutex<Option<mpsc::Sender<Task>>>,
}

type Task = Box<dyn FnOnce() + Send>;

impl ImportThread {
    /// Runs `f` on the thread (starting it if needed) and returns its result.
    pub(super) async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let task: Task = Box::new(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let sender = match &mut *tasks {
                Some(sender) => sender,
                empty => empty.insert(start()?),
            };
            if let Err(mpsc::SendError(task)) = sender.send(task) {
                // The thread is gone (it cannot end otherwise): a new one takes over.
                let sender = tasks.insert(start()?);
                sender.send(task).map_err(|_| gone())?;
            }
        }
        rx.await.map_err(|_| gone())?.map_err(|_| StoreError::Internal("an import step panicked".into()))
    }
}

fn gone() -> StoreError {
    StoreError::Internal("the import thread stopped".into())
}

fn start() -> Result<mpsc::Sender<Task>, StoreError> {
    let (tx, rx) = mpsc::channel::<Task>();
    std::thread::Builder::new()
        .name("candor-sqlite-import".into())
        .spawn(move || {
            while let Ok(task) = rx.recv() {
                task();
            }
        })
        .map_err(|e| StoreError::Internal(format!("cannot start the import thread: {e}")))?;
    Ok(tx)
}

/// Copies the data store's WAL into its file as far as it can without waiting (a passive
/// checkpoint), on the import's own connection while the writer goes on. (Not an error when it
/// cannot: the writer's own checkpoints stay the bound.)
pub(super) fn copy_data_wal(k: &Connection) {
    let _ = k.query_row("PRAGMA main.wal_checkpoint(PASSIVE)", [], |_| Ok(()));
}

/// The second phase of an import batch (see [`store_keys`]): which rows may be stored (no
/// customer, and no earlier row, holds one of their unique values), and those customers with
/// their log records, in one transaction on the write connection. Returns, per row, the field
/// whose value was taken, or `None` for a row stored.
pub(super) fn store_customers(c: &mut Connection, rows: Vec<ImportRow>) -> Result<Vec<Option<FieldName>>, StoreError> {
    // Foreign keys are not checked for this transaction: every value and index row it writes
    // belongs to a customer it writes just before (the setting cannot change inside a
    // transaction; `with_import_settings` sets it back).
    c.pragma_update(None, "foreign_keys", "OFF").map_err(db_err)?;
    let outcome = with_import_settings(c, "main", |c| {
        let tx = begin_data_only(c)?;
        let conflict = taken_values(&tx, &rows)?;
        // Customers go in in id order (nearby pages of the id index one after the other; the
        // ids are random); each gets the next internal number, so their values and index rows go
        // at the end of those tables. Log records go in the batch's order.
        let stored: Vec<&ImportRow> = rows.iter().zip(&conflict).filter(|(_, c)| c.is_none()).map(|(r, _)| r).collect();
        let mut in_order: Vec<(String, &NewSubject)> =
            stored.iter().map(|r| (r.subject.id.to_string(), &r.subject)).collect();
        in_order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        insert_customers(&tx, &in_order)?;
        let logs: Vec<LogRecord> = stored.iter().map(|r| r.log.clone()).collect();
        append_log_tx(&tx, &logs)?;
        tiles::tile_new_entries(&tx)?;
        tx.commit().map_err(db_err)?;
        Ok(conflict)
    });
    // The keys of customers that were never stored are removed (a crash before this leaves them
    // unused, as a single create's would be; so does a key store kept busy past the timeout).
    let unused: Vec<&ImportRow> = match &outcome {
        Ok(conflict) => rows.iter().zip(conflict).filter(|(_, c)| c.is_some()).map(|(r, _)| r).collect(),
        Err(_) => rows.iter().collect(),
    };
    if !unused.is_empty()
        && let Ok(tx) = c.transaction()
    {
        for row in unused {
            let _ = execute_cached(
                &tx,
                "DELETE FROM keys.subject_keys WHERE subject_id = ?1 AND destroyed_at IS NULL",
                params![row.subject.id.to_string()],
            );
        }
        let _ = tx.commit();
    }
    outcome
}

/// Rows one `INSERT` statement of [`insert_rows`] writes.
const ROWS_PER_INSERT: usize = 64;

/// A batch's customers (in the order given), their values and their blind-index rows: the same
/// rows a single create writes (`insert_subject_rows`), each customer numbered after the highest
/// number held (what SQLite gives a row without one), written [`ROWS_PER_INSERT`] rows per
/// statement rather than one. Ten statements per customer, each opening and closing cursors on
/// its table and indexes, were a tenth of the writer's time in a million-row import. The
/// blind-index rows go in in key order (the tokens are random; one pass over the index instead
/// of a jump per row).
fn insert_customers(tx: &Connection, customers: &[(String, &NewSubject)]) -> Result<(), StoreError> {
    let highest: i64 =
        tx.query_row("SELECT COALESCE(MAX(no), 0) FROM main.subjects", [], |r| r.get(0)).map_err(db_err)?;
    let mut subjects: Vec<(i64, &str, i64)> = Vec::with_capacity(customers.len());
    let mut values: Vec<(i64, &str, &[u8], i64)> = Vec::new();
    let mut index: Vec<(&str, &[u8], i64, u32)> = Vec::new();
    for (no, (id, s)) in (highest + 1..).zip(customers) {
        subjects.push((no, id, s.now));
        values.extend(s.values.iter().map(|(field, value)| (no, field.as_str(), value.as_bytes(), s.now)));
        index.extend(s.index.iter().map(|(field, token)| (field.as_str(), token.as_bytes(), no, token.key_version())));
    }
    index.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let subjects: Vec<&dyn ToSql> =
        subjects.iter().flat_map(|(no, id, now)| [no as &dyn ToSql, id, now, now]).collect();
    let values: Vec<&dyn ToSql> =
        values.iter().flat_map(|(no, field, value, now)| [no as &dyn ToSql, field, value, now]).collect();
    let index: Vec<&dyn ToSql> =
        index.iter().flat_map(|(field, token, no, version)| [field as &dyn ToSql, token, no, version]).collect();
    insert_rows(tx, "main.subjects (no, id, created_at, updated_at)", 4, &subjects)?;
    insert_rows(tx, "main.field_values (subject_no, field, ciphertext, updated_at)", 4, &values)?;
    insert_rows(tx, "main.blind_index (field, token, subject_no, key_version)", 4, &index)
}

/// `INSERT OR FAIL INTO {into} VALUES (…), (…), …` of `values`, `width` to a row:
/// [`ROWS_PER_INSERT`] rows per statement, and what is left one row at a time (two statements in
/// the cache, not one per remainder). `OR FAIL`: a statement of several rows that may abort
/// halfway makes SQLite copy every page it changes to a statement journal first, to undo just
/// that statement; here any failure rolls back the whole batch's transaction anyway.
fn insert_rows(tx: &Connection, into: &str, width: usize, values: &[&dyn ToSql]) -> Result<(), StoreError> {
    let sql = |rows: usize| {
        let row = format!("({})", vec!["?"; width].join(", "));
        format!("INSERT OR FAIL INTO {into} VALUES {}", vec![row; rows].join(", "))
    };
    let mut full = values.chunks_exact(width * ROWS_PER_INSERT);
    if full.len() > 0 {
        let mut stmt = tx.prepare_cached(&sql(ROWS_PER_INSERT)).map_err(db_err)?;
        for chunk in &mut full {
            stmt.execute(chunk).map_err(db_err)?;
        }
    }
    let rest = full.remainder();
    if !rest.is_empty() {
        let mut stmt = tx.prepare_cached(&sql(1)).map_err(db_err)?;
        for row in rest.chunks_exact(width) {
            stmt.execute(row).map_err(db_err)?;
        }
    }
    Ok(())
}

/// Begins a transaction that holds the data store's write lock and not the key store's.
/// (`BEGIN IMMEDIATE` would lock every attached file; a deferred transaction whose first
/// statement reads could not take the write lock later if another connection committed
/// meanwhile. A write that changes nothing takes the lock first, waiting as long as the busy
/// timeout allows.)
fn begin_data_only(c: &mut Connection) -> Result<rusqlite::Transaction<'_>, StoreError> {
    let tx = c.transaction().map_err(db_err)?;
    tx.execute_batch("UPDATE main.subjects SET updated_at = updated_at WHERE 0").map_err(db_err)?;
    Ok(tx)
}

/// Per row, the unique field whose value a customer already holds or an earlier row of the
/// batch claims first (a row refused for a held value claims nothing).
fn taken_values(tx: &Connection, rows: &[ImportRow]) -> Result<Vec<Option<FieldName>>, StoreError> {
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
        for (i, _) in holders_of(tx, field, tokens)? {
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
    Ok(conflict)
}

/// Runs `f` with `schema`'s page cache raised and its WAL left whole, and the connection's
/// checkpoint interval raised; whatever happens (even a panic mid-transaction), the connection
/// goes back to how every other write expects it: no transaction open, foreign keys checked,
/// default cache, checkpoints and WAL limit.
fn with_import_settings<T>(
    c: &mut Connection,
    schema: &str,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let outcome = c
        .pragma_update(Some(schema), "cache_size", -IMPORT_CACHE_KIB)
        .and_then(|()| c.pragma_update(Some(schema), "journal_size_limit", -1))
        .and_then(|()| c.pragma_update(None, "wal_autocheckpoint", IMPORT_WAL_PAGES))
        .map_err(db_err)
        .map(|()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(c))));
    if !c.is_autocommit() {
        let _ = c.execute_batch("ROLLBACK");
    }
    let reset = c
        .pragma_update(None, "foreign_keys", "ON")
        .and_then(|()| c.pragma_update(Some(schema), "cache_size", -DEFAULT_CACHE_KIB))
        .and_then(|()| c.pragma_update(None, "wal_autocheckpoint", DEFAULT_WAL_PAGES))
        .and_then(|()| c.pragma_update(Some(schema), "journal_size_limit", WAL_KEPT_BYTES))
        .map_err(db_err);
    let outcome = match outcome? {
        Ok(outcome) => outcome?,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    reset?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use candor_core::{Ciphertext, StoredDek, SubjectId, WrappedDek};
    use rusqlite::ErrorCode;

    use super::*;
    use crate::sqlite::{insert_subject_rows, keys, migrate, open_connection};

    /// A migrated data store and key store in `dir`, and a connection to them.
    fn opened(dir: &Path) -> Connection {
        let mut conn = open_connection(&dir.join("candor.db"), &dir.join("keystore.db")).unwrap();
        migrate(&mut conn).unwrap();
        keys::prepare_key_store(&mut conn).unwrap();
        conn
    }

    fn another(dir: &Path) -> Connection {
        open_connection(&dir.join("candor.db"), &dir.join("keystore.db")).unwrap()
    }

    /// A new customer whose e-mail address has the blind index `token`.
    fn row(token: u8) -> ImportRow {
        let id = SubjectId::random();
        let email = FieldName::new("email");
        let index = BlindIndex::new(1, vec![token; 32]);
        ImportRow {
            subject: NewSubject {
                id,
                dek: StoredDek { kek_version: 1, dek_version: 1, wrapped: WrappedDek::from_bytes(vec![7; 60]) },
                values: vec![(email.clone(), Ciphertext::from_bytes(vec![token; 40]))],
                index: vec![(email.clone(), index.clone())],
                now: 1,
            },
            log: LogRecord { entry: b"entry".to_vec(), subjects: vec![id], ..Default::default() },
            unique: vec![(email, vec![index])],
        }
    }

    fn count(c: &Connection, sql: &str, id: SubjectId) -> i64 {
        c.query_row(sql, params![id.to_string()], |r| r.get(0)).unwrap()
    }

    #[test]
    fn an_import_batch_gives_each_connection_back_with_its_usual_cache_checkpoints_and_wal_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = opened(dir.path());
        let mut import_keys = another(dir.path());
        let rows = vec![row(1), row(2)];
        store_keys(&mut import_keys, &rows).unwrap();
        assert_eq!(store_customers(&mut writer, rows).unwrap(), vec![None, None]);
        for conn in [&writer, &import_keys] {
            let pragma = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)).unwrap();
            for schema in ["main", "keys"] {
                assert_eq!(pragma(&format!("{schema}.journal_size_limit")), WAL_KEPT_BYTES, "{schema}");
                assert_eq!(pragma(&format!("{schema}.cache_size")), -DEFAULT_CACHE_KIB, "{schema}");
            }
            assert_eq!(pragma("wal_autocheckpoint"), DEFAULT_WAL_PAGES);
            assert_eq!(pragma("foreign_keys"), 1);
            assert!(conn.is_autocommit(), "no transaction left open");
        }
    }

    #[test]
    fn a_customer_created_between_a_batchs_keys_and_its_customers_is_not_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = opened(dir.path());
        let mut import_keys = another(dir.path());
        let rows = vec![row(1), row(2)];
        let (first, second) = (rows[0].subject.id, rows[1].subject.id);
        store_keys(&mut import_keys, &rows).unwrap();
        // Meanwhile another writer (a single create, another server) stores a customer with the
        // first row's address.
        let meanwhile = row(1);
        let mut other = another(dir.path());
        let tx = other.transaction().unwrap();
        insert_subject_rows(&tx, &meanwhile.subject.id.to_string(), &meanwhile.subject).unwrap();
        tx.commit().unwrap();

        assert_eq!(store_customers(&mut writer, rows).unwrap(), vec![Some(FieldName::new("email")), None]);
        let customers = "SELECT COUNT(*) FROM subjects WHERE id = ?1";
        assert_eq!(count(&writer, customers, first), 0, "the row whose address was taken is not stored");
        assert_eq!(count(&writer, customers, second), 1);
        let holders = holders_of(&writer, &FieldName::new("email"), &[BlindIndex::new(1, vec![1; 32])]).unwrap();
        assert_eq!(holders, vec![(0, meanwhile.subject.id)], "one customer holds the address");
        let keys = "SELECT COUNT(*) FROM keys.subject_keys WHERE subject_id = ?1";
        assert_eq!(count(&writer, keys, first), 0, "the key of the row not stored is removed");
        assert_eq!(count(&writer, keys, second), 1);
    }

    /// Every row of the customers, their values and their blind-index rows, in a fixed order.
    fn stored(c: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        for sql in [
            "SELECT no || ' ' || id || ' ' || created_at || ' ' || updated_at FROM subjects ORDER BY no",
            "SELECT subject_no || ' ' || field || ' ' || hex(ciphertext) || ' ' || updated_at FROM field_values
             ORDER BY subject_no, field",
            "SELECT field || ' ' || hex(token) || ' ' || subject_no || ' ' || key_version FROM blind_index
             ORDER BY field, token, subject_no",
        ] {
            let mut stmt = c.prepare(sql).unwrap();
            out.extend(stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap));
        }
        out
    }

    #[test]
    fn a_batchs_customers_are_stored_as_single_creates_store_them() {
        // 70 customers: one full statement of 64 rows and six rows one at a time; two values and
        // two index rows each, after a customer created singly (the numbers go on from theirs).
        let customers: Vec<ImportRow> = (0..70u8)
            .map(|i| {
                let mut r = row(i);
                let phone = FieldName::new("phone");
                r.subject.values.push((phone.clone(), Ciphertext::from_bytes(vec![i, 1, 2])));
                r.subject.index.push((phone, BlindIndex::new(2, vec![255 - i; 32])));
                r.subject.now = 1_000 + i64::from(i);
                r
            })
            .collect();
        let first = row(200);
        let (batch, single) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut batch, mut single) = (opened(batch.path()), opened(single.path()));
        for c in [&mut batch, &mut single] {
            let tx = c.transaction().unwrap();
            insert_subject_rows(&tx, &first.subject.id.to_string(), &first.subject).unwrap();
            tx.commit().unwrap();
        }
        let in_order: Vec<(String, &NewSubject)> =
            customers.iter().map(|r| (r.subject.id.to_string(), &r.subject)).collect();
        let tx = batch.transaction().unwrap();
        insert_customers(&tx, &in_order).unwrap();
        tx.commit().unwrap();
        let tx = single.transaction().unwrap();
        for (id, s) in &in_order {
            insert_subject_rows(&tx, id, s).unwrap();
        }
        tx.commit().unwrap();

        let rows = stored(&batch);
        assert_eq!(rows.len(), 71 + 141 + 141);
        assert_eq!(rows, stored(&single));
    }

    #[test]
    fn the_customers_transaction_locks_the_data_store_and_leaves_the_key_store_to_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = opened(dir.path());
        let mut import_keys = another(dir.path());
        import_keys.busy_timeout(Duration::ZERO).unwrap();
        let tx = begin_data_only(&mut writer).unwrap();
        store_keys(&mut import_keys, &[row(1)]).expect("the next batch's keys are written meanwhile");
        let data = import_keys.execute_batch("UPDATE main.subjects SET updated_at = 0 WHERE 0").unwrap_err();
        assert_eq!(data.sqlite_error_code(), Some(ErrorCode::DatabaseBusy), "{data}");
        tx.rollback().unwrap();
        import_keys.execute_batch("UPDATE main.subjects SET updated_at = 0 WHERE 0").unwrap();
    }
}
