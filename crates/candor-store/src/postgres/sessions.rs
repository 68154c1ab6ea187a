//! Privacy-center sign-in links and sessions on PostgreSQL.

use async_trait::async_trait;
use candor_core::SubjectId;

use super::{PgStore, append_log_tx, pg_err, subject_of};
use crate::sessions::{NewSession, Session, SessionStore, SignInLink};
use crate::{LogRecord, Millis, StoreError};

#[async_trait]
impl SessionStore for PgStore {
    async fn create_sign_in_link(
        &self,
        hash: [u8; 32],
        subject: SubjectId,
        now: Millis,
        expires_at: Millis,
        log: LogRecord,
    ) -> Result<bool, StoreError> {
        self.insert_logged(
            "INSERT INTO privacy_links (hash, subject_id, created_at, expires_at) SELECT $1, $2, $3, $4
             WHERE EXISTS (SELECT 1 FROM subjects WHERE id = $2)",
            &[&&hash[..], &subject.to_string(), &now, &expires_at],
            log,
        )
        .await
    }

    async fn sign_in_link(&self, hash: &[u8; 32]) -> Result<Option<SignInLink>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT subject_id, created_at, expires_at, used_at FROM privacy_links WHERE hash = $1",
                &[&&hash[..]],
            )
            .await
            .map_err(pg_err)?;
        row.map(|r| {
            Ok(SignInLink {
                subject: subject_of(r.get(0))?,
                created_at: r.get(1),
                expires_at: r.get(2),
                used_at: r.get(3),
            })
        })
        .transpose()
    }

    async fn redeem_sign_in_link(
        &self,
        hash: [u8; 32],
        session: NewSession,
        prune_before: Millis,
        log: LogRecord,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let subject = session.subject.to_string();
        let used = tx
            .execute(
                "UPDATE privacy_links SET used_at = $2
                 WHERE hash = $1 AND subject_id = $3 AND used_at IS NULL AND expires_at > $2",
                &[&&hash[..], &session.now, &subject],
            )
            .await
            .map_err(pg_err)?;
        if used == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO privacy_sessions (id, hash, subject_id, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)",
            &[&session.id, &&session.hash[..], &subject, &session.now],
        )
        .await
        .map_err(pg_err)?;
        tx.execute("DELETE FROM privacy_links WHERE expires_at < $1", &[&prune_before]).await.map_err(pg_err)?;
        tx.execute("DELETE FROM privacy_sessions WHERE last_seen_at < $1", &[&prune_before]).await.map_err(pg_err)?;
        append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(true)
    }

    async fn session_by_hash(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT id, subject_id, created_at, last_seen_at FROM privacy_sessions WHERE hash = $1",
                &[&&hash[..]],
            )
            .await
            .map_err(pg_err)?;
        row.map(|r| {
            Ok(Session { id: r.get(0), subject: subject_of(r.get(1))?, created_at: r.get(2), last_seen_at: r.get(3) })
        })
        .transpose()
    }

    async fn touch_session(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE privacy_sessions SET last_seen_at = GREATEST(last_seen_at, $2) WHERE id = $1",
                &[&id, &now],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn end_session(&self, id: &str, log: Option<LogRecord>) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let ended = tx.execute("DELETE FROM privacy_sessions WHERE id = $1", &[&id]).await.map_err(pg_err)?;
        if ended == 0 {
            return Ok(false);
        }
        if let Some(log) = &log {
            append_log_tx(&tx, std::slice::from_ref(log)).await?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(true)
    }
}
