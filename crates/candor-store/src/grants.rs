//! Grants (data rooms): one recipient may read named fields of a set of customers under one
//! purpose, until the grant expires, is revoked or its reads run out.

use async_trait::async_trait;
use candor_core::SubjectId;

use crate::{LogRecord, Millis, StoreError};

/// A grant as stored (its customers are listed apart, page by page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub recipient: String,
    pub purpose: String,
    pub fields: Vec<String>,
    /// SHA-256 of the recipient's credential.
    pub credential_hash: [u8; 32],
    /// The token that created it.
    pub created_by: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub max_reads: Option<u64>,
    pub reads: u64,
    pub revoked_at: Option<Millis>,
}

/// Field names as stored: comma-separated (names are identifiers, so they hold no comma).
pub fn split_names(stored: &str) -> Vec<String> {
    stored.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Stores a grant with its customers (those that still exist) and appends `logs` (its entry,
    /// in as many parts as it takes to name every customer) in the same transaction. Returns how
    /// many customers it holds.
    async fn create_grant(
        &self,
        grant: Grant,
        subjects: Vec<SubjectId>,
        logs: Vec<LogRecord>,
    ) -> Result<u64, StoreError>;

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError>;

    /// Up to `limit` customers of the grant after `after`, in id order.
    async fn grant_subjects(
        &self,
        id: &str,
        after: Option<SubjectId>,
        limit: u32,
    ) -> Result<Vec<SubjectId>, StoreError>;

    /// Counts one read of the grant and logs it, if the grant is live at `now` (not revoked,
    /// not expired, reads left); otherwise `false` and nothing changes.
    async fn count_grant_read(&self, id: &str, now: Millis, log: LogRecord) -> Result<bool, StoreError>;

    /// Revokes the grant and appends `logs` (every part of its entry) in the same transaction.
    /// `false`, with nothing logged, if it does not exist or was already revoked.
    async fn revoke_grant(&self, id: &str, now: Millis, logs: Vec<LogRecord>) -> Result<bool, StoreError>;

    /// Every grant, newest first.
    async fn grants(&self) -> Result<Vec<Grant>, StoreError>;

    /// How many customers each grant holds, by grant id.
    async fn grant_sizes(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Every grant that includes `subject`, oldest first.
    async fn grants_of(&self, subject: SubjectId) -> Result<Vec<Grant>, StoreError>;
}
