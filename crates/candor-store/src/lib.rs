//! Storage for Candor.
//!
//! [`Store`] is the one abstraction the vault talks to. Each method is one transaction: it
//! either happens completely or not at all. A store sees ids, field and event-type names,
//! times and opaque bytes ([`Ciphertext`], [`WrappedDek`](candor_core::WrappedDek),
//! [`BlindIndex`]) — never a plaintext personal value and never a key.
//!
//! Backends: [`sqlite::SqliteStore`] (embedded default) and [`postgres::PgStore`] (several
//! servers on one database). What the two have in common (the statements, the mapping of rows
//! to these types, the steps of each operation) is written once, in the private module `sql`;
//! each backend keeps its executor and what only it does (see that module). Every backend must pass the contract suite `testsuite::run_all`
//! (built for the crate's own tests and with the feature `test-support`, which also brings the
//! test and benchmark helpers `pgtest` and `floor`). [`copy`] moves an installation from SQLite
//! to PostgreSQL.
#![forbid(unsafe_code)]

use async_trait::async_trait;
pub use breaches::{Breach, BreachStore};
use candor_core::{BlindIndex, Ciphertext, EventId, FieldName, StoredDek, SubjectId};
pub use candor_log::Hash;
pub use consents::{
    AudienceRow, ConsentStore, NewConsentEntry, NewConsentRecord, NoticeText, Recorded, StoredConsent, StoredReceipt,
};
pub use grants::{Grant, GrantStore};
pub use keys::{IndexReplacement, KeyRingStore};
pub use messages::{ErasedMessage, MessageStore, StoredMessage};
pub use outbox::{Notice, OutboxStore};
pub use overrides::{BreakGlass, OverrideStore};
pub use rights::{
    Certify, Due, Erasure, Expired, Inventory, Notified, Request, RequestChange, RetentionLog, RightsStore, Toggle,
};
pub use sessions::{NewSession, Session, SessionStore, SignInLink};
pub use staff::{NewStaffSession, StaffPerson, StaffSession, StaffStore};

pub mod breaches;
pub mod consents;
pub mod copy;
#[cfg(any(test, feature = "test-support"))]
pub mod floor;
pub mod grants;
pub mod keys;
pub mod messages;
pub mod outbox;
pub mod overrides;
#[cfg(any(test, feature = "test-support"))]
pub mod pgtest;
pub mod postgres;
pub mod rights;
pub mod sessions;
mod sql;
pub mod sqlite;
pub mod staff;
#[cfg(any(test, feature = "test-support"))]
pub mod testsuite;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is overloaded; the request may be retried.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A row that must be unique already exists (for example a token hash).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database holds something this version cannot read.
    #[error("the database is inconsistent: {0}")]
    Corrupt(String),
    /// A log position or tree size beyond what the log holds.
    #[error("{0}")]
    OutOfRange(String),
    /// The customer was erased: their data key is destroyed, so whatever data of theirs is
    /// still found (an old backup restored) cannot be read.
    #[error("this customer was erased (data key destroyed)")]
    Erased { at: Millis },
    /// The disk (or the database's space) is full: nothing was written.
    #[error("the storage is full: {0}")]
    StorageFull(String),
    #[error("database error: {0}")]
    Internal(String),
}

impl StoreError {
    /// The same error again, for handing one failure (of a shared commit) to several callers.
    pub fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
            StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
            StoreError::OutOfRange(m) => StoreError::OutOfRange(m.clone()),
            StoreError::Erased { at } => StoreError::Erased { at: *at },
            StoreError::StorageFull(m) => StoreError::StorageFull(m.clone()),
            StoreError::Internal(m) => StoreError::Internal(m.clone()),
        }
    }
}

/// A new subject: its wrapped data key, sealed values and blind indexes.
#[derive(Debug)]
pub struct NewSubject {
    pub id: SubjectId,
    pub dek: StoredDek,
    pub values: Vec<(FieldName, Ciphertext)>,
    pub index: Vec<(FieldName, BlindIndex)>,
    pub now: Millis,
}

