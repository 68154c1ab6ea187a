//! What the vault writes to the tamper-evident log: one [`LogRecord`] per access or change,
//! built here and nowhere else. Records carry ids, names, purposes and times — never a value.

use candor_core::catalog::SYSTEM_ROLE;
use candor_core::{PurposeId, SubjectId};
use candor_crypto::LogSigner;
use candor_log::entry::{Actor, ENTRY_VERSION, LogEntry};
use candor_log::note::VerifierKey;
use candor_store::{CallerAddress, IdempotencyRecord, LogRecord};

use crate::Principal;

/// Largest entry the log holds, in bytes: C2SP entry bundles (`/log/tile/entries/…`) give each
/// entry a 2-byte length. [`Audit::record`] never builds a larger one.
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

/// Customers one entry names at most (a subject id takes 39 bytes of an entry, so 1,000 take
/// about 39 KB). A change about more customers is logged as several entries
/// ([`Audit::records`]), each naming its share and saying which part it is.
pub const MAX_ENTRY_SUBJECTS: usize = 1000;

/// The log's identity: its origin (checkpoint name) and signing key, and the completeness map
/// its checkpoints commit to (built by whoever holds this context, from the log).
pub struct LogContext {
    pub origin: String,
    pub signer: LogSigner,
    pub key: VerifierKey,
    pub map: crate::completeness::MapState,
}

impl LogContext {
    pub fn new(origin: &str, signer: LogSigner) -> Self {
        let key = VerifierKey::new(origin, signer.public_key());
        Self { origin: origin.to_string(), signer, key, map: crate::completeness::MapState::new() }
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
    /// The write's `Idempotency-Key` and outcome, stored in the same transaction.
    idempotency: Option<IdempotencyRecord>,
    /// When the entry happens (milliseconds), by the clock it was made with.
    at: i64,
}

impl Audit {
    /// A record of `action` by `actor` now, by the process clock: for the operator's jobs that
    /// run without a vault (index recomputation, counting countries); the vault's own entries
    /// are made with [`Audit::at`] on its clock.
    pub fn new(actor: &Principal, action: candor_log::Action) -> Self {
        Self::at(actor, action, crate::clock::now())
    }

    /// A record of `action` by `actor` at `now` (the vault's clock).
    pub fn at(actor: &Principal, action: candor_log::Action, now: jiff::Timestamp) -> Self {
        let time = now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        Self {
            entry: LogEntry {
                v: ENTRY_VERSION,
                time,
                action: action.as_str().to_string(),
                actor: Actor { token: actor.token_id.clone(), role: actor.role.clone() },
                purpose: None,
                subjects: Vec::new(),
                fields: Vec::new(),
                decision: None,
                detail: None,
            },
            subjects: Vec::new(),
            caller: actor.origin.map(|address| CallerAddress { address, at: now.as_millisecond() }),
            idempotency: None,
            at: now.as_millisecond(),
        }
    }

