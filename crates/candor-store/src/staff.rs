//! Staff signed in through the company's OpenID Connect provider: the people who have signed in
//! (a pseudonym, and the issuer and subject it was derived from, so `candor staff whois` can
//! resolve it) and their sessions. Sessions are stored as SHA-256 hashes of their secrets; no
//! name or e-mail address is stored.

use async_trait::async_trait;

use crate::{LogRecord, Millis, StoreError};

/// A person as the identity provider names them: the pseudonym Candor derived from the issuer
/// and subject (the only name the log uses), and those two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffPerson {
    pub pseudonym: String,
    pub issuer: String,
    pub subject: String,
    pub first_seen_at: Millis,
    pub last_seen_at: Millis,
    /// The role of their latest sign-in.
    pub last_role: String,
}

/// A staff session to start.
#[derive(Debug, Clone)]
pub struct NewStaffSession {
    /// Public id (never the secret).
    pub id: String,
    /// SHA-256 of the cookie's secret.
    pub hash: [u8; 32],
    pub pseudonym: String,
    pub role: String,
    pub now: Millis,
}

/// A live staff session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffSession {
    pub id: String,
    pub pseudonym: String,
    pub role: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
}

#[async_trait]
pub trait StaffStore: Send + Sync {
    /// Records the person (first time, or their latest sign-in and role) and starts `session`,
    /// logged, in one transaction. Sessions last seen before `prune_before` are deleted in it.
    async fn start_staff_session(
        &self,
        person: StaffPerson,
        session: NewStaffSession,
        prune_before: Millis,
        log: LogRecord,
    ) -> Result<(), StoreError>;

    /// The session with this hash, if it exists (the caller checks its idle and absolute age).
    async fn staff_session_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StaffSession>, StoreError>;

    /// Records activity on a session (not logged: it is not an access to data).
    async fn touch_staff_session(&self, id: &str, now: Millis) -> Result<(), StoreError>;

    /// Ends a session (deletes it); logged when it existed. Returns whether it existed.
    async fn end_staff_session(&self, id: &str, log: Option<LogRecord>) -> Result<bool, StoreError>;

    /// The person behind a pseudonym, if anyone with it has signed in; the look-up is logged
    /// (`log`) in the same transaction, whether or not it finds someone.
    async fn resolve_staff(&self, pseudonym: &str, log: LogRecord) -> Result<Option<StaffPerson>, StoreError>;
}
