//! Break-glass overrides: who unmasked which customer's data, why, and until when.

use async_trait::async_trait;
use candor_core::{Ciphertext, SubjectId};

use crate::{LogRecord, Millis, StoreError};

/// One override.
#[derive(Debug, Clone)]
pub struct BreakGlass {
    pub id: String,
    pub subject: SubjectId,
    pub token_id: String,
    pub role: String,
    pub purpose: String,
    /// The written reason, sealed with the customer's data key.
    pub reason: Ciphertext,
    pub opened_at: Millis,
    pub expires_at: Millis,
}

#[async_trait]
pub trait OverrideStore: Send + Sync {
    /// Records an override; logged. `false` if the customer does not exist.
    async fn open_break_glass(&self, b: BreakGlass, log: LogRecord) -> Result<bool, StoreError>;

    /// The override `token_id` holds for `subject` under `purpose` at `now`, if one is open.
    async fn active_break_glass(
        &self,
        token_id: &str,
        subject: SubjectId,
        purpose: &str,
        now: Millis,
    ) -> Result<Option<String>, StoreError>;

    /// Every override opened for `subject`, oldest first.
    async fn break_glass_for(&self, subject: SubjectId) -> Result<Vec<BreakGlass>, StoreError>;

    /// Overrides ever opened (a counter kept apart, which erasure does not lower), and those
    /// open at `now` (for metrics).
    async fn break_glass_counts(&self, now: Millis) -> Result<(u64, u64), StoreError>;
}
