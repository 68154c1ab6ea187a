//! The access report and the export: everything held about one customer, with why. Only under
//! a purpose declared `customer_requests = true` (answering access and portability requests is a
//! legal obligation). Events are streamed in pages, so a customer with a million events is
//! reported in bounded memory.

use candor_core::consent::{self, SlotState};
use candor_core::privacy_notice::{
    action_plain, channel_plain, event_history_label, event_label, field_label, purpose_plain,
};
use candor_core::rights::explain;
use candor_core::{FieldName, SubjectId};
use candor_crypto::{CryptoError, SubjectKey};
use candor_policy::Action;
use candor_store::StoredConsent;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{Authorized, EventView, Vault, VaultError};

/// Events per page when streaming, and pages buffered ahead of the writer.
const EVENT_PAGE: u32 = 500;
const PAGES_AHEAD: usize = 4;
/// Most recent access-log entries listed in the report (the full list with proofs is at
/// `/v1/subjects/{id}/access-log`).
pub const ACCESS_HISTORY_LIMIT: usize = 1000;

/// Everything in a report except the events, which are streamed.
pub struct ReportHead {
    pub subject: SubjectId,
    pub created_at: i64,
    pub restricted: bool,
    pub legal_hold: bool,
    /// Field name, value, and what the catalog says about it.
    pub fields: Vec<(FieldName, Value, Value)>,
    pub consents: Vec<SlotState>,
    pub consent_history: Vec<StoredConsent>,
    pub event_counts: Vec<(FieldName, u64)>,
    /// Latest access-log entries about the customer (index, entry JSON), and how many there are.
    pub access: Vec<(u64, Value)>,
    pub access_total: usize,
    /// Break-glass overrides opened for the customer, with their reasons.
    pub overrides: Vec<super::OverrideView>,
    /// Grants (shares with recipients) that include the customer.
    pub shares: Vec<super::grants::ShareView>,
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    Report,
    Export,
}

impl Vault {
    pub(crate) async fn require_customer_requests(
        &self,
        auth: &Authorized,
        action: candor_log::Action,
        id: SubjectId,
    ) -> Result<(), VaultError> {
        self.require(auth, Action::Export, action, id, || {
            VaultError::WrongPurpose(format!(
                "access reports and exports are produced under a purpose declared customer_requests = true, not `{}`",
                auth.purpose
            ))
        })
        .await
    }

    /// Reads everything but the events, logs the report or export, and returns what streams
    /// the events ([`ReportEvents::stream`]; the data key stays inside it).
    pub async fn report_head(
        &self,
        auth: &Authorized,
        id: SubjectId,
        document: Document,
    ) -> Result<(ReportHead, ReportEvents), VaultError> {
        let action = match document {
            Document::Report => candor_log::Action::SubjectReport,
            Document::Export => candor_log::Action::SubjectExport,
        };
        self.require_customer_requests(auth, action, id).await?;
        let all: Vec<FieldName> = self.catalog.fields.iter().map(|f| f.name.clone()).collect();
        let record = self.store.load_subject(id, &all).await?.ok_or(VaultError::SubjectNotFound)?;
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let mut fields = Vec::with_capacity(record.values.len());
        for ((name, sealed), stored_at) in record.values.iter().zip(&record.value_times) {
            let plain = key.open_field(name, sealed)?;
            let value: Value = serde_json::from_slice(&plain).map_err(|_| CryptoError::Malformed("field value"))?;
            let about = match self.catalog.field(name.as_str()) {
                Some(d) => explain(&self.catalog, d.category, &d.purposes, &d.retention, *stored_at, Some(name)),
                None => json!({"note": "no longer declared in the catalog"}),
            };
            fields.push((name.clone(), value, about));
        }
        let consent_history = self.store.consent_history(id, None).await?;
        let facts: Vec<_> = consent_history
            .iter()
            .map(|c| consent::LedgerFact {
                slot: consent::Slot { purpose: c.purpose.clone(), channel: c.channel },
                action: c.action,
                notice_version: c.notice_version.clone(),
                given_at: c.given_at,
                seq: c.seq,
            })
            .collect();
        let consents = consent::current_state(&self.catalog, |p| self.notices().version(&p.id), &facts);
        let inventory = self.store.inventory(id).await?.unwrap_or_default();
        let legal_hold = self.store.hold(id).await?.is_some();
        let overrides = self.overrides_of(id, &key).await?;
        let shares = self.shares_of(id).await?;
        let (mut access, mut access_total) = (Vec::new(), 0);
        if document == Document::Report {
            (access, access_total) = self.recent_log_entries(id).await?;
        }
        let log = self
            .audit(auth, action, &[id])
            .fields(fields.iter().map(|(n, _, _)| n.as_str()))
            .decision("full")
            .detail(format!("events {}", inventory.events.iter().map(|(_, n)| n).sum::<u64>()))
            .record();
        self.store.append_log(vec![log]).await?;
        let head = ReportHead {
            subject: id,
            created_at: record.created_at,
            restricted: record.restricted,
            legal_hold,
            fields,
            consents,
            consent_history,
            event_counts: inventory.events,
            access,
            access_total,
            overrides,
            shares,
        };
        Ok((head, ReportEvents { id, key }))
    }

