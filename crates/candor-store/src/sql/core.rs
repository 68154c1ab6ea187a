//! The [`Store`](crate::Store) methods whose statements and steps are the same on both
//! backends; each backend's `impl Store` runs them with one of its runners. What stays with the
//! backends: creating, loading, finding and importing customers (PostgreSQL's array statements,
//! SQLite's key-first commit), events by type, the log's append, head and proofs, the token
//! epoch.

use candor_core::SubjectId;

use super::{Exec, Row, Sql, args, change_logged, sql};
use crate::{FieldChange, Hash, IdempotentOutcome, LogRecord, Millis, NewEvent, NewToken, StoreError, StoredToken};

/// Removes the customer `$1`'s blind-index rows of field `$2` (SQLite keys them by the
/// customer's internal number).
pub(crate) const UNINDEX: Sql<'static> = sql!(
    postgres: "DELETE FROM blind_index WHERE subject_id = $1 AND field = $2",
    sqlite: "DELETE FROM blind_index WHERE subject_no = (SELECT no FROM subjects WHERE id = ?1) AND field = ?2",
);

/// Writes one notice per recipient holding `$1` in a grant: `$1` subject, `$2` kind, `$3`
/// fields, `$4` now.
pub(crate) const ENQUEUE: Sql<'static> = sql!(
    postgres: "INSERT INTO outbox (id, recipient, subject_id, kind, fields, created_at, next_attempt_at)
               SELECT replace(gen_random_uuid()::text, '-', ''), r.recipient, $1, $2, $3, $4, $4
               FROM (SELECT DISTINCT g.recipient FROM grants g JOIN grant_subjects s ON s.grant_id = g.id
                     WHERE s.subject_id = $1) r",
    sqlite: "INSERT INTO outbox (id, recipient, subject_id, kind, fields, created_at, next_attempt_at)
             SELECT lower(hex(randomblob(16))), r.recipient, ?1, ?2, ?3, ?4, ?4
             FROM (SELECT DISTINCT g.recipient FROM grants g JOIN grant_subjects s ON s.grant_id = g.id
                   WHERE s.subject_id = ?1) r",
);

pub(crate) async fn ping(c: &impl Exec) -> Result<(), StoreError> {
    c.query_one(sql!("SELECT 1"), &[], |_| Ok(())).await
}

pub(crate) async fn update_subject(
    c: &impl Exec,
    id: SubjectId,
    changes: Vec<FieldChange>,
    now: Millis,
    log: LogRecord,
) -> Result<bool, StoreError> {
    let sid = id.to_string();
    if c.execute(sql!("UPDATE subjects SET updated_at = $2 WHERE id = $1"), args![&sid, now]).await? == 0 {
        return Ok(false);
    }
    for change in &changes {
        // The old index entry goes whatever the change; a new value brings its own.
        c.execute(UNINDEX, args![&sid, change.field().as_str()]).await?;
        match change {
            FieldChange::Set { field, value, index } => {
                // SQLite keys values and index rows by the customer's internal number.
                let put = sql!(
                    postgres: "INSERT INTO field_values (subject_id, field, ciphertext, updated_at)
                               VALUES ($1, $2, $3, $4)
                               ON CONFLICT (subject_id, field)
                               DO UPDATE SET ciphertext = EXCLUDED.ciphertext, updated_at = EXCLUDED.updated_at",
                    sqlite: "INSERT INTO field_values (subject_no, field, ciphertext, updated_at)
                             SELECT no, ?2, ?3, ?4 FROM subjects WHERE id = ?1
                             ON CONFLICT (subject_no, field)
                             DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
                );
                c.execute(put, args![&sid, field.as_str(), value.as_bytes(), now]).await?;
                if let Some(token) = index {
                    let index = sql!(
                        postgres: "INSERT INTO blind_index (field, token, subject_id, key_version)
                                   VALUES ($1, $2, $3, $4)",
                        sqlite: "INSERT INTO blind_index (field, token, subject_no, key_version)
                                 SELECT ?1, ?2, no, ?4 FROM subjects WHERE id = ?3",
                    );
                    c.execute(index, args![field.as_str(), token.as_bytes(), &sid, token.key_version()]).await?;
                }
            }
            FieldChange::Remove { field } => {
                let remove = sql!(
                    postgres: "DELETE FROM field_values WHERE subject_id = $1 AND field = $2",
                    sqlite: "DELETE FROM field_values WHERE subject_no = (SELECT no FROM subjects WHERE id = ?1)
                             AND field = ?2",
                );
                c.execute(remove, args![&sid, field.as_str()]).await?;
            }
        }
    }
    let names: Vec<&str> = changes.iter().map(|c| c.field().as_str()).collect();
    c.execute(ENQUEUE, args![&sid, "correction", &names.join(","), now]).await?;
    c.log(log).await?;
    Ok(true)
}

