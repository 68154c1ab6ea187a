//! The SQLite key store (`keys.subject_keys`): key rotation's view of it, and whether a data
//! store and a key store belong together (checked at every open, and in full by backups and
//! restores).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, db_err, execute_cached, query_row_cached};
use crate::StoreError;
use crate::keys::{NEWEST_CHECKED, PairCounts, PairReport, check_pair};

/// Gives a key store what the pairing checks need: the `log_mark` column (the data store's log
/// size when each key was stored; see [`PairCounts`]) and its index. Key stores from before it
/// get the marks of their live keys filled in from the log (the index of the customer's first
/// entry; 0 for customers from before the log), so existing installations are covered too.
pub(super) fn prepare_key_store(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
    let has_marks: i64 = query_row_cached(
        &tx,
        "SELECT COUNT(*) FROM pragma_table_info('subject_keys', 'keys') WHERE name = 'log_mark'",
        [],
        |r| r.get(0),
    )
    .map_err(db_err)?;
    if has_marks == 0 {
        tx.execute_batch("ALTER TABLE keys.subject_keys ADD COLUMN log_mark INTEGER").map_err(db_err)?;
    }
    tx.execute_batch(
        "CREATE INDEX IF NOT EXISTS keys.subject_keys_live_mark ON subject_keys (log_mark) WHERE destroyed_at IS NULL",
    )
    .map_err(db_err)?;
    execute_cached(
        &tx,
        "UPDATE keys.subject_keys
         SET log_mark = COALESCE((SELECT MIN(idx) FROM (
                 SELECT l.idx FROM main.log_subjects l WHERE l.subject_id = subject_keys.subject_id
                 UNION ALL
                 SELECT c.idx FROM main.log_customer_links c JOIN main.subjects s ON s.no = c.subject_no
                 WHERE s.id = subject_keys.subject_id)), 0)
         WHERE log_mark IS NULL AND destroyed_at IS NULL
           AND EXISTS (SELECT 1 FROM main.subjects s WHERE s.id = subject_keys.subject_id)",
        [],
    )
    .map_err(db_err)?;
    tx.commit().map_err(db_err)
}

/// The start-up check: refuses an empty data store next to a key store with keys, a data store
/// older than its key store's marks imply, and a key store missing the newest customers' keys.
pub(super) fn check_key_store(conn: &mut Connection, data: &Path, keys: &Path) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(db_err)?;
    let counts = pair_counts(&tx)?;
    tx.commit().map_err(db_err)?;
    check_pair(&counts, &data.display().to_string(), &keys.display().to_string())
}

