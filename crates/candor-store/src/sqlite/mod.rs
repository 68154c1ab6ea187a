//! The embedded SQLite backend: one file, WAL mode, `synchronous = FULL` (a write is
//! acknowledged only once it is durable), numbered migrations applied at open.
//!
//! rusqlite is blocking, so every operation runs on tokio's blocking pool. Writes go through
//! one connection (SQLite has a single writer anyway); reads use a small pool of connections,
//! which WAL lets run concurrently with the writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use candor_core::{BlindIndex, Ciphertext, EventId, FieldName, PurposeId, StoredDek, SubjectId, WrappedDek};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use candor_log::merkle;

pub mod backup;
mod consents;
mod exec;
mod import;
mod keys;
mod rights;
mod tiles;
mod writer;

use exec::Lite;

use crate::sql::{LocalFuture, finish, now_millis, parse_subject};

use crate::consents::StoredConsent;
use crate::sql::core;
use crate::{
    FieldChange, Hash, ImportRow, LogRecord, Millis, NewEvent, NewSubject, NewToken, Store, StoreError, StoredEvent,
    StoredToken, SubjectRecord,
};

/// Numbered, forward-only migrations. Never edit one that has shipped; add the next.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_log.sql")),
    (3, include_str!("../../migrations/sqlite/0003_consents.sql")),
    (4, include_str!("../../migrations/sqlite/0004_rights.sql")),
    (5, include_str!("../../migrations/sqlite/0005_retention.sql")),
    (6, include_str!("../../migrations/sqlite/0006_break_glass.sql")),
    (7, include_str!("../../migrations/sqlite/0007_privacy_center.sql")),
    (8, include_str!("../../migrations/sqlite/0008_messages.sql")),
    (9, include_str!("../../migrations/sqlite/0009_grants.sql")),
    (10, include_str!("../../migrations/sqlite/0010_outbox.sql")),
    (11, include_str!("../../migrations/sqlite/0011_breaches.sql")),
    (12, include_str!("../../migrations/sqlite/0012_index_key_versions.sql")),
    (13, include_str!("../../migrations/sqlite/0013_log_callers.sql")),
    (14, include_str!("../../migrations/sqlite/0014_kept_after_erasure.sql")),
    (15, include_str!("../../migrations/sqlite/0015_pending_erasures.sql")),
    (16, include_str!("../../migrations/sqlite/0016_idempotency.sql")),
    (17, include_str!("../../migrations/sqlite/0017_staff.sql")),
    (18, include_str!("../../migrations/sqlite/0018_request_handling.sql")),
    (19, include_str!("../../migrations/sqlite/0019_log_tiles.sql")),
    (20, include_str!("../../migrations/sqlite/0020_subject_numbers.sql")),
    (21, include_str!("../../migrations/sqlite/0021_log_links_by_number.sql")),
];
/// The migration that drops the data keys from `subjects`: they are copied to the key store first.
const KEYS_LEAVE_DATA: i64 = 4;
/// The migration that stores the log's tree as tiles: they are made from the node rows, which go.
const LOG_TILES: i64 = 19;
/// The migration that rebuilds `subjects` with an internal number: it runs with foreign keys off
/// and checks every reference before it commits (see `migrate`).
const SUBJECT_NUMBERS: i64 = 20;
/// The migration that keys the log's links to customers by their internal number.
#[cfg(test)]
const LOG_LINKS_BY_NUMBER: i64 = 21;
const KEY_STORE_SCHEMA: &str = include_str!("../../migrations/keystore/0001_subject_keys.sql");
/// Reader connections kept open between reads (opening one costs more than a read).
const MAX_IDLE_READERS: usize = 32;
/// Connections for reads run inline: one per async worker thread of a two-core machine, so
/// that on it every request's reads run inline; beyond, reads wait for the pool.
const INLINE_READERS: usize = 2;

pub struct SqliteStore {
    path: PathBuf,
    /// The key store file (attached to every connection as schema `keys`).
    keys_path: PathBuf,
    writer: writer::Writer,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Connections for the small reads every request makes (the token epoch, the customer,
    /// their consent for the purpose), run inline on the caller's thread (each opened on first
    /// use); see [`SqliteStore::read_inline`].
    inline_readers: [Mutex<Option<Connection>>; INLINE_READERS],
    /// The connection an import writes its batches' keys on, beside the writer (opened at the
    /// first import; see [`import::store_keys`]). An erasure holds it too, so that its
    /// truncation of the key store's WAL never meets a batch's keys being written.
    import_keys: Arc<Mutex<Option<Connection>>>,
    /// Import batches take turns here, so their data reaches the writer in the order they came.
    import_order: tokio::sync::Mutex<()>,
    /// The thread that works on `import_keys` (one thread, not the blocking pool: the memory its
    /// page cache frees stays with one thread for the next batch).
    import_thread: import::ImportThread,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteStore({})", self.path.display())
    }
}

fn db_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable("the database is busy".into())
        }
        Some(ErrorCode::DiskFull) => StoreError::StorageFull(e.to_string()),
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::SystemIoFailure) => {
            StoreError::Unavailable(e.to_string())
        }
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

/// `Connection::execute` compiles its SQL on every call; every statement goes through the
/// connection's statement cache instead.
pub(crate) fn execute_cached(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

/// `query_row` through the statement cache (see [`execute_cached`]).
pub(crate) fn query_row_cached<T>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(p, f)
}

/// The size a WAL file is cut back to when a checkpoint empties it (SQLite leaves it at its
/// largest otherwise). Ordinary commits keep it under 4 MB (1,000 pages between checkpoints).
const WAL_KEPT_BYTES: i64 = 16 * 1024 * 1024;

/// Distinct statements kept compiled per connection (rusqlite's default, 16, is fewer than the
/// statements of one audited read and its log append, so they evicted each other).
const STATEMENT_CACHE: usize = 256;

fn configure(conn: &Connection, keys_path: &Path) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Query plans must not depend on bound values (the query planner stability guarantee).
    // Without it, SQLite marks statements whose plan a parameter might change, and rusqlite's
    // statement cache clears bindings when a statement is returned, which forces a full
    // recompile on every use: profiles showed ~11% of the server's CPU in `sqlite3Reprepare`.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    execute_cached(conn, "ATTACH DATABASE ?1 AS keys", params![keys_path.to_string_lossy()])?;
    for schema in ["main", "keys"] {
        conn.pragma_update(Some(schema), "journal_mode", "WAL")?;
        conn.pragma_update(Some(schema), "synchronous", "FULL")?;
        // Deleted values and destroyed keys are overwritten on disk, not left in free pages.
        conn.pragma_update(Some(schema), "secure_delete", "ON")?;
        // A WAL that grew (an import lets it) is cut back when a checkpoint empties it.
        conn.pragma_update(Some(schema), "journal_size_limit", WAL_KEPT_BYTES)?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Savepoint journals (each write of a group commit runs in one) and sorts in memory, not in
    // temporary files: a profile of log appends showed a sixth of the writer's time copying
    // pages to the sub-journal file and reading them back; and no page image of customer data
    // lands in a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

pub(crate) fn open_connection(path: &Path, keys_path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    configure(&conn, keys_path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open the key store {}: {e}", keys_path.display())))?;
    Ok(conn)
}

/// Creates `path` empty and owner-only (0600) when it does not exist yet, before SQLite opens
/// it: SQLite gives its `-wal` and `-shm` files the mode of the database file.
fn create_private_file(path: &Path, what: &str) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::Unavailable(format!("cannot create the {what} {}: {e}", path.display())))
}

