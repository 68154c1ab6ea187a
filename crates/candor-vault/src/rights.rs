//! Customer rights in the vault: erasure by crypto-shredding with a signed certificate, legal
//! holds that block it, and restriction of processing.

use candor_core::catalog::LegalBasis;
use std::sync::{Arc, OnceLock};

use candor_core::PurposeId;
use candor_core::catalog::SYSTEM_ROLE;
use candor_core::rights::{Erased, Requester, Told, erasure_certificate};
use candor_core::{EventId, FieldName, SubjectId};
use candor_store::rights::ErasureRequest;
use candor_store::{Certify, Erasure, Notified, StoreError, Toggle};
use serde_json::Value;

use super::{Authorized, Principal, Vault, VaultError};
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
        self.require_erase(auth, candor_log::Action::SubjectErase, id).await?;
        if let Err(done) = self.erasure_brake.admit(&auth.principal.token_id, self.now_millis()) {
            let audit = self.audit(auth, candor_log::Action::SubjectErase, &[id]);
            return self.refuse(audit, VaultError::ErasureRateLimited(done)).await;
        }
        let now = self.now_millis();
        let inventory: candor_store::Inventory = self.store.inventory(id).await?.unwrap_or_default();
        let certificate_id = EventId::random().to_string();
        let request = ErasureRequest {
            certificate_id: certificate_id.clone(),
            token_id: auth.principal.token_id.clone(),
            role: auth.principal.role.clone(),
            purpose: auth.purpose.to_string(),
        };
        // The certificate is made and signed inside the erasure's transaction, from the
        // recipients the store writes a notice to there (those holding the customer in a
        // grant), so the two always name the same recipients.
        let issued = Arc::new(OnceLock::new());
        let certify = self.certifier(id, now, &request, &inventory, issued.clone());
        let events: u64 = inventory.events.iter().map(|(_, n)| n).sum();
        let log = self
            .audit(auth, candor_log::Action::SubjectErase, &[id])
            .fields(inventory.fields.iter().map(FieldName::as_str))
            .detail(format!(
                "crypto-shredded; events {events}; consent entries {}; certificate {certificate_id}",
                inventory.consents
            ))
            .record();
        let erased = self.store.erase_subject_certified(id, now, request, certify, log).await;
        self.keys.forget_subject_key(id);
        // The brake counts erasures made, not repeats, refusals or failures.
        if !matches!(erased, Ok(Erasure::Erased)) {
            self.erasure_brake.refund(&auth.principal.token_id);
        }
        match erased? {
            Erasure::Erased => issued
                .get()
                .cloned()
                .ok_or_else(|| VaultError::Store(StoreError::Corrupt("the erasure certificate was not made".into()))),
            Erasure::AlreadyErased { certificate: Some(kept), .. } => serde_json::from_str(&kept)
                .map_err(|_| VaultError::Store(StoreError::Corrupt("a kept erasure certificate is not JSON".into()))),
            Erasure::AlreadyErased { erased_at, certificate: None } => {
                // This copy of the data no longer has the certificate (an older copy was
                // restored): certify again what the key store proves; who was told then is
                // no longer known here.
                let body = erasure_certificate(
                    &self.catalog,
                    &certificate_id,
                    id,
                    erased_at,
                    &Erased { fields: &[], events: &[], consent_entries: 0 },
                    None,
                    &Requester {
                        token: &auth.principal.token_id,
                        role: &auth.principal.role,
                        purpose: auth.purpose.as_str(),
                    },
                );
                Ok(receipt::sign(&self.log, ERASURE_CERTIFICATE, body))
            }
            Erasure::Held => {
                let audit = self.audit(auth, candor_log::Action::SubjectErase, &[id]);
                self.refuse(audit, VaultError::LegalHold).await
            }
            Erasure::NotFound => Err(VaultError::SubjectNotFound),
        }
    }

    /// The closure that makes and signs the erasure certificate from the recipients told (and
    /// keeps the signed document in `issued`).
    fn certifier(
        &self,
        id: SubjectId,
        erased_at: i64,
        request: &ErasureRequest,
        inventory: &candor_store::Inventory,
        issued: Arc<OnceLock<Value>>,
    ) -> Certify {
        let (catalog, log, request) = (self.catalog.clone(), self.log.clone(), request.clone());
        let (fields, events, consents) = (inventory.fields.clone(), inventory.events.clone(), inventory.consents);
        Box::new(move |notified: &[Notified]| {
            let told: Vec<Told<'_>> =
                notified.iter().map(|n| Told { recipient: &n.recipient, fields: &n.fields }).collect();
            let body = erasure_certificate(
                &catalog,
                &request.certificate_id,
                id,
                erased_at,
                &Erased { fields: &fields, events: &events, consent_entries: consents },
                Some(&told),
                &Requester { token: &request.token_id, role: &request.role, purpose: &request.purpose },
            );
            let signed = receipt::sign(&log, ERASURE_CERTIFICATE, body);
            let text = serde_json::to_string(&signed).expect("JSON serialises");
            let _ = issued.set(signed);
            text
        })
    }

    /// Completes the erasures a crash interrupted (the key destroyed, or about to be, and the
    /// data still there): deletes what remains, keeps the certificate and appends the log entry
    /// exactly as the erasure would have, naming who asked for it and when. Run at start-up,
    /// before serving; safe when several servers start together. Returns how many it completed.
    pub async fn complete_pending_erasures(&self) -> Result<usize, VaultError> {
        let mut completed = 0;
        for pending in self.store.pending_erasures().await? {
            let id = pending.subject;
            let inventory = self.store.inventory(id).await?.unwrap_or_default();
            // An erasure interrupted before intents were recorded (or data restored from a copy
            // older than an erasure): who asked is not known here.
            let recorded = pending.request.is_some();
            let request = pending.request.unwrap_or_else(|| ErasureRequest {
                certificate_id: EventId::random().to_string(),
                token_id: SYSTEM_ROLE.into(),
                role: SYSTEM_ROLE.into(),
                purpose: String::new(),
            });
            let certify = self.certifier(id, pending.requested_at, &request, &inventory, Arc::new(OnceLock::new()));
            let actor = Principal { token_id: request.token_id.clone(), role: request.role.clone(), origin: None };
            let mut audit = self.entry(&actor, candor_log::Action::SubjectErase).subjects(&[id]);
            if !request.purpose.is_empty() {
                audit = audit.purpose(&PurposeId::new(request.purpose.clone()));
            }
            let events: u64 = inventory.events.iter().map(|(_, n)| n).sum();
            let how = if recorded {
                "completed at start-up after an interruption"
            } else {
                "completed at start-up: the key was destroyed, the data was still there"
            };
            let log = audit
                .fields(inventory.fields.iter().map(FieldName::as_str))
                .detail(format!(
                    "crypto-shredded; events {events}; consent entries {}; certificate {}; {how}",
                    inventory.consents, request.certificate_id
                ))
                .record();
            let erased = self.store.finish_erasure(id, certify, log).await?;
            self.keys.forget_subject_key(id);
            if erased == Erasure::Erased {
                completed += 1;
                tracing::warn!(subject = %id, "completed an interrupted erasure");
            }
        }
        Ok(completed)
    }

    /// Erasing a customer and lifting their restriction are a power of their own: the catalog
    /// gives it to a role explicitly (`erase = true`), under a purpose that is not consent-based;
    /// an operator's policy may narrow it further.
    async fn require_erase(
        &self,
        auth: &Authorized,
        action: candor_log::Action,
        id: SubjectId,
    ) -> Result<(), VaultError> {
        self.require(auth, candor_policy::Action::Erase, action, id, || VaultError::EraseNotAllowed {
            role: auth.principal.role.clone(),
            purpose: auth.purpose.to_string(),
        })
        .await
    }

    /// Placing a restriction only protects the customer, so any role may ask for it under a
    /// purpose it acts under — but not under a consent purpose (those exist to use data with the
    /// customer's agreement, not to manage it).
    async fn refuse_under_consent(
        &self,
        auth: &Authorized,
        action: candor_log::Action,
        id: SubjectId,
    ) -> Result<(), VaultError> {
        if self.catalog.purpose(auth.purpose.as_str()).is_some_and(|p| p.needs_consent()) {
            let audit = self.audit(auth, action, &[id]);
            return self
                .refuse(audit, VaultError::WrongPurpose(format!(
                        "`{}` is a consent purpose: act under the purpose the customer's request belongs to (for example their account)",
                        auth.purpose
                    )),
                )
                .await;
        }
        Ok(())
    }

    /// Places a legal hold, which blocks erasure. Only under a purpose whose legal basis is a
    /// legal obligation; the reason is required and stored encrypted.
    pub async fn place_hold(&self, auth: &Authorized, id: SubjectId, reason: Option<&str>) -> Result<bool, VaultError> {
        self.require_legal_obligation(auth, candor_log::Action::HoldPlace, id).await?;
        let reason = check_reason(reason, true)?.unwrap_or_default();
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let note = key.seal_field(&FieldName::new("legal_hold_reason"), reason.as_bytes())?;
        let log = self.audit(auth, candor_log::Action::HoldPlace, &[id]).record();
        match self.store.place_hold(id, note, self.now_millis(), log).await? {
            Toggle::Changed => Ok(true),
            Toggle::Unchanged => Ok(false),
            Toggle::NotFound => Err(VaultError::SubjectNotFound),
        }
    }

    pub async fn lift_hold(&self, auth: &Authorized, id: SubjectId) -> Result<bool, VaultError> {
        self.require_legal_obligation(auth, candor_log::Action::HoldLift, id).await?;
        let log = self.audit(auth, candor_log::Action::HoldLift, &[id]).record();
        match self.store.lift_hold(id, log).await? {
            Toggle::Changed => Ok(true),
            Toggle::Unchanged => Ok(false),
            Toggle::NotFound => Err(VaultError::SubjectNotFound),
        }
    }

    /// The legal hold in place, with its reason (logged as a read).
    pub async fn hold(&self, auth: &Authorized, id: SubjectId) -> Result<Option<HoldView>, VaultError> {
        self.require_legal_obligation(auth, candor_log::Action::HoldRead, id).await?;
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let Some((placed_at, note)) = self.store.hold(id).await? else {
            return Ok(None);
        };
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let reason =
            String::from_utf8_lossy(&key.open_field(&FieldName::new("legal_hold_reason"), &note)?).into_owned();
        self.store
            .append_log(vec![self.audit(auth, candor_log::Action::HoldRead, &[id]).decision("full").record()])
            .await?;
        Ok(Some(HoldView { placed_at, reason }))
    }

    async fn require_legal_obligation(
        &self,
        auth: &Authorized,
        action: candor_log::Action,
        id: SubjectId,
    ) -> Result<(), VaultError> {
        if self.purpose(auth).legal_basis == LegalBasis::LegalObligation {
            return Ok(());
        }
        let audit = self.audit(auth, action, &[id]);
        let error = VaultError::WrongPurpose(format!(
            "legal holds are managed under a purpose whose legal basis is legal_obligation, not `{}`",
            auth.purpose
        ));
        self.refuse(audit, error).await
    }

    /// Restricts processing of the customer's data (kept, not used); `false` if it already was.
    pub async fn restrict(&self, auth: &Authorized, id: SubjectId, reason: Option<&str>) -> Result<bool, VaultError> {
        self.refuse_under_consent(auth, candor_log::Action::SubjectRestrict, id).await?;
        // Restricting only protects one customer, but restricting everyone stops the business:
        // a stolen token of any role gets a brake here too.
        if let Err(done) = self.restriction_brake.admit(&auth.principal.token_id, self.now_millis()) {
            let audit = self.audit(auth, candor_log::Action::SubjectRestrict, &[id]);
            return self.refuse(audit, VaultError::RestrictionRateLimited(done)).await;
        }
        let reason = check_reason(reason, false)?;
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let note = match reason {
            Some(r) => {
                let key = self.keys.open_subject_key(id, &record.dek)?;
                Some(key.seal_field(&FieldName::new("restriction_reason"), r.as_bytes())?)
            }
            None => None,
        };
        let log = self.audit(auth, candor_log::Action::SubjectRestrict, &[id]).record();
        match self.store.restrict(id, note, self.now_millis(), log).await? {
            Toggle::Changed => Ok(true),
            Toggle::Unchanged => Ok(false),
            Toggle::NotFound => Err(VaultError::SubjectNotFound),
        }
    }

    /// Lifts the restriction; logged.
    pub async fn lift_restriction(&self, auth: &Authorized, id: SubjectId) -> Result<bool, VaultError> {
        self.require_erase(auth, candor_log::Action::SubjectUnrestrict, id).await?;
        let log = self.audit(auth, candor_log::Action::SubjectUnrestrict, &[id]).record();
        match self.store.lift_restriction(id, log).await? {
            Toggle::Changed => Ok(true),
            Toggle::Unchanged => Ok(false),
            Toggle::NotFound => Err(VaultError::SubjectNotFound),
        }
    }
}

