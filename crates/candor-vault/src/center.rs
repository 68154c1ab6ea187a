//! The privacy center's side of the vault: one-time sign-in links, the sessions they start, and
//! the signed-in customer acting on their own data.
//!
//! A signed-in customer is a [`CustomerSession`]: the built-in policy role `customer`, acting
//! under the catalog's first `customer_requests` purpose, bound to one customer id that comes
//! from the session and never from the request. Everything they do goes through the same vault
//! operations (and the same policy engine and log) as staff requests, with the session's id as
//! the actor.

use candor_core::SubjectId;
use candor_core::catalog::{CUSTOMER_ROLE, Purpose};
use candor_crypto::{SESSION_PREFIX, SIGN_IN_PREFIX, generate_secret, hash_token};
use candor_policy::{Action, Situation, Target};
use candor_store::{Millis, NewSession, SignInLink};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{Authorized, Correction, Principal, Vault, VaultError};

const MINUTE: Millis = 60_000;
/// A session ends after this long whatever the activity; customers sign in again.
pub const SESSION_MAX_HOURS: i64 = 12;
/// Activity is written back at most this often (a page view is not worth a write each).
const TOUCH_EVERY: Millis = MINUTE;

/// How long links and idle sessions last (`[privacy_center]` in `candor.toml`).
#[derive(Debug, Clone)]
pub struct SignInSettings {
    pub link_minutes: u32,
    pub idle_minutes: u32,
    /// `[privacy_center] link_senders`: the roles a new link is handed to, to send to the
    /// customer (`None`: every role that may make one).
    pub link_senders: Option<Vec<String>>,
}

impl Default for SignInSettings {
    fn default() -> Self {
        Self { link_minutes: 15, idle_minutes: 20, link_senders: None }
    }
}

/// A sign-in link just made: its secret (shown once, in the URL) and when it stops working.
pub struct IssuedLink {
    pub secret: Zeroizing<String>,
    pub expires_at: Millis,
}

/// A signed-in customer.
#[derive(Debug, Clone)]
pub struct CustomerSession {
    pub id: String,
    pub subject: SubjectId,
    auth: Authorized,
}

impl Vault {
    /// Whether the signed-in customer's data is under a legal hold (their deletion page says
    /// an erasure would wait for it to be lifted).
    pub async fn under_legal_hold(&self, session: &CustomerSession) -> Result<bool, VaultError> {
        Ok(self.store.hold(session.subject).await?.is_some())
    }
}

impl CustomerSession {
    /// The customer as the vault's caller: role `customer`, under the customer-requests purpose.
    pub fn auth(&self) -> &Authorized {
        &self.auth
    }
}

/// Why a stored link cannot be used at `now` (for the log), or `None` if it can.
fn link_refusal(link: &SignInLink, now: Millis) -> Option<&'static str> {
    match link.used_at {
        Some(_) => Some("link already used"),
        None if link.expires_at <= now => Some("link expired"),
        None => None,
    }
}

/// The actor name of a session in the log (its public id, never its secret).
fn session_actor(id: &str) -> Principal {
    Principal { token_id: candor_log::actor::session(id), role: CUSTOMER_ROLE.to_string(), origin: None }
}

impl Vault {
    /// The purpose customers act under in the privacy center (the catalog's first purpose
    /// declared `customer_requests = true`), if there is one.
    pub fn customer_purpose(&self) -> Option<&Purpose> {
        self.catalog.purposes.iter().find(|p| p.customer_requests)
    }

    fn customer_auth(&self, session_id: &str) -> Result<Authorized, VaultError> {
        let purpose = self.customer_purpose().ok_or(VaultError::PrivacyCenterUnavailable)?;
        Ok(Authorized { principal: session_actor(session_id), purpose: purpose.id.clone(), idempotency: None })
    }