    /// The latest [`ACCESS_HISTORY_LIMIT`] log entries about customer `id` (index, entry JSON),
    /// oldest first, and how many there are in all.
    pub(crate) async fn recent_log_entries(&self, id: SubjectId) -> Result<(Vec<(u64, Value)>, usize), VaultError> {
        let total = self.store.subject_log_indices(id).await?.len();
        let entries = self
            .store
            .recent_subject_log_entries(id, ACCESS_HISTORY_LIMIT as u32)
            .await?
            .into_iter()
            .map(|(index, bytes)| (index, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
            .collect();
        Ok((entries, total))
    }

    /// Streams every event of the customer, oldest first, decrypted, in pages.
    fn stream_events(&self, id: SubjectId, key: SubjectKey) -> mpsc::Receiver<Result<Vec<EventView>, VaultError>> {
        let (tx, rx) = mpsc::channel(PAGES_AHEAD);
        let vault = self.clone();
        tokio::spawn(async move {
            let types: Vec<FieldName> = vault.catalog.events.iter().map(|e| e.name.clone()).collect();
            let mut after = None;
            loop {
                let page = match vault.store.list_events(id, &types, after, EVENT_PAGE).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let last = page.len() < EVENT_PAGE as usize;
                after = page.last().map(|e| e.seq);
                let mut views = Vec::with_capacity(page.len());
                for e in page {
                    match super::open_event(&key, e) {
                        Ok(v) => views.push(v),
                        Err(err) => {
                            let _ = tx.send(Err(err)).await;
                            return;
                        }
                    }
                }
                if tx.send(Ok(views)).await.is_err() || last {
                    return;
                }
            }
        });
        rx
    }
}

/// The events of a report or export whose head was read (and logged) by [`Vault::report_head`].
/// It holds the customer's data key, which never leaves the vault: the only thing a caller can
/// do with it is [`ReportEvents::stream`] (dropping it zeroizes the key).
pub struct ReportEvents {
    id: SubjectId,
    key: SubjectKey,
}

impl ReportEvents {
    /// Every event of the customer, oldest first, decrypted, in pages read ahead of the
    /// consumer (bounded).
    pub fn stream(self, vault: &Vault) -> mpsc::Receiver<Result<Vec<EventView>, VaultError>> {
        vault.stream_events(self.id, self.key)
    }
}

/// The report's JSON head: everything before the streamed `"events"` array, as an object.
pub fn head_json(vault: &Vault, head: &ReportHead, document: Document) -> Map<String, Value> {
    let catalog = vault.catalog();
    let time = crate::clock::rfc3339;
    let mut out = Map::new();
    out.insert(
        "document".into(),
        json!(match document {
            Document::Report => "candor-access-report/1",
            Document::Export => "candor-export/1",
        }),
    );
    out.insert("subject_id".into(), json!(head.subject.to_string()));
    out.insert("generated_at".into(), json!(vault.clock.now().to_string()));
    out.insert(
        "controller".into(),
        json!({"name": catalog.organisation.name, "contact": catalog.organisation.privacy_contact}),
    );
    out.insert(
        "storage".into(),
        json!({
            "region": catalog.organisation.storage_region,
            "provider": catalog.organisation.storage_provider,
            "protection": "each value is encrypted on its own (AES-256-GCM) with a key of this customer's, which is itself encrypted; erasure destroys that key",
        }),
    );
    out.insert("customer_since".into(), json!(time(head.created_at)));
    out.insert("restricted".into(), json!(head.restricted));
    out.insert("legal_hold".into(), json!(head.legal_hold));
    let fields: Vec<Value> = head
        .fields
        .iter()
        .map(|(name, value, about)| {
            let mut f = json!({"field": name.as_str(), "label": field_label(catalog, name.as_str()), "value": value});
            if let (Some(f), Some(about)) = (f.as_object_mut(), about.as_object()) {
                f.extend(about.clone());
            }
            f
        })
        .collect();
    out.insert("fields".into(), json!(fields));
    let consents: Vec<Value> = head
        .consents
        .iter()
        .map(|s| {
            json!({
                "purpose": s.slot.purpose.as_str(),
                "why": purpose_plain(catalog, s.slot.purpose.as_str()),
                "channel": s.slot.channel.map(|c| c.name()),
                "channel_label": s.slot.channel.map(channel_plain),
                "status": serde_json::to_value(s.status).unwrap_or(Value::Null),
                "since": s.since.map(time),
            })
        })
        .collect();
    let history: Vec<Value> = head
        .consent_history
        .iter()
        .map(|c| {
            json!({
                "purpose": c.purpose.as_str(), "why": purpose_plain(catalog, c.purpose.as_str()),
                "channel": c.channel.map(|ch| ch.name()), "channel_label": c.channel.map(channel_plain),
                "action": c.action.name(),
                "given_at": time(c.given_at), "method": c.method.name(), "notice_version": c.notice_version,
                "receipt_id": c.receipt_id,
            })
        })
        .collect();
    out.insert("consents".into(), json!({"current": consents, "history": history}));
    let shares: Vec<Value> = head
        .shares
        .iter()
        .map(|s| {
            json!({
                "grant_id": s.grant_id, "recipient": s.recipient, "recipient_name": s.recipient_name,
                "country": s.country, "purpose": s.purpose, "why": purpose_plain(catalog, &s.purpose),
                "fields": s.fields,
                "data": s.fields.iter().map(|f| field_label(catalog, f)).collect::<Vec<_>>(),
                "shared_at": time(s.created_at), "until": time(s.expires_at), "revoked_at": s.revoked_at.map(time),
            })
        })
        .collect();
    out.insert(
        "shares".into(),
        json!({"note": "each grant that gave a recipient some of this customer's data; every read by the recipient is in the access history (actor recipient:<id>)", "grants": shares}),
    );
    let events: Vec<Value> = head
        .event_counts
        .iter()
        .map(|(t, n)| {
            let mut about = match catalog.event(t.as_str()) {
                Some(d) => explain(catalog, d.category, &d.purposes, &d.retention, 0, None),
                None => json!({}),
            };
            if let Some(a) = about.as_object_mut() {
                a.remove("delete_after"); // per event, below
                a.insert("type".into(), json!(t.as_str()));
                a.insert("label".into(), json!(event_history_label(t.as_str())));
                a.insert("count".into(), json!(n));
            }
            about
        })
        .collect();
    out.insert("event_types".into(), json!(events));
    let overrides: Vec<Value> = head
        .overrides
        .iter()
        .map(|o| {
            json!({
                "id": o.id, "role": o.role, "purpose": o.purpose, "why": purpose_plain(catalog, &o.purpose),
                "reason": o.reason,
                "opened_at": time(o.opened_at), "expires_at": time(o.expires_at),
            })
        })
        .collect();
    out.insert(
        "break_glass".into(),
        json!({
            "note": "emergency overrides: staff of this role saw masked data in full until the time given, for the reason given; each read is in the access history",
            "overrides": overrides,
        }),
    );
    if document == Document::Report {
        let entries: Vec<Value> = head
            .access
            .iter()
            .map(|(i, e)| json!({"index": i, "what": action_plain(e["action"].as_str().unwrap_or_default()), "entry": e}))
            .collect();
        out.insert(
            "access_history".into(),
            json!({
                "total": head.access_total,
                "listed": entries.len(),
                "note": "the latest entries; every entry with its inclusion proof is at /v1/subjects/{id}/access-log",
                "entries": entries,
            }),
        );
    }
    out
}

/// One event as the report and the export list it.
pub fn event_json(vault: &Vault, e: &EventView) -> Value {
    let delete_after = vault
        .catalog()
        .event(&e.event_type)
        .and_then(|d| candor_core::rights::retention_end(&d.retention, e.recorded_at))
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string());
    json!({
        "id": e.id.to_string(),
        "type": e.event_type,
        "label": event_label(&e.event_type),
        "recorded_at": crate::clock::rfc3339(e.recorded_at),
        "occurred_at": e.occurred_at,
        "data": e.data,
        "delete_after": delete_after,
    })
}
