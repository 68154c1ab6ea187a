//! Customer rights in the vault: erasure by crypto-shredding with a signed certificate, legal
//! holds that block it, and restriction of processing.

use candor_core::catalog::LegalBasis;
use candor_core::rights::{Erased, Requester, erasure_certificate};
use candor_core::{EventId, FieldName, SubjectId};
use candor_store::{Erasure, StoreError, Toggle};
use serde_json::Value;

use super::{Authorized, Vault, VaultError, now_millis};
use crate::receipt::{self, ERASURE_CERTIFICATE};

/// Shortest reason accepted for a hold or restriction, and the longest.
const MIN_REASON: usize = 10;
const MAX_REASON: usize = 500;

/// A legal hold as staff see it.
pub struct HoldView {
    pub placed_at: i64,
    pub reason: String,
}

fn check_reason(reason: Option<&str>, required: bool) -> Result<Option<&str>, VaultError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    match reason {
        None if required => Err(VaultError::InvalidInput { field: "reason", message: "is required: say why".into() }),
        Some(r) if r.chars().count() < MIN_REASON || r.chars().count() > MAX_REASON => Err(VaultError::InvalidInput {
            field: "reason",
            message: format!("must be {MIN_REASON} to {MAX_REASON} characters"),
        }),
        Some(r) if r.chars().any(char::is_control) => {
            Err(VaultError::InvalidInput { field: "reason", message: "must not contain control characters".into() })
        }
        r => Ok(r),
    }
}

impl Vault {
    /// Erases the customer (idempotent) and returns the signed erasure certificate.
    pub async fn erase_subject(&self, auth: &Authorized, id: SubjectId) -> Result<Value, VaultError> {
        self.refuse_under_consent(auth, "subject.erase", id).await?;
        let now = now_millis();
        let inventory: candor_store::Inventory = self.store.inventory(id).await?.unwrap_or_default();
        let certificate_id = EventId::random().to_string();
        // Recipients given the customer's data in grants get a signed notice (the outbox entry
        // is written with the erasure); the certificate names them.
        let mut notified: Vec<Value> = Vec::new();
        for g in self.store.grants_of(id).await? {
            if !notified.iter().any(|n| n["recipient"] == g.recipient.as_str()) {
                let name = self.catalog.recipients.iter().find(|r| r.id == g.recipient).map(|r| r.name.clone());
                notified.push(serde_json::json!({"recipient": g.recipient, "name": name}));
            }
        }
        let mut body = erasure_certificate(
            &self.catalog,
            &certificate_id,
            id,
            now,
            &Erased { fields: &inventory.fields, events: &inventory.events, consent_entries: inventory.consents },
            &Requester { token: &auth.principal.token_id, role: &auth.principal.role, purpose: auth.purpose.as_str() },
        );
        body["recipients_notified"] = serde_json::json!({
            "how": "a signed notice (webhook) to each, written with this erasure and retried until delivered; confirmations: GET /v1/notices",
            "recipients": notified,
        });
        let signed = receipt::sign(&self.log, ERASURE_CERTIFICATE, body);
        let text = serde_json::to_string(&signed).expect("JSON serialises");
        let events: u64 = inventory.events.iter().map(|(_, n)| n).sum();
        let log = self
            .audit(auth, "subject.erase", &[id])
            .fields(inventory.fields.iter().map(FieldName::as_str))
            .detail(format!(
                "crypto-shredded; events {events}; consent entries {}; certificate {certificate_id}",
                inventory.consents
            ))
            .record();
        let erased = self.store.erase_subject(id, now, text, log).await?;
        self.keys.forget_subject_key(id);
        match erased {
            Erasure::Erased => Ok(signed),
            Erasure::AlreadyErased { certificate: Some(kept), .. } => serde_json::from_str(&kept)
                .map_err(|_| VaultError::Store(StoreError::Corrupt("a kept erasure certificate is not JSON".into()))),
            Erasure::AlreadyErased { erased_at, certificate: None } => {
                // This copy of the data no longer has the certificate (an older copy was
                // restored): certify again what the key store proves.
                let body = erasure_certificate(
                    &self.catalog,
                    &certificate_id,
                    id,
                    erased_at,
                    &Erased { fields: &[], events: &[], consent_entries: 0 },
                    &Requester {
                        token: &auth.principal.token_id,
                        role: &auth.principal.role,
                        purpose: auth.purpose.as_str(),
                    },
                );
                Ok(receipt::sign(&self.log, ERASURE_CERTIFICATE, body))
            }
            Erasure::Held => {
                let audit = self.audit(auth, "subject.erase", &[id]);
                self.refuse(audit, "legal_hold", VaultError::LegalHold).await
            }
            Erasure::NotFound => Err(VaultError::SubjectNotFound),
        }
    }

