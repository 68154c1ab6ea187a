//! Storage for customer rights: erasure by crypto-shredding, legal holds and restriction.
//!
//! Erasure destroys the customer's wrapped data key in the key store (kept apart from the data:
//! another SQLite file, or the `candor_keys` schema) and then deletes their values, index
//! entries, events and consents. Because the key goes first, a copy of the data made earlier —
//! a backup restored later — stays unreadable.
//!
//! An erasure is done in two steps that a crash may separate: [`RightsStore::begin_erasure`]
//! records the intent in the data store (committed first) and then destroys the key;
//! [`RightsStore::finish_erasure`] deletes the data, keeps the certificate, appends the log entry
//! and clears the intent, in one transaction. After any crash either nothing happened, or the
//! intent is recorded and [`RightsStore::pending_erasures`] lists the customer, so the vault
//! completes the erasure at start-up.

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

/// Who asked for an erasure, recorded with its intent (ids and names only): what the
/// certificate and the log entry of an erasure completed after a crash name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRequest {
    pub certificate_id: String,
    pub token_id: String,
    pub role: String,
    pub purpose: String,
}

/// An erasure under way: the customer's key is (or is about to be) destroyed but their data is
/// still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingErasure {
    pub subject: SubjectId,
    /// When the erasure was asked for (the certificate's time).
    pub requested_at: Millis,
    /// `None` when the key was destroyed without an intent recorded: an erasure interrupted by
    /// an older version, or data restored from a copy older than the erasure.
    pub request: Option<ErasureRequest>,
}

/// A recipient that holds the customer in at least one grant, so it received their data: an
/// erasure writes it a notice (the outbox) and the certificate names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notified {
    pub recipient: String,
    /// The fields its grants gave it, in name order.
    pub fields: Vec<String>,
}

/// Builds the erasure certificate from the recipients told (inside the erasure's transaction,
/// so the certificate and the notices written name the same recipients).
pub type Certify = Box<dyn FnOnce(&[Notified]) -> String + Send>;

/// The recipients told, from (recipient, comma-separated fields) rows of the customer's grants:
/// one per recipient, in recipient order, with the fields of all its grants.
pub(crate) fn notified(rows: Vec<(String, String)>) -> Vec<Notified> {
    let mut out: Vec<Notified> = Vec::new();
    for (recipient, fields) in rows {
        let at = match out.iter().position(|n| n.recipient == recipient) {
            Some(i) => i,
            None => {
                out.push(Notified { recipient, fields: Vec::new() });
                out.len() - 1
            }
        };
        out[at].fields.extend(crate::grants::split_names(&fields));
    }
    out.sort_by(|a, b| a.recipient.cmp(&b.recipient));
    for n in &mut out {
        n.fields.sort();
        n.fields.dedup();
    }
    out
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
    /// Who on the privacy team has it (`staff:stf_…` or a token id), if anyone.
    pub assignee: Option<String>,
    /// Since when its clock is paused, waiting for the customer to prove who they are.
    pub waiting_since: Option<Millis>,
    /// How long its clock was paused in all (`due_at` already includes it).
    pub paused_ms: Millis,
    /// Why it was refused: a code from a fixed list (never free text).
    pub reason: Option<String>,
}

/// A change to an open request that does not close it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestChange {
    /// Gives it to someone (`None`: to nobody).
    Assign(Option<String>),
    /// Pauses its clock at `at`: the customer is asked to prove who they are.
    AwaitIdentity { at: Millis },
    /// Restarts its clock at `at`; the deadline moves by the time it was paused.
    IdentityProven { at: Millis },
}

#[async_trait]
pub trait RightsStore: Send + Sync {
    /// Names and counts of what is stored about the customer; `None` if unknown.
    async fn inventory(&self, id: SubjectId) -> Result<Option<Inventory>, StoreError>;

    /// Erases the customer unless a legal hold blocks it: records the intent (`request`) and
    /// destroys their data key in the key store (durably), then, in one transaction, writes an
    /// erasure notice to every recipient that holds them in a grant, keeps what stays of their
    /// messages (see [`crate::MessageStore::erased_message_by_code`]), deletes their data
    /// (values, lookup rows, events, consents, ...), keeps the certificate `certify` makes from
    /// those recipients, appends `log` and clears the intent. [`RightsStore::begin_erasure`]
    /// then [`RightsStore::finish_erasure`], without a gap on PostgreSQL (one transaction).
    async fn erase_subject_certified(
        &self,
        id: SubjectId,
        now: Millis,
        request: ErasureRequest,
        certify: Certify,
        log: LogRecord,
    ) -> Result<Erasure, StoreError>;