    /// Makes a one-time sign-in link for customer `id`, for the operator's backend to send
    /// them. Only under a `customer_requests` purpose (signing a customer in is answering their
    /// request to see their data).
    pub async fn create_sign_in_link(&self, auth: &Authorized, id: SubjectId) -> Result<IssuedLink, VaultError> {
        self.customer_purpose().ok_or(VaultError::PrivacyCenterUnavailable)?;
        self.require(auth, Action::Export, candor_log::Action::PrivacyCenterLink, id, || {
            VaultError::WrongPurpose(format!(
                "sign-in links are made under a purpose declared customer_requests = true, not `{}`",
                auth.purpose
            ))
        })
        .await?;
        // A link signs its holder in as the customer: it goes only to the operator's mailer.
        if let Some(senders) = &self.sign_in.link_senders
            && !senders.contains(&auth.principal.role)
        {
            let audit = self.audit(auth, candor_log::Action::PrivacyCenterLink, &[id]);
            let error = VaultError::LinkSenderNotAllowed(auth.principal.role.clone());
            return self.refuse(audit, error).await;
        }
        let secret = generate_secret(SIGN_IN_PREFIX)?;
        let now = self.now_millis();
        let expires_at = now + Millis::from(self.sign_in.link_minutes) * MINUTE;
        let log = self
            .audit(auth, candor_log::Action::PrivacyCenterLink, &[id])
            .detail(format!("valid {} minutes", self.sign_in.link_minutes))
            .record();
        if !self.store.create_sign_in_link(hash_token(&secret).0, id, now, expires_at, log).await? {
            return Err(VaultError::SubjectNotFound);
        }
        Ok(IssuedLink { secret, expires_at })
    }

    /// Whether a sign-in link can still be used (known, unused, unexpired), read without using
    /// it up and without logging: the "Continue" page asks, so that a spent link says so at once
    /// while mail scanners that fetch a live one leave it working. An unknown link answers like a
    /// spent one (`false`), as [`Vault::sign_in`] does.
    pub async fn sign_in_link_usable(&self, link_secret: &str) -> Result<bool, VaultError> {
        let link = self.store.sign_in_link(&hash_token(link_secret).0).await?;
        Ok(link.is_some_and(|l| link_refusal(&l, self.now_millis()).is_none()))
    }

    /// Uses a sign-in link: starts a session and returns its secret (for the cookie). A link
    /// works once, before it expires; every other attempt with a known link is logged against
    /// its customer and refused with the same error as an unknown link.
    pub async fn sign_in(&self, link_secret: &str) -> Result<(Zeroizing<String>, CustomerSession), VaultError> {
        let hash = hash_token(link_secret).0;
        let link = self.store.sign_in_link(&hash).await?.ok_or(VaultError::SignInLinkInvalid)?;
        let now = self.now_millis();
        let id = uuid::Uuid::new_v4().to_string();
        let auth = self.customer_auth(&id)?;
        let audit = self
            .entry(&auth.principal, candor_log::Action::PrivacyCenterSignIn)
            .purpose(&auth.purpose)
            .subjects(&[link.subject]);
        if let Some(why) = link_refusal(&link, now) {
            let log = audit.decision("denied").detail(why).record();
            self.store.append_log(vec![log]).await?;
            return Err(VaultError::SignInLinkInvalid);
        }
        let secret = generate_secret(SESSION_PREFIX)?;
        let session = NewSession { id: id.clone(), hash: hash_token(&secret).0, subject: link.subject, now };
        let prune_before = now - SESSION_MAX_HOURS * 60 * MINUTE;
        let log = audit.decision("full").record();
        if !self.store.redeem_sign_in_link(hash, session, prune_before, log).await? {
            // Used by a concurrent request a moment ago.
            return Err(VaultError::SignInLinkInvalid);
        }
        Ok((secret, CustomerSession { id, subject: link.subject, auth }))
    }

    /// The session a cookie's secret belongs to, if it is live. Sessions end after
    /// `idle_minutes` without activity and after [`SESSION_MAX_HOURS`] in any case.
    pub async fn customer_session(&self, session_secret: &str) -> Result<CustomerSession, VaultError> {
        let found = self.store.session_by_hash(&hash_token(session_secret).0).await?.ok_or(VaultError::NotSignedIn)?;
        let now = self.now_millis();
        let idle = found.last_seen_at + Millis::from(self.sign_in.idle_minutes) * MINUTE <= now;
        let too_old = found.created_at + SESSION_MAX_HOURS * 60 * MINUTE <= now;
        let auth = self.customer_auth(&found.id)?;
        if idle || too_old {
            let log = self
                .entry(&auth.principal, candor_log::Action::PrivacyCenterSignOut)
                .purpose(&auth.purpose)
                .subjects(&[found.subject])
                .detail(if idle { "idle timeout" } else { "session too old" })
                .record();
            self.store.end_session(&found.id, Some(log)).await?;
            return Err(VaultError::SessionExpired);
        }
        if now - found.last_seen_at >= TOUCH_EVERY {
            self.store.touch_session(&found.id, now).await?;
        }
        Ok(CustomerSession { id: found.id, subject: found.subject, auth })
    }

    /// Signs the customer out (ends the session); logged.
    pub async fn sign_out(&self, session: &CustomerSession) -> Result<(), VaultError> {
        let log = self.audit(&session.auth, candor_log::Action::PrivacyCenterSignOut, &[session.subject]).record();
        self.store.end_session(&session.id, Some(log)).await?;
        Ok(())
    }