pub(crate) async fn append_event(c: &impl Exec, e: NewEvent, log: LogRecord) -> Result<bool, StoreError> {
    let sql = sql!(
        "INSERT INTO events (id, subject_id, event_type, recorded_at, payload)
         SELECT $1, id, $3, $4, $5 FROM subjects WHERE id = $2"
    );
    let (id, subject) = (e.id.to_string(), e.subject.to_string());
    change_logged(c, sql, args![&id, &subject, e.event_type.as_str(), e.recorded_at, e.payload.as_bytes()], Some(log))
        .await
}

macro_rules! token_columns {
    () => {
        "id, role, description, created_at, expires_at, revoked_at"
    };
}

fn token(r: &dyn Row) -> Result<StoredToken, StoreError> {
    Ok(StoredToken {
        id: r.text(0)?,
        role: r.text(1)?,
        description: r.text(2)?,
        created_at: r.int(3)?,
        expires_at: r.opt_int(4)?,
        revoked_at: r.opt_int(5)?,
    })
}

pub(crate) async fn insert_token(c: &impl Exec, t: NewToken, log: LogRecord) -> Result<(), StoreError> {
    let sql = sql!(
        "INSERT INTO tokens (id, hash, role, description, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
    );
    c.execute(sql, args![&t.id, &t.hash, &t.role, &t.description, t.created_at, t.expires_at]).await?;
    c.log(log).await
}

pub(crate) async fn token_by_hash(c: &impl Exec, hash: [u8; 32]) -> Result<Option<StoredToken>, StoreError> {
    c.query_opt(sql!(concat!("SELECT ", token_columns!(), " FROM tokens WHERE hash = $1")), args![&hash], token).await
}

pub(crate) async fn tokens(c: &impl Exec) -> Result<Vec<StoredToken>, StoreError> {
    c.query(sql!(concat!("SELECT ", token_columns!(), " FROM tokens ORDER BY created_at DESC, id")), &[], token).await
}

pub(crate) async fn revoke_token(
    c: &impl Exec,
    id: String,
    at: Millis,
    log: LogRecord,
) -> Result<Option<StoredToken>, StoreError> {
    let revoke = sql!("UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL");
    if c.execute(revoke, args![&id, at]).await? == 1 {
        // Counts revocations in `meta` (no row: none yet); see `Store::token_epoch`.
        let bump = sql!(
            postgres: "INSERT INTO meta (key, value) VALUES ('token_epoch', '1')
                       ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text",
            sqlite: "INSERT INTO meta (key, value) VALUES ('token_epoch', '1')
                     ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
        );
        c.execute(bump, &[]).await?;
        c.log(log).await?;
    }
    c.query_opt(sql!(concat!("SELECT ", token_columns!(), " FROM tokens WHERE id = $1")), args![&id], token).await
}

