//! Staff people and sessions ([`StaffStore`](crate::staff::StaffStore)).

use super::{Exec, args, sql};
use crate::staff::{NewStaffSession, StaffPerson, StaffSession};
use crate::{LogRecord, Millis, StoreError};

pub(crate) async fn start_staff_session(
    c: &impl Exec,
    person: StaffPerson,
    session: NewStaffSession,
    prune_before: Millis,
    log: LogRecord,
) -> Result<(), StoreError> {
    let sql = sql!(
        "INSERT INTO staff_people (pseudonym, issuer, subject, first_seen_at, last_seen_at, last_role)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (pseudonym) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at, last_role = EXCLUDED.last_role"
    );
    let p = &person;
    c.execute(sql, args![&p.pseudonym, &p.issuer, &p.subject, p.first_seen_at, p.last_seen_at, &p.last_role]).await?;
    c.execute(sql!("DELETE FROM staff_sessions WHERE last_seen_at < $1"), args![prune_before]).await?;
    let sql = sql!(
        "INSERT INTO staff_sessions (id, hash, pseudonym, role, created_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $5, $5)"
    );
    let s = &session;
    c.execute(sql, args![&s.id, &s.hash, &s.pseudonym, &s.role, s.now]).await?;
    c.log(log).await
}

pub(crate) async fn staff_session_by_hash(c: &impl Exec, hash: [u8; 32]) -> Result<Option<StaffSession>, StoreError> {
    let sql = sql!("SELECT id, pseudonym, role, created_at, last_seen_at FROM staff_sessions WHERE hash = $1");
    c.query_opt(sql, args![&hash], |r| {
        Ok(StaffSession {
            id: r.text(0)?,
            pseudonym: r.text(1)?,
            role: r.text(2)?,
            created_at: r.int(3)?,
            last_seen_at: r.int(4)?,
        })
    })
    .await
}

pub(crate) async fn touch_staff_session(c: &impl Exec, id: String, now: Millis) -> Result<(), StoreError> {
    let sql = sql!(
        postgres: "UPDATE staff_sessions SET last_seen_at = GREATEST(last_seen_at, $2) WHERE id = $1",
        sqlite: "UPDATE staff_sessions SET last_seen_at = MAX(last_seen_at, ?2) WHERE id = ?1",
    );
    c.execute(sql, args![&id, now]).await.map(drop)
}

pub(crate) async fn resolve_staff(
    c: &impl Exec,
    pseudonym: String,
    log: LogRecord,
) -> Result<Option<StaffPerson>, StoreError> {
    let sql = sql!(
        "SELECT pseudonym, issuer, subject, first_seen_at, last_seen_at, last_role
         FROM staff_people WHERE pseudonym = $1"
    );
    let person = c
        .query_opt(sql, args![&pseudonym], |r| {
            Ok(StaffPerson {
                pseudonym: r.text(0)?,
                issuer: r.text(1)?,
                subject: r.text(2)?,
                first_seen_at: r.int(3)?,
                last_seen_at: r.int(4)?,
                last_role: r.text(5)?,
            })
        })
        .await?;
    c.log(log).await?;
    Ok(person)
}

/// [`StaffStore`](crate::staff::StaffStore) for a store with the runners of [`crate::sql`].
macro_rules! impl_staff_store {
    ($store:ty) => {
        const _: () = {
            use $crate::sql::staff as op;
            use $crate::staff::{NewStaffSession, StaffPerson, StaffSession, StaffStore};
            use $crate::{LogRecord, Millis, StoreError};

            #[async_trait::async_trait]
            impl StaffStore for $store {
                async fn start_staff_session(
                    &self,
                    person: StaffPerson,
                    session: NewStaffSession,
                    prune_before: Millis,
                    log: LogRecord,
                ) -> Result<(), StoreError> {
                    self.run_tx(move |c| Box::pin(op::start_staff_session(c, person, session, prune_before, log))).await
                }

                async fn staff_session_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StaffSession>, StoreError> {
                    let hash = *hash;
                    self.run_read(move |c| Box::pin(op::staff_session_by_hash(c, hash))).await
                }

                async fn touch_staff_session(&self, id: &str, now: Millis) -> Result<(), StoreError> {
                    let id = id.to_string();
                    self.run_write(move |c| Box::pin(op::touch_staff_session(c, id, now))).await
                }

                async fn end_staff_session(&self, id: &str, log: Option<LogRecord>) -> Result<bool, StoreError> {
                    let (id, sql) = (id.to_string(), $crate::sql::sql!("DELETE FROM staff_sessions WHERE id = $1"));
                    self.run_tx(move |c| {
                        Box::pin(async move { $crate::sql::change_logged(c, sql, $crate::sql::args![&id], log).await })
                    })
                    .await
                }

                async fn resolve_staff(
                    &self,
                    pseudonym: &str,
                    log: LogRecord,
                ) -> Result<Option<StaffPerson>, StoreError> {
                    let pseudonym = pseudonym.to_string();
                    self.run_tx(move |c| Box::pin(op::resolve_staff(c, pseudonym, log))).await
                }
            }
        };
    };
}
pub(crate) use impl_staff_store;
