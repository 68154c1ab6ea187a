//! Grants on SQLite.

use async_trait::async_trait;
use candor_core::SubjectId;
use rusqlite::{OptionalExtension, Row, params};

use super::execute_cached;
use super::{SqliteStore, append_log_tx, db_err, parse_subject};
use crate::grants::{Grant, GrantStore, split_names};
use crate::{LogRecord, Millis, StoreError};

const COLUMNS: &str =
    "id, recipient, purpose, fields, credential_hash, created_by, created_at, expires_at, max_reads, reads, revoked_at";

/// A row as read, before its JSON and hash are checked.
struct Raw {
    grant: Grant,
    fields: String,
    hash: Vec<u8>,
}

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        grant: Grant {
            id: r.get(0)?,
            recipient: r.get(1)?,
            purpose: r.get(2)?,
            fields: Vec::new(),
            credential_hash: [0; 32],
            created_by: r.get(5)?,
            created_at: r.get(6)?,
            expires_at: r.get(7)?,
            max_reads: r.get::<_, Option<i64>>(8)?.map(|n| n as u64),
            reads: r.get::<_, i64>(9)? as u64,
            revoked_at: r.get(10)?,
        },
        fields: r.get(3)?,
        hash: r.get(4)?,
    })
}

fn finish(raw: Raw) -> Result<Grant, StoreError> {
    let mut g = raw.grant;
    g.fields = split_names(&raw.fields);
    g.credential_hash = raw.hash.try_into().map_err(|_| StoreError::Corrupt("grant credential hash".into()))?;
    Ok(g)
}

#[async_trait]
impl GrantStore for SqliteStore {
    async fn create_grant(&self, g: Grant, subjects: Vec<SubjectId>, log: LogRecord) -> Result<u64, StoreError> {
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            execute_cached(
                &tx,
                &format!("INSERT INTO grants ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, NULL)"),
                params![
                    g.id,
                    g.recipient,
                    g.purpose,
                    g.fields.join(","),
                    &g.credential_hash[..],
                    g.created_by,
                    g.created_at,
                    g.expires_at,
                    g.max_reads.map(|n| n as i64)
                ],
            )
            .map_err(db_err)?;
            let mut held = 0;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO grant_subjects (grant_id, subject_id)
                         SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM subjects WHERE id = ?2)",
                    )
                    .map_err(db_err)?;
                for s in &subjects {
                    held += insert.execute(params![g.id, s.to_string()]).map_err(db_err)? as u64;
                }
            }
            append_log_tx(&tx, std::slice::from_ref(&log))?;
            tx.commit().map_err(db_err)?;
            Ok(held)
        })
        .await
    }

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            let row = c
                .prepare_cached(&format!("SELECT {COLUMNS} FROM grants WHERE id = ?1"))
                .and_then(|mut s| s.query_row(params![id], raw).optional())
                .map_err(db_err)?;
            row.map(finish).transpose()
        })
        .await
    }

    async fn grant_subjects(
        &self,
        id: &str,
        after: Option<SubjectId>,
        limit: u32,
    ) -> Result<Vec<SubjectId>, StoreError> {
        let (id, after) = (id.to_string(), after.map(|a| a.to_string()).unwrap_or_default());
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT subject_id FROM grant_subjects WHERE grant_id = ?1 AND subject_id > ?2
                     ORDER BY subject_id LIMIT ?3",
                )
                .map_err(db_err)?;
            let rows = stmt.query_map(params![id, after, limit], |r| r.get::<_, String>(0)).map_err(db_err)?;
            rows.map(|r| parse_subject(&r.map_err(db_err)?)).collect()
        })
        .await
    }

    async fn count_grant_read(&self, id: &str, now: Millis, log: LogRecord) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let counted = execute_cached(
                &tx,
                "UPDATE grants SET reads = reads + 1 WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?2
                     AND (max_reads IS NULL OR reads < max_reads)",
                params![id, now],
            )
            .map_err(db_err)?;
            if counted == 0 {
                return Ok(false);
            }
            append_log_tx(&tx, std::slice::from_ref(&log))?;
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn revoke_grant(&self, id: &str, now: Millis, log: LogRecord) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let revoked = execute_cached(
                &tx,
                "UPDATE grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )
            .map_err(db_err)?;
            if revoked == 0 {
                return Ok(false);
            }
            append_log_tx(&tx, std::slice::from_ref(&log))?;
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!("SELECT {COLUMNS} FROM grants ORDER BY created_at DESC, id"))
                .map_err(db_err)?;
            let rows = stmt.query_map([], raw).map_err(db_err)?;
            rows.map(|r| finish(r.map_err(db_err)?)).collect()
        })
        .await
    }

    async fn grants_of(&self, subject: SubjectId) -> Result<Vec<Grant>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {} FROM grants g JOIN grant_subjects s ON s.grant_id = g.id
                     WHERE s.subject_id = ?1 ORDER BY g.created_at, g.id",
                    COLUMNS.split(", ").map(|c| format!("g.{c}")).collect::<Vec<_>>().join(", ")
                ))
                .map_err(db_err)?;
            let rows = stmt.query_map(params![subject.to_string()], raw).map_err(db_err)?;
            rows.map(|r| finish(r.map_err(db_err)?)).collect()
        })
        .await
    }
}
