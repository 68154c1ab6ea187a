//! Messages the company registered as sent to a customer (anti-phishing): the customer, or
//! anyone holding a message's verification code, can check that it is genuine.

use async_trait::async_trait;
use candor_core::{Ciphertext, SubjectId};

use crate::{LogRecord, Millis, StoreError};

/// A registered message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: String,
    pub subject: SubjectId,
    pub purpose: String,
    pub channel: String,
    /// Sealed with the customer's data key.
    pub subject_line: Ciphertext,
    pub body_sha256: [u8; 32],
    /// SHA-256 of the verification code.
    pub code_hash: [u8; 32],
    pub sent_at: Millis,
}

/// What stays of a registered message once its customer is erased: enough to tell whoever holds
/// the message that the company really sent it, and nothing about whom it was sent to (no
/// customer id, no message id, no purpose, no subject line, no body hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedMessage {
    pub channel: String,
    pub sent_at: Millis,
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Registers a message; logged. `false` (nothing stored or logged) if the customer does not
    /// exist. A code hash already in use is a `Conflict`.
    async fn register_message(&self, message: StoredMessage, log: LogRecord) -> Result<bool, StoreError>;

    /// The message whose code has this hash, if any.
    async fn message_by_code(&self, code_hash: &[u8; 32]) -> Result<Option<StoredMessage>, StoreError>;

    /// A message of an erased customer whose code has this hash, if any.
    async fn erased_message_by_code(&self, code_hash: &[u8; 32]) -> Result<Option<ErasedMessage>, StoreError>;

    /// Every message registered for `subject`, newest first, at most `limit`.
    async fn messages_of(&self, subject: SubjectId, limit: u32) -> Result<Vec<StoredMessage>, StoreError>;
}
