//! The outbox of notices to recipients: written in the same transaction as the erasure,
//! correction or restriction they announce (so none is lost), then delivered by the server
//! until the recipient answers, and confirmed when the recipient calls back.

use async_trait::async_trait;

use crate::{LogRecord, Millis, StoreError};

/// A notice as stored. `id` is also its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    /// `erasure`, `correction` or `restriction`.
    pub kind: String,
    pub fields: Vec<String>,
    pub created_at: Millis,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub delivered_at: Option<Millis>,
    pub confirmed_at: Option<Millis>,
    pub last_error: Option<String>,
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Undelivered notices due at `now`, oldest first, at most `limit`.
    async fn due_notices(&self, now: Millis, limit: u32) -> Result<Vec<Notice>, StoreError>;

    /// Records a delivery (the recipient answered 2xx) and appends `log`, in one transaction
    /// (nothing, if there is no such notice).
    async fn notice_delivered(&self, id: &str, now: Millis, log: LogRecord) -> Result<(), StoreError>;

    /// Records a failed attempt and when to try again.
    async fn notice_failed(&self, id: &str, next_attempt_at: Millis, error: &str) -> Result<(), StoreError>;

    /// Records the recipient's confirmation and appends `log`, in one transaction; `false` (and
    /// nothing logged) if there is no such notice.
    async fn confirm_notice(&self, id: &str, now: Millis, log: LogRecord) -> Result<bool, StoreError>;

    async fn notice(&self, id: &str) -> Result<Option<Notice>, StoreError>;

    /// Unconfirmed notices (delivered or not), oldest first, at most `limit`.
    async fn unconfirmed_notices(&self, limit: u32) -> Result<Vec<Notice>, StoreError>;

    /// (undelivered, delivered but unconfirmed) counts, for metrics.
    async fn notice_counts(&self) -> Result<(u64, u64), StoreError>;

    /// Makes an undelivered notice due at `now` (a person asked to try again now); logged.
    /// `false` if there is no such undelivered notice.
    async fn retry_notice(&self, id: &str, now: Millis, log: LogRecord) -> Result<bool, StoreError>;
}
