//! Sharing with recipients through grants (data rooms): narrow (named fields of named customers
//! under one purpose), temporary (an expiry is required and capped), countable (a maximum of
//! reads), consented where the purpose needs it, revocable, and visible to the customer.
//!
//! A grant is checked against the catalog (the recipient is declared for the purpose and for
//! every field; its agreement is in force), the policy engine (the caller's role may `share`
//! each field under its purpose, and may `read` it in full there: a role shares only what it
//! sees itself, never what it sees masked) and each customer's situation (consent,
//! restriction). The recipient reads through the grant's own credential; every page it reads is
//! logged with the recipient as actor, and consent withdrawn or a restriction placed since the
//! grant was made drops that customer from the very next read. Every read checks the grant
//! against the catalog in force: a field the catalog no longer declares for the recipient and
//! the purpose is withheld (and named as such). Revocation works whatever the catalog now says,
//! over the API and from the command line.

use candor_core::catalog::{FieldDecl, LegalBasis, Purpose, Recipient};
use candor_core::{EventId, FieldName, PurposeId, SubjectId};
use candor_crypto::{CryptoError, generate_secret, hash_token};
use candor_policy::{Action, Situation, Target};
use candor_store::{Grant, Millis};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::consents::ConsentScope;
use super::{Authorized, Principal, Vault, VaultError};
use crate::audit::system_actor;

/// Prefix of grant credentials (recognisable when leaked).
pub const GRANT_PREFIX: &str = "cndg_";
/// Most customers one grant may name.
pub const MAX_GRANT_SUBJECTS: usize = 10_000;
/// Largest and default page of a recipient's read.
pub const MAX_GRANT_PAGE: u32 = 500;
pub const DEFAULT_GRANT_PAGE: u32 = 100;
const DAY: Millis = 24 * 3600 * 1000;

/// A grant as requested.
pub struct GrantInput {
    pub recipient: String,
    pub subjects: Vec<SubjectId>,
    /// Instead of `subjects`: everyone who consented to the (consent) purpose, on this channel
    /// if the purpose has channels (`Some(None)`: a purpose without channels).
    pub audience: Option<Option<String>>,
    pub fields: Vec<String>,
    /// RFC 3339; required.
    pub expires_at: Option<String>,
    pub max_reads: Option<u64>,
}

/// A grant just made: the credential is shown once, to hand to the recipient.
pub struct GrantCreated {
    pub grant: Grant,
    pub credential: Zeroizing<String>,
    pub included: u64,
    /// Customers left out, and why.
    pub without_consent: u64,
    pub restricted: u64,
    pub not_found: u64,
}

/// A grant refused because the caller's role may not read one of its fields in full under its
/// purpose (it sees it masked, or not at all): it may not hand it to someone else either.
/// Already logged when returned.
#[derive(Debug, thiserror::Error)]
#[error(
    "role `{role}` {sees} field `{field}` under purpose `{purpose}`, so it may not share it: a role shares only \
     what it may read in full{why}"
)]
pub struct ShareRefused {
    pub field: String,
    role: String,
    purpose: String,
    sees: &'static str,
    /// The operator's policy that forbids the full read, if one does.
    why: String,
}

/// One page of a recipient's read. No `Debug`: it holds personal values.
pub struct GrantPage {
    pub records: Vec<(SubjectId, Map<String, Value>)>,
    pub next: Option<SubjectId>,
    /// Granted fields the catalog in force no longer declares for the recipient and the grant's
    /// purpose: left out of every record.
    pub withheld: Vec<String>,
}

/// A share as the customer sees it.
pub struct ShareView {
    pub grant_id: String,
    pub recipient: String,
    pub recipient_name: String,
    pub country: String,
    pub purpose: String,
    pub fields: Vec<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub revoked_at: Option<Millis>,
}