fn count(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<u64, StoreError> {
    query_row_cached(c, sql, p, |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(db_err)
}

fn pair_counts(c: &Connection) -> Result<PairCounts, StoreError> {
    let log_size = super::log_size(c)?;
    let has_customers = count(c, "SELECT EXISTS (SELECT 1 FROM main.subjects)", [])? > 0;
    let data_empty = !has_customers && log_size == 0;
    let key_rows = if data_empty { count(c, "SELECT COUNT(*) FROM keys.subject_keys", [])? } else { 0 };
    let (keys_ahead, max_mark) = query_row_cached(
        c,
        "SELECT COUNT(*), COALESCE(MAX(log_mark), 0) FROM keys.subject_keys
         WHERE destroyed_at IS NULL AND log_mark > ?1",
        params![log_size as i64],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .map_err(db_err)?;
    let (newest_checked, newest_without_key) = query_row_cached(
        c,
        "SELECT COUNT(*), COALESCE(SUM(NOT EXISTS (SELECT 1 FROM keys.subject_keys k WHERE k.subject_id = s.id)), 0)
         FROM (SELECT id FROM main.subjects ORDER BY rowid DESC LIMIT ?1) s",
        params![NEWEST_CHECKED as i64],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .map_err(db_err)?;
    Ok(PairCounts { data_empty, key_rows, log_size, keys_ahead, max_mark, newest_without_key, newest_checked })
}

impl SqliteStore {
    /// Checks a pair of stores in full, every customer counted: `conn` has the data store as
    /// `main` and its key store attached as `keys` (a backup's copies, or a restore's). Reads only.
    pub fn pair_report(conn: &Connection) -> Result<PairReport, StoreError> {
        let get = |sql: &str| query_row_cached(conn, sql, [], |r| r.get::<_, String>(0)).optional().map_err(db_err);
        let data_installation = get("SELECT value FROM main.meta WHERE key = 'key_store_id'")?;
        let keys_installation = get("SELECT value FROM keys.key_store_meta WHERE key = 'id'")?;
        let log_size = super::tiles::tree_size(conn)?;
        let log_root = super::tiles::root(conn, log_size)?;
        let customers = count(conn, "SELECT COUNT(*) FROM main.subjects", [])?;
        let live_keys = count(conn, "SELECT COUNT(*) FROM keys.subject_keys WHERE destroyed_at IS NULL", [])?;
        let destroyed_keys = count(conn, "SELECT COUNT(*) FROM keys.subject_keys WHERE destroyed_at IS NOT NULL", [])?;
        let customers_without_key = count(
            conn,
            "SELECT COUNT(*) FROM main.subjects s WHERE NOT EXISTS (SELECT 1 FROM keys.subject_keys k WHERE k.subject_id = s.id)",
            [],
        )?;
        let erasures_to_complete = count(
            conn,
            "SELECT COUNT(*) FROM main.subjects s JOIN keys.subject_keys k ON k.subject_id = s.id
             WHERE k.destroyed_at IS NOT NULL",
            [],
        )?;
        let keys_without_customer = count(
            conn,
            "SELECT COUNT(*) FROM keys.subject_keys k
             WHERE k.destroyed_at IS NULL AND NOT EXISTS (SELECT 1 FROM main.subjects s WHERE s.id = k.subject_id)",
            [],
        )?;
        let mut stmt = conn
            .prepare(
                "SELECT DISTINCT kek_version FROM keys.subject_keys WHERE destroyed_at IS NULL ORDER BY kek_version",
            )
            .map_err(db_err)?;
        let kek_versions = stmt
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(db_err)?
            .map(|v| v.map_err(db_err).and_then(super::version))
            .collect::<Result<Vec<u32>, _>>()?;
        Ok(PairReport {
            data_installation,
            keys_installation,
            log_size,
            log_root,
            customers,
            live_keys,
            destroyed_keys,
            customers_without_key,
            erasures_to_complete,
            keys_without_customer,
            kek_versions,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use candor_core::{StoredDek, SubjectId, WrappedDek};
    use rusqlite::Connection;

    use crate::rights::RightsStore;
    use crate::sqlite::SqliteStore;
    use crate::{LogRecord, NewSubject, Store};

    /// A live pair of stores in `dir`, and copies of its files in `dir/copy/` to open instead
    /// (opening new paths, so the live store's connections never meet the copies).
    struct Live {
        store: SqliteStore,
        data: PathBuf,
        keys: PathBuf,
        copy: PathBuf,
    }

    impl Live {
        async fn new(dir: &Path) -> Self {
            let (data, keys, copy) = (dir.join("candor.db"), dir.join("keystore.db"), dir.join("copy"));
            std::fs::create_dir(&copy).unwrap();
            Self { store: SqliteStore::open(&data, &keys).await.unwrap(), data, keys, copy }
        }

        async fn add_customer(&self) -> SubjectId {
            let id = SubjectId::random();
            let dek = StoredDek { kek_version: 1, dek_version: 1, wrapped: WrappedDek::from_bytes(vec![7; 48]) };
            let log = LogRecord { entry: b"create".to_vec(), subjects: vec![id], ..Default::default() };
            self.store
                .create_subject(NewSubject { id, dek, values: vec![], index: vec![], now: 1 }, log)
                .await
                .unwrap();
            id
        }

        /// A consistent copy of one file, as a backup of that file alone would make it.
        fn copy_data(&self) {
            vacuum_into(&self.data, &self.copy.join("candor.db"));
        }

        fn copy_keys(&self) {
            vacuum_into(&self.keys, &self.copy.join("keystore.db"));
        }

        async fn open_copy(&self) -> Result<SqliteStore, String> {
            SqliteStore::open(self.copy.join("candor.db"), self.copy.join("keystore.db"))
                .await
                .map_err(|e| e.to_string())
        }
    }

    fn vacuum_into(path: &Path, to: &Path) {
        Connection::open(path).unwrap().execute("VACUUM INTO ?1", [to.to_string_lossy()]).unwrap();
    }

    #[tokio::test]
    async fn an_empty_data_store_next_to_a_key_store_with_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let live = Live::new(dir.path()).await;
        live.add_customer().await;
        live.copy_keys();
        let e = live.open_copy().await.unwrap_err();
        assert!(
            e.contains("is empty (no customer, no log entry)") && e.contains("holds the data keys of 1 customer(s)"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_data_store_older_than_its_key_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let live = Live::new(dir.path()).await;
        live.add_customer().await;
        live.copy_data();
        live.add_customer().await;
        live.add_customer().await;
        live.copy_keys();
        let e = live.open_copy().await.unwrap_err();
        // The first customer after the copy has the copy's log size as mark, like an unused key a
        // crash leaves behind, so it alone would pass; every later one is told apart.
        assert!(e.contains("is older than its key store") && e.contains(": 1 customer(s) have a data key"), "{e}");
        assert!(e.contains("its log has 1 entries; the key store's records need at least 2"), "{e}");
    }

    #[tokio::test]
    async fn a_key_store_older_than_its_data_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let live = Live::new(dir.path()).await;
        live.add_customer().await;
        live.copy_keys();
        live.add_customer().await;
        live.copy_data();
        let e = live.open_copy().await.unwrap_err();
        assert!(e.contains("is older than the database") && e.contains("1 of the 2 newest customers"), "{e}");
    }

    #[tokio::test]
    async fn a_pair_copied_data_first_opens_and_an_erasure_in_between_is_not_undone() {
        let dir = tempfile::tempdir().unwrap();
        let live = Live::new(dir.path()).await;
        let erased = live.add_customer().await;
        live.add_customer().await;
        live.copy_data();
        // Between the two copies: a customer created (key without data in the copy) and one erased.
        live.add_customer().await;
        let log = LogRecord { entry: b"erase".to_vec(), subjects: vec![erased], ..Default::default() };
        live.store.erase_subject(erased, 2, "{}".into(), log).await.unwrap();
        live.copy_keys();
        let copy = live.open_copy().await.unwrap();
        assert!(matches!(copy.load_subject(erased, &[]).await, Err(crate::StoreError::Erased { .. })));
    }

    #[tokio::test]
    async fn key_stores_from_before_the_marks_get_them_and_keep_opening() {
        let dir = tempfile::tempdir().unwrap();
        let live = Live::new(dir.path()).await;
        live.add_customer().await;
        let second = live.add_customer().await;
        live.copy_data();
        live.copy_keys();
        // As an earlier version left it: no marks.
        let keys = live.copy.join("keystore.db");
        let conn = Connection::open(&keys).unwrap();
        conn.execute_batch("DROP INDEX subject_keys_live_mark; ALTER TABLE subject_keys DROP COLUMN log_mark;")
            .unwrap();
        drop(conn);
        drop(live.open_copy().await.unwrap());
        let conn = Connection::open(&keys).unwrap();
        let mark: Option<i64> = conn
            .query_row("SELECT log_mark FROM subject_keys WHERE subject_id = ?1", [second.to_string()], |r| r.get(0))
            .unwrap();
        assert_eq!(mark, Some(1), "the mark is the index of the customer's first log entry");
    }

    #[tokio::test]
    async fn a_crash_between_a_key_and_its_data_does_not_stop_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let live = Live::new(dir.path()).await;
        live.add_customer().await;
        live.copy_data();
        live.copy_keys();
        // An unused key, as a crash after the key's commit and before the data's leaves it.
        let conn = Connection::open(live.copy.join("keystore.db")).unwrap();
        conn.execute(
            "INSERT INTO subject_keys (subject_id, kek_version, dek_version, wrapped_dek, created_at, log_mark)
             VALUES (?1, 1, 1, x'01', 2, 1)",
            [SubjectId::random().to_string()],
        )
        .unwrap();
        drop(conn);
        assert!(live.open_copy().await.is_ok());
    }

    #[tokio::test]
    async fn the_full_report_counts_every_customer() {
        let dir = tempfile::tempdir().unwrap();
        let live = Live::new(dir.path()).await;
        live.add_customer().await;
        live.add_customer().await;
        let conn = Connection::open(&live.data).unwrap();
        conn.execute("ATTACH DATABASE ?1 AS keys", [live.keys.to_string_lossy()]).unwrap();
        let report = SqliteStore::pair_report(&conn).unwrap();
        assert_eq!((report.customers, report.live_keys, report.log_size), (2, 2, 2));
        assert_eq!(report.kek_versions, vec![1]);
        assert!(report.data_installation.is_some() && report.data_installation == report.keys_installation);
        assert_eq!(report.problem("d", "k"), None);
    }
}
