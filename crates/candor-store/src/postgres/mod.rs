//! The PostgreSQL backend: several stateless Candor servers on one database.
//!
//! An async driver (tokio-postgres) behind a connection pool (deadpool). Numbered migrations run
//! at start-up under an advisory lock, so servers starting together apply them once. Each
//! `Store` method is one transaction. Log appends lock the one-row `log_head` table, which keeps
//! the log a single gap-free sequence across servers. Connection loss maps to
//! `StoreError::Unavailable` (HTTP 503) within the pool's timeouts, and broken connections are
//! replaced once the database is back.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use candor_core::{BlindIndex, Ciphertext, EventId, FieldName, StoredDek, SubjectId, WrappedDek};
use candor_log::merkle::{self, NodeRecorder, ProofError};
use candor_log::tiles::{self, Edge, TileSource};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::error::SqlState;
use tokio_postgres::{GenericClient, NoTls};

mod batch;
mod consents;
mod exec;
mod keys;
mod log_batch;
mod rights;

use exec::Pg;

use crate::sql::{SendFuture, now_millis, parse_subject, proof_err};

use crate::sql::core;
use crate::{
    FieldChange, Hash, LogRecord, Millis, NewEvent, NewSubject, NewToken, Store, StoreError, StoredEvent, StoredToken,
    SubjectRecord,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_consents.sql")),
    (3, include_str!("../../migrations/postgres/0003_rights.sql")),
    (4, include_str!("../../migrations/postgres/0004_retention.sql")),
    (5, include_str!("../../migrations/postgres/0005_break_glass.sql")),
    (6, include_str!("../../migrations/postgres/0006_privacy_center.sql")),
    (7, include_str!("../../migrations/postgres/0007_messages.sql")),
    (8, include_str!("../../migrations/postgres/0008_grants.sql")),
    (9, include_str!("../../migrations/postgres/0009_outbox.sql")),
    (10, include_str!("../../migrations/postgres/0010_breaches.sql")),
    (11, include_str!("../../migrations/postgres/0011_index_key_versions.sql")),
    (12, include_str!("../../migrations/postgres/0012_log_callers.sql")),
    (13, include_str!("../../migrations/postgres/0013_kept_after_erasure.sql")),
    (14, include_str!("../../migrations/postgres/0014_pending_erasures.sql")),
    (15, include_str!("../../migrations/postgres/0015_idempotency.sql")),
    (16, include_str!("../../migrations/postgres/0016_staff.sql")),
    (17, include_str!("../../migrations/postgres/0017_request_handling.sql")),
    (18, include_str!("../../migrations/postgres/0018_log_tiles.sql")),
];
/// Advisory lock key serialising migrations across servers ("candor" in ASCII).
const MIGRATION_LOCK: i64 = 0x63_61_6e_64_6f_72;
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct PgStore {
    pool: Pool,
    log: log_batch::LogBatcher,
    changes: batch::Batcher,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore")
    }
}

pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Conflict("a unique value already exists".into()),
        Some(c) if *c == SqlState::DISK_FULL => StoreError::StorageFull(format!("PostgreSQL: {}", e)),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED => {
            StoreError::Unavailable("the database asked to retry".into())
        }
        Some(c) if c.code().starts_with("08") || c.code().starts_with("57") || c.code().starts_with("53") => {
            StoreError::Unavailable(format!("the database is unavailable ({})", c.code()))
        }
        Some(_) => StoreError::Internal(e.to_string()),
        // No SQL state: the connection broke or could not be made.
        None => StoreError::Unavailable("lost the connection to the database".into()),
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("no database connection available: {e}"))
}

fn u32_of(v: i32) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt("a stored key version is out of range".into()))
}