/// The log actor of a recipient reading through a grant.
fn recipient_actor(grant: &Grant, origin: Option<std::net::IpAddr>) -> Principal {
    Principal {
        token_id: candor_log::actor::grant(&grant.id),
        role: candor_log::actor::recipient_role(&grant.recipient),
        origin,
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> VaultError {
    VaultError::InvalidInput { field, message: message.into() }
}

impl Vault {
    /// The recipient `id` if declared and its agreement is in force today.
    fn recipient_in_force(&self, id: &str) -> Result<&Recipient, VaultError> {
        let r = self
            .catalog
            .recipients
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| VaultError::UnknownRecipient(id.chars().take(64).collect()))?;
        if !r.agreement_in_force(&self.clock.now().strftime("%Y-%m-%d").to_string()) {
            return Err(VaultError::AgreementExpired { recipient: r.id.clone() });
        }
        Ok(r)
    }

    /// Whether the customer's situation lets `purpose` use every one of `fields`: `None` if so,
    /// otherwise why not (`"consent"`, `"restricted"`, `"not_found"`).
    async fn share_blocker(
        &self,
        purpose: &Purpose,
        fields: &[&FieldDecl],
        id: SubjectId,
    ) -> Result<Option<&'static str>, VaultError> {
        let Some(record) = self.store.load_subject(id, &[]).await? else { return Ok(Some("not_found")) };
        self.situation_blocker(purpose, fields, id, record.restricted).await
    }

    /// As [`Vault::share_blocker`], for a customer whose record is already loaded.
    async fn situation_blocker(
        &self,
        purpose: &Purpose,
        fields: &[&FieldDecl],
        id: SubjectId,
        restricted: bool,
    ) -> Result<Option<&'static str>, VaultError> {
        if restricted && purpose.legal_basis != LegalBasis::LegalObligation {
            return Ok(Some("restricted"));
        }
        if purpose.needs_consent() {
            let channels = self.active_channels(purpose, id).await?;
            let scope = ConsentScope::Active { purpose: purpose.clone(), channels };
            if !fields.iter().all(|f| scope.allows(f)) {
                return Ok(Some("consent"));
            }
        }
        Ok(None)
    }

    /// Makes a grant for recipient `input.recipient` under the caller's purpose. The inner
    /// `Err` is a field the caller's role may not share because it may not read it in full.
    pub async fn create_grant(
        &self,
        auth: &Authorized,
        input: GrantInput,
    ) -> Result<Result<GrantCreated, ShareRefused>, VaultError> {
        let recipient = self.recipient_in_force(input.recipient.trim())?;
        let purpose = self.purpose(auth).clone();
        if !recipient.purposes.contains(&purpose.id) {
            return Err(VaultError::RecipientNotDeclared {
                recipient: recipient.id.clone(),
                purpose: purpose.id.to_string(),
            });
        }
        if input.fields.is_empty() {
            return Err(invalid("fields", "name at least one field to share"));
        }
        let mut fields: Vec<&FieldDecl> = Vec::new();
        for name in &input.fields {
            let decl = self.catalog.field(name).ok_or_else(|| {
                VaultError::Write(candor_core::write::WriteError::UndeclaredField(name.chars().take(64).collect()))
            })?;
            if !recipient.fields.contains(&decl.name) {
                return Err(VaultError::FieldNotShared {
                    field: decl.name.to_string(),
                    recipient: recipient.id.clone(),
                });
            }
            let d = self.decide(auth, Action::Share, Target::Field(decl.name.as_str()), Situation::NEUTRAL);
            if !d.allowed {
                let audit = self.audit(auth, candor_log::Action::GrantCreate, &[]).fields([decl.name.as_str()]);
                return self.refuse_decision(auth, audit, &d).await;
            }
            // Sharing a field hands it over in full: only to a role that reads it in full itself
            // (in the neutral situation: a break-glass override is for one customer, not a share).
            let read = self.decide(auth, Action::Read, Target::Field(decl.name.as_str()), Situation::NEUTRAL);
            if !read.allowed {
                let audit = self.audit(auth, candor_log::Action::GrantCreate, &[]).fields([decl.name.as_str()]);
                self.store.append_log(vec![audit.decision("denied").detail("share_not_allowed").record()]).await?;
                let masked = self
                    .decide(auth, Action::ReadMasked, Target::Field(decl.name.as_str()), Situation::NEUTRAL)
                    .allowed;
                return Ok(Err(ShareRefused {
                    field: decl.name.to_string(),
                    role: auth.principal.role.clone(),
                    purpose: auth.purpose.to_string(),
                    sees: if masked && decl.mask.is_some() { "sees only masked" } else { "may not read" },
                    why: read.operator_forbid().map(|p| format!(" (policy `{}` forbids it)", p.id)).unwrap_or_default(),
                }));
            }
            if !fields.iter().any(|f| f.name == decl.name) {
                fields.push(decl);
            }
        }
        let now = self.now_millis();
        let expires_at = match input.expires_at.as_deref().map(str::trim) {
            None | Some("") => {
                return Err(invalid("expires_at", "is required: say until when the recipient may read (RFC 3339)"));
            }
            Some(t) => t
                .parse::<jiff::Timestamp>()
                .map_err(|_| invalid("expires_at", "must be a time such as 2026-12-31T23:59:59Z"))?
                .as_millisecond(),
        };
        let cap = now + Millis::from(self.max_grant_days) * DAY;
        if expires_at <= now || expires_at > cap {
            return Err(invalid(
                "expires_at",
                format!(
                    "must be in the future and at most {} days ahead (`[sharing] max_grant_days`)",
                    self.max_grant_days
                ),
            ));
        }
        if input.max_reads == Some(0) {
            return Err(invalid("max_reads", "must be at least 1 (or left out)"));
        }
        let subjects = match (&input.audience, input.subjects.is_empty()) {
            (Some(_), false) => return Err(invalid("audience", "give either subjects or audience, not both")),
            (Some(channel), true) => self.audience_ids(auth, channel.as_deref()).await?,
            (None, _) => input.subjects,
        };
        if subjects.is_empty() || subjects.len() > MAX_GRANT_SUBJECTS {
            return Err(invalid("subjects", format!("name 1 to {MAX_GRANT_SUBJECTS} customers")));
        }
        let mut included = Vec::new();
        let (mut without_consent, mut restricted, mut not_found) = (0, 0, 0);
        for id in &subjects {
            if included.contains(id) {
                continue;
            }
            match self.share_blocker(&purpose, &fields, *id).await? {
                None => included.push(*id),
                Some("consent") => without_consent += 1,
                Some("restricted") => restricted += 1,
                Some(_) => not_found += 1,
            }
        }
        let credential = generate_secret(GRANT_PREFIX)?;
        let grant = Grant {
            id: EventId::random().to_string(),
            recipient: recipient.id.clone(),
            purpose: purpose.id.to_string(),
            fields: fields.iter().map(|f| f.name.to_string()).collect(),
            credential_hash: hash_token(&credential).0,
            created_by: auth.principal.token_id.clone(),
            created_at: now,
            expires_at,
            max_reads: input.max_reads,
            reads: 0,
            revoked_at: None,
        };
        let parts = self
            .audit(auth, candor_log::Action::GrantCreate, &included)
            .fields(&grant.fields)
            .detail(format!("grant {} to {}; left out: {without_consent} without consent, {restricted} restricted, {not_found} unknown", grant.id, grant.recipient))
            .records();
        // More customers than one entry names: every part commits with the grant.
        let asked = included.len() as u64;
        let held = self.store.create_grant(grant.clone(), included, parts).await?;
        // A customer erased between the checks and the grant is not held.
        not_found += asked.saturating_sub(held);
        Ok(Ok(GrantCreated { grant, credential, included: held, without_consent, restricted, not_found }))
    }

    /// Everyone in the consent audience of the caller's purpose (at most one more than a grant
    /// may hold, so that a larger audience is refused rather than cut).
    async fn audience_ids(&self, auth: &Authorized, channel: Option<&str>) -> Result<Vec<SubjectId>, VaultError> {
        let mut rx = self.audience(auth, channel).await?;
        let mut ids = Vec::new();
        while let Some(batch) = rx.recv().await {
            ids.extend(batch?);
            if ids.len() > MAX_GRANT_SUBJECTS {
                return Err(invalid(
                    "audience",
                    format!("more than {MAX_GRANT_SUBJECTS} customers consented: name them in several grants"),
                ));
            }
        }
        Ok(ids)
    }

    /// A grant, for staff acting under its purpose.
    pub async fn grant_of(&self, auth: &Authorized, id: &str) -> Result<Grant, VaultError> {
        let g = self.store.grant(id).await?.ok_or(VaultError::GrantNotFound)?;
        if g.purpose != auth.purpose.as_str() {
            return Err(VaultError::GrantNotFound);
        }
        Ok(g)
    }

    /// Revokes a grant at once. By a role that may share under the grant's purpose (some field
    /// the catalog now declares for it): what the grant holds is not asked about, so a grant
    /// whose fields the catalog no longer declares is revoked all the same.
    pub async fn revoke_grant(&self, auth: &Authorized, id: &str) -> Result<Grant, VaultError> {
        let g = self.grant_of(auth, id).await?;
        let may = self
            .catalog
            .fields
            .iter()
            .filter(|f| f.allows(&auth.purpose))
            .any(|f| self.decide(auth, Action::Share, Target::Field(f.name.as_str()), Situation::NEUTRAL).allowed);
        if !may {
            let audit = self.audit(auth, candor_log::Action::GrantRevoke, &[]).detail(format!("grant {}", g.id));
            let denied = candor_core::access::AccessDenied::PurposeNotAllowed {
                role: auth.principal.role.clone(),
                purpose: auth.purpose.to_string(),
            };
            return self.refuse(audit, VaultError::Access(denied)).await;
        }
        self.end_grant(&auth.principal, g).await
    }

    /// Revokes grant `id` for the operator (`candor grants revoke`), whatever the catalog now
    /// says; logged like a revocation over the API. `None` if there is no such grant; a grant
    /// already revoked is returned as it is.
    pub async fn revoke_grant_by_operator(&self, id: &str) -> Result<Option<Grant>, VaultError> {
        let Some(g) = self.store.grant(id.trim()).await? else { return Ok(None) };
        self.end_grant(&system_actor(), g).await.map(Some)
    }

    /// Revokes `g` by `by`, logged against every customer it holds under the grant's purpose.
    pub(crate) async fn end_grant(&self, by: &Principal, g: Grant) -> Result<Grant, VaultError> {
        if g.revoked_at.is_some() {
            return Ok(g);
        }
        let subjects = self.store.grant_subjects(&g.id, None, MAX_GRANT_SUBJECTS as u32).await?;
        let parts = self
            .entry(by, candor_log::Action::GrantRevoke)
            .purpose(&PurposeId::new(g.purpose.as_str()))
            .subjects(&subjects)
            .detail(format!("grant {}", g.id))
            .records();
        // Every part commits with the revocation; revoked meanwhile, nothing is logged.
        self.store.revoke_grant(&g.id, self.now_millis(), parts).await?;
        Ok(self.store.grant(&g.id).await?.unwrap_or(g))
    }

    /// Every grant, newest first, for the operator (`candor grants list`); logged.
    pub async fn all_grants(&self) -> Result<Vec<Grant>, VaultError> {
        let list = self.store.grants().await?;
        let log = self
            .entry(&system_actor(), candor_log::Action::GrantList)
            .detail(format!("{} grants", list.len()))
            .record();
        self.store.append_log(vec![log]).await?;
        Ok(list)
    }

    /// A recipient reads one page of its grant with the grant's credential. The grant is held
    /// against the catalog in force: fields no longer declared for the recipient and the
    /// grant's purpose are withheld, and a recipient no longer declared for the purpose (or for
    /// any field of the grant) is refused.
    pub async fn read_grant(
        &self,
        id: &str,
        credential: &str,
        after: Option<SubjectId>,
        limit: u32,
        origin: Option<std::net::IpAddr>,
    ) -> Result<GrantPage, VaultError> {
        let g = self.store.grant(id).await?.ok_or(VaultError::InvalidToken)?;
        if hash_token(credential).0 != g.credential_hash {
            return Err(VaultError::InvalidToken);
        }
        let now = self.now_millis();
        if g.revoked_at.is_some() {
            return Err(VaultError::GrantRevoked);
        }
        if g.expires_at <= now {
            return Err(VaultError::GrantExpired);
        }
        if g.max_reads.is_some_and(|m| g.reads >= m) {
            return Err(VaultError::GrantExhausted);
        }
        let recipient = self.recipient_in_force(&g.recipient)?;
        let purpose = self.catalog.purpose(&g.purpose).ok_or(VaultError::GrantNotFound)?.clone();
        let actor = recipient_actor(&g, origin);
        if !recipient.purposes.contains(&purpose.id) {
            let audit = self.entry(&actor, candor_log::Action::GrantRead).purpose(&purpose.id).fields(&g.fields);
            let error =
                VaultError::RecipientNotDeclared { recipient: recipient.id.clone(), purpose: purpose.id.to_string() };
            return self.refuse(audit, error).await;
        }
        let (mut fields, mut withheld): (Vec<&FieldDecl>, Vec<String>) = (Vec::new(), Vec::new());
        for name in &g.fields {
            match self.catalog.field(name) {
                Some(f) if f.allows(&purpose.id) && recipient.fields.contains(&f.name) => fields.push(f),
                _ => withheld.push(name.clone()),
            }
        }
        if fields.is_empty() {
            let audit = self.entry(&actor, candor_log::Action::GrantRead).purpose(&purpose.id).fields(&g.fields);
            let field = withheld.first().cloned().unwrap_or_default();
            let error = VaultError::FieldNotShared { field, recipient: recipient.id.clone() };
            return self.refuse(audit, error).await;
        }
        let names: Vec<FieldName> = fields.iter().map(|f| f.name.clone()).collect();
        let limit = limit.clamp(1, MAX_GRANT_PAGE);
        let page = self.store.grant_subjects(&g.id, after, limit).await?;
        let next = if page.len() == limit as usize { page.last().copied() } else { None };
        let mut records = Vec::new();
        for id in page {
            // One load per customer: the granted values and the restriction flag together.
            let Some(record) = self.store.load_subject(id, &names).await? else { continue };
            if self.situation_blocker(&purpose, &fields, id, record.restricted).await?.is_some() {
                continue;
            }
            let key = self.keys.open_subject_key(id, &record.dek)?;
            let mut values = Map::new();
            for (name, sealed) in &record.values {
                let plain = key.open_field(name, sealed)?;
                let value: Value = serde_json::from_slice(&plain).map_err(|_| CryptoError::Malformed("field value"))?;
                values.insert(name.to_string(), value);
            }
            records.push((id, values));
        }
        let subjects: Vec<SubjectId> = records.iter().map(|(s, _)| *s).collect();
        let mut detail = format!("grant {}", g.id);
        if !withheld.is_empty() {
            detail.push_str(&format!(
                "; withheld (no longer declared for the recipient and purpose): {}",
                withheld.join(", ")
            ));
        }
        let log = self
            .entry(&actor, candor_log::Action::GrantRead)
            .purpose(&purpose.id)
            .subjects(&subjects)
            .fields(names.iter().map(FieldName::as_str))
            .decision("full")
            .detail(detail)
            .record();
        if !self.store.count_grant_read(&g.id, now, log).await? {
            return Err(VaultError::GrantExhausted);
        }
        Ok(GrantPage { records, next, withheld })
    }

    /// Every grant that includes customer `id`, as they see it.
    pub(crate) async fn shares_of(&self, id: SubjectId) -> Result<Vec<ShareView>, VaultError> {
        Ok(self
            .store
            .grants_of(id)
            .await?
            .into_iter()
            .map(|g| {
                let r = self.catalog.recipients.iter().find(|r| r.id == g.recipient);
                ShareView {
                    recipient_name: r.map_or_else(|| g.recipient.clone(), |r| r.name.clone()),
                    country: r.map(|r| r.country.clone()).unwrap_or_default(),
                    grant_id: g.id,
                    recipient: g.recipient,
                    purpose: g.purpose,
                    fields: g.fields,
                    created_at: g.created_at,
                    expires_at: g.expires_at,
                    revoked_at: g.revoked_at,
                }
            })
            .collect())
    }
}
