//! What the vault writes to the tamper-evident log: one [`LogRecord`] per access or change,
//! built here and nowhere else. Records carry ids, names, purposes and times — never a value.

use candor_core::catalog::SYSTEM_ROLE;
use candor_core::{PurposeId, SubjectId};
use candor_crypto::LogSigner;
use candor_log::entry::{Actor, ENTRY_VERSION, LogEntry};
use candor_log::note::VerifierKey;
use candor_store::{CallerAddress, LogRecord};

use crate::vault::Principal;

/// The log's identity: its origin (checkpoint name) and signing key.
pub struct LogContext {
    pub origin: String,
    pub signer: LogSigner,
    pub key: VerifierKey,
}

impl LogContext {
    pub fn new(origin: &str, signer: LogSigner) -> Self {
        let key = VerifierKey::new(origin, signer.public_key());
        Self { origin: origin.to_string(), signer, key }
    }
}

/// The actor of changes made by the installation itself (init, catalog loading, the CLI).
pub fn system_actor() -> Principal {
    Principal { token_id: SYSTEM_ROLE.into(), role: SYSTEM_ROLE.into(), origin: None }
}

/// A log record under construction.
pub struct Audit {
    entry: LogEntry,
    subjects: Vec<SubjectId>,
    /// Kept beside the entry, never in it: customers see entries, and entries never change.
    caller: Option<CallerAddress>,
}

impl Audit {
    pub fn new(actor: &Principal, action: &str) -> Self {
        let now = crate::clock::now();
        let time = now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        Self {
            entry: LogEntry {
                v: ENTRY_VERSION,
                time,
                action: action.to_string(),
                actor: Actor { token: actor.token_id.clone(), role: actor.role.clone() },
                purpose: None,
                subjects: Vec::new(),
                fields: Vec::new(),
                decision: None,
                detail: None,
            },
            subjects: Vec::new(),
            caller: actor.origin.map(|address| CallerAddress { address, at: now.as_millisecond() }),
        }
    }

    pub fn purpose(mut self, purpose: &PurposeId) -> Self {
        self.entry.purpose = Some(purpose.to_string());
        self
    }

    pub fn subjects(mut self, subjects: &[SubjectId]) -> Self {
        self.entry.subjects = subjects.iter().map(ToString::to_string).collect();
        self.subjects = subjects.to_vec();
        self
    }

    pub fn fields<S: AsRef<str>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.entry.fields = fields.into_iter().map(|f| f.as_ref().to_string()).collect();
        self
    }

    pub fn decision(mut self, decision: &str) -> Self {
        self.entry.decision = Some(decision.to_string());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.entry.detail = Some(detail.into());
        self
    }

    /// The record to append; also traced at debug level (it holds no values). Whether it is
    /// appended is up to the store call it goes into, so this never says "logged".
    pub fn record(self) -> LogRecord {
        let record = self.record_quiet();
        tracing::debug!(entry = %String::from_utf8_lossy(&record.entry), "log entry prepared");
        record
    }

    /// The record to append, without tracing it (bulk tools).
    pub fn record_quiet(self) -> LogRecord {
        LogRecord { entry: self.entry.to_bytes(), subjects: self.subjects, caller: self.caller }
    }
}
