//! Consent in the vault: the gate every data operation passes under a consent-based purpose,
//! and reading, changing and importing a customer's consents. The rules themselves (slots,
//! derived state, what counts) live in `candor_core::consent`; this module adds the ledger,
//! receipts, sealing of notes and the log.

use std::collections::HashMap;

use candor_core::access::AccessDenied;
use candor_core::catalog::{Catalog, Channel, FieldDecl, Purpose};
use candor_core::consent::{
    self, ActorKind, AudienceFold, CheckedChange, ConsentAction, ConsentMethod, LedgerFact, ReceiptActor,
    ReceiptChange, RequestedChange, SlotState,
};
use candor_core::notice::purpose_notice;
use candor_core::{EventId, FieldName, PurposeId, SubjectId};
use candor_crypto::SubjectKey;
use candor_store::{NewConsentEntry, NewConsentRecord, NoticeText, Recorded, StoreError, StoredConsent};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Authorized, Principal, Vault, VaultError};
use crate::receipt::{self, CONSENT_RECEIPT};

/// The notice in force for each purpose, and its version (`sha256:<hex>` of the text).
pub struct Notices {
    by_purpose: HashMap<PurposeId, Notice>,
}

#[derive(Debug, Clone)]
pub struct Notice {
    pub version: String,
    pub text: String,
}

impl Notices {
    pub fn of(catalog: &Catalog) -> Self {
        let by_purpose = catalog
            .purposes
            .iter()
            .map(|p| {
                let text = purpose_notice(catalog, p);
                let version = format!("sha256:{}", candor_crypto::sha256_hex(text.as_bytes()));
                (p.id.clone(), Notice { version, text })
            })
            .collect();
        Self { by_purpose }
    }

    pub fn get(&self, purpose: &PurposeId) -> &Notice {
        self.by_purpose.get(purpose).expect("every declared purpose has a notice")
    }

    pub fn version(&self, purpose: &PurposeId) -> &str {
        &self.get(purpose).version
    }
}

/// What consent lets a request use of one customer's data under its purpose.
pub enum ConsentScope {
    /// The purpose is not consent-based.
    NotNeeded,
    /// The purpose is consent-based, and consent is active on these channels (`None`: a
    /// purpose without channels). Empty: the customer has not given it.
    Active { purpose: Purpose, channels: Vec<Option<Channel>> },
}

impl ConsentScope {
    /// Whether the customer has consented (or the purpose needs no consent).
    pub fn given(&self) -> bool {
        match self {
            ConsentScope::NotNeeded => true,
            ConsentScope::Active { channels, .. } => !channels.is_empty(),
        }
    }

    /// Whether `field` may be used (see [`consent::field_usable`]).
    pub fn allows(&self, field: &FieldDecl) -> bool {
        match self {
            ConsentScope::NotNeeded => true,
            ConsentScope::Active { purpose, channels } => consent::field_usable(field, purpose, channels),
        }
    }
}

/// The consents of one customer: every slot's state, and the notices in force.
pub struct ConsentOverview {
    pub states: Vec<SlotState>,
}

/// A change as the API or the privacy center received it.
pub struct ChangeInput {
    pub changes: Vec<RequestedChange>,
    pub method: Option<String>,
    pub actor: Option<String>,
    pub reason: Option<String>,
    pub evidence: Option<String>,
    /// The customer's browser sent `Sec-GPC: 1` with this request.
    pub gpc: bool,
}

pub struct ChangeOutcome {
    /// Signed receipts, one per recorded change (an explicit change, and one for withdrawals a
    /// Global Privacy Control signal caused).
    pub receipts: Vec<Value>,
    pub states: Vec<SlotState>,
}

/// One line of a consent import, checked.
pub struct ImportLine {
    pub subject: SubjectId,
    /// One change, or one per channel for a line without a channel.
    pub changes: Vec<CheckedChange>,
    pub given_at: i64,
    pub evidence: Option<String>,
    pub notice_version: String,
}

