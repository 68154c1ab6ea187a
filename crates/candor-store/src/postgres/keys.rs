//! The PostgreSQL key store (`candor_keys.subject_keys`): key rotation's view of it; whether the
//! data and the key store belong together (checked at every connect, and in full by backups and
//! restores); and the consistent snapshot a backup dumps both schemas from.

use candor_core::{StoredDek, SubjectId, WrappedDek};
use tokio_postgres::GenericClient;

use super::{PgStore, parse_subject, pg_err};
use crate::StoreError;
use crate::keys::{NEWEST_CHECKED, PairCounts, PairReport, check_pair};

/// Advisory lock serialising [`PgStore::prepare_key_store`] across servers starting together.
const KEY_STORE_LOCK: i64 = 0x63_61_6e_64_6b_73; // "candks"

/// What the messages call the two stores.
const DATA_NAME: &str = "(PostgreSQL, Candor's tables)";
const KEYS_NAME: &str = "(PostgreSQL, schema candor_keys)";

async fn count(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    Ok(c.query_one(sql, params).await.map_err(pg_err)?.get::<_, i64>(0) as u64)
}

async fn meta_value(c: &impl GenericClient, sql: &str) -> Result<Option<String>, StoreError> {
    Ok(c.query_opt(sql, &[]).await.map_err(pg_err)?.map(|r| r.get(0)))
}