    /// [`RightsStore::erase_subject_certified`] with a certificate made beforehand (and no
    /// requester named).
    async fn erase_subject(
        &self,
        id: SubjectId,
        now: Millis,
        certificate: String,
        log: LogRecord,
    ) -> Result<Erasure, StoreError> {
        let request = ErasureRequest {
            certificate_id: String::new(),
            token_id: String::new(),
            role: String::new(),
            purpose: String::new(),
        };
        self.erase_subject_certified(id, now, request, Box::new(move |_| certificate), log).await
    }

    /// The first step of an erasure: unless a legal hold blocks it, records the intent and then
    /// destroys the key, each committed durably (the intent first). `Erased` means begun: the
    /// data stays until [`RightsStore::finish_erasure`]. An intent already recorded is kept.
    async fn begin_erasure(&self, id: SubjectId, now: Millis, request: ErasureRequest) -> Result<Erasure, StoreError>;

    /// The second step: for a customer whose erasure is under way (an intent recorded, or the
    /// key destroyed), destroys the key if it is not yet, then in one transaction does what
    /// [`RightsStore::erase_subject_certified`] does after the key (the certificate's time is
    /// the intent's) and clears the intent. `Erased` if it did that now; `AlreadyErased` if the
    /// data was already gone (the intent is cleared); `NotFound` if no erasure of this customer
    /// is under way (nothing changes). Safe when several servers run it at once.
    async fn finish_erasure(&self, id: SubjectId, certify: Certify, log: LogRecord) -> Result<Erasure, StoreError>;

    /// Erasures under way, oldest first: intents recorded, and customers whose key is destroyed
    /// while their data is still there.
    async fn pending_erasures(&self) -> Result<Vec<PendingErasure>, StoreError>;

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

    /// Closes an open request with `status` (and the refusal's `reason` code); logged. `None` if
    /// there is no such request; an already closed one is returned unchanged (and nothing is
    /// logged).
    async fn close_request(
        &self,
        id: &str,
        status: &str,
        reason: Option<&str>,
        at: Millis,
        by: &str,
        log: LogRecord,
    ) -> Result<Option<Request>, StoreError>;

    /// Changes an open request; logged only if it changed (an assignment to the same person, a
    /// pause of a paused clock, a closed request: unchanged). `None` if there is no such
    /// request; else the request as it is now and whether it changed.
    async fn change_request(
        &self,
        id: &str,
        change: RequestChange,
        log: LogRecord,
    ) -> Result<Option<(Request, bool)>, StoreError>;

    /// One customer's requests, newest first, at most `limit`.
    async fn subject_requests(&self, subject: SubjectId, limit: u32) -> Result<Vec<Request>, StoreError>;

    /// One request.
    async fn request(&self, id: &str) -> Result<Option<Request>, StoreError>;

    /// Requests, newest first (of one status, if given), at most `limit`.
    async fn requests(&self, status: Option<&str>, limit: u32) -> Result<Vec<Request>, StoreError>;

    /// Open requests whose deadline has passed at `now` (a paused clock is not overdue).
    async fn overdue_requests(&self, now: Millis) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_recipient_is_told_once_with_the_fields_of_all_its_grants() {
        let rows = vec![
            ("payment_provider".to_string(), "email".to_string()),
            ("parcel_carrier".to_string(), "phone,full_name".to_string()),
            ("parcel_carrier".to_string(), "full_name,shipping_address".to_string()),
        ];
        let told = notified(rows);
        let as_pairs: Vec<(&str, Vec<&str>)> =
            told.iter().map(|n| (n.recipient.as_str(), n.fields.iter().map(String::as_str).collect())).collect();
        assert_eq!(
            as_pairs,
            [("parcel_carrier", vec!["full_name", "phone", "shipping_address"]), ("payment_provider", vec!["email"])]
        );
        assert!(notified(Vec::new()).is_empty());
    }
}