/// A brake on bulk erasure or restriction: at most `limit` per token in any hour, counted by
/// each server (so N servers allow at most N times as many). 0 turns it off.
pub(crate) struct HourlyBrake {
    limit: u32,
    recent: std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<i64>>>,
}

impl HourlyBrake {
    const HOUR_MS: i64 = 3_600_000;

    pub(crate) fn new(limit: u32) -> Self {
        Self { limit, recent: std::sync::Mutex::default() }
    }

    /// Gives back the last admission of `token` (the erasure it admitted erased nothing).
    pub(crate) fn refund(&self, token: &str) {
        if self.limit == 0 {
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(times) = recent.get_mut(token) {
            times.pop_back();
        }
    }

    /// Counts one erasure by `token` at `now`, or refuses it with how many the token made in the
    /// last hour.
    pub(crate) fn admit(&self, token: &str, now: i64) -> Result<(), u32> {
        if self.limit == 0 {
            return Ok(());
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|_, times| {
            while times.front().is_some_and(|t| *t <= now - Self::HOUR_MS) {
                times.pop_front();
            }
            !times.is_empty()
        });
        let times = recent.entry(token.to_string()).or_default();
        if times.len() >= self.limit as usize {
            return Err(times.len() as u32);
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod brake_tests {
    use super::HourlyBrake;

    #[test]
    fn the_brake_admits_the_limit_per_token_per_hour_then_refuses_until_an_hour_passes() {
        let brake = HourlyBrake::new(3);
        for t in 0..3 {
            assert!(brake.admit("stolen", t).is_ok());
        }
        assert_eq!(brake.admit("stolen", 10), Err(3));
        assert!(brake.admit("other", 10).is_ok(), "another token has its own allowance");
        assert!(brake.admit("stolen", HourlyBrake::HOUR_MS).is_ok(), "the first erasure left the window");
        // An admission whose erasure erased nothing (a repeat, a refusal) is given back.
        let brake = HourlyBrake::new(2);
        assert!(brake.admit("t", 0).is_ok() && brake.admit("t", 1).is_ok());
        brake.refund("t");
        assert!(brake.admit("t", 2).is_ok(), "a refunded admission does not count");
        assert_eq!(brake.admit("t", 3), Err(2));
        assert!(HourlyBrake::new(0).admit("any", 0).is_ok(), "0 turns the brake off");
    }
}