/// The full check of a pair, inside whatever snapshot `c` is in.
async fn pair_report_on(c: &impl GenericClient) -> Result<PairReport, StoreError> {
    let data_installation = meta_value(c, "SELECT value FROM meta WHERE key = 'key_store_id'").await?;
    let keys_installation = meta_value(c, "SELECT value FROM candor_keys.key_store_meta WHERE key = 'id'").await?;
    let log_size = super::log_size(c).await?;
    let log_root = super::with_tiles(c, |src| candor_log::merkle::root(src, log_size)).await?;
    let customers = count(c, "SELECT COUNT(*) FROM subjects", &[]).await?;
    let live_keys = count(c, "SELECT COUNT(*) FROM candor_keys.subject_keys WHERE destroyed_at IS NULL", &[]).await?;
    let destroyed_keys =
        count(c, "SELECT COUNT(*) FROM candor_keys.subject_keys WHERE destroyed_at IS NOT NULL", &[]).await?;
    let customers_without_key = count(
        c,
        "SELECT COUNT(*) FROM subjects s WHERE NOT EXISTS (SELECT 1 FROM candor_keys.subject_keys k WHERE k.subject_id = s.id)",
        &[],
    )
    .await?;
    let erasures_to_complete = count(
        c,
        "SELECT COUNT(*) FROM subjects s JOIN candor_keys.subject_keys k ON k.subject_id = s.id WHERE k.destroyed_at IS NOT NULL",
        &[],
    )
    .await?;
    let keys_without_customer = count(
        c,
        "SELECT COUNT(*) FROM candor_keys.subject_keys k
         WHERE k.destroyed_at IS NULL AND NOT EXISTS (SELECT 1 FROM subjects s WHERE s.id = k.subject_id)",
        &[],
    )
    .await?;
    let kek_versions = c
        .query(
            "SELECT DISTINCT kek_version FROM candor_keys.subject_keys WHERE destroyed_at IS NULL ORDER BY kek_version",
            &[],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(|r| super::u32_of(r.get(0)))
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

/// A read-only snapshot of the whole database, exported for `pg_dump --snapshot`: what the dump
/// holds is exactly what [`PgSnapshot::report`] describes. Held open until [`PgSnapshot::release`].
pub struct PgSnapshot {
    client: deadpool_postgres::Object,
    /// The id to give `pg_dump --snapshot`.
    pub id: String,
    /// The schema Candor's data tables are in (the connection's current schema).
    pub schema: String,
    pub report: PairReport,
}

impl PgSnapshot {
    /// Ends the snapshot (after `pg_dump` has started with it, or finished).
    pub async fn release(self) -> Result<(), StoreError> {
        self.client.batch_execute("COMMIT").await.map_err(pg_err)
    }
}

impl PgStore {
    /// Gives the key store what the pairing checks need (the `candor_keys.key_store_meta` table
    /// with the installation id, and each key's `log_mark` with its index; see [`PairCounts`]),
    /// fills in the marks of keys stored before it and the installation id of databases from
    /// before it, and refuses a foreign or emptied key store. Under an advisory lock, so servers
    /// starting together do it once. A database with nothing in it yet gets its id once it has
    /// (so `candor copy` can bring an installation's own id along).
    pub(super) async fn prepare_key_store(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&KEY_STORE_LOCK]).await.map_err(pg_err)?;
        let has_marks: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                 WHERE table_schema = 'candor_keys' AND table_name = 'subject_keys' AND column_name = 'log_mark')",
                &[],
            )
            .await
            .map_err(pg_err)?
            .get(0);
        if !has_marks {
            tx.batch_execute(
                "ALTER TABLE candor_keys.subject_keys ADD COLUMN log_mark BIGINT;
                 CREATE INDEX subject_keys_live_mark ON candor_keys.subject_keys (log_mark) WHERE destroyed_at IS NULL;",
            )
            .await
            .map_err(pg_err)?;
        }
        let has_meta: bool = tx
            .query_one("SELECT to_regclass('candor_keys.key_store_meta') IS NOT NULL", &[])
            .await
            .map_err(pg_err)?
            .get(0);
        if !has_meta {
            tx.batch_execute("CREATE TABLE candor_keys.key_store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                .await
                .map_err(pg_err)?;
        }
        tx.execute(
            "UPDATE candor_keys.subject_keys k
             SET log_mark = COALESCE((SELECT MIN(l.idx) FROM log_subjects l WHERE l.subject_id = k.subject_id), 0)
             WHERE k.log_mark IS NULL AND k.destroyed_at IS NULL
               AND EXISTS (SELECT 1 FROM subjects s WHERE s.id = k.subject_id)",
            &[],
        )
        .await
        .map_err(pg_err)?;
        let in_data = meta_value(&*tx, "SELECT value FROM meta WHERE key = 'key_store_id'").await?;
        let in_keys = meta_value(&*tx, "SELECT value FROM candor_keys.key_store_meta WHERE key = 'id'").await?;
        let customers = count(&*tx, "SELECT COUNT(*) FROM (SELECT 1 FROM subjects LIMIT 1) s", &[]).await? > 0;
        let keys =
            count(&*tx, "SELECT COUNT(*) FROM (SELECT 1 FROM candor_keys.subject_keys LIMIT 1) k", &[]).await? > 0;
        let logged = super::log_size(&*tx).await? > 0;
        match (in_data, in_keys) {
            (Some(d), Some(k)) if d == k => {}
            (Some(_), Some(_)) => {
                return Err(StoreError::Corrupt(
                    "the key store (schema candor_keys) belongs to another installation than this database's data:                      was candor_keys restored from another installation's dump? Restore both schemas from one dump                      (`candor restore --from DIR`)"
                        .into(),
                ));
            }
            (Some(_), None) if customers && !keys => {
                return Err(StoreError::Corrupt(
                    "the key store (schema candor_keys) is empty, but this database has customers whose data keys                      were in it: restore candor_keys from the same dump as the data (`candor restore --from DIR`);                      starting without it would make every customer unreadable"
                        .into(),
                ));
            }
            // Nothing here yet, or data missing next to keys (the start-up check says so).
            (None, _) if !customers && !logged => {}
            (data, keys) => {
                let id = keys.or(data).unwrap_or_else(|| SubjectId::random().to_string().replace('-', ""));
                for sql in [
                    "INSERT INTO meta (key, value) VALUES ('key_store_id', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    "INSERT INTO candor_keys.key_store_meta (key, value) VALUES ('id', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                ] {
                    tx.execute(sql, &[&id]).await.map_err(pg_err)?;
                }
            }
        }
        tx.commit().await.map_err(pg_err)
    }

    /// The start-up check (see [`check_pair`]): cheap queries only.
    pub(super) async fn check_key_store(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.build_transaction().read_only(true).start().await.map_err(pg_err)?;
        let log_size = super::log_size(&*tx).await?;
        let has_customers = count(&*tx, "SELECT COUNT(*) FROM (SELECT 1 FROM subjects LIMIT 1) s", &[]).await? > 0;
        let data_empty = !has_customers && log_size == 0;
        let key_rows =
            if data_empty { count(&*tx, "SELECT COUNT(*) FROM candor_keys.subject_keys", &[]).await? } else { 0 };
        let ahead = tx
            .query_one(
                "SELECT COUNT(*), COALESCE(MAX(log_mark), 0) FROM candor_keys.subject_keys
                 WHERE destroyed_at IS NULL AND log_mark > $1",
                &[&(log_size as i64)],
            )
            .await
            .map_err(pg_err)?;
        let newest = tx
            .query_one(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE NOT EXISTS
                        (SELECT 1 FROM candor_keys.subject_keys k WHERE k.subject_id = s.id))
                 FROM (SELECT id FROM subjects ORDER BY created_at DESC LIMIT $1) s",
                &[&(NEWEST_CHECKED as i64)],
            )
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        let counts = PairCounts {
            data_empty,
            key_rows,
            log_size,
            keys_ahead: ahead.get::<_, i64>(0) as u64,
            max_mark: ahead.get::<_, i64>(1) as u64,
            newest_checked: newest.get::<_, i64>(0) as u64,
            newest_without_key: newest.get::<_, i64>(1) as u64,
        };
        check_pair(&counts, DATA_NAME, KEYS_NAME)
    }

    /// Checks the data and the key store in full (every customer counted), in one snapshot.
    pub async fn pair_report(&self) -> Result<PairReport, StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_err)?;
        let report = pair_report_on(&*tx).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(report)
    }

    /// One live data key per KEK version: a restore opens them with the installation's KEKs to
    /// check it holds the keys that wrapped them.
    pub async fn kek_samples(&self) -> Result<Vec<(SubjectId, StoredDek)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT ON (kek_version) subject_id, kek_version, dek_version, wrapped_dek
                 FROM candor_keys.subject_keys WHERE destroyed_at IS NULL ORDER BY kek_version, subject_id",
                &[],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let stored = StoredDek {
                    kek_version: super::u32_of(r.get(1))?,
                    dek_version: super::u32_of(r.get(2))?,
                    wrapped: WrappedDek::from_bytes(r.get(3)),
                };
                Ok((parse_subject(r.get(0))?, stored))
            })
            .collect()
    }

    /// Opens a read-only snapshot of the whole database for a backup, exported so `pg_dump
    /// --snapshot` dumps exactly it, with the full check of the pair in that snapshot.
    pub async fn backup_snapshot(&self) -> Result<PgSnapshot, StoreError> {
        let client = self.client().await?;
        client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(pg_err)?;
        let row = client.query_one("SELECT pg_export_snapshot(), current_schema()", &[]).await.map_err(pg_err)?;
        let (id, schema): (String, String) = (row.get(0), row.get(1));
        let report = pair_report_on(&**client).await?;
        Ok(PgSnapshot { client, id, schema, report })
    }

    /// Whether the database at `url` already holds Candor's tables or key store (without
    /// creating anything there), and the schema Candor's tables would go to.
    pub async fn holds_an_installation(url: &str) -> Result<(bool, String), StoreError> {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(pg_err)?;
        let task = tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT to_regclass('schema_migrations') IS NOT NULL
                     OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'candor_keys'),
                        current_schema()",
                &[],
            )
            .await
            .map_err(pg_err)?;
        drop(client);
        let _ = task.await;
        Ok((row.get(0), row.get(1)))
    }

    /// The libpq environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`) that
    /// points `pg_dump` and `pg_restore` at the database of `url`, so the password is not on a
    /// command line where other users could see it.
    pub fn libpq_env(url: &str) -> Result<Vec<(&'static str, String)>, StoreError> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|_| StoreError::Internal("the PostgreSQL URL is malformed".into()))?;
        let mut env = Vec::new();
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        if !hosts.is_empty() {
            env.push(("PGHOST", hosts.join(",")));
        }
        let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
        if !ports.is_empty() {
            env.push(("PGPORT", ports.join(",")));
        }
        if let Some(user) = config.get_user() {
            env.push(("PGUSER", user.to_string()));
        }
        if let Some(password) = config.get_password() {
            env.push(("PGPASSWORD", String::from_utf8_lossy(password).into_owned()));
        }
        if let Some(db) = config.get_dbname() {
            env.push(("PGDATABASE", db.to_string()));
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use candor_core::{StoredDek, SubjectId, WrappedDek};

    use crate::pgtest::TestDatabase;
    use crate::postgres::PgStore;
    use crate::{LogRecord, NewSubject, Store};

    async fn add_customer(store: &PgStore) -> SubjectId {
        let id = SubjectId::random();
        let dek = StoredDek { kek_version: 1, dek_version: 1, wrapped: WrappedDek::from_bytes(vec![7; 48]) };
        let log = LogRecord { entry: b"create".to_vec(), subjects: vec![id], ..Default::default() };
        store.create_subject(NewSubject { id, dek, values: vec![], index: vec![], now: 1 }, log).await.unwrap();
        id
    }

    async fn sql(db: &TestDatabase, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    }

    async fn connect_error(db: &TestDatabase) -> String {
        PgStore::connect(&db.url).await.unwrap_err().to_string()
    }

    /// Cuts the log back to `size` entries, fewer than one tile's 256 (as an older copy of the
    /// data would have it): the first leaf tile keeps `size` hashes, no other tile exists.
    fn older_log(size: u64) -> String {
        assert!(size < 256);
        format!(
            "DELETE FROM log_subjects WHERE idx >= {size}; DELETE FROM log_entries WHERE idx >= {size};
             DELETE FROM log_tiles WHERE level > 0 OR idx > 0 OR {size} = 0;
             UPDATE log_tiles SET hashes = substring(hashes from 1 for 32 * {size}); UPDATE log_head SET size = {size};"
        )
    }

    #[tokio::test]
    async fn the_postgres_key_store_is_paired_with_its_data_and_refused_when_it_does_not_match() {
        let Some(db) = TestDatabase::create("postgres_key_store_pairing").await else { return };
        let store = PgStore::connect(&db.url).await.unwrap();
        let first = add_customer(&store).await;
        add_customer(&store).await;
        let third = add_customer(&store).await;
        drop(store);
        // The id is written once the database holds something; it then opens as before.
        let store = PgStore::connect(&db.url).await.unwrap();
        let report = store.pair_report().await.unwrap();
        assert!(report.data_installation.is_some() && report.data_installation == report.keys_installation);
        assert_eq!((report.customers, report.live_keys, report.log_size), (3, 3, 3));
        assert_eq!(report.problem("d", "k"), None);
        drop(store);

        // A key store from another installation.
        sql(&db, "UPDATE candor_keys.key_store_meta SET value = 'other' WHERE key = 'id'").await;
        assert!(connect_error(&db).await.contains("belongs to another installation"));
        sql(&db, "UPDATE candor_keys.key_store_meta SET value = (SELECT value FROM meta WHERE key = 'key_store_id')")
            .await;

        // The newest customer's key missing: the key store is older than the data.
        sql(&db, &format!("UPDATE candor_keys.subject_keys SET subject_id = 'gone' WHERE subject_id = '{third}'"))
            .await;
        let e = connect_error(&db).await;
        assert!(e.contains("is older than the database") && e.contains("1 of the 3 newest"), "{e}");
        sql(&db, &format!("UPDATE candor_keys.subject_keys SET subject_id = '{third}' WHERE subject_id = 'gone'"))
            .await;

        // The data as it was after the first customer: the data is older than the key store.
        sql(&db, &format!("DELETE FROM subjects WHERE id <> '{first}'; {}", older_log(1))).await;
        let e = connect_error(&db).await;
        assert!(e.contains("is older than its key store") && e.contains("1 customer(s)"), "{e}");

        // No data at all next to the keys.
        sql(&db, &format!("DELETE FROM subjects; {}", older_log(0))).await;
        let e = connect_error(&db).await;
        assert!(e.contains("is empty") && e.contains("holds the data keys of 3 customer(s)"), "{e}");
        db.drop_database().await;
    }
}
