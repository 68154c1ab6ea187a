//! Privacy-center sign-in links and sessions ([`SessionStore`](crate::sessions::SessionStore)).

use candor_core::SubjectId;

use super::{Exec, args, change_logged, sql};
use crate::sessions::{NewSession, Session, SignInLink};
use crate::{LogRecord, Millis, StoreError};

pub(crate) async fn create_sign_in_link(
    c: &impl Exec,
    hash: [u8; 32],
    subject: SubjectId,
    now: Millis,
    expires_at: Millis,
    log: LogRecord,
) -> Result<bool, StoreError> {
    let sql = sql!(
        "INSERT INTO privacy_links (hash, subject_id, created_at, expires_at) SELECT $1, $2, $3, $4
         WHERE EXISTS (SELECT 1 FROM subjects WHERE id = $2)"
    );
    change_logged(c, sql, args![&hash, &subject.to_string(), now, expires_at], Some(log)).await
}

pub(crate) async fn sign_in_link(c: &impl Exec, hash: [u8; 32]) -> Result<Option<SignInLink>, StoreError> {
    let sql = sql!("SELECT subject_id, created_at, expires_at, used_at FROM privacy_links WHERE hash = $1");
    c.query_opt(sql, args![&hash], |r| {
        Ok(SignInLink { subject: r.subject(0)?, created_at: r.int(1)?, expires_at: r.int(2)?, used_at: r.opt_int(3)? })
    })
    .await
}

pub(crate) async fn redeem_sign_in_link(
    c: &impl Exec,
    hash: [u8; 32],
    session: NewSession,
    prune_before: Millis,
    log: LogRecord,
) -> Result<bool, StoreError> {
    let subject = session.subject.to_string();
    let used = sql!(
        "UPDATE privacy_links SET used_at = $2
         WHERE hash = $1 AND subject_id = $3 AND used_at IS NULL AND expires_at > $2"
    );
    if c.execute(used, args![&hash, session.now, &subject]).await? == 0 {
        return Ok(false);
    }
    let start = sql!(
        "INSERT INTO privacy_sessions (id, hash, subject_id, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)"
    );
    c.execute(start, args![&session.id, &session.hash, &subject, session.now]).await?;
    c.execute(sql!("DELETE FROM privacy_links WHERE expires_at < $1"), args![prune_before]).await?;
    c.execute(sql!("DELETE FROM privacy_sessions WHERE last_seen_at < $1"), args![prune_before]).await?;
    c.log(log).await?;
    Ok(true)
}

pub(crate) async fn session_by_hash(c: &impl Exec, hash: [u8; 32]) -> Result<Option<Session>, StoreError> {
    let sql = sql!("SELECT id, subject_id, created_at, last_seen_at FROM privacy_sessions WHERE hash = $1");
    c.query_opt(sql, args![&hash], |r| {
        Ok(Session { id: r.text(0)?, subject: r.subject(1)?, created_at: r.int(2)?, last_seen_at: r.int(3)? })
    })
    .await
}

pub(crate) async fn touch_session(c: &impl Exec, id: String, now: Millis) -> Result<(), StoreError> {
    let sql = sql!(
        postgres: "UPDATE privacy_sessions SET last_seen_at = GREATEST(last_seen_at, $2) WHERE id = $1",
        sqlite: "UPDATE privacy_sessions SET last_seen_at = MAX(last_seen_at, ?2) WHERE id = ?1",
    );
    c.execute(sql, args![&id, now]).await.map(drop)
}

/// [`SessionStore`](crate::sessions::SessionStore) for a store with the runners described in
/// [`crate::sql`].
macro_rules! impl_session_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::sessions::SessionStore for $store {
            async fn create_sign_in_link(
                &self,
                hash: [u8; 32],
                subject: candor_core::SubjectId,
                now: $crate::Millis,
                expires_at: $crate::Millis,
                log: $crate::LogRecord,
            ) -> Result<bool, $crate::StoreError> {
                use $crate::sql::sessions::create_sign_in_link as op;
                self.run_tx(move |c| Box::pin(op(c, hash, subject, now, expires_at, log))).await
            }

            async fn sign_in_link(
                &self,
                hash: &[u8; 32],
            ) -> Result<Option<$crate::sessions::SignInLink>, $crate::StoreError> {
                let hash = *hash;
                self.run_read(move |c| Box::pin($crate::sql::sessions::sign_in_link(c, hash))).await
            }

            async fn redeem_sign_in_link(
                &self,
                hash: [u8; 32],
                session: $crate::sessions::NewSession,
                prune_before: $crate::Millis,
                log: $crate::LogRecord,
            ) -> Result<bool, $crate::StoreError> {
                use $crate::sql::sessions::redeem_sign_in_link as op;
                self.run_tx(move |c| Box::pin(op(c, hash, session, prune_before, log))).await
            }

            async fn session_by_hash(
                &self,
                hash: &[u8; 32],
            ) -> Result<Option<$crate::sessions::Session>, $crate::StoreError> {
                let hash = *hash;
                self.run_read(move |c| Box::pin($crate::sql::sessions::session_by_hash(c, hash))).await
            }

            async fn touch_session(&self, id: &str, now: $crate::Millis) -> Result<(), $crate::StoreError> {
                let id = id.to_string();
                self.run_write(move |c| Box::pin($crate::sql::sessions::touch_session(c, id, now))).await
            }

            async fn end_session(&self, id: &str, log: Option<$crate::LogRecord>) -> Result<bool, $crate::StoreError> {
                let (id, sql) = (id.to_string(), $crate::sql::sql!("DELETE FROM privacy_sessions WHERE id = $1"));
                self.run_tx(move |c| {
                    Box::pin(async move { $crate::sql::change_logged(c, sql, $crate::sql::args![&id], log).await })
                })
                .await
            }
        }
    };
}
pub(crate) use impl_session_store;