/// Fetches the given tiles in one query (those that exist).
async fn fetch_tiles(
    c: &impl GenericClient,
    wanted: &[(u32, u64)],
) -> Result<HashMap<(u32, u64), Vec<Hash>>, StoreError> {
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let levels: Vec<i32> = wanted.iter().map(|(l, _)| *l as i32).collect();
    let idxs: Vec<i64> = wanted.iter().map(|(_, i)| *i as i64).collect();
    let rows = c
        .query(
            "SELECT t.level, t.idx, t.hashes FROM log_tiles t
             JOIN unnest($1::int4[], $2::int8[]) AS w(level, idx) ON t.level = w.level AND t.idx = w.idx",
            &[&levels, &idxs],
        )
        .await
        .map_err(pg_err)?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let hashes = tiles::decode(r.get::<_, &[u8]>(2)).map_err(proof_err)?;
        out.insert((r.get::<_, i32>(0) as u32, r.get::<_, i64>(1) as u64), hashes);
    }
    Ok(out)
}

/// Runs a node-reading algorithm over the stored tiles: learn the nodes it reads, fetch the
/// tiles holding them in one query, run.
async fn with_tiles<T>(
    c: &impl GenericClient,
    f: impl Fn(&mut dyn merkle::NodeSource) -> Result<T, ProofError>,
) -> Result<T, StoreError> {
    let mut rec = NodeRecorder::default();
    f(&mut rec).map_err(proof_err)?;
    let mut src = TileSource::new(fetch_tiles(c, &tiles::tiles_for(&rec.wanted)).await?);
    f(&mut src).map_err(proof_err)
}

