//! Breach records (GDPR Art. 33/34): what happened, the 72-hour clock, and whom it affects.

use async_trait::async_trait;
use candor_core::SubjectId;

use crate::{LogRecord, Millis, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub id: String,
    pub detected_at: Millis,
    pub recorded_at: Millis,
    pub nature: String,
    pub categories: Vec<String>,
    pub customers: u64,
    pub consequences: String,
    pub measures: String,
    pub authority_notified_at: Option<Millis>,
    pub closed_at: Option<Millis>,
}

#[async_trait]
pub trait BreachStore: Send + Sync {
    /// Records a breach and the customers it affects (those that still exist), and appends
    /// `logs` (its entry, in as many parts as it takes to name every customer) in the same
    /// transaction.
    async fn record_breach(
        &self,
        breach: Breach,
        subjects: Vec<SubjectId>,
        logs: Vec<LogRecord>,
    ) -> Result<(), StoreError>;

    /// Every breach, newest first.
    async fn breaches(&self) -> Result<Vec<Breach>, StoreError>;

    /// The breaches that affect `subject`, newest first.
    async fn breaches_of(&self, subject: SubjectId) -> Result<Vec<Breach>, StoreError>;

    /// Records that the authority was notified (`closed = false`) or that the breach is closed;
    /// logged. `false` if there is no such breach.
    async fn update_breach(&self, id: &str, closed: bool, at: Millis, log: LogRecord) -> Result<bool, StoreError>;
}