fn facts(history: &[StoredConsent]) -> Vec<LedgerFact> {
    history
        .iter()
        .map(|c| LedgerFact {
            slot: consent::Slot { purpose: c.purpose.clone(), channel: c.channel },
            action: c.action,
            notice_version: c.notice_version.clone(),
            given_at: c.given_at,
            seq: c.seq,
        })
        .collect()
}

/// What a change did, for the log entry: `grant marketing/email, withdraw analytics`.
fn describe(changes: &[CheckedChange]) -> String {
    changes.iter().map(|c| format!("{} {}", c.action.name(), c.slot.label())).collect::<Vec<_>>().join(", ")
}

/// Reason and evidence, sealed with the customer's data key and bound to the receipt.
fn seal_note(
    key: &SubjectKey,
    receipt: EventId,
    reason: Option<&str>,
    evidence: Option<&str>,
) -> Result<Option<candor_core::Ciphertext>, VaultError> {
    if reason.is_none() && evidence.is_none() {
        return Ok(None);
    }
    let plain = zeroize::Zeroizing::new(
        serde_json::to_vec(&serde_json::json!({ "reason": reason, "evidence": evidence })).expect("JSON serialises"),
    );
    Ok(Some(key.seal_event(receipt, &FieldName::new("consent_note"), &plain)?))
}

/// The parts of one recorded change.
struct Draft<'a> {
    subject: SubjectId,
    changes: Vec<CheckedChange>,
    /// Notice version per change (the one in force, or an import's own).
    versions: Vec<String>,
    method: ConsentMethod,
    actor: ReceiptActor<'a>,
    given_at: i64,
    note: Option<candor_core::Ciphertext>,
    receipt_id: EventId,
}

/// For `candor bench` only (feature `bench`, off by default): the consent check a read makes,
/// alone, to measure it. Logs nothing, so no installation's server offers it.
#[cfg(feature = "bench")]
impl Vault {
    pub async fn bench_consent_given(&self, auth: &Authorized, id: SubjectId) -> Result<bool, VaultError> {
        Ok(self.consent_scope(auth, id).await?.given())
    }
}

impl Vault {
    /// What the customer's consent covers under the request's purpose. Read from the ledger on
    /// every request, so a withdrawal takes effect on the very next one, on every server. (The
    /// policy engine refuses a consent purpose without consent: see `Vault::gate`.)
    pub(crate) async fn consent_scope(&self, auth: &Authorized, id: SubjectId) -> Result<ConsentScope, VaultError> {
        let purpose = self.purpose(auth);
        if !purpose.needs_consent() {
            return Ok(ConsentScope::NotNeeded);
        }
        let channels = self.active_channels(purpose, id).await?;
        Ok(ConsentScope::Active { purpose: purpose.clone(), channels })
    }

    pub(crate) async fn active_channels(
        &self,
        purpose: &Purpose,
        id: SubjectId,
    ) -> Result<Vec<Option<Channel>>, VaultError> {
        let history = self.store.consent_history(id, Some(&purpose.id)).await?;
        Ok(self.channels_in(purpose, &history))
    }

    /// The channels with active consent for `purpose`, from the customer's ledger entries for it.
    pub(crate) fn channels_in(&self, purpose: &Purpose, history: &[StoredConsent]) -> Vec<Option<Channel>> {
        let state = consent::purpose_state(purpose, self.notices.version(&purpose.id), &facts(history));
        consent::active_channels(&state)
    }

    /// A new customer cannot have consented yet: nobody is created under a consent purpose.
    pub(crate) async fn refuse_create_under_consent(&self, auth: &Authorized) -> Result<(), VaultError> {
        if !self.purpose(auth).needs_consent() {
            return Ok(());
        }
        let audit = self.entry(&auth.principal, candor_log::Action::SubjectCreate).purpose(&auth.purpose);
        let error = VaultError::Access(AccessDenied::ConsentRequired(auth.purpose.to_string()));
        self.refuse(audit, error).await
    }

