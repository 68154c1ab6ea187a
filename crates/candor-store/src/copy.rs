//! Copying an installation's data from SQLite to PostgreSQL, as stored: ciphertexts, wrapped
//! keys, blind indexes and the log are moved byte for byte (nothing is decrypted). The
//! destination must be empty; the copy is one transaction (all or nothing) and ends by
//! comparing row counts and the log's root hash on both sides.

use rusqlite::types::ValueRef;
use tokio_postgres::types::ToSql;

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::{Store, StoreError};

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int8,
    Int4,
    Bytes,
    OptInt8,
    OptInt4,
    OptText,
    OptBytes,
}

/// Tables in dependency order, with their columns. Privacy-center sign-in links and sessions (and
/// staff sessions) are not copied: they are short-lived credentials, and customers simply sign in again. `keys.` tables are in the key store (an
/// attached file on SQLite, the `candor_keys` schema on PostgreSQL).
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "keys.subject_keys",
        &[
            ("subject_id", Kind::Text),
            ("kek_version", Kind::OptInt4),
            ("dek_version", Kind::OptInt4),
            ("wrapped_dek", Kind::OptBytes),
            ("created_at", Kind::Int8),
            ("destroyed_at", Kind::OptInt8),
        ],
    ),
    ("subjects", &[("id", Kind::Text), ("created_at", Kind::Int8), ("updated_at", Kind::Int8)]),
    (
        "staff_people",
        &[
            ("pseudonym", Kind::Text),
            ("issuer", Kind::Text),
            ("subject", Kind::Text),
            ("first_seen_at", Kind::Int8),
            ("last_seen_at", Kind::Int8),
            ("last_role", Kind::Text),
        ],
    ),
    ("legal_holds", &[("subject_id", Kind::Text), ("placed_at", Kind::Int8), ("note", Kind::Bytes)]),
    ("restrictions", &[("subject_id", Kind::Text), ("since", Kind::Int8), ("note", Kind::OptBytes)]),
    ("erasures", &[("subject_id", Kind::Text), ("erased_at", Kind::Int8), ("certificate", Kind::Text)]),
    ("notice_versions", &[("version", Kind::Text), ("published_at", Kind::Int8), ("notice", Kind::Text)]),
    (
        "break_glass",
        &[
            ("id", Kind::Text),
            ("subject_id", Kind::Text),
            ("token_id", Kind::Text),
            ("role", Kind::Text),
            ("purpose", Kind::Text),
            ("reason", Kind::Bytes),
            ("opened_at", Kind::Int8),
            ("expires_at", Kind::Int8),
        ],
    ),
    (
        "messages",
        &[
            ("id", Kind::Text),
            ("subject_id", Kind::Text),
            ("purpose", Kind::Text),
            ("channel", Kind::Text),
            ("subject_line", Kind::Bytes),
            ("body_sha256", Kind::Bytes),
            ("code_hash", Kind::Bytes),
            ("sent_at", Kind::Int8),
        ],
    ),
    ("erased_messages", &[("code_hash", Kind::Bytes), ("channel", Kind::Text), ("sent_at", Kind::Int8)]),
    ("counters", &[("name", Kind::Text), ("value", Kind::Int8)]),
    (
        "grants",
        &[
            ("id", Kind::Text),
            ("recipient", Kind::Text),
            ("purpose", Kind::Text),
            ("fields", Kind::Text),
            ("credential_hash", Kind::Bytes),
            ("created_by", Kind::Text),
            ("created_at", Kind::Int8),
            ("expires_at", Kind::Int8),
            ("max_reads", Kind::OptInt8),
            ("reads", Kind::Int8),
            ("revoked_at", Kind::OptInt8),
        ],
    ),
    ("grant_subjects", &[("grant_id", Kind::Text), ("subject_id", Kind::Text)]),
    (
        "outbox",
        &[
            ("id", Kind::Text),
            ("recipient", Kind::Text),
            ("subject_id", Kind::Text),
            ("kind", Kind::Text),
            ("fields", Kind::Text),
            ("created_at", Kind::Int8),
            ("attempts", Kind::Int4),
            ("next_attempt_at", Kind::Int8),
            ("delivered_at", Kind::OptInt8),
            ("confirmed_at", Kind::OptInt8),
            ("last_error", Kind::OptText),
        ],
    ),
    (
        "breaches",
        &[
            ("id", Kind::Text),
            ("detected_at", Kind::Int8),
            ("recorded_at", Kind::Int8),
            ("nature", Kind::Text),
            ("categories", Kind::Text),
            ("customers", Kind::Int8),
            ("consequences", Kind::Text),
            ("measures", Kind::Text),
            ("authority_notified_at", Kind::OptInt8),
            ("closed_at", Kind::OptInt8),
        ],
    ),
    ("breach_subjects", &[("breach_id", Kind::Text), ("subject_id", Kind::Text)]),
    (
        "field_values",
        &[("subject_id", Kind::Text), ("field", Kind::Text), ("ciphertext", Kind::Bytes), ("updated_at", Kind::Int8)],
    ),
    (
        "blind_index",
        &[("field", Kind::Text), ("token", Kind::Bytes), ("subject_id", Kind::Text), ("key_version", Kind::Int4)],
    ),
    (
        "events",
        &[
            ("seq", Kind::Int8),
            ("id", Kind::Text),
            ("subject_id", Kind::Text),
            ("event_type", Kind::Text),
            ("recorded_at", Kind::Int8),
            ("payload", Kind::Bytes),
        ],
    ),
    (
        "tokens",
        &[
            ("id", Kind::Text),
            ("hash", Kind::Bytes),
            ("role", Kind::Text),
            ("description", Kind::Text),
            ("created_at", Kind::Int8),
            ("expires_at", Kind::OptInt8),
            ("revoked_at", Kind::OptInt8),
        ],
    ),
    (
        "consent_receipts",
        &[
            ("id", Kind::Text),
            ("subject_id", Kind::Text),
            ("recorded_at", Kind::Int8),
            ("body", Kind::Text),
            ("note", Kind::OptBytes),
        ],
    ),
    (
        "consents",
        &[
            ("seq", Kind::Int8),
            ("subject_id", Kind::Text),
            ("purpose", Kind::Text),
            ("channel", Kind::Text),
            ("action", Kind::Text),
            ("notice_version", Kind::Text),
            ("method", Kind::Text),
            ("actor_kind", Kind::Text),
            ("actor_token", Kind::OptText),
            ("given_at", Kind::Int8),
            ("recorded_at", Kind::Int8),
            ("receipt_id", Kind::Text),
        ],
    ),
    (
        "consent_notices",
        &[("version", Kind::Text), ("purpose", Kind::Text), ("text", Kind::Text), ("first_seen", Kind::Int8)],
    ),
    ("log_entries", &[("idx", Kind::Int8), ("entry", Kind::Bytes)]),
    ("log_callers", &[("idx", Kind::Int8), ("address", Kind::Text), ("recorded_at", Kind::Int8)]),
    ("log_tiles", &[("level", Kind::Int4), ("idx", Kind::Int8), ("hashes", Kind::Bytes)]),
    ("log_subjects", &[("subject_id", Kind::Text), ("idx", Kind::Int8)]),
    ("log_checkpoints", &[("size", Kind::Int8), ("note", Kind::Text), ("created_at", Kind::Int8)]),
    (
        "requests",
        &[
            ("id", Kind::Text),
            ("subject_id", Kind::Text),
            ("kind", Kind::Text),
            ("status", Kind::Text),
            ("received_at", Kind::Int8),
            ("due_at", Kind::Int8),
            ("created_by", Kind::Text),
            ("closed_at", Kind::OptInt8),
            ("closed_by", Kind::OptText),
            ("assignee", Kind::OptText),
            ("waiting_since", Kind::OptInt8),
            ("paused_ms", Kind::Int8),
            ("reason", Kind::OptText),
        ],
    ),
    ("meta", &[("key", Kind::Text), ("value", Kind::Text)]),
];