/// Copies the data keys still held in `subjects` (databases from before the key store) into the
/// key store and commits there, so that the migration dropping them loses nothing. A key the key
/// store already has — or has destroyed — is left as it is.
fn move_keys_to_key_store(conn: &mut Connection) -> Result<(), StoreError> {
    let columns: i64 = query_row_cached(
        conn,
        "SELECT COUNT(*) FROM pragma_table_info('subjects') WHERE name = 'wrapped_dek'",
        [],
        |r| r.get(0),
    )
    .map_err(db_err)?;
    if columns > 0 {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
        execute_cached(
            &tx,
            "INSERT OR IGNORE INTO keys.subject_keys (subject_id, kek_version, dek_version, wrapped_dek, created_at)
             SELECT id, kek_version, dek_version, wrapped_dek, created_at FROM main.subjects",
            [],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
    }
    Ok(())
}

/// Ties the data and the key store together with one installation id, so that a missing or
/// foreign key store is refused instead of making every customer look erased.
fn check_key_store_pairing(conn: &mut Connection, keys_path: &Path) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
    let get = |sql: &str| query_row_cached(&tx, sql, [], |r| r.get::<_, String>(0)).optional().map_err(db_err);
    let in_data = get("SELECT value FROM main.meta WHERE key = 'key_store_id'")?;
    let in_keys = get("SELECT value FROM keys.key_store_meta WHERE key = 'id'")?;
    let subjects: i64 =
        query_row_cached(&tx, "SELECT COUNT(*) FROM main.subjects", [], |r| r.get(0)).map_err(db_err)?;
    match (in_data, in_keys) {
        (Some(d), Some(k)) if d == k => {}
        (Some(_), Some(_)) => {
            return Err(StoreError::Corrupt(format!(
                "the key store {} belongs to another installation than this database: fix [keys] key_store",
                keys_path.display()
            )));
        }
        (Some(_), None) if subjects > 0 => {
            return Err(StoreError::Corrupt(format!(
                "the key store {} is new or empty, but this database's customers have their data keys in a key \
                 store: restore it from its backup or fix [keys] key_store (starting without it would make \
                 every customer unreadable)",
                keys_path.display()
            )));
        }
        (data, keys) => {
            let id = match keys.or(data) {
                Some(id) => id,
                None => query_row_cached(&tx, "SELECT lower(hex(randomblob(16)))", [], |r| r.get(0)).map_err(db_err)?,
            };
            execute_cached(
                &tx,
                "INSERT OR REPLACE INTO main.meta (key, value) VALUES ('key_store_id', ?1)",
                params![id],
            )
            .map_err(db_err)?;
            execute_cached(
                &tx,
                "INSERT OR REPLACE INTO keys.key_store_meta (key, value) VALUES ('id', ?1)",
                params![id],
            )
            .map_err(db_err)?;
        }
    }
    tx.commit().map_err(db_err)
}

/// Applies the migrations the database has not seen yet, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT",
    )
    .map_err(db_err)?;
    let current: i64 =
        query_row_cached(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
            .map_err(db_err)?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > latest {
        return Err(StoreError::Corrupt(format!(
            "the database is at schema version {current}, but this Candor knows only up to {latest}: \
             it was written by a newer Candor"
        )));
    }
    conn.execute_batch(&KEY_STORE_SCHEMA.replace("CREATE TABLE IF NOT EXISTS ", "CREATE TABLE IF NOT EXISTS keys."))
        .map_err(db_err)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        if *version == KEYS_LEAVE_DATA {
            move_keys_to_key_store(conn)?;
        }
        // Rebuilding tables: foreign keys off (dropping the old table must not cascade), and
        // sorts and index builds in temporary files rather than memory (they hold ids, tokens
        // and ciphertexts, no plaintext; in memory, 300,000 customers took 275 MB).
        let rebuilds = *version == SUBJECT_NUMBERS;
        if rebuilds {
            conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA temp_store = FILE").map_err(db_err)?;
        }
        let applied = apply_migration(conn, *version, sql, rebuilds);
        if rebuilds {
            conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY").map_err(db_err)?;
        }
        applied?;
    }
    Ok(latest)
}

/// One migration in its own transaction; with `check_references`, every foreign key is checked
/// before it commits (for the migrations that run with foreign keys off).
fn apply_migration(conn: &mut Connection, version: i64, sql: &str, check_references: bool) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
    tx.execute_batch(sql).map_err(db_err)?;
    if version == LOG_TILES {
        tiles::tiles_from_nodes(&tx)?;
    }
    if check_references {
        let dangling: i64 =
            query_row_cached(&tx, "SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).map_err(db_err)?;
        if dangling > 0 {
            return Err(StoreError::Corrupt(format!(
                "migration {version}: {dangling} rows name a customer that does not exist; nothing was changed"
            )));
        }
    }
    execute_cached(
        &tx,
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
        params![version, now_millis()],
    )
    .map_err(db_err)?;
    tx.commit().map_err(db_err)
}

fn version(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt("a stored key version is out of range".into()))
}