/// One customer of an import batch ([`Store::import_subjects`]): what a create stores, its log
/// record, and the index entries of its `unique` fields (under every index key held) that no
/// other customer may hold.
#[derive(Debug)]
pub struct ImportRow {
    pub subject: NewSubject,
    pub log: LogRecord,
    pub unique: Vec<(FieldName, Vec<BlindIndex>)>,
}

/// A subject as stored: its data key and the requested values that exist.
#[derive(Debug)]
pub struct SubjectRecord {
    pub dek: StoredDek,
    pub values: Vec<(FieldName, Ciphertext)>,
    /// When each of `values` was stored (same order).
    pub value_times: Vec<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Processing is restricted (GDPR Art. 18): data kept, not used.
    pub restricted: bool,
}

/// One change to a subject's fields.
#[derive(Debug)]
pub enum FieldChange {
    /// Replace (or add) the value; the old ciphertext and index entry are overwritten.
    Set { field: FieldName, value: Ciphertext, index: Option<BlindIndex> },
    /// Remove the value and its index entry.
    Remove { field: FieldName },
}

impl FieldChange {
    /// The field the change is about.
    pub fn field(&self) -> &FieldName {
        match self {
            FieldChange::Set { field, .. } | FieldChange::Remove { field } => field,
        }
    }
}

#[derive(Debug)]
pub struct NewEvent {
    pub id: EventId,
    pub subject: SubjectId,
    pub event_type: FieldName,
    pub recorded_at: Millis,
    pub payload: Ciphertext,
}

#[derive(Debug)]
pub struct StoredEvent {
    /// Position in the store's event order; used as a paging cursor.
    pub seq: i64,
    pub id: EventId,
    pub event_type: FieldName,
    pub recorded_at: Millis,
    pub payload: Ciphertext,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub hash: [u8; 32],
    pub role: String,
    pub description: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub id: String,
    pub role: String,
    pub description: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// One entry to append to the tamper-evident log, with the subjects it concerns.
#[derive(Debug, Clone, Default)]
pub struct LogRecord {
    /// Canonical entry bytes (see `candor_log::entry`); never a personal value.
    pub entry: Vec<u8>,
    pub subjects: Vec<SubjectId>,
    /// Where the request came from, for staff and recipients (kept beside the log, prunable).
    pub caller: Option<CallerAddress>,
    /// The `Idempotency-Key` of the write this entry records, kept in the same transaction.
    pub idempotency: Option<IdempotencyRecord>,
}

/// A write's `Idempotency-Key`, stored with the change it made: a retry with the same key
/// finds it exactly when the first request was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// SHA-256 over the caller's token id and the key it sent.
    pub key: [u8; 32],
    /// SHA-256 over the request (method, path, purpose, body): a retry has the same one.
    pub request: [u8; 32],
    /// What the first answer was built from (JSON of ids; never a personal value).
    pub outcome: Vec<u8>,
    pub at: Millis,
}

/// A stored [`IdempotencyRecord`], as a retry finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentOutcome {
    pub request: [u8; 32],
    pub outcome: Vec<u8>,
}

/// A stored caller address.
pub(crate) fn parse_address(text: &str) -> Result<std::net::IpAddr, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("log_callers holds `{text}`, which is not an IP address")))
}

/// The network address of the staff member or recipient whose request a log entry records,
/// and when it was recorded (for pruning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerAddress {
    pub address: std::net::IpAddr,
    pub at: Millis,
}

