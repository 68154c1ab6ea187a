//! Storage for customer rights: erasure by crypto-shredding, legal holds and restriction.
//!
//! Erasure destroys the customer's wrapped data key in the key store (kept apart from the data:
//! another SQLite file, or the `candor_keys` schema) and then deletes their values, index
//! entries, events and consents. Because the key goes first, a copy of the data made earlier —
//! a backup restored later — stays unreadable.

use async_trait::async_trait;
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
}