async fn log_size(c: &impl GenericClient) -> Result<u64, StoreError> {
    let row = c.query_one("SELECT size FROM log_head", &[]).await.map_err(pg_err)?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Appends records inside the caller's transaction, holding the log_head row lock.
async fn append_log_tx(tx: &tokio_postgres::Transaction<'_>, records: &[LogRecord]) -> Result<u64, StoreError> {
    claim_idempotency_keys(tx, records).await?;
    let first =
        tx.query_one("SELECT size FROM log_head FOR UPDATE", &[]).await.map_err(pg_err)?.get::<_, i64>(0) as u64;
    // The right edge's partial tiles (one query), extended by every record in memory; then
    // every row is written with one multi-row statement per table, each changed tile once: a
    // handful of round trips per batch, whatever its size.
    let wanted: Vec<(u32, u64)> = tiles::partial_tiles(first).into_iter().map(|(l, i, _)| (l, i)).collect();
    let mut edge = Edge::load(first, &fetch_tiles(tx, &wanted).await?).map_err(proof_err)?;
    let (mut entry_idx, mut entries) = (Vec::with_capacity(records.len()), Vec::with_capacity(records.len()));
    let (mut link_subject, mut link_idx) = (Vec::new(), Vec::new());
    let (mut caller_idx, mut caller_address, mut caller_at) = (Vec::new(), Vec::new(), Vec::new());
    for (i, record) in records.iter().enumerate() {
        let idx = first + i as u64;
        entry_idx.push(idx as i64);
        entries.push(record.entry.as_slice());
        edge.push(merkle::leaf_hash(&record.entry));
        for subject in &record.subjects {
            link_subject.push(subject.to_string());
            link_idx.push(idx as i64);
        }
        if let Some(caller) = &record.caller {
            caller_idx.push(idx as i64);
            caller_address.push(caller.address.to_string());
            caller_at.push(caller.at);
        }
    }
    tx.execute(
        "INSERT INTO log_entries (idx, entry) SELECT * FROM unnest($1::int8[], $2::bytea[])",
        &[&entry_idx, &entries],
    )
    .await
    .map_err(pg_err)?;
    let written = edge.finish();
    let tile_level: Vec<i32> = written.iter().map(|t| t.level as i32).collect();
    let tile_idx: Vec<i64> = written.iter().map(|t| t.index as i64).collect();
    let tile_hashes: Vec<Vec<u8>> = written.iter().map(|t| tiles::encode(&t.hashes)).collect();
    tx.execute(
        "INSERT INTO log_tiles (level, idx, hashes) SELECT * FROM unnest($1::int4[], $2::int8[], $3::bytea[])
         ON CONFLICT (level, idx) DO UPDATE SET hashes = EXCLUDED.hashes",
        &[&tile_level, &tile_idx, &tile_hashes],
    )
    .await
    .map_err(pg_err)?;
    if !link_subject.is_empty() {
        tx.execute(
            "INSERT INTO log_subjects (subject_id, idx) SELECT * FROM unnest($1::text[], $2::int8[]) ON CONFLICT DO NOTHING",
            &[&link_subject, &link_idx],
        )
        .await
        .map_err(pg_err)?;
    }
    if !caller_idx.is_empty() {
        tx.execute(
            "INSERT INTO log_callers (idx, address, recorded_at) SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[])",
            &[&caller_idx, &caller_address, &caller_at],
        )
        .await
        .map_err(pg_err)?;
    }
    tx.execute("UPDATE log_head SET size = $1", &[&((first + records.len() as u64) as i64)]).await.map_err(pg_err)?;
    Ok(first)
}

/// Stores the idempotency keys `records` carry (a key used before fails with `Conflict`, so the
/// transaction, or the batch's savepoint, of the second write rolls back).
pub(crate) async fn claim_idempotency_keys(
    c: &tokio_postgres::Transaction<'_>,
    records: &[LogRecord],
) -> Result<(), StoreError> {
    for k in records.iter().filter_map(|r| r.idempotency.as_ref()) {
        c.execute(
            "INSERT INTO idempotency_keys (key, request, outcome, created_at) VALUES ($1, $2, $3, $4)",
            &[&&k.key[..], &&k.request[..], &k.outcome, &k.at],
        )
        .await
        .map_err(pg_err)?;
    }
    Ok(())
}

async fn check_size(c: &impl GenericClient, size: u64) -> Result<(), StoreError> {
    let current = log_size(c).await?;
    if size > current {
        return Err(StoreError::OutOfRange(format!("tree size {size} is larger than the log ({current} entries)")));
    }
    Ok(())
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut pg: tokio_postgres::Config =
            url.parse().map_err(|_| StoreError::Internal("the PostgreSQL URL is malformed".into()))?;
        pg.connect_timeout(TIMEOUT);
        pg.application_name("candor");
        // A transaction left open by a server that stalled or lost its connection is ended by
        // PostgreSQL, so its locks (the log head's among them) do not hold every other server up.
        pg.options("-c idle_in_transaction_session_timeout=60000");
        let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts { wait: Some(TIMEOUT), create: Some(TIMEOUT), recycle: Some(TIMEOUT) })
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let log = log_batch::LogBatcher::start(pool.clone());
        let changes = batch::Batcher::start(pool.clone());
        let store = Self { pool, log, changes };
        store.migrate().await?;
        store.prepare_key_store().await?;
        store.check_key_store().await?;
        Ok(store)
    }

    /// Applies migrations not yet applied, under an advisory lock (safe when servers start together).
    pub async fn migrate(&self) -> Result<i64, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_err)?;
        let result = async {
            // Created only when missing (not `IF NOT EXISTS`, whose notice would print at every start).
            let exists: bool = client
                .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
                .await
                .map_err(pg_err)?
                .get(0);
            if !exists {
                client
                    .batch_execute("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
                    .await
                    .map_err(pg_err)?;
            }
            let current: i64 = client
                .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
                .await
                .map_err(pg_err)?
                .get(0);
            let latest = MIGRATIONS.last().map_or(0, |m| m.0);
            if current > latest {
                return Err(StoreError::Corrupt(format!(
                    "the database is at schema version {current}, but this Candor knows only up to {latest}: it was written by a newer Candor"
                )));
            }
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
                let tx = client.transaction().await.map_err(pg_err)?;
                tx.batch_execute(sql).await.map_err(pg_err)?;
                tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", &[version, &now_millis()])
                    .await
                    .map_err(pg_err)?;
                tx.commit().await.map_err(pg_err)?;
            }
            Ok(latest)
        }
        .await;
        let unlock = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_err);
        let latest = result?;
        unlock?;
        Ok(latest)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }

    /// A pooled connection, for tools in this crate (copy).
    pub(crate) async fn raw_client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.client().await
    }

    /// Rows in `table` (one of Candor's own tables).
    pub(crate) async fn count(&self, table: &str) -> Result<u64, StoreError> {
        let row =
            self.client().await?.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[]).await.map_err(pg_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

crate::sql::sessions::impl_session_store!(PgStore);
crate::sql::keys::impl_key_ring_store!(PgStore);
crate::sql::rights::impl_rights_store!(PgStore);
crate::sql::consents::impl_consent_store!(PgStore);
crate::sql::grants::impl_grant_store!(PgStore);
crate::sql::breaches::impl_breach_store!(PgStore);
crate::sql::outbox::impl_outbox_store!(PgStore);
crate::sql::messages::impl_message_store!(PgStore);
crate::sql::overrides::impl_override_store!(PgStore);
crate::sql::staff::impl_staff_store!(PgStore);

/// The runners of the shared logic (`crate::sql`): each runs `f` on an `exec::Pg`.
impl PgStore {
    /// On a pooled connection (each statement its own transaction).
    async fn run_read<T>(&self, f: impl for<'t> FnOnce(&'t Pg<'t>) -> SendFuture<'t, T>) -> Result<T, StoreError> {
        let client = self.client().await?;
        f(&Pg::Pooled(&client)).await
    }

    /// In a read-only transaction (one snapshot for several statements).
    async fn run_snapshot<T>(&self, f: impl for<'t> FnOnce(&'t Pg<'t>) -> SendFuture<'t, T>) -> Result<T, StoreError> {
        let mut client = self.client().await?;
        let tx = client.build_transaction().read_only(true).start().await.map_err(pg_err)?;
        let value = f(&Pg::Tx(&tx)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(value)
    }

    /// On a pooled connection (for single statements).
    async fn run_write<T>(&self, f: impl for<'t> FnOnce(&'t Pg<'t>) -> SendFuture<'t, T>) -> Result<T, StoreError> {
        self.run_read(f).await
    }

    /// In a transaction of its own, committed when `f` succeeds.
    async fn run_tx<T>(&self, f: impl for<'t> FnOnce(&'t Pg<'t>) -> SendFuture<'t, T>) -> Result<T, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let value = f(&Pg::Tx(&tx)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(value)
    }

    /// In the next batch of changes (its savepoint; its log records appended with the batch's).
    async fn run_batched<T: Send + 'static>(
        &self,
        f: impl for<'t> FnOnce(&'t Pg<'t>) -> SendFuture<'t, T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run_batched_keeping(f, |_| true).await
    }

    /// As [`PgStore::run_batched`], but a result for which `keep` says no is rolled back.
    async fn run_batched_keeping<T: Send + 'static>(
        &self,
        f: impl for<'t> FnOnce(&'t Pg<'t>) -> SendFuture<'t, T> + Send + 'static,
        keep: fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        self.changes.run_keeping(move |tx, sink| Box::pin(async move { f(&Pg::Batched(tx, sink)).await }), keep).await
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.run_read(move |c| Box::pin(core::ping(c))).await
    }

    async fn create_subject(&self, s: NewSubject, log: LogRecord) -> Result<(), StoreError> {
        self.changes
            .run(move |tx, log_sink| {
                Box::pin(async move {
                    let id = s.id.to_string();
                    // Key and subject row in one statement; then all values and all index entries in
                    // one multi-row insert each: three round trips whatever the number of fields.
                    tx.execute(
                        "WITH k AS (INSERT INTO candor_keys.subject_keys (subject_id, kek_version, dek_version, wrapped_dek, created_at, log_mark)
                                    VALUES ($1, $2, $3, $4, $5, (SELECT size FROM log_head)))
                         INSERT INTO subjects (id, created_at, updated_at) VALUES ($1, $5, $5)",
                        &[&id, &(s.dek.kek_version as i32), &(s.dek.dek_version as i32), &s.dek.wrapped.as_bytes(), &s.now],
                    )
                    .await
                    .map_err(pg_err)?;
                    if !s.values.is_empty() {
                        let fields: Vec<&str> = s.values.iter().map(|(f, _)| f.as_str()).collect();
                        let sealed: Vec<&[u8]> = s.values.iter().map(|(_, v)| v.as_bytes()).collect();
                        tx.execute(
                            "INSERT INTO field_values (subject_id, field, ciphertext, updated_at)
                             SELECT $1, f, c, $4 FROM unnest($2::text[], $3::bytea[]) AS v(f, c)",
                            &[&id, &fields, &sealed, &s.now],
                        )
                        .await
                        .map_err(pg_err)?;
                    }
                    if !s.index.is_empty() {
                        let fields: Vec<&str> = s.index.iter().map(|(f, _)| f.as_str()).collect();
                        let tokens: Vec<&[u8]> = s.index.iter().map(|(_, t)| t.as_bytes()).collect();
                        let versions: Vec<i32> = s.index.iter().map(|(_, t)| t.key_version() as i32).collect();
                        tx.execute(
                            "INSERT INTO blind_index (field, token, subject_id, key_version)
                             SELECT f, t, $1, v FROM unnest($2::text[], $3::bytea[], $4::int4[]) AS i(f, t, v)",
                            &[&id, &fields, &tokens, &versions],
                        )
                        .await
                        .map_err(pg_err)?;
                    }
                    log_sink.push(log);
                    Ok(())
                })
            })
            .await
    }

    async fn load_subject(&self, id: SubjectId, fields: &[FieldName]) -> Result<Option<SubjectRecord>, StoreError> {
        // One prepared statement (one round trip, one snapshot): the subject's head repeated on
        // each of its requested values, or once with no value.
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT k.kek_version, k.dek_version, k.wrapped_dek, s.created_at, s.updated_at, k.destroyed_at,
                        EXISTS (SELECT 1 FROM restrictions r WHERE r.subject_id = s.id),
                        v.field, v.ciphertext, v.updated_at
                 FROM subjects s LEFT JOIN candor_keys.subject_keys k ON k.subject_id = s.id
                 LEFT JOIN field_values v ON v.subject_id = s.id AND v.field = ANY($2)
                 WHERE s.id = $1 ORDER BY v.field",
            )
            .await
            .map_err(pg_err)?;
        let names: Vec<&str> = fields.iter().map(FieldName::as_str).collect();
        let rows = client.query(&statement, &[&id.to_string(), &names]).await.map_err(pg_err)?;
        let Some(head) = rows.first() else {
            return Ok(None);
        };
        let (Some(kek_version), Some(dek_version), Some(wrapped)) =
            (head.get::<_, Option<i32>>(0), head.get::<_, Option<i32>>(1), head.get::<_, Option<Vec<u8>>>(2))
        else {
            return Err(match head.get::<_, Option<i64>>(5) {
                Some(at) => StoreError::Erased { at },
                None => StoreError::Corrupt("a customer has no data key in the key store".into()),
            });
        };
        let mut values = Vec::with_capacity(rows.len());
        let mut value_times = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(field) = r.get::<_, Option<String>>(7) {
                values.push((FieldName::new(field), Ciphertext::from_bytes(r.get(8))));
                value_times.push(r.get::<_, i64>(9));
            }
        }
        Ok(Some(SubjectRecord {
            dek: StoredDek {
                kek_version: u32_of(kek_version)?,
                dek_version: u32_of(dek_version)?,
                wrapped: WrappedDek::from_bytes(wrapped),
            },
            restricted: head.get(6),
            values,
            value_times,
            created_at: head.get(3),
            updated_at: head.get(4),
        }))
    }

    async fn update_subject(
        &self,
        id: SubjectId,
        changes: Vec<FieldChange>,
        now: Millis,
        log: LogRecord,
    ) -> Result<bool, StoreError> {
        self.run_batched(move |c| Box::pin(core::update_subject(c, id, changes, now, log))).await
    }

    async fn find_by_index(&self, field: &FieldName, indexes: &[BlindIndex]) -> Result<Vec<SubjectId>, StoreError> {
        // One statement for every version, so a row being recomputed under the new key meanwhile
        // is seen exactly once (one snapshot).
        let tokens: Vec<&[u8]> = indexes.iter().map(BlindIndex::as_bytes).collect();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT subject_id FROM blind_index WHERE field = $1 AND token = ANY($2) ORDER BY subject_id",
                &[&field.as_str(), &tokens],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(|r| parse_subject(r.get(0))).collect()
    }

    async fn find_many_by_index(
        &self,
        field: &FieldName,
        tokens: &[BlindIndex],
    ) -> Result<Vec<(usize, SubjectId)>, StoreError> {
        let list: Vec<&[u8]> = tokens.iter().map(BlindIndex::as_bytes).collect();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT token, subject_id FROM blind_index WHERE field = $1 AND token = ANY($2)",
                &[&field.as_str(), &list],
            )
            .await
            .map_err(pg_err)?;
        let mut position: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for (i, t) in list.iter().enumerate() {
            position.entry(t).or_default().push(i);
        }
        let mut found = Vec::new();
        for r in &rows {
            let token: &[u8] = r.get(0);
            let subject = parse_subject(r.get(1))?;
            for &i in position.get(token).map(Vec::as_slice).unwrap_or_default() {
                found.push((i, subject));
            }
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    async fn append_event(&self, e: NewEvent, log: LogRecord) -> Result<bool, StoreError> {
        self.run_batched(move |c| Box::pin(core::append_event(c, e, log))).await
    }

    async fn list_events(
        &self,
        subject: SubjectId,
        types: &[FieldName],
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if types.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = types.iter().map(FieldName::as_str).collect();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT seq, id, event_type, recorded_at, payload FROM events
                 WHERE subject_id = $1 AND seq > $2 AND event_type = ANY($3) ORDER BY seq LIMIT $4",
                &[&subject.to_string(), &after.unwrap_or(0), &names, &i64::from(limit)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(StoredEvent {
                    seq: r.get(0),
                    id: EventId::parse(r.get(1))
                        .ok_or_else(|| StoreError::Corrupt("a stored event id is not a UUID".into()))?,
                    event_type: FieldName::new(r.get::<_, String>(2)),
                    recorded_at: r.get(3),
                    payload: Ciphertext::from_bytes(r.get(4)),
                })
            })
            .collect()
    }

    async fn insert_token(&self, t: NewToken, log: LogRecord) -> Result<(), StoreError> {
        self.run_batched(move |c| Box::pin(core::insert_token(c, t, log))).await
    }

    async fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        self.run_read(move |c| Box::pin(core::tokens(c))).await
    }

    async fn revoke_token(&self, id: &str, at: Millis, log: LogRecord) -> Result<Option<StoredToken>, StoreError> {
        let id = id.to_string();
        self.run_batched(move |c| Box::pin(core::revoke_token(c, id, at, log))).await
    }

    async fn token_epoch(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement =
            client.prepare_cached("SELECT value FROM meta WHERE key = 'token_epoch'").await.map_err(pg_err)?;
        let row = client.query_opt(&statement, &[]).await.map_err(pg_err)?;
        match row.map(|r| r.get::<_, String>(0)) {
            None => Ok(0),
            Some(t) => t.parse().map_err(|_| StoreError::Corrupt("the stored token epoch is not a number".into())),
        }
    }

    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StoredToken>, StoreError> {
        let hash = *hash;
        self.run_read(move |c| Box::pin(core::token_by_hash(c, hash))).await
    }

    async fn append_log(&self, records: Vec<LogRecord>) -> Result<u64, StoreError> {
        self.log.append(records).await
    }

    async fn note_catalog(&self, hash: &str, log: LogRecord) -> Result<bool, StoreError> {
        let hash = hash.to_string();
        self.run_tx(move |c| Box::pin(core::note_catalog(c, hash, log))).await
    }

    async fn publish_notice(
        &self,
        version: &str,
        at: Millis,
        notice: &str,
        log: LogRecord,
    ) -> Result<bool, StoreError> {
        let (version, notice) = (version.to_string(), notice.to_string());
        self.run_tx(move |c| Box::pin(core::publish_notice(c, version, at, notice, log))).await
    }

    async fn notice_versions(&self) -> Result<Vec<(String, Millis, String)>, StoreError> {
        self.run_read(move |c| Box::pin(core::notice_versions(c))).await
    }

    async fn log_head(&self) -> Result<(u64, Hash), StoreError> {
        let client = self.client().await?;
        let size = log_size(&**client).await?;
        let root = with_tiles(&**client, |src| merkle::root(src, size)).await?;
        Ok((size, root))
    }

    async fn log_entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.run_read(move |c| Box::pin(core::log_entries(c, start, end))).await
    }

    async fn log_callers(&self, start: u64, end: u64) -> Result<Vec<(u64, std::net::IpAddr)>, StoreError> {
        self.run_read(move |c| Box::pin(core::log_callers(c, start, end))).await
    }

    async fn idempotent_outcome(&self, key: &[u8; 32]) -> Result<Option<crate::IdempotentOutcome>, StoreError> {
        let key = *key;
        self.run_read(move |c| Box::pin(core::idempotent_outcome(c, key))).await
    }

    async fn prune_idempotency_keys(&self, before: Millis) -> Result<u64, StoreError> {
        self.run_write(move |c| Box::pin(core::prune_idempotency_keys(c, before))).await
    }

    async fn probe_write(&self, now: Millis) -> Result<(), StoreError> {
        self.run_write(move |c| Box::pin(core::probe_write(c, now))).await
    }

    async fn prune_log_callers(&self, before: Millis) -> Result<u64, StoreError> {
        self.run_write(move |c| Box::pin(core::prune_log_callers(c, before))).await
    }

    async fn log_nodes(&self, level: u32, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
        self.run_read(move |c| Box::pin(core::log_nodes(c, level, start, end))).await
    }

    async fn log_inclusion_proof(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), StoreError> {
        let client = self.client().await?;
        check_size(&**client, size).await?;
        // Leaf and path from one read of the tiles they lie in.
        with_tiles(&**client, |src| Ok((src.node(0, index)?, merkle::inclusion_proof(src, index, size)?))).await
    }

    async fn log_consistency_proof(&self, first: u64, second: u64) -> Result<(Hash, Hash, Vec<Hash>), StoreError> {
        let client = self.client().await?;
        check_size(&**client, second).await?;
        // Both roots and the proof from one read of the tiles they need.
        with_tiles(&**client, |src| {
            Ok((merkle::root(src, first)?, merkle::root(src, second)?, merkle::consistency_proof(src, first, second)?))
        })
        .await
    }

    async fn subject_log_indices(&self, subject: SubjectId) -> Result<Vec<u64>, StoreError> {
        self.run_read(move |c| Box::pin(core::subject_log_indices(c, subject))).await
    }

    async fn recent_subject_log_entries(
        &self,
        subject: SubjectId,
        limit: u32,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.run_read(move |c| Box::pin(core::recent_subject_log_entries(c, subject, limit))).await
    }

    async fn save_checkpoint(&self, size: u64, note: &str, now: Millis) -> Result<(), StoreError> {
        let note = note.to_string();
        self.run_write(move |c| Box::pin(core::save_checkpoint(c, size, note, now))).await
    }

    async fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.run_read(move |c| Box::pin(core::latest_checkpoint(c))).await
    }

    async fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        self.run_read(move |c| Box::pin(core::checkpoints(c))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgtest::TestDatabase;

    /// A database as Candor wrote it before tiles (schema 17: a row per complete subtree in
    /// `log_nodes`) is migrated to tiles holding exactly the committed hashes, and the log goes
    /// on from there.
    #[tokio::test]
    async fn a_postgres_log_stored_as_node_rows_is_migrated_to_tiles_and_keeps_growing() {
        let Some(db) = TestDatabase::create("postgres_log_tiles_migration").await else { return };
        let n = 66_000u64;
        let entries: Vec<Vec<u8>> = (0..n).map(|i| format!("{{\"old\":{i}}}").into_bytes()).collect();
        let mut builder = merkle::RootBuilder::new();
        let (mut level, mut index, mut hash) = (Vec::<i32>::new(), Vec::<i64>::new(), Vec::<Vec<u8>>::new());
        for (i, e) in entries.iter().enumerate() {
            let leaf = merkle::leaf_hash(e);
            level.push(0);
            index.push(i as i64);
            hash.push(leaf.to_vec());
            builder.push_reporting(leaf, |l, i, h| {
                level.push(l as i32);
                index.push(i as i64);
                hash.push(h.to_vec());
            });
        }
        {
            let (mut client, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
            tokio::spawn(conn);
            let tx = client.transaction().await.unwrap();
            tx.batch_execute("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
                .await
                .unwrap();
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v < 18) {
                tx.batch_execute(sql).await.unwrap();
                tx.execute("INSERT INTO schema_migrations VALUES ($1, 0)", &[version]).await.unwrap();
            }
            let idx: Vec<i64> = (0..n as i64).collect();
            let bytes: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
            tx.execute(
                "INSERT INTO log_entries (idx, entry) SELECT * FROM unnest($1::int8[], $2::bytea[])",
                &[&idx, &bytes],
            )
            .await
            .unwrap();
            tx.execute(
                "INSERT INTO log_nodes (level, idx, hash) SELECT * FROM unnest($1::int4[], $2::int8[], $3::bytea[])",
                &[&level, &index, &hash],
            )
            .await
            .unwrap();
            tx.execute("UPDATE log_head SET size = $1", &[&(n as i64)]).await.unwrap();
            tx.commit().await.unwrap();
        }
        let old_root = builder.root();
        let store = PgStore::connect(&db.url).await.unwrap();
        assert_eq!(store.log_head().await.unwrap(), (n, old_root), "the same tree, from tiles");
        let (leaf, proof) = store.log_inclusion_proof(n - 1, n).await.unwrap();
        merkle::verify_inclusion(&leaf, n - 1, n, &proof, &old_root).unwrap();
        let more = LogRecord { entry: b"{\"new\":1}".to_vec(), ..Default::default() };
        assert_eq!(store.append_log(vec![more.clone()]).await.unwrap(), n);
        builder.push(merkle::leaf_hash(&more.entry));
        assert_eq!(store.log_head().await.unwrap(), (n + 1, builder.root()));
        let (r1, _, proof) = store.log_consistency_proof(n, n + 1).await.unwrap();
        merkle::verify_consistency(n, n + 1, &r1, &builder.root(), &proof).unwrap();
        drop(store);
        db.drop_database().await;
    }

    #[tokio::test]
    async fn the_postgres_store_passes_the_store_test_suite() {
        let Some(db) = TestDatabase::create("the_postgres_store_passes_the_store_test_suite").await else {
            return;
        };
        let store = PgStore::connect(&db.url).await.unwrap();
        crate::testsuite::run_all(&store).await;
        drop(store);
        db.drop_database().await;
    }

    #[tokio::test]
    async fn servers_starting_together_migrate_once_and_append_one_gap_free_log() {
        let Some(db) = TestDatabase::create("servers_starting_together_migrate_once").await else {
            return;
        };
        let (a, b) = tokio::join!(PgStore::connect(&db.url), PgStore::connect(&db.url));
        let (a, b) = (std::sync::Arc::new(a.unwrap()), std::sync::Arc::new(b.unwrap()));
        let mut tasks = Vec::new();
        for t in 0..8u8 {
            let store = if t % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                for i in 0..10u8 {
                    let record = LogRecord { entry: vec![t, i], ..Default::default() };
                    store.append_log(vec![record]).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let (size, root) = a.log_head().await.unwrap();
        assert_eq!(size, 80);
        assert_eq!(b.log_head().await.unwrap(), (size, root));
        let entries = a.log_entries(0, size).await.unwrap();
        assert_eq!(entries.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (0..80).collect::<Vec<_>>(), "gap-free");
        let mut builder = merkle::RootBuilder::new();
        for (_, e) in &entries {
            builder.push(merkle::leaf_hash(e));
        }
        assert_eq!(builder.root(), root);
        drop((a, b));
        db.drop_database().await;
    }
}
