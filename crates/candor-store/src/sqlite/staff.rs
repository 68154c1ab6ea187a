//! Staff people and sessions on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::execute_cached;
use super::{SqliteStore, append_log_tx, db_err};
use crate::staff::{NewStaffSession, StaffPerson, StaffSession, StaffStore};
use crate::{LogRecord, Millis, StoreError};

#[async_trait]
impl StaffStore for SqliteStore {
    async fn start_staff_session(
        &self,
        person: StaffPerson,
        session: NewStaffSession,
        prune_before: Millis,
        log: LogRecord,
    ) -> Result<(), StoreError> {
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            execute_cached(
                &tx,
                "INSERT INTO staff_people (pseudonym, issuer, subject, first_seen_at, last_seen_at, last_role)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (pseudonym) DO UPDATE SET last_seen_at = excluded.last_seen_at, last_role = excluded.last_role",
                params![
                    person.pseudonym,
                    person.issuer,
                    person.subject,
                    person.first_seen_at,
                    person.last_seen_at,
                    person.last_role
                ],
            )
            .map_err(db_err)?;
            execute_cached(&tx, "DELETE FROM staff_sessions WHERE last_seen_at < ?1", params![prune_before])
                .map_err(db_err)?;
            execute_cached(
                &tx,
                "INSERT INTO staff_sessions (id, hash, pseudonym, role, created_at, last_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![session.id, &session.hash[..], session.pseudonym, session.role, session.now],
            )
            .map_err(db_err)?;
            append_log_tx(&tx, std::slice::from_ref(&log))?;
            tx.commit().map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn staff_session_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StaffSession>, StoreError> {
        let hash = *hash;
        self.read(move |c| {
            c.prepare_cached("SELECT id, pseudonym, role, created_at, last_seen_at FROM staff_sessions WHERE hash = ?1")
                .and_then(|mut s| {
                    s.query_row(params![&hash[..]], |r| {
                        Ok(StaffSession {
                            id: r.get(0)?,
                            pseudonym: r.get(1)?,
                            role: r.get(2)?,
                            created_at: r.get(3)?,
                            last_seen_at: r.get(4)?,
                        })
                    })
                    .optional()
                })
                .map_err(db_err)
        })
        .await
    }

    async fn touch_staff_session(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            execute_cached(
                c,
                "UPDATE staff_sessions SET last_seen_at = MAX(last_seen_at, ?2) WHERE id = ?1",
                params![id, now],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn end_staff_session(&self, id: &str, log: Option<LogRecord>) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let ended = execute_cached(&tx, "DELETE FROM staff_sessions WHERE id = ?1", params![id]).map_err(db_err)?;
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

    async fn resolve_staff(&self, pseudonym: &str, log: LogRecord) -> Result<Option<StaffPerson>, StoreError> {
        let pseudonym = pseudonym.to_string();
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let person = tx
                .prepare_cached(
                    "SELECT pseudonym, issuer, subject, first_seen_at, last_seen_at, last_role
                     FROM staff_people WHERE pseudonym = ?1",
                )
                .and_then(|mut s| {
                    s.query_row(params![pseudonym], |r| {
                        Ok(StaffPerson {
                            pseudonym: r.get(0)?,
                            issuer: r.get(1)?,
                            subject: r.get(2)?,
                            first_seen_at: r.get(3)?,
                            last_seen_at: r.get(4)?,
                            last_role: r.get(5)?,
                        })
                    })
                    .optional()
                })
                .map_err(db_err)?;
            append_log_tx(&tx, std::slice::from_ref(&log))?;
            tx.commit().map_err(db_err)?;
            Ok(person)
        })
        .await
    }
}