    /// Keeps the customers a lookup under a consent purpose may find: those whose consent
    /// covers `field`.
    pub(crate) async fn with_consent(
        &self,
        auth: &Authorized,
        field: &FieldDecl,
        found: Vec<SubjectId>,
    ) -> Result<Vec<SubjectId>, VaultError> {
        let purpose = self.purpose(auth);
        if !purpose.needs_consent() {
            return Ok(found);
        }
        let mut kept = Vec::with_capacity(found.len());
        for id in found {
            if consent::field_usable(field, purpose, &self.active_channels(purpose, id).await?) {
                kept.push(id);
            }
        }
        Ok(kept)
    }

    /// The notices in force.
    pub fn notices(&self) -> &Notices {
        &self.notices
    }

    async fn state_of(&self, id: SubjectId) -> Result<Vec<SlotState>, VaultError> {
        let history = self.store.consent_history(id, None).await?;
        Ok(consent::current_state(&self.catalog, |p| self.notices.version(&p.id), &facts(&history)))
    }

    /// Every consent slot of the customer and its current state.
    pub async fn consents(&self, auth: &Authorized, id: SubjectId) -> Result<ConsentOverview, VaultError> {
        self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        self.require_customer_records(auth, id, candor_log::Action::ConsentRead).await?;
        let states = self.state_of(id).await?;
        let log = self.audit(auth, candor_log::Action::ConsentRead, &[id]).decision("full").record();
        self.store.append_log(vec![log]).await?;
        Ok(ConsentOverview { states })
    }

    /// The customer's whole ledger, in the order recorded.
    pub async fn consent_history(&self, auth: &Authorized, id: SubjectId) -> Result<Vec<StoredConsent>, VaultError> {
        self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        self.require_customer_records(auth, id, candor_log::Action::ConsentHistory).await?;
        let history = self.store.consent_history(id, None).await?;
        let log = self.audit(auth, candor_log::Action::ConsentHistory, &[id]).decision("full").record();
        self.store.append_log(vec![log]).await?;
        Ok(history)
    }

    /// One of the customer's signed receipts, as issued.
    pub async fn consent_receipt(
        &self,
        auth: &Authorized,
        id: SubjectId,
        receipt_id: &str,
    ) -> Result<String, VaultError> {
        self.require_customer_records(auth, id, candor_log::Action::ConsentReceipt).await?;
        let stored = self.store.consent_receipt(id, receipt_id).await?.ok_or(VaultError::ReceiptNotFound)?;
        let log = self
            .audit(auth, candor_log::Action::ConsentReceipt, &[id])
            .decision("full")
            .detail(format!("receipt {receipt_id}"));
        self.store.append_log(vec![log.record()]).await?;
        Ok(stored.body)
    }

    /// Records grants and withdrawals for one customer, atomically, with a signed receipt.
    pub async fn change_consents(
        &self,
        auth: &Authorized,
        id: SubjectId,
        input: ChangeInput,
    ) -> Result<ChangeOutcome, VaultError> {
        if let Some(receipts) = self.replay::<Vec<Value>>(auth).await? {
            return Ok(ChangeOutcome { receipts, states: self.state_of(id).await? });
        }
        let method = match input.method.as_deref() {
            None => ConsentMethod::Api,
            Some(m) => match ConsentMethod::parse(m) {
                Some(m) if m.claimable_over_api() => m,
                Some(_) => return Err(VaultError::MethodNotClaimable(m.to_string())),
                None => {
                    return Err(VaultError::InvalidInput {
                        field: "method",
                        message: format!(
                            "must be one of: api, paper (not `{}`)",
                            m.chars().take(40).collect::<String>()
                        ),
                    });
                }
            },
        };
        // Withdrawing can only protect the customer: every role acting for them may. Recording a
        // grant on their behalf is a power the catalog gives explicitly (`record_consent`), and
        // it carries its evidence (the form, channel or document the customer used).
        if input.changes.iter().any(|c| c.action.trim() == ConsentAction::Grant.name()) {
            // What is wrong with the changes themselves is said first.
            consent::check_changes(&self.catalog, Some(self.purpose(auth)), &input.changes)?;
            self.require(
                auth,
                candor_policy::Action::RecordConsent,
                candor_log::Action::ConsentRecordOnBehalf,
                id,
                || VaultError::ConsentRecordingNotAllowed {
                    role: auth.principal.role.clone(),
                    purpose: auth.purpose.to_string(),
                },
            )
            .await?;
            if input.evidence.as_deref().is_none_or(|e| e.trim().is_empty()) {
                return Err(VaultError::InvalidInput {
                    field: "evidence",
                    message: "is required when a grant is recorded on the customer's behalf: name the form, channel \
                              or document the customer gave it through (for example `signup-form v3, checkbox`)"
                        .into(),
                });
            }
        }
        match self.apply_consent_changes(auth, id, input, method).await {
            Err(e) => {
                let receipts: Vec<Value> = self.replay_or(auth, e).await?;
                Ok(ChangeOutcome { receipts, states: self.state_of(id).await? })
            }
            done => done,
        }
    }