/// Where the vault keeps its data. Every method is one transaction; methods that change data
/// take the log record describing the change and append it in the same transaction.
#[async_trait]
pub trait Store:
    ConsentStore
    + RightsStore
    + OverrideStore
    + SessionStore
    + StaffStore
    + MessageStore
    + GrantStore
    + OutboxStore
    + KeyRingStore
    + BreachStore
    + Send
    + Sync
    + 'static
{
    /// Cheap liveness check (for /healthz).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores a new subject with its values and index entries, and logs it.
    async fn create_subject(&self, subject: NewSubject, log: LogRecord) -> Result<(), StoreError>;

    /// The subject's data key and those of `fields` that have a value; `None` if unknown.
    async fn load_subject(&self, id: SubjectId, fields: &[FieldName]) -> Result<Option<SubjectRecord>, StoreError>;

    /// What reading a customer under a consent purpose needs: [`Store::load_subject`] and the
    /// customer's ledger entries for `purpose` ([`ConsentStore::consent_history`]), in one
    /// snapshot. SQLite reads both in one transaction on one pooled connection.
    async fn load_subject_with_consents(
        &self,
        id: SubjectId,
        fields: &[FieldName],
        purpose: &candor_core::PurposeId,
    ) -> Result<Option<(SubjectRecord, Vec<StoredConsent>)>, StoreError> {
        let Some(record) = self.load_subject(id, fields).await? else {
            return Ok(None);
        };
        Ok(Some((record, self.consent_history(id, Some(purpose)).await?)))
    }

    /// Applies `changes` atomically and logs them. Returns `false` (and changes and logs
    /// nothing) if the subject is unknown.
    async fn update_subject(
        &self,
        id: SubjectId,
        changes: Vec<FieldChange>,
        now: Millis,
        log: LogRecord,
    ) -> Result<bool, StoreError>;

    /// Subjects whose `field` has any of `indexes` (the same value under each index key held;
    /// exact match), in id order, each once.
    async fn find_by_index(&self, field: &FieldName, indexes: &[BlindIndex]) -> Result<Vec<SubjectId>, StoreError>;

    /// For each of `tokens` (index entries of `field`), the subjects holding it: pairs of
    /// (position in `tokens`, subject), in one snapshot. What an import's check uses to recognise
    /// a batch of existing customers at once.
    async fn find_many_by_index(
        &self,
        field: &FieldName,
        tokens: &[BlindIndex],
    ) -> Result<Vec<(usize, SubjectId)>, StoreError> {
        let mut found = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            found.extend(self.find_by_index(field, std::slice::from_ref(token)).await?.into_iter().map(|s| (i, s)));
        }
        Ok(found)
    }

    /// Creates an import batch's customers, each exactly as [`Store::create_subject`] would (its
    /// key first, then its data, index entries and log record, committed together). A row whose
    /// `unique` entries another customer holds (or an earlier row of the batch) is not stored:
    /// its place in the answer names the field. The default runs the rows as single creates
    /// (concurrently, sharing the backend's batched commits); SQLite writes the whole batch in one
    /// key transaction and one data transaction.
    async fn import_subjects(&self, rows: Vec<ImportRow>) -> Result<Vec<Option<FieldName>>, StoreError> {
        // Checked first (a row's tokens against the store and against the batch's earlier rows),
        // then the rest created concurrently.
        let mut taken: std::collections::HashSet<(FieldName, Vec<u8>)> = std::collections::HashSet::new();
        let mut answer = Vec::with_capacity(rows.len());
        let mut creates = Vec::new();
        for row in rows {
            let mut conflict = None;
            for (field, tokens) in &row.unique {
                let in_batch = tokens.iter().any(|t| taken.contains(&(field.clone(), t.as_bytes().to_vec())));
                if in_batch || !self.find_by_index(field, tokens).await?.is_empty() {
                    conflict = Some(field.clone());
                    break;
                }
            }
            if conflict.is_none() {
                for (field, tokens) in &row.unique {
                    taken.extend(tokens.iter().map(|t| (field.clone(), t.as_bytes().to_vec())));
                }
                creates.push(row);
            }
            answer.push(conflict);
        }
        // At most 512 at a time, as many as a single create's batched commit takes, so a large
        // import batch does not wait in the connection pool past its timeouts.
        let mut creates = creates.into_iter().peekable();
        while creates.peek().is_some() {
            let runs = creates.by_ref().take(512).map(|row| self.create_subject(row.subject, row.log));
            for outcome in futures_util::future::join_all(runs).await {
                outcome?;
            }
        }
        Ok(answer)
    }

    /// Appends an event and logs it. Returns `false` (and stores nothing) if the subject is unknown.
    async fn append_event(&self, event: NewEvent, log: LogRecord) -> Result<bool, StoreError>;

    /// Up to `limit` events of `subject` of the given types, in order, after cursor `after`.
    async fn list_events(
        &self,
        subject: SubjectId,
        types: &[FieldName],
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    async fn insert_token(&self, token: NewToken, log: LogRecord) -> Result<(), StoreError>;

    /// The token with this hash, if any (revoked and expired ones included: the caller decides).
    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StoredToken>, StoreError>;

    /// Every token (never the token itself: it is not stored), newest first.
    async fn tokens(&self) -> Result<Vec<StoredToken>, StoreError>;

    /// A number that changes, in the same transaction, whenever a token is revoked (by any
    /// server or the command line). A server may keep what it read about tokens for as long as
    /// this number is unchanged; reading it is cheaper than a token lookup.
    async fn token_epoch(&self) -> Result<u64, StoreError>;

    /// Revokes a token and logs it; `None` if there is no such token. An already revoked token
    /// is returned as it is (and nothing is logged). Changes [`Store::token_epoch`].
    async fn revoke_token(&self, id: &str, at: Millis, log: LogRecord) -> Result<Option<StoredToken>, StoreError>;

    /// Appends log records (reads, denials, …) in one transaction; returns the first index.
    async fn append_log(&self, records: Vec<LogRecord>) -> Result<u64, StoreError>;

    /// Records the catalog's hash; if it differs from the last one recorded, logs `log` in the
    /// same transaction and returns `true`.
    async fn note_catalog(&self, hash: &str, log: LogRecord) -> Result<bool, StoreError>;

    /// Records a version of the public privacy notice unless it is the latest already; logs
    /// `log` with it and returns `true` when it was new.
    async fn publish_notice(&self, version: &str, at: Millis, notice: &str, log: LogRecord)
    -> Result<bool, StoreError>;

    /// Every published notice version (version, published at, JSON), oldest first.
    async fn notice_versions(&self) -> Result<Vec<(String, Millis, String)>, StoreError>;

    /// Current tree size and root hash.
    async fn log_head(&self) -> Result<(u64, Hash), StoreError>;

    /// Entries `[start, end)` that exist, with their indexes.
    async fn log_entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// The caller addresses recorded for entries `[start, end)` (those not pruned), by index.
    async fn log_callers(&self, start: u64, end: u64) -> Result<Vec<(u64, std::net::IpAddr)>, StoreError>;

    /// Forgets caller addresses recorded before `before`. Returns how many.
    async fn prune_log_callers(&self, before: Millis) -> Result<u64, StoreError>;

    /// Stored hashes of level `level` nodes `[start, end)` (level 0: leaf hashes).
    async fn log_nodes(&self, level: u32, start: u64, end: u64) -> Result<Vec<Hash>, StoreError>;

    /// Inclusion proof of entry `index` in the tree of size `size` (`size` <= current size).
    async fn log_inclusion_proof(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), StoreError>;

    /// Consistency proof between two tree sizes, with both roots.
    async fn log_consistency_proof(&self, first: u64, second: u64) -> Result<(Hash, Hash, Vec<Hash>), StoreError>;

    /// Indexes of the entries that concern `subject`, ascending.
    async fn subject_log_indices(&self, subject: SubjectId) -> Result<Vec<u64>, StoreError>;

    /// The latest `limit` entries that concern `subject` (index, bytes), ascending, in one query.
    async fn recent_subject_log_entries(
        &self,
        subject: SubjectId,
        limit: u32,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Keeps a signed checkpoint (ignored if one of that size is kept already).
    async fn save_checkpoint(&self, size: u64, note: &str, now: Millis) -> Result<(), StoreError>;

    /// The latest kept checkpoint, if any.
    async fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError>;

    /// Every kept checkpoint, smallest tree first (lets a verifier narrow down where history
    /// was rewritten).
    async fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError>;

    /// The outcome stored with the write that carried this idempotency key, if it was applied.
    async fn idempotent_outcome(&self, key: &[u8; 32]) -> Result<Option<IdempotentOutcome>, StoreError>;

    /// Forgets idempotency keys recorded before `before`; returns how many.
    async fn prune_idempotency_keys(&self, before: Millis) -> Result<u64, StoreError>;

    /// Writes (and commits) one small row, to learn whether the storage takes writes again.
    async fn probe_write(&self, now: Millis) -> Result<(), StoreError>;
}