/// The number of entries (the next entry's index). The tree covers them all once the writer's
/// transaction commits ([`tiles::tree_size`]).
fn log_size(conn: &Connection) -> Result<u64, StoreError> {
    query_row_cached(conn, "SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(db_err)
}

/// Appends records inside the caller's transaction: entry, subject links, caller, idempotency
/// key. Returns the index of the first record. The tree's tiles are extended for them before
/// the transaction commits ([`tiles::tile_new_entries`]).
fn append_log_tx(tx: &Connection, records: &[LogRecord]) -> Result<u64, StoreError> {
    let first = log_size(tx)?;
    let mut links: Vec<(String, i64)> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let idx = first + i as u64;
        tx.prepare_cached("INSERT INTO log_entries (idx, entry) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![idx as i64, record.entry]))
            .map_err(db_err)?;
        links.extend(record.subjects.iter().map(|subject| (subject.to_string(), idx as i64)));
        if let Some(caller) = &record.caller {
            tx.prepare_cached("INSERT INTO log_callers (idx, address, recorded_at) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![idx as i64, caller.address.to_string(), caller.at]))
                .map_err(db_err)?;
        }
        if let Some(k) = &record.idempotency {
            tx.prepare_cached(
                "INSERT INTO idempotency_keys (key, request, outcome, created_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![&k.key[..], &k.request[..], k.outcome, k.at]))
            .map_err(db_err)?;
        }
    }
    // The links in id order: one pass over the id index of `subjects` (the ids are random)
    // instead of a jump per record. A customer's link is keyed by their internal number (at the
    // end of its B-tree for a new customer); an id that is no customer's keeps its link by id.
    links.sort_unstable();
    links.dedup();
    for (subject, idx) in links {
        let by_number = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO log_customer_links (subject_no, idx) SELECT no, ?2 FROM subjects WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![subject, idx]))
            .map_err(db_err)?;
        if by_number == 0 {
            tx.prepare_cached("INSERT OR IGNORE INTO log_subjects (subject_id, idx) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![subject, idx]))
                .map_err(db_err)?;
        }
    }
    Ok(first)
}

fn check_size(conn: &Connection, size: u64) -> Result<(), StoreError> {
    let current = tiles::tree_size(conn)?;
    if size > current {
        return Err(StoreError::OutOfRange(format!("tree size {size} is larger than the log ({current} entries)")));
    }
    Ok(())
}

fn read_token_epoch(c: &Connection) -> Result<u64, StoreError> {
    let text: Option<String> =
        query_row_cached(c, "SELECT value FROM meta WHERE key = 'token_epoch'", [], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
    match text {
        None => Ok(0),
        Some(t) => t.parse().map_err(|_| StoreError::Corrupt("the stored token epoch is not a number".into())),
    }
}

/// The customers holding any of `indexes` (one value's blind index under each index-key
/// version) in `field`, in one statement, so a row being recomputed under the new key meanwhile
/// is seen exactly once (one snapshot).
fn holders_of_any(c: &Connection, field: &FieldName, indexes: &[BlindIndex]) -> Result<Vec<SubjectId>, StoreError> {
    let tokens = (0..indexes.len()).map(|i| format!("?{}", i + 2)).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT DISTINCT s.id FROM blind_index b JOIN subjects s ON s.no = b.subject_no
         WHERE b.field = ?1 AND b.token IN ({tokens}) ORDER BY s.id"
    );
    let mut stmt = c.prepare_cached(&sql).map_err(db_err)?;
    let name = field.as_str();
    let bytes: Vec<&[u8]> = indexes.iter().map(BlindIndex::as_bytes).collect();
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&name];
    values.extend(bytes.iter().map(|b| b as &dyn rusqlite::ToSql));
    let rows = stmt.query_map(values.as_slice(), |r| r.get::<_, String>(0)).map_err(db_err)?;
    rows.map(|r| parse_subject(&r.map_err(db_err)?)).collect()
}

/// Index entries looked up per statement (one statement, always the same size, padded with an
/// empty token that no entry has, so it stays in the statement cache).
const TOKENS_PER_QUERY: usize = 256;

/// (position in `tokens`, subject) for every entry of `field` holding one of `tokens`.
fn holders_of(c: &Connection, field: &FieldName, tokens: &[BlindIndex]) -> Result<Vec<(usize, SubjectId)>, StoreError> {
    let marks = (0..TOKENS_PER_QUERY).map(|i| format!("?{}", i + 2)).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT b.token, s.id FROM blind_index b JOIN subjects s ON s.no = b.subject_no
         WHERE b.field = ?1 AND b.token IN ({marks})"
    );
    let mut stmt = c.prepare_cached(&sql).map_err(db_err)?;
    let mut position: std::collections::HashMap<&[u8], Vec<usize>> = std::collections::HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        position.entry(t.as_bytes()).or_default().push(i);
    }
    let mut found = Vec::new();
    let name = field.as_str();
    let none: &[u8] = &[];
    for chunk in tokens.chunks(TOKENS_PER_QUERY) {
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(TOKENS_PER_QUERY + 1);
        values.push(&name);
        let bytes: Vec<&[u8]> =
            chunk.iter().map(BlindIndex::as_bytes).chain(std::iter::repeat(none)).take(TOKENS_PER_QUERY).collect();
        values.extend(bytes.iter().map(|b| b as &dyn rusqlite::ToSql));
        let mut rows = stmt.query(values.as_slice()).map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            let token: Vec<u8> = row.get(0).map_err(db_err)?;
            let subject = parse_subject(&row.get::<_, String>(1).map_err(db_err)?)?;
            for &i in position.get(token.as_slice()).map(Vec::as_slice).unwrap_or_default() {
                found.push((i, subject));
            }
        }
    }
    found.sort_unstable_by_key(|(i, s)| (*i, *s));
    found.dedup();
    Ok(found)
}

/// The data half of creating a subject (its key is already in the key store).
fn insert_subject(c: &mut Connection, id: &str, s: &NewSubject, log: &LogRecord) -> Result<(), StoreError> {
    let tx = c.savepoint().map_err(db_err)?;
    insert_subject_rows(&tx, id, s)?;
    append_log_tx(&tx, std::slice::from_ref(log))?;
    tx.commit().map_err(db_err)
}

/// A new subject's row, values and blind-index rows. The row gets the next internal number,
/// which keys the values and index rows (at the end of their tables' B-trees).
fn insert_subject_rows(tx: &Connection, id: &str, s: &NewSubject) -> Result<(), StoreError> {
    execute_cached(tx, "INSERT INTO subjects (id, created_at, updated_at) VALUES (?1, ?2, ?2)", params![id, s.now])
        .map_err(db_err)?;
    let no = tx.last_insert_rowid();
    let mut put = tx
        .prepare_cached("INSERT INTO field_values (subject_no, field, ciphertext, updated_at) VALUES (?1, ?2, ?3, ?4)")
        .map_err(db_err)?;
    for (field, value) in &s.values {
        put.execute(params![no, field.as_str(), value.as_bytes(), s.now]).map_err(db_err)?;
    }
    let mut idx = tx
        .prepare_cached("INSERT INTO blind_index (field, token, subject_no, key_version) VALUES (?1, ?2, ?3, ?4)")
        .map_err(db_err)?;
    for (field, token) in &s.index {
        idx.execute(params![field.as_str(), token.as_bytes(), no, token.key_version()]).map_err(db_err)?;
    }
    Ok(())
}