    /// Stores `outcome` (ids, never a value) under the request's `Idempotency-Key`, if it
    /// sent one, in the transaction that appends this entry.
    pub fn idempotent(mut self, key: Option<&crate::IdempotencyKey>, outcome: &impl serde::Serialize) -> Self {
        self.idempotency = key.map(|k| IdempotencyRecord {
            key: k.key,
            request: k.request,
            outcome: serde_json::to_vec(outcome).unwrap_or_default(),
            at: self.at,
        });
        self
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

    /// The records to append for a change that may concern any number of customers: one entry
    /// per [`MAX_ENTRY_SUBJECTS`] customers, in order, each detail ending `(part i of n)` when
    /// there are several. Append them all in the store call that makes the change (a change
    /// commits with every part of its entry), so each customer's access log finds its part.
    pub fn records(self) -> Vec<LogRecord> {
        if self.subjects.len() <= MAX_ENTRY_SUBJECTS {
            return vec![self.record()];
        }
        let parts = self.subjects.len().div_ceil(MAX_ENTRY_SUBJECTS);
        self.subjects
            .chunks(MAX_ENTRY_SUBJECTS)
            .enumerate()
            .map(|(i, chunk)| {
                let mut part = Audit {
                    entry: self.entry.clone(),
                    subjects: Vec::new(),
                    caller: self.caller,
                    // The key goes with the first part only.
                    idempotency: if i == 0 { self.idempotency.clone() } else { None },
                    at: self.at,
                }
                .subjects(chunk);
                let of = format!("part {} of {parts}", i + 1);
                part.entry.detail = Some(match &self.entry.detail {
                    Some(d) => format!("{d} ({of})"),
                    None => of,
                });
                part.record()
            })
            .collect()
    }

    /// The record to append; also traced at debug level (it holds no values). Whether it is
    /// appended is up to the store call it goes into, so this never says "logged".
    pub fn record(self) -> LogRecord {
        let record = self.record_quiet();
        tracing::debug!(entry = %String::from_utf8_lossy(&record.entry), "log entry prepared");
        record
    }

    /// The record to append, without tracing it (bulk tools). An entry is never longer than
    /// [`MAX_ENTRY_BYTES`]: callers split long lists of customers ([`Audit::records`]); should one
    /// not, the entry names as many as fit and the SHA-256 of the whole list (the record still
    /// links every customer, so each one's access log shows it).
    pub fn record_quiet(self) -> LogRecord {
        let mut entry = self.entry;
        let mut bytes = entry.to_bytes();
        if bytes.len() > MAX_ENTRY_BYTES {
            tracing::error!(
                action = %entry.action,
                bytes = bytes.len(),
                subjects = entry.subjects.len(),
                "a log entry was over the size limit and was shortened; split it with Audit::records"
            );
            bytes = shorten(&mut entry);
        }
        LogRecord { entry: bytes, subjects: self.subjects, caller: self.caller, idempotency: self.idempotency }
    }
}

/// Shortens an entry over [`MAX_ENTRY_BYTES`]: keeps the most customers that fit and says how
/// many it leaves out, with the SHA-256 of all their ids (one a line); then, if still needed,
/// cuts the detail and the field list.
fn shorten(entry: &mut LogEntry) -> Vec<u8> {
    let all = std::mem::take(&mut entry.subjects);
    let detail = entry.detail.take().unwrap_or_default();
    let with = |entry: &mut LogEntry, kept: usize, detail: &str| {
        entry.subjects = all[..kept].to_vec();
        let digest: String = candor_crypto::sha256_hex(all.join("\n").as_bytes());
        let note = if kept < all.len() {
            format!(
                "names {kept} of {} customers (an entry holds at most {MAX_ENTRY_BYTES} bytes); SHA-256 of all their ids, one a line: {digest}",
                all.len()
            )
        } else {
            format!("shortened to {MAX_ENTRY_BYTES} bytes")
        };
        entry.detail = Some(if detail.is_empty() { note } else { format!("{detail}; {note}") });
        entry.to_bytes()
    };
    // The most customers that fit (the entry grows with each one).
    let (mut lo, mut hi) = (0, all.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if with(entry, mid, &detail).len() <= MAX_ENTRY_BYTES {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut bytes = with(entry, lo, &detail);
    if bytes.len() > MAX_ENTRY_BYTES {
        let mut cut: String = detail.chars().take(1024).collect();
        cut.push('…');
        bytes = with(entry, 0, &cut);
    }
    while bytes.len() > MAX_ENTRY_BYTES && !entry.fields.is_empty() {
        let keep = entry.fields.len() / 2;
        entry.fields.truncate(keep);
        bytes = with(entry, 0, "fields cut");
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customers(n: usize) -> Vec<SubjectId> {
        (0..n).map(|_| SubjectId::random()).collect()
    }

    #[test]
    fn a_change_about_many_customers_is_logged_in_parts_that_each_fit_an_entry_bundle() {
        let ids = customers(2 * MAX_ENTRY_SUBJECTS + 1);
        let parts = Audit::new(&system_actor(), candor_log::Action::GrantCreate)
            .subjects(&ids)
            .fields(["full_name"])
            .detail("grant g1 to parcel_carrier")
            .records();
        assert_eq!(parts.len(), 3);
        let mut named = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            assert!(part.entry.len() <= MAX_ENTRY_BYTES, "{}", part.entry.len());
            let entry = LogEntry::from_bytes(&part.entry).unwrap();
            assert_eq!(entry.detail.unwrap(), format!("grant g1 to parcel_carrier (part {} of 3)", i + 1));
            assert_eq!(entry.fields, ["full_name"]);
            assert_eq!(entry.subjects, part.subjects.iter().map(ToString::to_string).collect::<Vec<_>>());
            named.extend(part.subjects.iter().copied());
        }
        assert_eq!(named, ids, "every customer is named once, in order");
        // A short list stays one entry, unchanged.
        let one =
            Audit::new(&system_actor(), candor_log::Action::GrantCreate).subjects(&ids[..3]).detail("g").records();
        assert_eq!(one.len(), 1);
        assert_eq!(LogEntry::from_bytes(&one[0].entry).unwrap().detail.as_deref(), Some("g"));
    }

    #[test]
    fn no_entry_is_ever_longer_than_a_bundle_can_frame() {
        let ids = customers(5000);
        let record =
            Audit::new(&system_actor(), candor_log::Action::BreachRecord).subjects(&ids).detail("breach-1").record();
        assert!(record.entry.len() <= MAX_ENTRY_BYTES, "{}", record.entry.len());
        assert_eq!(record.subjects.len(), 5000, "every customer is still linked to the entry");
        let entry = LogEntry::from_bytes(&record.entry).unwrap();
        assert!(entry.subjects.len() > 1000 && entry.subjects.len() < 5000, "{}", entry.subjects.len());
        let detail = entry.detail.unwrap();
        assert!(detail.starts_with("breach-1; names ") && detail.contains("of 5000 customers"), "{detail}");
        // Entries that fit are left exactly as they were.
        let small =
            Audit::new(&system_actor(), candor_log::Action::SubjectRead).subjects(&ids[..10]).detail("d").record();
        let entry = LogEntry::from_bytes(&small.entry).unwrap();
        assert_eq!((entry.subjects.len(), entry.detail.as_deref()), (10, Some("d")));
        // Even an absurd detail and field list are cut to fit.
        let huge = Audit::new(&system_actor(), candor_log::Action::SubjectRead)
            .fields((0..20_000).map(|i| format!("field_{i}")))
            .detail("d".repeat(100_000))
            .record();
        assert!(huge.entry.len() <= MAX_ENTRY_BYTES, "{}", huge.entry.len());
    }
}