    /// The fields a customer may correct themself (the policy engine's `catalog.customer.rectify`
    /// and any operator policy decide); others are corrected on request.
    pub fn self_correctable(&self, session: &CustomerSession) -> Vec<&str> {
        self.catalog
            .fields
            .iter()
            .filter(|f| {
                self.decide(&session.auth, Action::Write, Target::Field(f.name.as_str()), Situation::NEUTRAL).allowed
            })
            .map(|f| f.name.as_str())
            .collect()
    }

    /// The customer corrects their own data: of the submitted fields, only those whose value
    /// differs from what is held are written (an empty text removes an optional field).
    pub async fn rectify_own(
        &self,
        session: &CustomerSession,
        submitted: &Map<String, Value>,
    ) -> Result<Correction, VaultError> {
        let current = self.current_values(session.subject, submitted.keys()).await?;
        let changed: Map<String, Value> = submitted
            .iter()
            .filter(|(name, value)| match current.get(name.as_str()) {
                Some(held) => !value::same(held, value),
                None => !value.is_null(),
            })
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        if changed.is_empty() {
            return Ok(Correction { updated: Vec::new(), removed: Vec::new() });
        }
        self.correct(&session.auth, session.subject, &changed, candor_core::write::WriteMode::Rectify).await
    }

    /// The customer's choices (consents) changed in the privacy center: recorded with method
    /// `privacy_center`, the customer as actor. With `gpc` (the browser sent `Sec-GPC: 1`),
    /// active consents of `gpc = true` purposes not chosen in this request are withdrawn too.
    pub async fn change_own_consents(
        &self,
        session: &CustomerSession,
        changes: Vec<candor_core::consent::RequestedChange>,
        gpc: bool,
    ) -> Result<super::consents::ChangeOutcome, VaultError> {
        self.apply_consent_changes(
            &session.auth,
            session.subject,
            super::ChangeInput { changes, method: None, actor: None, reason: None, evidence: None, gpc },
            candor_core::consent::ConsentMethod::PrivacyCenter,
        )
        .await
    }
}

/// Comparing a submitted value with a held one.
mod value {
    use serde_json::Value;

    /// Whether `submitted` says the same as `held` (text compared trimmed; `null` never equal).
    pub fn same(held: &Value, submitted: &Value) -> bool {
        match (held, submitted) {
            (_, Value::Null) => false,
            (Value::String(a), Value::String(b)) => a.trim() == b.trim(),
            (a, b) => a == b,
        }
    }
}

impl Vault {
    /// The values held in `names` (declared fields only), decrypted to compare a correction with
    /// (never returned to anyone, so not an access in itself; the correction is logged).
    async fn current_values(
        &self,
        id: SubjectId,
        names: impl Iterator<Item = &String>,
    ) -> Result<Map<String, Value>, VaultError> {
        let names: Vec<candor_core::FieldName> =
            names.filter_map(|n| self.catalog.field(n)).map(|d| d.name.clone()).collect();
        let record = self.store.load_subject(id, &names).await?.ok_or(VaultError::SubjectNotFound)?;
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let mut out = Map::new();
        for (name, sealed) in &record.values {
            let plain = key.open_field(name, sealed)?;
            let value =
                serde_json::from_slice(&plain).map_err(|_| candor_crypto::CryptoError::Malformed("field value"))?;
            out.insert(name.to_string(), value);
        }
        Ok(out)
    }
}

/// What the customer sees on "Who accessed my data".
pub struct AccessHistory {
    /// The latest log entries about them (index, entry JSON), oldest first.
    pub entries: Vec<(u64, Value)>,
    pub total: usize,
    /// Break-glass overrides opened for them, with the reasons given.
    pub overrides: Vec<super::OverrideView>,
    /// Grants that shared their data with recipients.
    pub shares: Vec<super::grants::ShareView>,
}

impl Vault {
    /// The customer's own access history; logged (and so listed) as `access_log.read`.
    pub async fn own_access_history(&self, session: &CustomerSession) -> Result<AccessHistory, VaultError> {
        let id = session.subject;
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let log = self.audit(&session.auth, candor_log::Action::AccessLogRead, &[id]).decision("full").record();
        self.store.append_log(vec![log]).await?;
        let overrides = self.overrides_of(id, &key).await?;
        let shares = self.shares_of(id).await?;
        let (entries, total) = self.recent_log_entries(id).await?;
        Ok(AccessHistory { entries, total, overrides, shares })
    }
}