/// Tables of the SQLite schema that are deliberately not copied, and why.
/// (Read by the test that every table is accounted for.)
#[cfg_attr(not(test), allow(dead_code))]
const NOT_COPIED: &[(&str, &str)] = &[
    ("privacy_links", "one-time sign-in links: short-lived credentials"),
    ("privacy_sessions", "customers' sessions: they sign in again"),
    ("staff_sessions", "staff sessions: staff sign in again"),
    ("idempotency_keys", "remembered answers to retried writes: kept for a day at most"),
    ("write_probe", "the readiness check's scratch row"),
    ("keys.key_store_meta", "the SQLite key store's pairing marks with its data file: PostgreSQL pairs its own"),
    ("pending_erasures", "erasures under way: the copy refuses to start while there are any"),
    ("log_customer_links", "copied as part of log_subjects, by the customer's id (SQLite keeps them by number)"),
];

const BATCH: usize = 500;

fn sql_err(e: rusqlite::Error) -> StoreError {
    StoreError::Internal(e.to_string())
}

fn value(kind: Kind, v: ValueRef<'_>) -> Result<Box<dyn ToSql + Sync + Send>, StoreError> {
    let bad = || StoreError::Corrupt("a source value has an unexpected type".into());
    Ok(match (kind, v) {
        (Kind::Text, ValueRef::Text(t)) => Box::new(String::from_utf8(t.to_vec()).map_err(|_| bad())?),
        (Kind::Int8, ValueRef::Integer(i)) => Box::new(i),
        (Kind::Int4, ValueRef::Integer(i)) => Box::new(i32::try_from(i).map_err(|_| bad())?),
        (Kind::Bytes, ValueRef::Blob(b)) => Box::new(b.to_vec()),
        (Kind::OptInt8, ValueRef::Integer(i)) => Box::new(Some(i)),
        (Kind::OptInt8, ValueRef::Null) => Box::new(None::<i64>),
        (Kind::OptInt4, ValueRef::Integer(i)) => Box::new(Some(i32::try_from(i).map_err(|_| bad())?)),
        (Kind::OptInt4, ValueRef::Null) => Box::new(None::<i32>),
        (Kind::OptText, ValueRef::Text(t)) => Box::new(Some(String::from_utf8(t.to_vec()).map_err(|_| bad())?)),
        (Kind::OptText, ValueRef::Null) => Box::new(None::<String>),
        (Kind::OptBytes, ValueRef::Blob(b)) => Box::new(Some(b.to_vec())),
        (Kind::OptBytes, ValueRef::Null) => Box::new(None::<Vec<u8>>),
        _ => return Err(bad()),
    })
}