/// A subject's data key (from the key store), restriction flag and the requested values, read
/// through `c` (a connection, or a transaction other reads share) in one statement, so in one
/// snapshot of both files without a transaction of its own: the subject's head repeated on each
/// of its values (none when no field is asked for), or once without.
fn load_subject_in(c: &Connection, id: SubjectId, fields: &[FieldName]) -> Result<Option<SubjectRecord>, StoreError> {
    type Head = (Option<i64>, Option<i64>, Option<Vec<u8>>, i64, i64, Option<i64>, bool);
    let mut stmt = c
        .prepare_cached(
            "SELECT k.kek_version, k.dek_version, k.wrapped_dek, s.created_at, s.updated_at, k.destroyed_at,
                    EXISTS (SELECT 1 FROM restrictions r WHERE r.subject_id = s.id),
                    v.field, v.ciphertext, v.updated_at
             FROM subjects s LEFT JOIN keys.subject_keys k ON k.subject_id = s.id
             LEFT JOIN field_values v ON ?2 AND v.subject_no = s.no
             WHERE s.id = ?1 ORDER BY v.field",
        )
        .map_err(db_err)?;
    let mut rows = stmt.query(params![id.to_string(), !fields.is_empty()]).map_err(db_err)?;
    let mut head: Option<Head> = None;
    let mut values = Vec::with_capacity(fields.len());
    let mut value_times = Vec::with_capacity(fields.len());
    while let Some(r) = rows.next().map_err(db_err)? {
        if head.is_none() {
            head = Some((
                r.get(0).map_err(db_err)?,
                r.get(1).map_err(db_err)?,
                r.get(2).map_err(db_err)?,
                r.get(3).map_err(db_err)?,
                r.get(4).map_err(db_err)?,
                r.get(5).map_err(db_err)?,
                r.get(6).map_err(db_err)?,
            ));
        }
        let Some(field) = r.get::<_, Option<String>>(7).map_err(db_err)? else {
            continue;
        };
        if fields.iter().any(|f| f.as_str() == field) {
            values.push((FieldName::new(field), Ciphertext::from_bytes(r.get(8).map_err(db_err)?)));
            value_times.push(r.get(9).map_err(db_err)?);
        }
    }
    let Some((kek_version, dek_version, wrapped, created_at, updated_at, destroyed_at, restricted)) = head else {
        return Ok(None);
    };
    let (Some(kek_version), Some(dek_version), Some(wrapped)) = (kek_version, dek_version, wrapped) else {
        return Err(match destroyed_at {
            Some(at) => StoreError::Erased { at },
            None => StoreError::Corrupt("a customer has no data key in the key store".into()),
        });
    };
    let dek = StoredDek {
        kek_version: version(kek_version)?,
        dek_version: version(dek_version)?,
        wrapped: WrappedDek::from_bytes(wrapped),
    };
    Ok(Some(SubjectRecord { dek, values, value_times, created_at, updated_at, restricted }))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and the key store file, and applies pending
    /// migrations.
    pub async fn open(path: impl Into<PathBuf>, keys_path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let (path, keys_path) = (path.into(), keys_path.into());
        let (p, k) = (path.clone(), keys_path.clone());
        let writer = tokio::task::spawn_blocking(move || {
            create_private_file(&p, "database")?;
            create_private_file(&k, "key store")?;
            let mut conn = open_connection(&p, &k)?;
            migrate(&mut conn)?;
            keys::prepare_key_store(&mut conn)?;
            check_key_store_pairing(&mut conn, &k)?;
            keys::check_key_store(&mut conn, &p, &k)?;
            tiles::tile_untiled_entries(&mut conn)?;
            Ok::<_, StoreError>(conn)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))??;
        Ok(Self {
            path,
            keys_path,
            writer: writer::Writer::start(writer),
            readers: Arc::new(Mutex::new(Vec::new())),
            inline_readers: Default::default(),
            import_keys: Arc::new(Mutex::new(None)),
            import_order: tokio::sync::Mutex::new(()),
            import_thread: import::ImportThread::default(),
        })
    }

    /// A store for tests and benchmarks: the key store is `<path>.keys` next to the data.
    pub async fn open_with_adjacent_keys(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let mut keys = path.clone().into_os_string();
        keys.push(".keys");
        Self::open(path, PathBuf::from(keys)).await
    }

    pub fn keys_path(&self) -> &Path {
        &self.keys_path
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a write in the next group commit: `f` works in a savepoint (`Connection::savepoint`)
    /// of the batch's transaction, and its result is returned once the batch is committed.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer.batched(None, f).await
    }

    /// Runs a write alone, between batches, with transactions of its own.
    async fn write_alone<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer.alone(f).await
    }

    /// Runs a small indexed read (a few B-tree lookups, microseconds) on the caller's thread,
    /// on one of the inline connections, instead of a hop to the blocking pool and back (two
    /// thread wake-ups, which cost more than such a read). `None` when every inline connection
    /// is in use: the caller then goes through the pool.
    fn read_inline<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        for slot in &self.inline_readers {
            let Ok(mut slot) = slot.try_lock() else { continue };
            if slot.is_none() {
                match open_connection(&self.path, &self.keys_path) {
                    Ok(conn) => *slot = Some(conn),
                    Err(e) => return Some(Err(e)),
                }
            }
            return slot.as_mut().map(f);
        }
        None
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let (path, keys_path) = (self.path.clone(), self.keys_path.clone());
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => open_connection(&path, &keys_path)?,
            };
            let result = f(&mut conn);
            let mut idle = readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }
}

crate::sql::sessions::impl_session_store!(SqliteStore);
crate::sql::keys::impl_key_ring_store!(SqliteStore);
crate::sql::rights::impl_rights_store!(SqliteStore);
crate::sql::consents::impl_consent_store!(SqliteStore);
crate::sql::grants::impl_grant_store!(SqliteStore);
crate::sql::breaches::impl_breach_store!(SqliteStore);
crate::sql::outbox::impl_outbox_store!(SqliteStore);
crate::sql::messages::impl_message_store!(SqliteStore);
crate::sql::overrides::impl_override_store!(SqliteStore);
crate::sql::staff::impl_staff_store!(SqliteStore);