    /// Records `input` as given by `method` (checked by the caller).
    pub(crate) async fn apply_consent_changes(
        &self,
        auth: &Authorized,
        id: SubjectId,
        input: ChangeInput,
        method: ConsentMethod,
    ) -> Result<ChangeOutcome, VaultError> {
        let actor = match input.actor.as_deref() {
            None | Some("subject") => ActorKind::Subject,
            Some("staff") => ActorKind::Staff,
            Some(_) => {
                return Err(VaultError::InvalidInput {
                    field: "actor",
                    message: "must be `subject` (the customer chose) or `staff` (staff recorded the customer's choice)"
                        .into(),
                });
            }
        };
        consent::check_note(actor, input.reason.as_deref(), input.evidence.as_deref())?;
        let gpc = input.gpc && actor == ActorKind::Subject;
        let changes = if input.changes.is_empty() && gpc {
            Vec::new()
        } else {
            consent::check_changes(&self.catalog, Some(self.purpose(auth)), &input.changes)?
        };
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let now = self.now_millis();
        let mut drafts = Vec::new();
        if !changes.is_empty() {
            let receipt_id = EventId::random();
            drafts.push(Draft {
                subject: id,
                versions: changes.iter().map(|c| self.notices.version(&c.slot.purpose).to_string()).collect(),
                changes,
                method,
                actor: ReceiptActor {
                    kind: actor,
                    token: Some(&auth.principal.token_id),
                    role: Some(&auth.principal.role),
                },
                given_at: now,
                note: seal_note(&key, receipt_id, input.reason.as_deref(), input.evidence.as_deref())?,
                receipt_id,
            });
        }
        if gpc {
            // A Global Privacy Control signal withdraws every active consent of a `gpc` purpose,
            // except what the customer explicitly chose in this very request.
            let explicit: Vec<&consent::Slot> = drafts.iter().flat_map(|d| d.changes.iter().map(|c| &c.slot)).collect();
            let withdraw: Vec<CheckedChange> = self
                .state_of(id)
                .await?
                .into_iter()
                .filter(|s| s.is_active() && !explicit.contains(&&s.slot))
                .filter(|s| self.catalog.purpose(s.slot.purpose.as_str()).is_some_and(|p| p.gpc))
                .map(|s| CheckedChange { slot: s.slot, action: ConsentAction::Withdraw })
                .collect();
            if !withdraw.is_empty() {
                drafts.push(Draft {
                    subject: id,
                    versions: withdraw.iter().map(|c| self.notices.version(&c.slot.purpose).to_string()).collect(),
                    changes: withdraw,
                    method: ConsentMethod::Gpc,
                    actor: ReceiptActor {
                        kind: ActorKind::Subject,
                        token: Some(&auth.principal.token_id),
                        role: Some(&auth.principal.role),
                    },
                    given_at: now,
                    note: None,
                    receipt_id: EventId::random(),
                });
            }
        }
        let receipts =
            self.record(&auth.principal, Some(&auth.purpose), drafts, now, auth.idempotency.as_ref()).await?;
        Ok(ChangeOutcome { receipts, states: self.state_of(id).await? })
    }