/// Where a table's rows are read on SQLite: the table, except for the values, the blind index
/// and the log's customer links, which SQLite keys by the customer's internal number
/// (PostgreSQL by their id).
fn source_rows(table: &str) -> &str {
    match table {
        "field_values" => crate::sql::SQLITE_VALUES_BY_ID,
        "blind_index" => crate::sql::SQLITE_INDEX_BY_ID,
        "log_subjects" => crate::sql::SQLITE_LOG_LINKS_BY_ID,
        other => other,
    }
}

/// The PostgreSQL name of a table: the key store is the `candor_keys` schema.
fn destination_table(table: &str) -> String {
    match table.strip_prefix("keys.") {
        Some(t) => format!("candor_keys.{t}"),
        None => table.to_string(),
    }
}

/// What was copied: rows per table.
pub type CopyReport = Vec<(&'static str, u64)>;

/// Copies everything from the SQLite file at `from` into the (empty) PostgreSQL database at `to`.
/// `progress(table, copied, total)` is called as rows go in.
pub async fn sqlite_to_postgres(
    from: &std::path::Path,
    from_keys: &std::path::Path,
    to: &str,
    progress: impl Fn(&str, u64, u64),
) -> Result<CopyReport, StoreError> {
    let source = SqliteStore::open(from, from_keys).await?;
    if !crate::RightsStore::pending_erasures(&source).await?.is_empty() {
        return Err(StoreError::Conflict(
            "erasures are under way in the source; start Candor on it once (it finishes them) and copy again".into(),
        ));
    }
    let destination = PgStore::connect(to).await?;
    if destination.log_head().await?.0 != 0 || destination.count("subjects").await? != 0 {
        return Err(StoreError::Conflict(
            "the destination database is not empty; copy only into a new database".into(),
        ));
    }
    let conn =
        rusqlite::Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql_err)?;
    conn.execute("ATTACH DATABASE ?1 AS keys", [from_keys.to_string_lossy()]).map_err(sql_err)?;
    let mut client = destination.raw_client().await?;
    let tx = client.transaction().await.map_err(crate::postgres::pg_err)?;
    let mut report = Vec::new();
    for (table, columns) in TABLES {
        let target = destination_table(table);
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        let source = source_rows(table);
        let total: i64 =
            conn.query_row(&format!("SELECT COUNT(*) FROM {source}"), [], |r| r.get(0)).map_err(sql_err)?;
        let mut stmt = conn.prepare(&format!("SELECT {} FROM {source}", names.join(", "))).map_err(sql_err)?;
        let mut rows = stmt.query([]).map_err(sql_err)?;
        let mut batch: Vec<Vec<Box<dyn ToSql + Sync + Send>>> = Vec::with_capacity(BATCH);
        let mut copied = 0u64;
        loop {
            let row = rows.next().map_err(sql_err)?;
            if let Some(row) = row {
                let mut values = Vec::with_capacity(columns.len());
                for (i, (_, kind)) in columns.iter().enumerate() {
                    values.push(value(*kind, row.get_ref(i).map_err(sql_err)?)?);
                }
                batch.push(values);
            }
            if batch.len() == BATCH || (row.is_none() && !batch.is_empty()) {
                let mut placeholders = Vec::with_capacity(batch.len());
                let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(batch.len() * columns.len());
                for (r, values) in batch.iter().enumerate() {
                    let cols: Vec<String> =
                        (0..columns.len()).map(|c| format!("${}", r * columns.len() + c + 1)).collect();
                    placeholders.push(format!("({})", cols.join(", ")));
                    params.extend(values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)));
                }
                let overriding = if matches!(*table, "events" | "consents") { " OVERRIDING SYSTEM VALUE" } else { "" };
                let sql = format!(
                    "INSERT INTO {target} ({}){overriding} VALUES {}",
                    names.join(", "),
                    placeholders.join(", ")
                );
                tx.execute(sql.as_str(), &params).await.map_err(crate::postgres::pg_err)?;
                copied += batch.len() as u64;
                batch.clear();
                progress(table, copied, total as u64);
            }
            if row.is_none() {
                break;
            }
        }
        report.push((*table, copied));
    }
    tx.execute("UPDATE log_head SET size = (SELECT COUNT(*) FROM log_entries)", &[])
        .await
        .map_err(crate::postgres::pg_err)?;
    for table in ["events", "consents"] {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'seq'), GREATEST((SELECT MAX(seq) FROM {table}), 1))"
            ),
            &[],
        )
        .await
        .map_err(crate::postgres::pg_err)?;
    }
    tx.commit().await.map_err(crate::postgres::pg_err)?;

    // Verify: the same rows on both sides, and the same log.
    for (table, copied) in &report {
        let there = destination.count(&destination_table(table)).await?;
        if there != *copied {
            return Err(StoreError::Corrupt(format!(
                "{table}: copied {copied} rows but the destination holds {there}"
            )));
        }
    }
    if source.log_head().await? != destination.log_head().await? {
        return Err(StoreError::Corrupt("the log's root hash differs after the copy".into()));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table of the SQLite schema is copied or named in `NOT_COPIED` with a reason, so a
    /// table added later cannot be lost by a copy without anyone deciding so.
    #[tokio::test]
    async fn every_table_is_copied_or_left_out_on_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let (db, keys) = (dir.path().join("candor.db"), dir.path().join("keys.db"));
        drop(SqliteStore::open(&db, &keys).await.unwrap());
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute("ATTACH DATABASE ?1 AS keys", [keys.to_string_lossy()]).unwrap();
        let mut tables = Vec::new();
        for schema in ["main", "keys"] {
            let sql =
                format!("SELECT name FROM {schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'");
            let mut stmt = conn.prepare(&sql).unwrap();
            let names = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
            for name in names {
                let name = name.unwrap();
                tables.push(if schema == "keys" { format!("keys.{name}") } else { name });
            }
        }
        let known = |t: &str| {
            t == "schema_migrations"
                || TABLES.iter().any(|(name, _)| *name == t)
                || NOT_COPIED.iter().any(|(name, _)| *name == t)
        };
        let unknown: Vec<&String> = tables.iter().filter(|t| !known(t)).collect();
        assert!(unknown.is_empty(), "tables neither copied nor left out on purpose: {unknown:?}");
        assert!(tables.iter().any(|t| t == "requests"), "{tables:?}");
    }
}