/// Records `hash` as the catalog's, logged, unless it already is.
pub(crate) async fn note_catalog(c: &impl Exec, hash: String, log: LogRecord) -> Result<bool, StoreError> {
    // The log lock first: two servers starting together record a change once.
    c.lock_log().await?;
    let last = c.query_opt(sql!("SELECT value FROM meta WHERE key = 'catalog_hash'"), &[], |r| r.text(0)).await?;
    if last.as_deref() == Some(hash.as_str()) {
        return Ok(false);
    }
    let sql = sql!(
        "INSERT INTO meta (key, value) VALUES ('catalog_hash', $1)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    );
    c.execute(sql, args![&hash]).await?;
    c.log(log).await?;
    Ok(true)
}

pub(crate) async fn publish_notice(
    c: &impl Exec,
    version: String,
    at: Millis,
    notice: String,
    log: LogRecord,
) -> Result<bool, StoreError> {
    // The log lock first: two servers starting together publish once.
    c.lock_log().await?;
    let last = sql!(
        postgres: "SELECT version FROM notice_versions ORDER BY published_at DESC LIMIT 1",
        sqlite: "SELECT version FROM notice_versions ORDER BY published_at DESC, rowid DESC LIMIT 1",
    );
    if c.query_opt(last, &[], |r| r.text(0)).await?.as_deref() == Some(version.as_str()) {
        return Ok(false);
    }
    // A version published before and then replaced comes back with a new date.
    let sql = sql!(
        "INSERT INTO notice_versions (version, published_at, notice) VALUES ($1, $2, $3)
         ON CONFLICT (version) DO UPDATE SET published_at = EXCLUDED.published_at"
    );
    c.execute(sql, args![&version, at, &notice]).await?;
    c.log(log).await?;
    Ok(true)
}

pub(crate) async fn notice_versions(c: &impl Exec) -> Result<Vec<(String, Millis, String)>, StoreError> {
    let sql = sql!(
        postgres: "SELECT version, published_at, notice FROM notice_versions ORDER BY published_at, version",
        sqlite: "SELECT version, published_at, notice FROM notice_versions ORDER BY published_at, rowid",
    );
    c.query(sql, &[], |r| Ok((r.text(0)?, r.int(1)?, r.text(2)?))).await
}

pub(crate) async fn log_entries(c: &impl Exec, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let sql = sql!("SELECT idx, entry FROM log_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx");
    c.query(sql, args![start as i64, end as i64], |r| Ok((r.count(0)?, r.blob(1)?))).await
}

pub(crate) async fn log_callers(
    c: &impl Exec,
    start: u64,
    end: u64,
) -> Result<Vec<(u64, std::net::IpAddr)>, StoreError> {
    let sql = sql!("SELECT idx, address FROM log_callers WHERE idx >= $1 AND idx < $2 ORDER BY idx");
    c.query(sql, args![start as i64, end as i64], |r| Ok((r.count(0)?, crate::parse_address(&r.text(1)?)?))).await
}

pub(crate) async fn prune_log_callers(c: &impl Exec, before: Millis) -> Result<u64, StoreError> {
    c.execute(sql!("DELETE FROM log_callers WHERE recorded_at < $1"), args![before]).await
}

pub(crate) async fn log_nodes(c: &impl Exec, level: u32, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
    use candor_log::tiles;
    if !level.is_multiple_of(tiles::HEIGHT) {
        return Err(StoreError::OutOfRange(format!("level {level} is not stored: tiles hold every 8th level")));
    }
    if start >= end {
        return Ok(Vec::new());
    }
    let sql = sql!("SELECT idx, hashes FROM log_tiles WHERE level = $1 AND idx >= $2 AND idx <= $3 ORDER BY idx");
    let (first, last) = ((start / tiles::WIDTH) as i64, ((end - 1) / tiles::WIDTH) as i64);
    let rows = c.query(sql, args![level / tiles::HEIGHT, first, last], |r| Ok((r.count(0)?, r.blob(1)?))).await?;
    let mut found = Vec::with_capacity(rows.len());
    for (index, bytes) in rows {
        found.push((index, tiles::decode(&bytes).map_err(super::proof_err)?));
    }
    Ok(tiles::nodes_in_range(&found, start, end))
}

pub(crate) async fn subject_log_indices(c: &impl Exec, subject: SubjectId) -> Result<Vec<u64>, StoreError> {
    let sql = sql!(
        postgres: "SELECT idx FROM log_subjects WHERE subject_id = $1 ORDER BY idx",
        sqlite: "SELECT idx FROM log_subjects WHERE subject_id = ?1
                 UNION SELECT l.idx FROM log_customer_links l JOIN subjects s ON s.no = l.subject_no WHERE s.id = ?1
                 ORDER BY idx",
    );
    c.query(sql, args![&subject.to_string()], |r| r.count(0)).await
}

pub(crate) async fn recent_subject_log_entries(
    c: &impl Exec,
    subject: SubjectId,
    limit: u32,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let sql = sql!(
        postgres: "SELECT e.idx, e.entry FROM log_subjects s JOIN log_entries e ON e.idx = s.idx
                   WHERE s.subject_id = $1 ORDER BY s.idx DESC LIMIT $2",
        sqlite: "SELECT e.idx, e.entry FROM log_entries e JOIN (
                     SELECT idx FROM (SELECT idx FROM log_subjects WHERE subject_id = ?1 ORDER BY idx DESC LIMIT ?2)
                     UNION
                     SELECT idx FROM (SELECT l.idx FROM log_customer_links l JOIN subjects s ON s.no = l.subject_no
                                      WHERE s.id = ?1 ORDER BY l.idx DESC LIMIT ?2)
                 ) k ON e.idx = k.idx
                 ORDER BY e.idx DESC LIMIT ?2",
    );
    let mut out = c.query(sql, args![&subject.to_string(), limit], |r| Ok((r.count(0)?, r.blob(1)?))).await?;
    out.reverse();
    Ok(out)
}

