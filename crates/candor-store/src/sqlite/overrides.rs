//! Break-glass overrides on SQLite.

use async_trait::async_trait;
use candor_core::{Ciphertext, SubjectId};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, append_log_tx, db_err, parse_subject};
use super::{execute_cached, query_row_cached};
use crate::overrides::{BreakGlass, OverrideStore};
use crate::{LogRecord, Millis, StoreError};

const COLUMNS: &str = "id, subject_id, token_id, role, purpose, reason, opened_at, expires_at";
/// Counts an opened override where erasure does not reach (its row goes with the customer).
const COUNT_OPENED: &str = "INSERT INTO counters (name, value) VALUES ('break_glass_opened', 1)
     ON CONFLICT (name) DO UPDATE SET value = value + 1";

#[async_trait]
impl OverrideStore for SqliteStore {
    async fn open_break_glass(&self, b: BreakGlass, log: LogRecord) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO break_glass ({COLUMNS}) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
             WHERE EXISTS (SELECT 1 FROM subjects WHERE id = ?2)"
        );
        let params = vec![
            Value::Text(b.id),
            Value::Text(b.subject.to_string()),
            Value::Text(b.token_id),
            Value::Text(b.role),
            Value::Text(b.purpose),
            Value::Blob(b.reason.into_bytes()),
            Value::Integer(b.opened_at),
            Value::Integer(b.expires_at),
        ];
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            if execute_cached(&tx, &sql, rusqlite::params_from_iter(params)).map_err(db_err)? == 0 {
                return Ok(false);
            }
            execute_cached(&tx, COUNT_OPENED, []).map_err(db_err)?;
            append_log_tx(&tx, std::slice::from_ref(&log))?;
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn active_break_glass(
        &self,
        token_id: &str,
        subject: SubjectId,
        purpose: &str,
        now: Millis,
    ) -> Result<Option<String>, StoreError> {
        let (token_id, purpose) = (token_id.to_string(), purpose.to_string());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id FROM break_glass WHERE token_id = ?1 AND subject_id = ?2 AND purpose = ?3
                 AND opened_at <= ?4 AND expires_at > ?4 ORDER BY expires_at DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![token_id, subject.to_string(), purpose, now], |r| r.get(0)).optional()
            })
            .map_err(db_err)
        })
        .await
    }

    async fn break_glass_for(&self, subject: SubjectId) -> Result<Vec<BreakGlass>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM break_glass WHERE subject_id = ?1 ORDER BY opened_at, id"
                ))
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![subject.to_string()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get::<_, Vec<u8>>(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, subject, token_id, role, purpose, reason, opened_at, expires_at) = row.map_err(db_err)?;
                out.push(BreakGlass {
                    id,
                    subject: parse_subject(&subject)?,
                    token_id,
                    role,
                    purpose,
                    reason: Ciphertext::from_bytes(reason),
                    opened_at,
                    expires_at,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn break_glass_counts(&self, now: Millis) -> Result<(u64, u64), StoreError> {
        self.read(move |c| {
            query_row_cached(
                c,
                "SELECT (SELECT COALESCE(MAX(value), 0) FROM counters WHERE name = 'break_glass_opened'),
                        (SELECT COUNT(*) FROM break_glass WHERE opened_at <= ?1 AND expires_at > ?1)",
                params![now],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(db_err)
        })
        .await
    }
}
