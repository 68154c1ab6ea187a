//! Signing in to the privacy center: one-time sign-in links and the sessions they start. Only
//! SHA-256 hashes of their secrets are stored; both are deleted with the customer.

use async_trait::async_trait;
use candor_core::SubjectId;

use crate::{LogRecord, Millis, StoreError};

/// A sign-in link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInLink {
    pub subject: SubjectId,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub used_at: Option<Millis>,
}

/// A session to start when a link is used.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Public id, named in the log.
    pub id: String,
    /// SHA-256 of the cookie's secret.
    pub hash: [u8; 32],
    pub subject: SubjectId,
    pub now: Millis,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub subject: SubjectId,
    pub created_at: Millis,
    pub last_seen_at: Millis,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a link for `subject`, valid until `expires_at`; logged. `false` (nothing stored or
    /// logged) if the customer does not exist.
    async fn create_sign_in_link(
        &self,
        hash: [u8; 32],
        subject: SubjectId,
        now: Millis,
        expires_at: Millis,
        log: LogRecord,
    ) -> Result<bool, StoreError>;

    /// The link with this hash, used or not, if it is still kept.
    async fn sign_in_link(&self, hash: &[u8; 32]) -> Result<Option<SignInLink>, StoreError>;

    /// Marks the link used and starts `session`, logged, if the link is unused and unexpired at
    /// `session.now`; otherwise `false` and nothing changes. Links expired and sessions last
    /// seen before `prune_before` are deleted in the same transaction.
    async fn redeem_sign_in_link(
        &self,
        hash: [u8; 32],
        session: NewSession,
        prune_before: Millis,
        log: LogRecord,
    ) -> Result<bool, StoreError>;

    /// The session with this hash, if it exists (the caller checks its idle time).
    async fn session_by_hash(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError>;

    /// Records activity on a session (not logged: it is not an access to data).
    async fn touch_session(&self, id: &str, now: Millis) -> Result<(), StoreError>;

    /// Ends a session (deletes it); logged when it existed. Returns whether it existed.
    async fn end_session(&self, id: &str, log: Option<LogRecord>) -> Result<bool, StoreError>;
}
