//! Storage of the consent ledger: append-only entries, their signed receipts and the notice
//! texts they were given on. The current state is never stored; the vault derives it from the
//! entries (`candor_core::consent`).

use async_trait::async_trait;
use candor_core::catalog::Channel;
use candor_core::consent::{ActorKind, ConsentAction, ConsentMethod};
use candor_core::{Ciphertext, PurposeId, SubjectId};
use tokio::sync::mpsc;

use crate::{LogRecord, Millis, StoreError};

/// Rows per batch of an audience stream, and batches buffered ahead of the reader.
pub const AUDIENCE_BATCH: usize = 1024;
pub const AUDIENCE_BUFFER: usize = 8;

/// One ledger entry to append.
#[derive(Debug, Clone)]
pub struct NewConsentEntry {
    pub purpose: PurposeId,
    pub channel: Option<Channel>,
    pub action: ConsentAction,
    pub notice_version: String,
}

/// The entries of one change (one receipt), with who made it, how and when.
#[derive(Debug, Clone)]
pub struct NewConsentRecord {
    pub receipt_id: String,
    pub subject: SubjectId,
    pub method: ConsentMethod,
    pub actor_kind: ActorKind,
    pub actor_token: Option<String>,
    pub given_at: Millis,
    pub recorded_at: Millis,
    pub entries: Vec<NewConsentEntry>,
    /// The signed receipt (JSON).
    pub receipt: String,
    /// Reason and evidence reference, sealed with the subject's data key.
    pub note: Option<Ciphertext>,
}

/// A notice text, kept by version so that what a customer was shown can be produced later.
#[derive(Debug, Clone)]
pub struct NoticeText {
    pub version: String,
    pub purpose: PurposeId,
    pub text: String,
}

/// A ledger entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConsent {
    pub seq: i64,
    pub purpose: PurposeId,
    pub channel: Option<Channel>,
    pub action: ConsentAction,
    pub notice_version: String,
    pub method: ConsentMethod,
    pub actor_kind: ActorKind,
    pub actor_token: Option<String>,
    pub given_at: Millis,
    pub recorded_at: Millis,
    pub receipt_id: String,
}

#[derive(Debug, Clone)]
pub struct StoredReceipt {
    pub body: String,
    pub note: Option<Ciphertext>,
}

/// One entry of a slot's audience stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceRow {
    pub subject: SubjectId,
    pub action: ConsentAction,
    pub notice_version: String,
}

/// What [`ConsentStore::record_consents`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Every record was appended, with its log records.
    All,
    /// This subject does not exist: nothing was recorded.
    UnknownSubject(SubjectId),
}

/// How many customers' latest choice on one slot is `action` on `notice_version` (counts only:
/// the consent overview of the staff console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotCount {
    pub purpose: String,
    /// `""` for a purpose without channels.
    pub channel: String,
    /// `grant` or `withdraw`.
    pub action: String,
    pub notice_version: String,
    pub customers: u64,
}

#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Every slot's customers by their latest choice (see [`SlotCount`]).
    async fn consent_counts(&self) -> Result<Vec<SlotCount>, StoreError>;

    /// Appends the records, their receipts, any notice texts not kept yet and the log records,
    /// in one transaction (all or nothing).
    async fn record_consents(
        &self,
        records: Vec<NewConsentRecord>,
        notices: Vec<NoticeText>,
        log: Vec<LogRecord>,
    ) -> Result<Recorded, StoreError>;

    /// The subject's ledger entries (of one purpose, if given), in the order recorded.
    async fn consent_history(
        &self,
        subject: SubjectId,
        purpose: Option<&PurposeId>,
    ) -> Result<Vec<StoredConsent>, StoreError>;

    /// One of the subject's receipts.
    async fn consent_receipt(&self, subject: SubjectId, receipt_id: &str) -> Result<Option<StoredReceipt>, StoreError>;

    /// The kept text of a notice version.
    async fn notice_text(&self, version: &str) -> Result<Option<String>, StoreError>;

    /// Streams every entry of one slot in batches, ordered by subject, then time given, then
    /// order recorded (the order [`candor_core::consent::AudienceFold`] expects). Rows are read
    /// in one snapshot; dropping the receiver stops the reading.
    fn consent_audience(
        &self,
        purpose: &PurposeId,
        channel: Option<Channel>,
    ) -> mpsc::Receiver<Result<Vec<AudienceRow>, StoreError>>;
}

/// The stored form of a channel: its name, or `''` for a purpose without channels.
pub(crate) fn channel_column(channel: Option<Channel>) -> &'static str {
    channel.map_or("", Channel::name)
}

/// Parses stored names back into their types.
pub(crate) struct ConsentColumns<'a> {
    pub channel: &'a str,
    pub action: &'a str,
    pub method: &'a str,
    pub actor_kind: &'a str,
}

pub(crate) type ParsedColumns = (Option<Channel>, ConsentAction, ConsentMethod, ActorKind);

impl ConsentColumns<'_> {
    pub(crate) fn parse(&self) -> Result<ParsedColumns, StoreError> {
        let bad = |what: &str| StoreError::Corrupt(format!("a stored consent has an unknown {what}"));
        let channel = match self.channel {
            "" => None,
            c => Some(Channel::parse(c).ok_or_else(|| bad("channel"))?),
        };
        Ok((
            channel,
            ConsentAction::parse(self.action).ok_or_else(|| bad("action"))?,
            ConsentMethod::parse(self.method).ok_or_else(|| bad("method"))?,
            ActorKind::parse(self.actor_kind).ok_or_else(|| bad("actor"))?,
        ))
    }
}

pub(crate) fn parse_action(action: &str) -> Result<ConsentAction, StoreError> {
    ConsentAction::parse(action).ok_or_else(|| StoreError::Corrupt("a stored consent has an unknown action".into()))
}