/// The runners of the shared logic (`crate::sql`): each runs `f` on `exec::Lite` and
/// completes it at once (every statement is synchronous).
impl SqliteStore {
    /// On a reader connection.
    async fn run_read<T: Send + 'static>(
        &self,
        f: impl for<'t> FnOnce(&'t Lite<'t>) -> LocalFuture<'t, T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.read(move |c| finish(f(&Lite(c)))).await
    }

    /// On a reader connection, in a transaction (one snapshot for several statements).
    async fn run_snapshot<T: Send + 'static>(
        &self,
        f: impl for<'t> FnOnce(&'t Lite<'t>) -> LocalFuture<'t, T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.read(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            finish(f(&Lite(&tx)))
        })
        .await
    }

    /// In the next group commit, on the writer's connection (for single statements).
    async fn run_write<T: Send + 'static>(
        &self,
        f: impl for<'t> FnOnce(&'t Lite<'t>) -> LocalFuture<'t, T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write(move |c| finish(f(&Lite(c)))).await
    }

    /// In a savepoint of the next group commit, released when `f` succeeds.
    async fn run_tx<T: Send + 'static>(
        &self,
        f: impl for<'t> FnOnce(&'t Lite<'t>) -> LocalFuture<'t, T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run_batched_keeping(f, |_| true).await
    }

    /// As [`SqliteStore::run_tx`]: every write shares a group commit here already.
    async fn run_batched<T: Send + 'static>(
        &self,
        f: impl for<'t> FnOnce(&'t Lite<'t>) -> LocalFuture<'t, T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run_batched_keeping(f, |_| true).await
    }

    /// As [`SqliteStore::run_batched`], but a result for which `keep` says no is rolled back.
    async fn run_batched_keeping<T: Send + 'static>(
        &self,
        f: impl for<'t> FnOnce(&'t Lite<'t>) -> LocalFuture<'t, T> + Send + 'static,
        keep: fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        self.write(move |c| {
            let sp = c.savepoint().map_err(db_err)?;
            let value = finish(f(&Lite(&sp)))?;
            if keep(&value) {
                sp.commit().map_err(db_err)?;
            }
            Ok(value)
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.run_read(move |c| Box::pin(core::ping(c))).await
    }

    async fn create_subject(&self, s: NewSubject, log: LogRecord) -> Result<(), StoreError> {
        let id = s.id.to_string();
        let (key_id, kek_version, dek_version, wrapped, now) =
            (id.clone(), s.dek.kek_version, s.dek.dek_version, s.dek.wrapped.as_bytes().to_vec(), s.now);
        // The key first, committed on its own: a crash before the data commits leaves an unused
        // key, never a customer without one.
        let key = Box::new(move |c: &Connection| {
            execute_cached(
                c,
                "INSERT INTO keys.subject_keys (subject_id, kek_version, dek_version, wrapped_dek, created_at, log_mark)
                 VALUES (?1, ?2, ?3, ?4, ?5, (SELECT COALESCE(MAX(idx) + 1, 0) FROM main.log_entries))",
                params![key_id, kek_version, dek_version, wrapped, now],
            )
            .map(drop)
            .map_err(db_err)
        });
        self.writer
            .batched(Some(key), move |c| {
                let data = insert_subject(c, &id, &s, &log);
                if data.is_err() {
                    let _ = execute_cached(
                        c,
                        "DELETE FROM keys.subject_keys WHERE subject_id = ?1 AND destroyed_at IS NULL",
                        params![id],
                    );
                }
                data
            })
            .await
    }

    async fn load_subject(&self, id: SubjectId, fields: &[FieldName]) -> Result<Option<SubjectRecord>, StoreError> {
        if let Some(loaded) = self.read_inline(|c| load_subject_in(c, id, fields)) {
            return loaded;
        }
        let fields = fields.to_vec();
        self.read(move |c| load_subject_in(c, id, &fields)).await
    }

    async fn load_subject_with_consents(
        &self,
        id: SubjectId,
        fields: &[FieldName],
        purpose: &PurposeId,
    ) -> Result<Option<(SubjectRecord, Vec<StoredConsent>)>, StoreError> {
        // Customer and consent rows in one read transaction (one snapshot).
        fn load(
            c: &mut Connection,
            id: SubjectId,
            fields: &[FieldName],
            purpose: PurposeId,
        ) -> Result<Option<(SubjectRecord, Vec<StoredConsent>)>, StoreError> {
            let tx = c.transaction().map_err(db_err)?;
            let Some(record) = load_subject_in(&tx, id, fields)? else {
                return Ok(None);
            };
            Ok(Some((record, finish(crate::sql::consents::consent_rows(&Lite(&tx), id, Some(purpose)))?)))
        }
        if let Some(loaded) = self.read_inline(|c| load(c, id, fields, purpose.clone())) {
            return loaded;
        }
        let (fields, purpose) = (fields.to_vec(), purpose.clone());
        self.read(move |c| load(c, id, &fields, purpose)).await
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
        if let Some(found) = self.read_inline(|c| holders_of_any(c, field, indexes)) {
            return found;
        }
        let (field, indexes) = (field.clone(), indexes.to_vec());
        self.read(move |c| holders_of_any(c, &field, &indexes)).await
    }

    async fn find_many_by_index(
        &self,
        field: &FieldName,
        tokens: &[BlindIndex],
    ) -> Result<Vec<(usize, SubjectId)>, StoreError> {
        let (field, tokens) = (field.clone(), tokens.to_vec());
        self.read(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            let found = holders_of(&tx, &field, &tokens)?;
            tx.commit().map_err(db_err)?;
            Ok(found)
        })
        .await
    }

    /// A batch's keys on the import's own connection, then its customers on the writer: the
    /// next batch's keys are written while the writer stores this one's customers.
    async fn import_subjects(&self, rows: Vec<ImportRow>) -> Result<Vec<Option<FieldName>>, StoreError> {
        let turn = self.import_order.lock().await;
        let (slot, path, keys_path) = (self.import_keys.clone(), self.path.clone(), self.keys_path.clone());
        let rows = self
            .import_thread
            .run(move || {
                let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                let conn = match &mut *slot {
                    Some(conn) => conn,
                    empty => empty.insert(open_connection(&path, &keys_path)?),
                };
                import::store_keys(conn, &rows)?;
                Ok::<_, StoreError>(rows)
            })
            .await??;
        let stored = self.writer.queue_alone(move |c| import::store_customers(c, rows));
        drop(turn);
        // While the writer stores them, the data store's WAL is copied into its file up to the
        // batches committed so far, off the writer's thread.
        let slot = self.import_keys.clone();
        let copied = self.import_thread.run(move || {
            if let Some(conn) = &*slot.lock().unwrap_or_else(|p| p.into_inner()) {
                import::copy_data_wal(conn);
            }
        });
        let (stored, _) = tokio::join!(stored.outcome(), copied);
        stored
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
        let types = types.to_vec();
        self.read(move |c| {
            if types.is_empty() {
                return Ok(Vec::new());
            }
            let placeholders = (0..types.len()).map(|i| format!("?{}", i + 4)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT seq, id, event_type, recorded_at, payload FROM events
                 WHERE subject_id = ?1 AND seq > ?2 AND event_type IN ({placeholders})
                 ORDER BY seq LIMIT ?3"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(db_err)?;
            let mut args: Vec<Box<dyn rusqlite::ToSql>> =
                vec![Box::new(subject.to_string()), Box::new(after.unwrap_or(0)), Box::new(i64::from(limit))];
            for t in &types {
                args.push(Box::new(t.as_str().to_string()));
            }
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                    ))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, id, event_type, recorded_at, payload) = row.map_err(db_err)?;
                let id =
                    EventId::parse(&id).ok_or_else(|| StoreError::Corrupt("a stored event id is not a UUID".into()))?;
                out.push(StoredEvent {
                    seq,
                    id,
                    event_type: FieldName::new(event_type),
                    recorded_at,
                    payload: Ciphertext::from_bytes(payload),
                });
            }
            Ok(out)
        })
        .await
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
        // One indexed read of a tiny table: a few microseconds, inline.
        if let Some(epoch) = self.read_inline(|c| read_token_epoch(c)) {
            return epoch;
        }
        self.read(|c| read_token_epoch(c)).await
    }

    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StoredToken>, StoreError> {
        let hash = *hash;
        self.run_read(move |c| Box::pin(core::token_by_hash(c, hash))).await
    }

    async fn append_log(&self, records: Vec<LogRecord>) -> Result<u64, StoreError> {
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let first = append_log_tx(&tx, &records)?;
            tx.commit().map_err(db_err)?;
            Ok(first)
        })
        .await
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
        self.read(|c| {
            let tx = c.transaction().map_err(db_err)?;
            let size = tiles::tree_size(&tx)?;
            Ok((size, tiles::root(&tx, size)?))
        })
        .await
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
        self.read(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            check_size(&tx, size)?;
            // Leaf and path from one read of the tiles they lie in.
            tiles::with_tiles(&tx, |src| Ok((src.node(0, index)?, merkle::inclusion_proof(src, index, size)?)))
        })
        .await
    }

    async fn log_consistency_proof(&self, first: u64, second: u64) -> Result<(Hash, Hash, Vec<Hash>), StoreError> {
        self.read(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            check_size(&tx, second)?;
            // Both roots and the proof from one read of the tiles they need.
            tiles::with_tiles(&tx, |src| {
                Ok((
                    merkle::root(src, first)?,
                    merkle::root(src, second)?,
                    merkle::consistency_proof(src, first, second)?,
                ))
            })
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

/// A database as an earlier Candor left it: the key store and every migration before `version`
/// applied, nothing else (for tests of the migrations after it).
#[cfg(test)]
pub(super) fn database_before(data: &Path, keys: &Path, version: i64) -> Connection {
    let conn = open_connection(data, keys).unwrap();
    conn.execute_batch(&KEY_STORE_SCHEMA.replace("CREATE TABLE IF NOT EXISTS ", "CREATE TABLE IF NOT EXISTS keys."))
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT",
    )
    .unwrap();
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v < version) {
        conn.execute_batch(sql).unwrap();
        conn.execute("INSERT INTO schema_migrations VALUES (?1, 0)", [v]).unwrap();
    }
    conn
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rights::RightsStore;

    #[tokio::test]
    async fn the_sqlite_store_passes_the_store_test_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("candor.db"), dir.path().join("keystore.db")).await.unwrap();
        crate::testsuite::run_all(&store).await;
    }

    #[test]
    fn a_wal_grown_by_a_large_write_is_cut_back_once_a_checkpoint_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let (data, keys) = (dir.path().join("candor.db"), dir.path().join("keystore.db"));
        let conn = open_connection(&data, &keys).unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch(
            "CREATE TABLE scratch (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000)
             INSERT INTO scratch SELECT randomblob(4000) FROM n;",
        )
        .unwrap();
        let wal = || std::fs::metadata(format!("{}-wal", data.display())).unwrap().len() as i64;
        assert!(wal() > 2 * WAL_KEPT_BYTES, "the write grew the WAL to {} bytes", wal());
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)).unwrap();
        conn.execute("INSERT INTO scratch VALUES (x'00')", []).unwrap();
        assert!(wal() <= WAL_KEPT_BYTES, "the WAL is cut back to {WAL_KEPT_BYTES} bytes, not {}", wal());
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// A store in `dir` holding one customer whose wrapped data key is `wrapped`.
    async fn store_with_one_key(dir: &Path, wrapped: &[u8]) -> (SqliteStore, PathBuf, PathBuf, SubjectId) {
        let (data, keys) = (dir.join("candor.db"), dir.join("keystore.db"));
        let store = SqliteStore::open(&data, &keys).await.unwrap();
        let id = SubjectId::random();
        let dek = StoredDek { kek_version: 1, dek_version: 1, wrapped: WrappedDek::from_bytes(wrapped.to_vec()) };
        store.create_subject(NewSubject { id, dek, values: vec![], index: vec![], now: 1 }, log_of(id)).await.unwrap();
        (store, data, keys, id)
    }

    fn log_of(id: SubjectId) -> LogRecord {
        LogRecord { entry: b"entry".to_vec(), subjects: vec![id], ..Default::default() }
    }

    /// The bytes of the files at `paths` with each of `suffixes` ("" for the file itself).
    fn bytes_of(paths: &[&Path], suffixes: &[&str]) -> Vec<u8> {
        let mut all = Vec::new();
        for path in paths {
            for s in suffixes {
                all.extend(std::fs::read(format!("{}{s}", path.display())).unwrap_or_default());
            }
        }
        all
    }

    #[tokio::test]
    async fn keys_live_in_their_own_file_and_erasure_overwrites_them_there() {
        let dir = tempfile::tempdir().unwrap();
        let wrapped = vec![0xA5; 48];
        let (store, data, keys, id) = store_with_one_key(dir.path(), &wrapped).await;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let files = || bytes_of(&[&data, &keys], &["", "-wal"]);
        assert!(!contains(&bytes_of(&[&data], &[""]), &wrapped));
        assert!(contains(&files(), &wrapped), "the key is in the key store");
        let erased = store.erase_subject(id, 2, "{}".into(), log_of(id)).await.unwrap();
        assert_eq!(erased, crate::rights::Erasure::Erased);
        assert!(!contains(&files(), &wrapped), "the destroyed key is gone from both files and their WALs");
        assert!(matches!(store.load_subject(id, &[]).await, Ok(None)));
    }

    #[tokio::test]
    async fn an_erasure_that_cannot_clear_the_key_from_the_wal_fails_and_its_retry_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let wrapped = vec![0x5A; 48];
        let (store, data, keys, id) = store_with_one_key(dir.path(), &wrapped).await;
        // A reader stays on the key store's snapshot from before the erasure, past the busy
        // timeout: the WAL cannot be emptied while it does.
        let reader = open_connection(&data, &keys).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        reader.query_row("SELECT COUNT(*) FROM keys.subject_keys", [], |r| r.get::<_, i64>(0)).unwrap();
        let err = store.erase_subject(id, 2, "{}".into(), log_of(id)).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        reader.execute_batch("COMMIT").unwrap();
        drop(reader);
        let erased = store.erase_subject(id, 3, "{}".into(), log_of(id)).await.unwrap();
        assert_eq!(erased, crate::rights::Erasure::Erased);
        let files = bytes_of(&[&data, &keys], &["", "-wal"]);
        assert!(!contains(&files, &wrapped), "the destroyed key is gone from both files and their WALs");
    }

    #[tokio::test]
    async fn a_missing_or_foreign_key_store_is_refused_rather_than_making_everyone_erased() {
        let dir = tempfile::tempdir().unwrap();
        let (data, keys) = (dir.path().join("candor.db"), dir.path().join("keystore.db"));
        let store = SqliteStore::open(&data, &keys).await.unwrap();
        let id = SubjectId::random();
        let dek = StoredDek { kek_version: 1, dek_version: 1, wrapped: WrappedDek::from_bytes(vec![1; 48]) };
        let log = LogRecord { entry: b"create".to_vec(), subjects: vec![id], ..Default::default() };
        store.create_subject(NewSubject { id, dek, values: vec![], index: vec![], now: 1 }, log).await.unwrap();
        drop(store);
        let err = SqliteStore::open(&data, dir.path().join("other.db")).await.unwrap_err().to_string();
        assert!(err.contains("is new or empty") && err.contains("restore it from its backup"), "{err}");
        let other = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(other.path().join("x.db"), other.path().join("k.db")).await.unwrap());
        let err = SqliteStore::open(&data, other.path().join("k.db")).await.unwrap_err().to_string();
        assert!(err.contains("belongs to another installation"), "{err}");
        assert!(SqliteStore::open(&data, &keys).await.is_ok());
    }

    #[tokio::test]
    async fn a_database_from_before_the_key_store_keeps_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("candor.db");
        // Schema version 3, as the previous release left it, with one customer.
        {
            let conn = Connection::open(&data).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT;",
            )
            .unwrap();
            for (v, sql) in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
                execute_cached(&conn, "INSERT INTO schema_migrations VALUES (?1, 0)", params![v]).unwrap();
            }
            execute_cached(
                &conn,
                "INSERT INTO subjects (id, kek_version, dek_version, wrapped_dek, created_at, updated_at)
                 VALUES ('7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70', 1, 1, x'0102030405', 5, 5)",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&data, dir.path().join("keystore.db")).await.unwrap();
        let id = SubjectId::parse("7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70").unwrap();
        let record = store.load_subject(id, &[]).await.unwrap().unwrap();
        assert_eq!(record.dek.wrapped.as_bytes(), [1, 2, 3, 4, 5]);
        assert_eq!(record.created_at, 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits_and_a_failing_one_leaves_the_others_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open_with_adjacent_keys(dir.path().join("candor.db")).await.unwrap());
        let id = SubjectId::random();
        let dek = || StoredDek { kek_version: 1, dek_version: 1, wrapped: WrappedDek::from_bytes(vec![1; 48]) };
        let subject = move |id| NewSubject { id, dek: dek(), values: vec![], index: vec![], now: 1 };
        let record = |what: String| LogRecord { entry: what.into_bytes(), ..Default::default() };
        store.create_subject(subject(id), record("create".into())).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                if i == 32 {
                    // The same id again: a conflict, in the middle of the others.
                    store.create_subject(subject(id), record("duplicate".into())).await.map(|_| 0)
                } else {
                    store.append_log(vec![record(format!("entry-{i}"))]).await
                }
            }));
        }
        let mut failed = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 1);
        let (size, _) = store.log_head().await.unwrap();
        assert_eq!(size, 64, "the create and the 63 appends, not the duplicate");
        let entries = store.log_entries(0, size).await.unwrap();
        assert!(!entries.iter().any(|(_, e)| e == b"duplicate"));
        // The duplicate's failure did not remove the first subject's key.
        assert!(store.load_subject(id, &[]).await.unwrap().is_some());
    }

    /// A database from before internal numbers (schema 19: values and index rows keyed by the
    /// customer's id) keeps every value, index row and event through the rebuild, with numbers
    /// in order of creation, and works as before afterwards.
    #[tokio::test]
    async fn values_and_index_rows_keyed_by_id_are_moved_to_internal_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let (data, keys) = (dir.path().join("candor.db"), dir.path().join("keys.db"));
        let ids: Vec<SubjectId> = (0..4).map(|_| SubjectId::random()).collect();
        let field = |n: &str| FieldName::new(n);
        {
            let mut conn = database_before(&data, &keys, SUBJECT_NUMBERS);
            let tx = conn.transaction().unwrap();
            for (n, id) in ids.iter().enumerate() {
                let (sid, n) = (id.to_string(), n as i64);
                tx.execute("INSERT INTO subjects (id, created_at, updated_at) VALUES (?1, ?2, ?2)", params![sid, n])
                    .unwrap();
                tx.execute(
                    "INSERT INTO keys.subject_keys (subject_id, kek_version, dek_version, wrapped_dek, created_at)
                     VALUES (?1, 1, 1, x'0102', 0)",
                    params![sid],
                )
                .unwrap();
                for (f, byte) in [("email", 1u8), ("full_name", 2)] {
                    tx.execute(
                        "INSERT INTO field_values (subject_id, field, ciphertext, updated_at) VALUES (?1, ?2, ?3, ?4)",
                        params![sid, f, vec![byte, n as u8], n],
                    )
                    .unwrap();
                }
                tx.execute(
                    "INSERT INTO blind_index (field, token, subject_id, key_version) VALUES ('email', ?1, ?2, 1)",
                    params![vec![n as u8; 32], sid],
                )
                .unwrap();
                tx.execute(
                    "INSERT INTO events (id, subject_id, event_type, recorded_at, payload) VALUES (?1, ?2, 'order', 1, x'00')",
                    params![format!("event-{n}"), sid],
                )
                .unwrap();
            }
            // A customer erased before the upgrade leaves a gap in the row numbers.
            tx.execute("DELETE FROM subjects WHERE id = ?1", params![ids[1].to_string()]).unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(&data, &keys).await.unwrap();
        for (n, id) in ids.iter().enumerate().filter(|(n, _)| *n != 1) {
            let record = store.load_subject(*id, &[field("email"), field("full_name")]).await.unwrap().unwrap();
            let values: Vec<(String, Vec<u8>)> =
                record.values.iter().map(|(f, c)| (f.as_str().to_string(), c.as_bytes().to_vec())).collect();
            assert_eq!(values, [("email".into(), vec![1, n as u8]), ("full_name".into(), vec![2, n as u8])]);
            let token = BlindIndex::new(1, vec![n as u8; 32]);
            assert_eq!(store.find_by_index(&field("email"), &[token]).await.unwrap(), vec![*id]);
        }
        assert!(store.load_subject(ids[1], &[]).await.unwrap().is_none());
        assert!(store.find_by_index(&field("email"), &[BlindIndex::new(1, vec![1; 32])]).await.unwrap().is_empty());
        let conn = open_connection(&data, &keys).unwrap();
        let numbers: Vec<(i64, String)> = conn
            .prepare("SELECT no, id FROM subjects ORDER BY no")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let expected: Vec<(i64, String)> =
            [(1, 0), (3, 2), (4, 3)].iter().map(|&(no, n)| (no, ids[n].to_string())).collect();
        assert_eq!(numbers, expected, "the old row numbers, in order of creation");
        let dangling: i64 = conn.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
        assert_eq!(dangling, 0);
        drop(conn);

        // Afterwards: a correction, a new customer after the last number, an erasure that takes
        // values, index rows and events along.
        let set = FieldChange::Set {
            field: field("email"),
            value: Ciphertext::from_bytes(vec![9, 9]),
            index: Some(BlindIndex::new(1, vec![99; 32])),
        };
        assert!(store.update_subject(ids[0], vec![set], 10, LogRecord::default()).await.unwrap());
        assert_eq!(store.find_by_index(&field("email"), &[BlindIndex::new(1, vec![99; 32])]).await.unwrap(), [ids[0]]);
        assert!(store.find_by_index(&field("email"), &[BlindIndex::new(1, vec![0; 32])]).await.unwrap().is_empty());
        store.erase_subject(ids[2], 11, "{}".into(), LogRecord::default()).await.unwrap();
        let conn = open_connection(&data, &keys).unwrap();
        let left = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(left("SELECT COUNT(*) FROM field_values WHERE subject_no = 3"), 0);
        assert_eq!(left("SELECT COUNT(*) FROM blind_index WHERE subject_no = 3"), 0);
        assert_eq!(left("SELECT COUNT(*) FROM events"), 2);
        assert_eq!(left("SELECT COUNT(*) FROM field_values"), 4);
    }

    #[tokio::test]
    async fn log_links_of_customers_are_keyed_by_number_and_outlive_an_erasure_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let (data, keys) = (dir.path().join("candor.db"), dir.path().join("keys.db"));
        let (kept, erased, stranger) = (SubjectId::random(), SubjectId::random(), SubjectId::random());
        {
            // Before the migration: every link by id (entries 0 and 1 name `kept`, 1 and 2
            // `erased`, 3 a `stranger` who was never a customer).
            let mut conn = database_before(&data, &keys, LOG_LINKS_BY_NUMBER);
            let tx = conn.transaction().unwrap();
            for (n, id) in [kept, erased].iter().enumerate() {
                tx.execute(
                    "INSERT INTO subjects (id, created_at, updated_at) VALUES (?1, ?2, ?2)",
                    params![id.to_string(), n as i64],
                )
                .unwrap();
                tx.execute(
                    "INSERT INTO keys.subject_keys (subject_id, kek_version, dek_version, wrapped_dek, created_at)
                     VALUES (?1, 1, 1, x'0102', 0)",
                    params![id.to_string()],
                )
                .unwrap();
            }
            for (id, idx) in [(kept, 0), (kept, 1), (erased, 1), (erased, 2), (stranger, 3)] {
                tx.execute("INSERT INTO log_entries (idx, entry) VALUES (?1, x'00') ON CONFLICT DO NOTHING", [idx])
                    .unwrap();
                tx.execute("INSERT INTO log_subjects (subject_id, idx) VALUES (?1, ?2)", params![id.to_string(), idx])
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(&data, &keys).await.unwrap();
        let count = |sql: &str| {
            let conn = open_connection(&data, &keys).unwrap();
            conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap()
        };
        assert_eq!(count("SELECT COUNT(*) FROM log_customer_links"), 4, "the customers' links, by number");
        assert_eq!(count("SELECT COUNT(*) FROM log_subjects"), 1, "only the stranger's link stays by id");
        assert_eq!(store.subject_log_indices(kept).await.unwrap(), [0, 1]);
        assert_eq!(store.subject_log_indices(erased).await.unwrap(), [1, 2]);
        assert_eq!(store.subject_log_indices(stranger).await.unwrap(), [3]);

        // New entries: one naming a customer (by number), one naming the stranger (by id).
        let first = store.append_log(vec![log_of(erased), log_of(stranger)]).await.unwrap();
        assert_eq!(first, 4);
        assert_eq!(count("SELECT COUNT(*) FROM log_customer_links"), 5);
        assert_eq!(count("SELECT COUNT(*) FROM log_subjects"), 2);
        assert_eq!(store.subject_log_indices(erased).await.unwrap(), [1, 2, 4]);
        let recent: Vec<u64> =
            store.recent_subject_log_entries(erased, 2).await.unwrap().into_iter().map(|(i, _)| i).collect();
        assert_eq!(recent, [2, 4], "the newest two, oldest first");

        // The erased customer had the highest number: the next customer gets it again, yet
        // their access log starts empty and the erased customer's is kept, by id.
        store.erase_subject(erased, 10, "{}".into(), LogRecord::default()).await.unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM log_customer_links"), 2);
        assert_eq!(store.subject_log_indices(erased).await.unwrap(), [1, 2, 4]);
        let recent: Vec<u64> =
            store.recent_subject_log_entries(erased, 10).await.unwrap().into_iter().map(|(i, _)| i).collect();
        assert_eq!(recent, [1, 2, 4]);
        let newcomer = SubjectId::random();
        let dek = StoredDek { kek_version: 1, dek_version: 1, wrapped: WrappedDek::from_bytes(vec![7; 8]) };
        store
            .create_subject(NewSubject { id: newcomer, dek, values: vec![], index: vec![], now: 11 }, log_of(newcomer))
            .await
            .unwrap();
        assert_eq!(count(&format!("SELECT no FROM subjects WHERE id = '{newcomer}'")), 2, "the number is given again");
        let size = store.log_head().await.unwrap().0;
        assert_eq!(store.subject_log_indices(newcomer).await.unwrap(), [size - 1]);
        assert_eq!(store.subject_log_indices(erased).await.unwrap(), [1, 2, 4]);
        assert_eq!(store.subject_log_indices(kept).await.unwrap(), [0, 1]);
        assert_eq!(count("SELECT COUNT(*) FROM pragma_foreign_key_check"), 0);
    }

    #[tokio::test]
    async fn migrations_are_idempotent_and_newer_databases_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("candor.db");
        let keys = dir.path().join("keystore.db");
        drop(SqliteStore::open(&path, &keys).await.unwrap());
        drop(SqliteStore::open(&path, &keys).await.unwrap());
        let conn = Connection::open(&path).unwrap();
        execute_cached(&conn, "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)", []).unwrap();
        drop(conn);
        let err = SqliteStore::open(&path, &keys).await.unwrap_err().to_string();
        assert!(err.contains("written by a newer Candor"), "{err}");
    }
}
