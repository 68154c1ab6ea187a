//! The vault's side of access decisions: the policy engine asked with what is known about the
//! customer, and its refusals turned into logged errors.

use std::sync::Arc;

use candor_core::SubjectId;
use candor_core::access::AccessDenied;
use candor_policy::{Action, CONSENT_POLICY, Decision, Outcomes, RESTRICTION_POLICY, Situation, Target};

use super::{Authorized, Principal, Vault, VaultError};
use crate::audit::Audit;

/// The error of a refusal (its code, `VaultError::code`, is what the log entry records).
pub(crate) fn denial(d: &Decision, role: &str, purpose: &str) -> VaultError {
    if d.refused_by(CONSENT_POLICY) {
        return VaultError::Access(AccessDenied::ConsentRequired(purpose.to_string()));
    }
    if d.refused_by(RESTRICTION_POLICY) {
        return VaultError::Restricted;
    }
    if let Some(p) = d.operator_forbid() {
        let denied = AccessDenied::PolicyForbids { policy: p.id.clone(), reason: p.reason.clone() };
        return VaultError::Access(denied);
    }
    // Nothing permitted, or the catalog's bounds refused.
    VaultError::Access(AccessDenied::PurposeNotAllowed { role: role.to_string(), purpose: purpose.to_string() })
}

impl Vault {
    /// Asks the engine; an unknown name here is a bug (names were checked on the way in).
    pub(crate) fn decide(&self, auth: &Authorized, action: Action, target: Target<'_>, s: Situation) -> Arc<Decision> {
        self.policy
            .decide(&auth.principal.role, action, auth.purpose.as_str(), target, s)
            .expect("authorized requests name declared roles, purposes, fields and event types")
    }

    /// Logs the refusal `d` under `audit` and returns its error.
    pub(crate) async fn refuse_decision<T>(
        &self,
        auth: &Authorized,
        audit: Audit,
        d: &Decision,
    ) -> Result<T, VaultError> {
        self.refuse(audit, denial(d, &auth.principal.role, auth.purpose.as_str())).await
    }

    /// Requires a purpose-level `action` (erase, export, break-glass) for a request about `id`.
    /// A refusal is logged as `log_action`: an operator's forbid answers `policy_forbids`,
    /// anything else (the catalog does not permit it) `otherwise`.
    pub(crate) async fn require(
        &self,
        auth: &Authorized,
        action: Action,
        log_action: candor_log::Action,
        id: SubjectId,
        otherwise: impl FnOnce() -> VaultError,
    ) -> Result<(), VaultError> {
        let d = self.decide(auth, action, Target::Purpose, Situation::NEUTRAL);
        if d.allowed {
            return Ok(());
        }
        let audit = self.audit(auth, log_action, &[id]);
        if d.operator_forbid().is_some() {
            return self.refuse_decision(auth, audit, &d).await;
        }
        self.refuse(audit, otherwise()).await
    }

    /// The gate for a customer's records about their data (access log, consents, their history
    /// and receipts): the same decision as reading the customer under the declared purpose —
    /// consent, restriction and the caller's override included — or a `customer_requests`
    /// purpose (answering the customer's own requests). A refusal is logged as `action`.
    pub(crate) async fn require_customer_records(
        &self,
        auth: &Authorized,
        id: SubjectId,
        action: candor_log::Action,
    ) -> Result<(), VaultError> {
        if self.catalog.purpose(auth.purpose.as_str()).is_some_and(|p| p.customer_requests) {
            // Answering the customer's own requests is the export power (an operator's forbid
            // narrows it like any other).
            return self
                .require(auth, Action::Export, action, id, || {
                    VaultError::Access(AccessDenied::PurposeNotAllowed {
                        role: auth.principal.role.clone(),
                        purpose: auth.purpose.to_string(),
                    })
                })
                .await;
        }
        let scope = self.consent_scope(auth, id).await?;
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let situation = self.situation(auth, id, &scope, record.restricted).await?;
        self.gate(auth, id, situation, action).await.map(drop)
    }

    /// Whether `role` may read the whole log (the admin, or `audit = true` in the catalog).
    pub fn may_audit(&self, role: &str) -> bool {
        self.policy.may_audit(role)
    }

    /// How many entries the log holds now (signed into a checkpoint or not yet).
    pub async fn log_size(&self) -> Result<u64, VaultError> {
        Ok(self.store.log_head().await?.0)
    }

    /// Reading the whole log's entries (or its entry bundles) is for auditors: admin, or a role
    /// the catalog declares `audit = true`. A refusal is logged.
    pub async fn require_audit(&self, caller: &Principal) -> Result<(), VaultError> {
        if self.policy.may_audit(&caller.role) {
            return Ok(());
        }
        let audit = self.entry(caller, candor_log::Action::LogEntries);
        self.refuse(audit, VaultError::AuditNotAllowed(caller.role.clone())).await
    }

    /// The customer gate: may the caller act under its purpose for this customer at all? If so,
    /// every field's and event type's outcome; if not, the refusal is logged as `action`.
    pub(crate) async fn gate(
        &self,
        auth: &Authorized,
        id: SubjectId,
        situation: Situation,
        action: candor_log::Action,
    ) -> Result<Arc<Outcomes>, VaultError> {
        let outcomes = self
            .policy
            .outcomes(&auth.principal.role, auth.purpose.as_str(), situation)
            .expect("authorized requests name declared roles and purposes");
        if !outcomes.act.allowed {
            let audit = self.audit(auth, action, &[id]);
            return self.refuse_decision(auth, audit, &outcomes.act).await;
        }
        Ok(outcomes)
    }
}
