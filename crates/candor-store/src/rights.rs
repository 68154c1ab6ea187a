//! Storage for customer rights: erasure by crypto-shredding, legal holds and restriction.
//!
//! Erasure destroys the customer's wrapped data key in the key store (kept apart from the data:
//! another SQLite file, or the `candor_keys` schema) and then deletes their values, index
//! entries, events and consents. Because the key goes first, a copy of the data made earlier —
//! a backup restored later — stays unreadable.

use async_trait::async_trait;
use candor_core::rights::RetentionRule;
use candor_core::{Ciphertext, FieldName, SubjectId};

use crate::{LogRecord, Millis, StoreError};

/// What is stored about a customer, by name and count (for an erasure certificate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Fields that hold a value.
    pub fields: Vec<FieldName>,
    /// Events per type.
    pub events: Vec<(FieldName, u64)>,
    /// Consent ledger entries.
    pub consents: u64,
}

/// What [`RightsStore::erase_subject`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    /// The key was destroyed and the data deleted, with the certificate kept and the log entry
    /// appended.
    Erased,
    /// Erased before: nothing more to do. The certificate kept then, if this copy of the data
    /// still has it.
    AlreadyErased { erased_at: Millis, certificate: Option<String> },
    /// A legal hold blocks erasure: nothing changed.
    Held,
    /// No such customer.
    NotFound,
}

/// What a restriction call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggle {
    Changed,
    Unchanged,
    NotFound,
}

/// What a retention pass deleted for one customer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    pub fields: Vec<FieldName>,
    pub events: Vec<(FieldName, u64)>,
    /// A legal hold was placed in the meantime: nothing was deleted.
    pub held: bool,
}

impl Expired {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.events.is_empty()
    }
}

/// Builds the log record of a retention pass once its result is known (inside the transaction).
pub type RetentionLog = Box<dyn FnOnce(&Expired) -> LogRecord + Send>;

/// Items one retention rule would delete now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub rule: RetentionRule,
    /// Values or events due, and the customers they belong to (held customers excluded).
    pub items: u64,
    pub subjects: u64,
    /// Items not deleted because their customer is under a legal hold.
    pub held_items: u64,
}

/// A customer request (access, export, correction, erasure, restriction, objection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub subject_id: String,
    pub kind: String,
    pub status: String,
    pub received_at: Millis,
    pub due_at: Millis,
    pub created_by: String,
    pub closed_at: Option<Millis>,
    pub closed_by: Option<String>,
}

#[async_trait]
pub trait RightsStore: Send + Sync {
    /// Names and counts of what is stored about the customer; `None` if unknown.
    async fn inventory(&self, id: SubjectId) -> Result<Option<Inventory>, StoreError>;

    /// Erases the customer unless a legal hold blocks it: destroys their data key in the key
    /// store first (durably), then deletes their data, keeps `certificate` and appends `log`.
    async fn erase_subject(
        &self,
        id: SubjectId,
        now: Millis,
        certificate: String,
        log: LogRecord,
    ) -> Result<Erasure, StoreError>;

    /// Places a legal hold (the reason sealed by the caller); logged. Unchanged if one is in place.
    async fn place_hold(
        &self,
        id: SubjectId,
        note: Ciphertext,
        now: Millis,
        log: LogRecord,
    ) -> Result<Toggle, StoreError>;

    /// Lifts the legal hold; logged only if there was one.
    async fn lift_hold(&self, id: SubjectId, log: LogRecord) -> Result<Toggle, StoreError>;

    /// The legal hold in place, if any: when, and the sealed reason.
    async fn hold(&self, id: SubjectId) -> Result<Option<(Millis, Ciphertext)>, StoreError>;

    /// Restricts processing; logged. Unchanged if already restricted.
    async fn restrict(
        &self,
        id: SubjectId,
        note: Option<Ciphertext>,
        now: Millis,
        log: LogRecord,
    ) -> Result<Toggle, StoreError>;

    /// Lifts the restriction; logged only if there was one.
    async fn lift_restriction(&self, id: SubjectId, log: LogRecord) -> Result<Toggle, StoreError>;

    /// Customers (after `after`, in id order, at most `limit`) with something due under
    /// `rules`, leaving out those under a legal hold.
    async fn retention_candidates(
        &self,
        rules: &[RetentionRule],
        after: Option<SubjectId>,
        limit: u32,
    ) -> Result<Vec<SubjectId>, StoreError>;

    /// What each rule would delete now (for a dry run).
    async fn retention_due(&self, rules: &[RetentionRule]) -> Result<Vec<Due>, StoreError>;

    /// Deletes the customer's values and events due under `rules`, in one transaction with the
    /// log record `log` builds from what was deleted (nothing is logged if nothing was due).
    /// Re-checks the legal hold inside the transaction.
    async fn apply_retention(
        &self,
        id: SubjectId,
        rules: &[RetentionRule],
        log: RetentionLog,
    ) -> Result<Expired, StoreError>;

    /// Records a customer request; logged.
    async fn insert_request(&self, request: Request, log: LogRecord) -> Result<(), StoreError>;

    /// Closes an open request with `status`; logged. `None` if there is no such request; an
    /// already closed one is returned unchanged (and nothing is logged).
    async fn close_request(
        &self,
        id: &str,
        status: &str,
        at: Millis,
        by: &str,
        log: LogRecord,
    ) -> Result<Option<Request>, StoreError>;

    /// One request.
    async fn request(&self, id: &str) -> Result<Option<Request>, StoreError>;

    /// Requests, newest first (of one status, if given), at most `limit`.
    async fn requests(&self, status: Option<&str>, limit: u32) -> Result<Vec<Request>, StoreError>;

    /// Open requests whose deadline has passed at `now`.
    async fn overdue_requests(&self, now: Millis) -> Result<u64, StoreError>;
}