    /// Whether a customer with this id is stored (and not erased), for checking an import file
    /// line by line before anything is recorded. Reads no value and logs nothing: the import
    /// that follows logs each consent it records.
    pub async fn subject_exists(&self, id: SubjectId) -> Result<bool, VaultError> {
        Ok(self.store.load_subject(id, &[]).await?.is_some())
    }

    /// Imports consents collected elsewhere, with their original times and evidence: all lines
    /// or none. Each line gets its own receipt and log entry. Returns how many were recorded.
    pub async fn import_consents(
        &self,
        actor: &Principal,
        lines: Vec<ImportLine>,
        progress: impl Fn(u64),
    ) -> Result<usize, VaultError> {
        let now = self.now_millis();
        let mut drafts = Vec::with_capacity(lines.len());
        let mut keys: HashMap<SubjectId, SubjectKey> = HashMap::new();
        for (i, line) in lines.into_iter().enumerate() {
            if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(line.subject) {
                let record = self.store.load_subject(line.subject, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
                slot.insert(self.keys.open_subject_key(line.subject, &record.dek)?);
            }
            let receipt_id = EventId::random();
            let note = seal_note(&keys[&line.subject], receipt_id, None, line.evidence.as_deref())?;
            drafts.push(Draft {
                subject: line.subject,
                versions: vec![line.notice_version; line.changes.len()],
                changes: line.changes,
                method: ConsentMethod::Import,
                actor: ReceiptActor { kind: ActorKind::Operator, token: None, role: None },
                given_at: line.given_at,
                note,
                receipt_id,
            });
            progress(i as u64 + 1);
        }
        let n = drafts.len();
        self.record(actor, None, drafts, now, None).await?;
        Ok(n)
    }

    /// Signs a receipt for each draft and appends them all, with their log entries, in one
    /// transaction.
    async fn record(
        &self,
        principal: &Principal,
        purpose: Option<&PurposeId>,
        drafts: Vec<Draft<'_>>,
        now: i64,
        idempotency: Option<&super::IdempotencyKey>,
    ) -> Result<Vec<Value>, VaultError> {
        let mut records = Vec::with_capacity(drafts.len());
        let mut logs = Vec::with_capacity(drafts.len());
        let mut receipts = Vec::with_capacity(drafts.len());
        let mut notices: HashMap<String, NoticeText> = HashMap::new();
        for d in drafts {
            let receipt_id = d.receipt_id.to_string();
            let listed: Vec<ReceiptChange<'_>> = d
                .changes
                .iter()
                .zip(&d.versions)
                .map(|(change, v)| ReceiptChange { change, notice_version: v })
                .collect();
            let body = consent::receipt_body(
                &self.catalog,
                &receipt_id,
                d.given_at,
                now,
                d.subject,
                d.method,
                &d.actor,
                &listed,
            );
            let signed = receipt::sign(&self.log, CONSENT_RECEIPT, body);
            for c in &d.changes {
                let notice = self.notices.get(&c.slot.purpose);
                notices.entry(notice.version.clone()).or_insert_with(|| NoticeText {
                    version: notice.version.clone(),
                    purpose: c.slot.purpose.clone(),
                    text: notice.text.clone(),
                });
            }
            let mut audit = self.entry(principal, candor_log::Action::ConsentChange).subjects(&[d.subject]);
            if let Some(p) = purpose {
                audit = audit.purpose(p);
            }
            let detail = format!("{}; method {}; receipt {receipt_id}", describe(&d.changes), d.method.name());
            // Bulk imports would flood the server log; their entries still go to the audit log.
            logs.push(if d.method == ConsentMethod::Import {
                audit.detail(detail).record_quiet()
            } else {
                audit.detail(detail).record()
            });
            records.push(NewConsentRecord {
                receipt_id,
                subject: d.subject,
                method: d.method,
                actor_kind: d.actor.kind,
                actor_token: d.actor.token.map(str::to_string),
                given_at: d.given_at,
                recorded_at: now,
                entries: d
                    .changes
                    .iter()
                    .zip(&d.versions)
                    .map(|(c, v)| NewConsentEntry {
                        purpose: c.slot.purpose.clone(),
                        channel: c.slot.channel,
                        action: c.action,
                        notice_version: v.clone(),
                    })
                    .collect(),
                receipt: serde_json::to_string(&signed).expect("JSON serialises"),
                note: d.note,
            });
            receipts.push(signed);
        }
        if records.is_empty() {
            return Ok(receipts);
        }
        if let (Some(k), Some(first)) = (idempotency, logs.first_mut()) {
            first.idempotency = Some(candor_store::IdempotencyRecord {
                key: k.key,
                request: k.request,
                outcome: serde_json::to_vec(&receipts).expect("JSON serialises"),
                at: now,
            });
        }
        match self.store.record_consents(records, notices.into_values().collect(), logs).await? {
            Recorded::All => Ok(receipts),
            Recorded::UnknownSubject(_) => Err(VaultError::SubjectNotFound),
        }
    }

    /// The customers who may be contacted under the caller's (consent) purpose on `channel`
    /// right now, streamed as ids in no particular order. The query itself is logged; the ids
    /// are not (a million of them would not fit an entry).
    pub async fn audience(
        &self,
        auth: &Authorized,
        channel: Option<&str>,
    ) -> Result<mpsc::Receiver<Result<Vec<SubjectId>, StoreError>>, VaultError> {
        let purpose = self.purpose(auth).clone();
        let bad = |field, message: String| Err(VaultError::AudienceQuery { field, message });
        if !purpose.needs_consent() {
            return bad(
                "Candor-Purpose",
                format!("purpose `{}` is not based on consent: an audience is the customers who consented", purpose.id),
            );
        }
        let declared: Vec<&str> = purpose.channels.iter().map(|c| c.name()).collect();
        let channel = match (channel.map(str::trim).filter(|c| !c.is_empty()), declared.is_empty()) {
            (None, true) => None,
            (None, false) => {
                return bad(
                    "channel",
                    format!(
                        "purpose `{}` is consented per channel: add ?channel= one of {}",
                        purpose.id,
                        declared.join(", ")
                    ),
                );
            }
            (Some(_), true) => {
                return bad("channel", format!("purpose `{}` has no channels: leave channel out", purpose.id));
            }
            (Some(c), false) => match Channel::parse(c).filter(|ch| purpose.channels.contains(ch)) {
                Some(ch) => Some(ch),
                None => {
                    return bad(
                        "channel",
                        format!("purpose `{}` has the channels {}: use one of them", purpose.id, declared.join(", ")),
                    );
                }
            },
        };
        let mut detail = String::from("audience query");
        if let Some(c) = channel {
            detail.push_str(&format!("; channel {}", c.name()));
        }
        let log = self.audit(auth, candor_log::Action::ConsentAudience, &[]).decision("full").detail(detail).record();
        self.store.append_log(vec![log]).await?;

        let mut rows = self.store.consent_audience(&purpose.id, channel);
        let version = self.notices.version(&purpose.id).to_string();
        let (tx, rx) = mpsc::channel(candor_store::consents::AUDIENCE_BUFFER);
        tokio::spawn(async move {
            let mut fold = AudienceFold::new(&purpose, &version);
            while let Some(batch) = rows.recv().await {
                let ids = match batch {
                    Ok(rows) => {
                        rows.into_iter().filter_map(|r| fold.push(r.subject, r.action, &r.notice_version)).collect()
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if tx.send(Ok(ids)).await.is_err() {
                    return; // the reader went away
                }
            }
            if let Some(id) = fold.finish() {
                let _ = tx.send(Ok(vec![id])).await;
            }
        });
        Ok(rx)
    }
}