pub(crate) async fn save_checkpoint(c: &impl Exec, size: u64, note: String, now: Millis) -> Result<(), StoreError> {
    let sql = sql!(
        postgres: "INSERT INTO log_checkpoints (size, note, created_at) VALUES ($1, $2, $3) ON CONFLICT (size) DO NOTHING",
        sqlite: "INSERT OR IGNORE INTO log_checkpoints (size, note, created_at) VALUES (?1, ?2, ?3)",
    );
    c.execute(sql, args![size as i64, &note, now]).await.map(drop)
}

pub(crate) async fn latest_checkpoint(c: &impl Exec) -> Result<Option<(u64, String)>, StoreError> {
    let sql = sql!("SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1");
    c.query_opt(sql, &[], |r| Ok((r.count(0)?, r.text(1)?))).await
}

pub(crate) async fn checkpoints(c: &impl Exec) -> Result<Vec<(u64, String)>, StoreError> {
    c.query(sql!("SELECT size, note FROM log_checkpoints ORDER BY size"), &[], |r| Ok((r.count(0)?, r.text(1)?))).await
}

pub(crate) async fn idempotent_outcome(c: &impl Exec, key: [u8; 32]) -> Result<Option<IdempotentOutcome>, StoreError> {
    let sql = sql!("SELECT request, outcome FROM idempotency_keys WHERE key = $1");
    c.query_opt(sql, args![&key], |r| {
        Ok(IdempotentOutcome {
            request: r
                .blob(0)?
                .try_into()
                .map_err(|_| StoreError::Corrupt("a stored request hash is not 32 bytes".into()))?,
            outcome: r.blob(1)?,
        })
    })
    .await
}

pub(crate) async fn prune_idempotency_keys(c: &impl Exec, before: Millis) -> Result<u64, StoreError> {
    c.execute(sql!("DELETE FROM idempotency_keys WHERE created_at < $1"), args![before]).await
}

pub(crate) async fn probe_write(c: &impl Exec, now: Millis) -> Result<(), StoreError> {
    let sql = sql!("INSERT INTO write_probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at");
    c.execute(sql, args![now]).await.map(drop)
}
