//! Staff people and sessions on PostgreSQL.

use async_trait::async_trait;

use super::{PgStore, append_log_tx, pg_err};
use crate::staff::{NewStaffSession, StaffPerson, StaffSession, StaffStore};
use crate::{LogRecord, Millis, StoreError};

#[async_trait]
impl StaffStore for PgStore {
    async fn start_staff_session(
        &self,
        person: StaffPerson,
        session: NewStaffSession,
        prune_before: Millis,
        log: LogRecord,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute(
            "INSERT INTO staff_people (pseudonym, issuer, subject, first_seen_at, last_seen_at, last_role)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (pseudonym) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at, last_role = EXCLUDED.last_role",
            &[
                &person.pseudonym,
                &person.issuer,
                &person.subject,
                &person.first_seen_at,
                &person.last_seen_at,
                &person.last_role,
            ],
        )
        .await
        .map_err(pg_err)?;
        tx.execute("DELETE FROM staff_sessions WHERE last_seen_at < $1", &[&prune_before]).await.map_err(pg_err)?;
        tx.execute(
            "INSERT INTO staff_sessions (id, hash, pseudonym, role, created_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $5, $5)",
            &[&session.id, &&session.hash[..], &session.pseudonym, &session.role, &session.now],
        )
        .await
        .map_err(pg_err)?;
        append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(())
    }

    async fn staff_session_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StaffSession>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT id, pseudonym, role, created_at, last_seen_at FROM staff_sessions WHERE hash = $1",
                &[&&hash[..]],
            )
            .await
            .map_err(pg_err)?;
        Ok(row.map(|r| StaffSession {
            id: r.get(0),
            pseudonym: r.get(1),
            role: r.get(2),
            created_at: r.get(3),
            last_seen_at: r.get(4),
        }))
    }

    async fn touch_staff_session(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute("UPDATE staff_sessions SET last_seen_at = GREATEST(last_seen_at, $2) WHERE id = $1", &[&id, &now])
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn end_staff_session(&self, id: &str, log: Option<LogRecord>) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let ended = tx.execute("DELETE FROM staff_sessions WHERE id = $1", &[&id]).await.map_err(pg_err)?;
        if ended == 0 {
            return Ok(false);
        }
        if let Some(log) = &log {
            append_log_tx(&tx, std::slice::from_ref(log)).await?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(true)
    }

    async fn resolve_staff(&self, pseudonym: &str, log: LogRecord) -> Result<Option<StaffPerson>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let row = tx
            .query_opt(
                "SELECT pseudonym, issuer, subject, first_seen_at, last_seen_at, last_role
                 FROM staff_people WHERE pseudonym = $1",
                &[&pseudonym],
            )
            .await
            .map_err(pg_err)?;
        append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(row.map(|r| StaffPerson {
            pseudonym: r.get(0),
            issuer: r.get(1),
            subject: r.get(2),
            first_seen_at: r.get(3),
            last_seen_at: r.get(4),
            last_role: r.get(5),
        }))
    }
}