    /// Erasure is allowed by the policy engine: by the catalog, under any purpose but a consent
    /// purpose (those exist to use data with the customer's agreement, not to manage it).
    async fn refuse_under_consent(&self, auth: &Authorized, action: &str, id: SubjectId) -> Result<(), VaultError> {
        self.require(auth, candor_policy::Action::Erase, action, id, "purpose_not_allowed", || {
            VaultError::WrongPurpose(format!(
                "`{}` is a consent purpose: act under the purpose the customer's request belongs to (for example their account)",
                auth.purpose
            ))
        })
        .await
    }

    /// Places a legal hold, which blocks erasure. Only under a purpose whose legal basis is a
    /// legal obligation; the reason is required and stored encrypted.
    pub async fn place_hold(&self, auth: &Authorized, id: SubjectId, reason: Option<&str>) -> Result<bool, VaultError> {
        self.require_legal_obligation(auth, "hold.place", id).await?;
        let reason = check_reason(reason, true)?.unwrap_or_default();
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let note = key.seal_field(&FieldName::new("legal_hold_reason"), reason.as_bytes())?;
        let log = self.audit(auth, "hold.place", &[id]).record();
        match self.store.place_hold(id, note, now_millis(), log).await? {
            Toggle::Changed => Ok(true),
            Toggle::Unchanged => Ok(false),
            Toggle::NotFound => Err(VaultError::SubjectNotFound),
        }
    }

    pub async fn lift_hold(&self, auth: &Authorized, id: SubjectId) -> Result<bool, VaultError> {
        self.require_legal_obligation(auth, "hold.lift", id).await?;
        let log = self.audit(auth, "hold.lift", &[id]).record();
        match self.store.lift_hold(id, log).await? {
            Toggle::Changed => Ok(true),
            Toggle::Unchanged => Ok(false),
            Toggle::NotFound => Err(VaultError::SubjectNotFound),
        }
    }

    /// The legal hold in place, with its reason (logged as a read).
    pub async fn hold(&self, auth: &Authorized, id: SubjectId) -> Result<Option<HoldView>, VaultError> {
        self.require_legal_obligation(auth, "hold.read", id).await?;
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let Some((placed_at, note)) = self.store.hold(id).await? else {
            return Ok(None);
        };
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let reason =
            String::from_utf8_lossy(&key.open_field(&FieldName::new("legal_hold_reason"), &note)?).into_owned();
        self.store.append_log(vec![self.audit(auth, "hold.read", &[id]).decision("full").record()]).await?;
        Ok(Some(HoldView { placed_at, reason }))
    }

    async fn require_legal_obligation(&self, auth: &Authorized, action: &str, id: SubjectId) -> Result<(), VaultError> {
        if self.purpose(auth).legal_basis == LegalBasis::LegalObligation {
            return Ok(());
        }
        let audit = self.audit(auth, action, &[id]);
        let error = VaultError::WrongPurpose(format!(
            "legal holds are managed under a purpose whose legal basis is legal_obligation, not `{}`",
            auth.purpose
        ));
        self.refuse(audit, "purpose_not_allowed", error).await
    }

    /// Restricts processing of the customer's data (kept, not used); `false` if it already was.
    pub async fn restrict(&self, auth: &Authorized, id: SubjectId, reason: Option<&str>) -> Result<bool, VaultError> {
        self.refuse_under_consent(auth, "subject.restrict", id).await?;
        let reason = check_reason(reason, false)?;
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let note = match reason {
            Some(r) => {
                let key = self.keys.open_subject_key(id, &record.dek)?;
                Some(key.seal_field(&FieldName::new("restriction_reason"), r.as_bytes())?)
            }
            None => None,
        };
        let log = self.audit(auth, "subject.restrict", &[id]).record();
        match self.store.restrict(id, note, now_millis(), log).await? {
            Toggle::Changed => Ok(true),
            Toggle::Unchanged => Ok(false),
            Toggle::NotFound => Err(VaultError::SubjectNotFound),
        }
    }

    /// Lifts the restriction; logged.
    pub async fn lift_restriction(&self, auth: &Authorized, id: SubjectId) -> Result<bool, VaultError> {
        self.refuse_under_consent(auth, "subject.unrestrict", id).await?;
        let log = self.audit(auth, "subject.unrestrict", &[id]).record();
        match self.store.lift_restriction(id, log).await? {
            Toggle::Changed => Ok(true),
            Toggle::Unchanged => Ok(false),
            Toggle::NotFound => Err(VaultError::SubjectNotFound),
        }
    }
}
