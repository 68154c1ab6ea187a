//! Break-glass overrides: a role the catalog allows it may unmask one customer's data for a
//! short time, with a written reason. Opening one is logged as break-glass, every read under it
//! too, and the customer sees each override (with its reason) in their access report.

use candor_core::access::check_break_glass_reason;
use candor_core::{EventId, FieldName, SubjectId};
use candor_crypto::SubjectKey;
use candor_policy::{Action, Situation, Target};
use candor_store::BreakGlass;

use super::consents::ConsentScope;
use super::{Authorized, Vault, VaultError};

/// The name the reason is sealed under (part of the ciphertext's associated data).
const REASON_FIELD: &str = "break_glass_reason";

/// An override as the caller and the customer see it.
pub struct OverrideView {
    pub id: String,
    pub subject: SubjectId,
    pub role: String,
    pub purpose: String,
    pub reason: String,
    pub opened_at: i64,
    pub expires_at: i64,
}

impl Vault {
    /// What is known about customer `id` for this request: consent, restriction, and whether the
    /// caller holds an open override for them (looked up only for roles that may open one).
    pub(crate) async fn situation(
        &self,
        auth: &Authorized,
        id: SubjectId,
        scope: &ConsentScope,
        restricted: bool,
    ) -> Result<Situation, VaultError> {
        let mut situation = Situation { consent_given: scope.given(), restricted, break_glass: false };
        if self.decide(auth, Action::BreakGlass, Target::Purpose, Situation::NEUTRAL).allowed {
            situation.break_glass = self
                .store
                .active_break_glass(&auth.principal.token_id, id, auth.purpose.as_str(), self.now_millis())
                .await?
                .is_some();
        }
        Ok(situation)
    }

    /// Until when the caller's open override unmasks customer `id` under the caller's purpose
    /// (`None`: none is open). Times only; the reason stays sealed.
    pub async fn break_glass_until(&self, auth: &Authorized, id: SubjectId) -> Result<Option<i64>, VaultError> {
        let now = self.now_millis();
        Ok(self
            .store
            .break_glass_for(id)
            .await?
            .into_iter()
            .filter(|b| {
                b.token_id == auth.principal.token_id
                    && b.purpose == auth.purpose.as_str()
                    && b.opened_at <= now
                    && now < b.expires_at
            })
            .map(|b| b.expires_at)
            .max())
    }

    /// Opens an override for customer `id`, for the caller's token and purpose, lasting the
    /// configured time.
    pub async fn open_break_glass(
        &self,
        auth: &Authorized,
        id: SubjectId,
        reason: Option<&str>,
    ) -> Result<OverrideView, VaultError> {
        self.require(auth, Action::BreakGlass, candor_log::Action::BreakGlassOpen, id, || {
            VaultError::BreakGlassNotAllowed { role: auth.principal.role.clone(), purpose: auth.purpose.to_string() }
        })
        .await?;
        let reason = match check_break_glass_reason(reason) {
            Ok(r) => r,
            Err(message) => {
                let audit = self.audit(auth, candor_log::Action::BreakGlassOpen, &[id]);
                return self.refuse(audit, VaultError::InvalidInput { field: "reason", message }).await;
            }
        };
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        // An override unmasks; it does not get past consent or a restriction.
        let scope = self.consent_scope(auth, id).await?;
        let situation = Situation { consent_given: scope.given(), restricted: record.restricted, break_glass: false };
        self.gate(auth, id, situation, candor_log::Action::BreakGlassOpen).await?;
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let override_id = EventId::random().to_string();
        let opened_at = self.now_millis();
        let expires_at = opened_at + i64::from(self.break_glass_minutes) * 60_000;
        let sealed = key.seal_field(&FieldName::new(REASON_FIELD), reason.as_bytes())?;
        let log = self
            .audit(auth, candor_log::Action::BreakGlassOpen, &[id])
            .decision("break_glass")
            .detail(format!("override {override_id}; {} minutes", self.break_glass_minutes))
            .record();
        let opened = BreakGlass {
            id: override_id.clone(),
            subject: id,
            token_id: auth.principal.token_id.clone(),
            role: auth.principal.role.clone(),
            purpose: auth.purpose.to_string(),
            reason: sealed,
            opened_at,
            expires_at,
        };
        if !self.store.open_break_glass(opened, log).await? {
            return Err(VaultError::SubjectNotFound);
        }
        Ok(OverrideView {
            id: override_id,
            subject: id,
            role: auth.principal.role.clone(),
            purpose: auth.purpose.to_string(),
            reason: reason.to_string(),
            opened_at,
            expires_at,
        })
    }

    /// Every override opened for the customer, reasons opened with their key.
    pub(crate) async fn overrides_of(&self, id: SubjectId, key: &SubjectKey) -> Result<Vec<OverrideView>, VaultError> {
        let mut out = Vec::new();
        for b in self.store.break_glass_for(id).await? {
            let reason = key.open_field(&FieldName::new(REASON_FIELD), &b.reason)?;
            out.push(OverrideView {
                id: b.id,
                subject: b.subject,
                role: b.role,
                purpose: b.purpose,
                reason: String::from_utf8_lossy(&reason).into_owned(),
                opened_at: b.opened_at,
                expires_at: b.expires_at,
            });
        }
        Ok(out)
    }
}
