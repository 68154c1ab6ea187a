//! Privacy-center sign-in links and sessions on SQLite.

use async_trait::async_trait;
use candor_core::SubjectId;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};

use super::execute_cached;
use super::{SqliteStore, append_log_tx, db_err, parse_subject};
use crate::sessions::{NewSession, Session, SessionStore, SignInLink};
use crate::{LogRecord, Millis, StoreError};

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_sign_in_link(
        &self,
        hash: [u8; 32],
        subject: SubjectId,
        now: Millis,
        expires_at: Millis,
        log: LogRecord,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO privacy_links (hash, subject_id, created_at, expires_at) SELECT ?1, ?2, ?3, ?4
                   WHERE EXISTS (SELECT 1 FROM subjects WHERE id = ?2)";
        let params = vec![
            Value::Blob(hash.to_vec()),
            Value::Text(subject.to_string()),
            Value::Integer(now),
            Value::Integer(expires_at),
        ];
        self.insert_logged(sql.to_string(), params, log).await
    }

    async fn sign_in_link(&self, hash: &[u8; 32]) -> Result<Option<SignInLink>, StoreError> {
        let hash = *hash;
        self.read(move |c| {
            let row = c
                .prepare_cached("SELECT subject_id, created_at, expires_at, used_at FROM privacy_links WHERE hash = ?1")
                .and_then(|mut s| {
                    s.query_row(params![&hash[..]], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                        .optional()
                })
                .map_err(db_err)?;
            row.map(|(subject, created_at, expires_at, used_at)| {
                Ok(SignInLink { subject: parse_subject(&subject)?, created_at, expires_at, used_at })
            })
            .transpose()
        })
        .await
    }

    async fn redeem_sign_in_link(
        &self,
        hash: [u8; 32],
        session: NewSession,
        prune_before: Millis,
        log: LogRecord,
    ) -> Result<bool, StoreError> {
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let used = execute_cached(&tx,
                    "UPDATE privacy_links SET used_at = ?2
                     WHERE hash = ?1 AND subject_id = ?3 AND used_at IS NULL AND expires_at > ?2",
                    params![&hash[..], session.now, session.subject.to_string()],
                )
                .map_err(db_err)?;
            if used == 0 {
                return Ok(false);
            }
            execute_cached(&tx,
                "INSERT INTO privacy_sessions (id, hash, subject_id, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![session.id, &session.hash[..], session.subject.to_string(), session.now],
            )
            .map_err(db_err)?;
            execute_cached(&tx,"DELETE FROM privacy_links WHERE expires_at < ?1", params![prune_before]).map_err(db_err)?;
            execute_cached(&tx,"DELETE FROM privacy_sessions WHERE last_seen_at < ?1", params![prune_before])
                .map_err(db_err)?;
            append_log_tx(&tx, std::slice::from_ref(&log))?;
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn session_by_hash(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        let hash = *hash;
        self.read(move |c| {
            let row = c
                .prepare_cached("SELECT id, subject_id, created_at, last_seen_at FROM privacy_sessions WHERE hash = ?1")
                .and_then(|mut s| {
                    s.query_row(params![&hash[..]], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()
                })
                .map_err(db_err)?;
            row.map(|(id, subject, created_at, last_seen_at)| {
                Ok(Session { id, subject: parse_subject(&subject)?, created_at, last_seen_at })
            })
            .transpose()
        })
        .await
    }

    async fn touch_session(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            execute_cached(
                c,
                "UPDATE privacy_sessions SET last_seen_at = MAX(last_seen_at, ?2) WHERE id = ?1",
                params![id, now],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn end_session(&self, id: &str, log: Option<LogRecord>) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let ended =
                execute_cached(&tx, "DELETE FROM privacy_sessions WHERE id = ?1", params![id]).map_err(db_err)?;
            if ended == 0 {
                return Ok(false);
            }
            if let Some(log) = &log {
                append_log_tx(&tx, std::slice::from_ref(log))?;
            }
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }
}
