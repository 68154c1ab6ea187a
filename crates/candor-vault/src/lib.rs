//! The vault: the operations Candor offers, each one "decide, encrypt, store" in one place.
//!
//! Handlers call exactly one vault operation. The vault checks the declared purpose and the
//! write against the catalog (pure code in `candor_core`), seals values with the subject's data
//! key (`candor_crypto`) and stores the result in one store transaction (`candor_store`).
#![forbid(unsafe_code)]

pub mod audit;
pub mod breach_assessment;
mod breaches;
mod center;
pub mod clock;
pub mod completeness;
mod consents;
mod countries;
mod grants;
mod idempotency;
pub mod import;
mod log_check;
pub mod maintenance;
mod messages;
mod notice;
mod outbox;
mod overrides;
mod oversight;
mod policy;
pub mod receipt;
mod report;
mod requests;
pub mod retention;
mod rights;
mod staff;
mod status;
#[cfg(feature = "test-support")]
pub mod testing;
mod tokens;
pub mod transparency;

use std::sync::Arc;

use candor_core::access::{self, AccessDenied};
use candor_core::catalog::{Catalog, Purpose};
use candor_core::value::{self, PersonalValue};
use candor_core::write::{self, WriteError, WriteMode};
use candor_core::{EventId, FieldName, PurposeId, SubjectId};
use candor_crypto::{CryptoError, KeyRing, SubjectKey, hash_token};
use candor_policy::{Action, Outcome, PolicyEngine, Situation, Target};
use candor_store::{FieldChange, NewEvent, NewSubject, NewToken, Store};

use crate::audit::{Audit, LogContext, system_actor};
use serde_json::{Map, Value};

pub use breaches::{AUTHORITY_DEADLINE_MS, BreachClock, BreachInput};
pub use center::{CustomerSession, SESSION_MAX_HOURS, SignInSettings};
use consents::ConsentScope;
pub use consents::{ChangeInput, ImportLine, Notices};
pub use grants::{DEFAULT_GRANT_PAGE, GrantInput};
pub use idempotency::IdempotencyKey;
pub use log_check::LogCheck;
pub use messages::{MessageView, Verification};
pub use overrides::OverrideView;
pub use oversight::{GrantSummary, SlotTally};
pub use report::{Document, ReportEvents, event_json, head_json};
pub use requests::RequestUpdate;
pub use staff::{SignInProof, StaffSignIn, StaffTimes, client_principal, staff_principal};
pub use status::Metrics;

/// Default and maximum page size of event listings.
pub const DEFAULT_EVENT_PAGE: u32 = 100;
pub const MAX_EVENT_PAGE: u32 = 1000;

/// Who is calling: the token's id (for the audit trail) and its role.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub role: String,
    /// The network address a staff member's or recipient's request came from, recorded beside
    /// the log (`[log] caller_address_days`); `None` for customers, the system and the CLI.
    pub origin: Option<std::net::IpAddr>,
}

/// A principal allowed to act under a declared purpose (see [`Vault::authorize`]).
#[derive(Debug, Clone)]
pub struct Authorized {
    pub principal: Principal,
    pub purpose: PurposeId,
    /// The request's `Idempotency-Key`, for the writes that honour one.
    pub idempotency: Option<IdempotencyKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("the token is not valid")]
    InvalidToken,
    #[error(
        "this Idempotency-Key was already used for a different request; send a new key for a new request \
         (a retry must repeat the same method, path, purpose and body)"
    )]
    IdempotencyKeyReused,
    #[error("the token has expired")]
    TokenExpired,
    #[error("the token has been revoked")]
    TokenRevoked,
    #[error(transparent)]
    Access(#[from] AccessDenied),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("field `{0}` is not declared in the catalog")]
    UndeclaredLookupField(String),
    #[error("field `{0}` is not declared with lookup = true, so it cannot be searched")]
    NotALookupField(String),
    #[error("field `{field}` may not be used under purpose `{purpose}`")]
    LookupNotAllowed { field: String, purpose: String },
    #[error("event type `{0}` is not declared in the catalog")]
    UndeclaredEventType(String),
    #[error("event type `{event_type}` may not be recorded under purpose `{purpose}`")]
    EventTypeNotAllowed { event_type: String, purpose: String },
    #[error("{field} {message}")]
    InvalidInput { field: &'static str, message: String },
    #[error("no subject with this id")]
    SubjectNotFound,
    #[error("stored data failed its integrity check: {0}")]
    Integrity(#[from] CryptoError),
    #[error(transparent)]
    Consent(#[from] candor_core::consent::ConsentError),
    #[error("method `{0}` is recorded by Candor itself; over the API use `api` or `paper`")]
    MethodNotClaimable(String),
    #[error("no consent receipt with this id for this subject")]
    ReceiptNotFound,
    #[error("{message}")]
    AudienceQuery { field: &'static str, message: String },
    #[error(
        "field `{field}` is used under purpose `{purpose}` only with consent on its channel, and this customer \
         has not given it"
    )]
    ChannelConsentRequired { field: String, purpose: String },
    #[error("processing of this customer's data is restricted: it is kept but not used (except for legal obligations)")]
    Restricted,
    #[error("a legal hold is in place for this customer: their data cannot be erased until it is lifted")]
    LegalHold,
    #[error("{0}")]
    WrongPurpose(String),
    #[error("no request with this id")]
    RequestNotFound,
    #[error("no notice with this id")]
    NoticeNotFound,
    #[error("no token with this id")]
    TokenNotFound,
    #[error("only the admin role manages tokens")]
    AdminOnly,
    #[error(
        "role `{role}` may not open a break-glass override under purpose `{purpose}` (the catalog's role says break_glass = true when it may)"
    )]
    BreakGlassNotAllowed { role: String, purpose: String },
    #[error(
        "role `{role}` may not erase a customer or lift their restriction under purpose `{purpose}`: erasure is a power the catalog gives a role explicitly (erase = true; in the example catalog the privacy team, under privacy_requests)"
    )]
    EraseNotAllowed { role: String, purpose: String },
    #[error(
        "role `{role}` may not record a consent grant on the customer's behalf under purpose `{purpose}`: the catalog gives that power explicitly (record_consent = true); withdrawals are always accepted"
    )]
    ConsentRecordingNotAllowed { role: String, purpose: String },
    #[error(
        "role `{0}` may not read the whole log's entries: they are for auditors (catalog audit = true, or the admin token); checkpoints and hash tiles are public"
    )]
    AuditNotAllowed(String),
    #[error(
        "this token has erased {0} customers in the last hour, the most `[policy] erasures_per_hour` allows: erasure cannot be undone, so bulk erasure is braked. Try again later, or raise the limit in candor.toml"
    )]
    ErasureRateLimited(u32),
    #[error(
        "this token has restricted {0} customers in the last hour, the most `[policy] restrictions_per_hour` allows: try again later, or raise the limit in candor.toml"
    )]
    RestrictionRateLimited(u32),
    #[error("another customer already has this {0}: it must be unique (the catalog says unique = true)")]
    DuplicateValue(String),
    #[error(
        "role `{0}` may not receive sign-in links: a link signs its holder in as the customer, so it goes only to the roles in [privacy_center] link_senders (the operator's mailer), which send it to the customer"
    )]
    LinkSenderNotAllowed(String),
    #[error(
        "the privacy center needs a purpose declared customer_requests = true in the catalog (customers act under it)"
    )]
    PrivacyCenterUnavailable,
    #[error("this sign-in link is not valid: it was already used, has expired, or was never issued")]
    SignInLinkInvalid,
    #[error("not signed in")]
    NotSignedIn,
    #[error("the session has ended; sign in again")]
    SessionExpired,
    #[error("recipient `{0}` is not declared in the catalog")]
    UnknownRecipient(String),
    #[error(
        "the agreement with recipient `{recipient}` has expired: nothing may be shared with it until it is renewed (agreement_expires in the catalog)"
    )]
    AgreementExpired { recipient: String },
    #[error(
        "recipient `{recipient}` is not declared for purpose `{purpose}`: the catalog lists the purposes each recipient receives data for"
    )]
    RecipientNotDeclared { recipient: String, purpose: String },
    #[error("recipient `{recipient}` is not declared to receive field `{field}`")]
    FieldNotShared { field: String, recipient: String },
    #[error("no grant with this id under this purpose")]
    GrantNotFound,
    #[error("this grant has been revoked")]
    GrantRevoked,
    #[error("this grant has expired")]
    GrantExpired,
    #[error("this grant's reads are used up")]
    GrantExhausted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VaultError {
    /// The machine-readable code of this error: the `error.code` of an API answer, the one
    /// place each code is written.
    pub fn code(&self) -> &'static str {
        use VaultError as E;
        match self {
            E::Unauthenticated(_) => "unauthenticated",
            E::InvalidToken => "invalid_token",
            E::IdempotencyKeyReused => "idempotency_key_reused",
            E::TokenExpired => "token_expired",
            E::TokenRevoked => "token_revoked",
            E::Access(a) => denial_code(a),
            E::Write(w) => match w {
                WriteError::Empty => "no_fields",
                WriteError::UndeclaredField(_) => "undeclared_field",
                WriteError::NotAllowed { .. } | WriteError::RequiredOutsidePurpose { .. } => "field_not_allowed",
                WriteError::Invalid { .. } => "invalid_value",
                WriteError::Missing(_) => "missing_field",
                WriteError::RequiredRemoval(_) => "required_field",
            },
            E::UndeclaredLookupField(_) => "undeclared_field",
            E::NotALookupField(_) => "not_a_lookup_field",
            E::LookupNotAllowed { .. } => "field_not_allowed",
            E::UndeclaredEventType(_) => "undeclared_event_type",
            E::EventTypeNotAllowed { .. } => "event_type_not_allowed",
            E::InvalidInput { .. } | E::MethodNotClaimable(_) => "invalid_value",
            E::SubjectNotFound => "subject_not_found",
            E::Integrity(CryptoError::Random) => "internal",
            E::Integrity(CryptoError::KekBudgetExhausted { .. }) => "key_rotation_required",
            E::Integrity(_) => "integrity_error",
            E::Consent(c) => c.code(),
            E::ReceiptNotFound => "receipt_not_found",
            E::AudienceQuery { .. } => "invalid_audience_query",
            E::ChannelConsentRequired { .. } => "consent_required",
            E::Restricted => "restricted",
            E::LegalHold => "legal_hold",
            E::WrongPurpose(_) => "purpose_not_allowed",
            E::RequestNotFound => "request_not_found",
            E::NoticeNotFound => "notice_not_found",
            E::TokenNotFound => "token_not_found",
            E::AdminOnly => "admin_only",
            E::BreakGlassNotAllowed { .. } => "break_glass_not_allowed",
            E::EraseNotAllowed { .. } => "erase_not_allowed",
            E::ConsentRecordingNotAllowed { .. } => "consent_recording_not_allowed",
            E::AuditNotAllowed(_) => "audit_not_allowed",
            E::ErasureRateLimited(_) => "erasure_rate_limited",
            E::RestrictionRateLimited(_) => "restriction_rate_limited",
            E::DuplicateValue(_) => "duplicate_value",
            E::LinkSenderNotAllowed(_) => "link_sender_not_allowed",
            E::PrivacyCenterUnavailable => "privacy_center_unavailable",
            E::SignInLinkInvalid => "sign_in_link_invalid",
            E::NotSignedIn => "not_signed_in",
            E::SessionExpired => "session_expired",
            E::UnknownRecipient(_) => "unknown_recipient",
            E::AgreementExpired { .. } => "agreement_expired",
            E::RecipientNotDeclared { .. } => "recipient_not_declared",
            E::FieldNotShared { .. } => "field_not_shared",
            E::GrantNotFound => "grant_not_found",
            E::GrantRevoked => "grant_revoked",
            E::GrantExpired => "grant_expired",
            E::GrantExhausted => "grant_exhausted",
            E::Store(StoreError::StorageFull(_)) => "storage_full",
            E::Store(StoreError::Erased { .. }) => "subject_erased",
            E::Store(StoreError::Unavailable(_)) => "unavailable",
            E::Store(StoreError::OutOfRange(_)) => "out_of_range",
            E::Store(StoreError::Conflict(_)) => "conflict",
            E::Store(_) => "internal",
        }
    }
}

/// A subject's fields as the declared purpose may see them.
// No `Debug`: it holds personal values.
pub struct SubjectView {
    pub id: SubjectId,
    pub fields: Map<String, Value>,
    /// Declared fields the caller may not see (whether or not they hold a value).
    pub withheld: Vec<String>,
    /// Fields returned masked (only those that hold a value).
    pub masked: Vec<String>,
    /// The values were shown under a break-glass override.
    pub break_glass: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Correction {
    pub updated: Vec<String>,
    pub removed: Vec<String>,
}

// No `Debug`: it holds personal values.
pub struct EventView {
    pub id: EventId,
    pub event_type: String,
    pub recorded_at: Millis,
    pub occurred_at: Option<String>,
    pub data: Value,
}

// No `Debug`: it holds personal values.
pub struct EventPage {
    pub events: Vec<EventView>,
    pub withheld_types: Vec<String>,
    pub next: Option<i64>,
}

pub struct NewEventInput {
    pub event_type: String,
    pub data: Value,
    pub occurred_at: Option<String>,
}

#[derive(Clone)]
pub struct Vault {
    catalog: Arc<Catalog>,
    keys: Arc<KeyRing>,
    store: Arc<dyn Store>,
    log: Arc<LogContext>,
    notices: Arc<Notices>,
    policy: Arc<PolicyEngine>,
    break_glass_minutes: u32,
    sign_in: SignInSettings,
    max_grant_days: u32,
    erasure_brake: Arc<rights::HourlyBrake>,
    restriction_brake: Arc<rights::HourlyBrake>,
    tokens: Arc<tokens::TokenCache>,
    /// Where every rule with a deadline reads the time.
    clock: Arc<dyn clock::Clock>,
}

pub use crate::clock::now_millis;

/// The stored shapes the vault's operations return (ids, names, times and opaque bytes, never a
/// key), re-exported so callers need no dependency on the store itself.
pub use candor_store::{Grant, Millis, Notice, Request, StaffSession, StoreError, StoredToken};

impl Vault {
    pub fn new(
        catalog: Arc<Catalog>,
        policy: Arc<PolicyEngine>,
        keys: Arc<KeyRing>,
        store: Arc<dyn Store>,
        log: Arc<LogContext>,
    ) -> Self {
        let notices = Arc::new(Notices::of(&catalog));
        Self {
            catalog,
            keys,
            store,
            log,
            notices,
            policy,
            break_glass_minutes: 15,
            sign_in: SignInSettings::default(),
            max_grant_days: 30,
            erasure_brake: Arc::new(rights::HourlyBrake::new(0)),
            restriction_brake: Arc::new(rights::HourlyBrake::new(0)),
            tokens: Arc::new(tokens::TokenCache::default()),
            clock: Arc::new(clock::SystemClock),
        }
    }

    /// Most erasures one token may make in an hour (`[policy] erasures_per_hour`; 0: no limit).
    pub fn with_erasures_per_hour(mut self, limit: u32) -> Self {
        self.erasure_brake = Arc::new(rights::HourlyBrake::new(limit));
        self
    }

    /// Most restrictions one token may place in an hour (`[policy] restrictions_per_hour`; 0: no
    /// limit).
    pub fn with_restrictions_per_hour(mut self, limit: u32) -> Self {
        self.restriction_brake = Arc::new(rights::HourlyBrake::new(limit));
        self
    }

    /// The longest a grant may run (`[sharing] max_grant_days`).
    pub fn with_max_grant_days(mut self, days: u32) -> Self {
        self.max_grant_days = days;
        self
    }

    /// How long privacy-center sign-in links and idle sessions last.
    pub fn with_sign_in(mut self, settings: SignInSettings) -> Self {
        self.sign_in = settings;
        self
    }

    /// How long a break-glass override lasts (see `[policy] break_glass_minutes`).
    pub fn with_break_glass_minutes(mut self, minutes: u32) -> Self {
        self.break_glass_minutes = minutes;
        self
    }

    /// Reads the time from `clock` instead of the system clock (tests move a
    /// [`clock::ManualClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A log record of `action` by `actor`, timed by this vault's clock.
    fn entry(&self, actor: &Principal, action: candor_log::Action) -> Audit {
        Audit::at(actor, action, self.clock.now())
    }

    /// The current time by this vault's clock, in milliseconds since the epoch.
    pub fn now_millis(&self) -> Millis {
        self.clock.now_millis()
    }

    pub fn log_context(&self) -> &LogContext {
        &self.log
    }

    /// Logs a refusal, then returns it. If the refusal cannot be logged, the store error wins:
    /// nothing happens unlogged.
    async fn refuse<T>(&self, audit: Audit, error: VaultError) -> Result<T, VaultError> {
        self.store.append_log(vec![audit.decision("denied").detail(error.code()).record()]).await?;
        Err(error)
    }

    /// Logs that the catalog changed since the last start (its SHA-256), if it did.
    pub async fn note_catalog(&self, sha256_hex: &str) -> Result<(), VaultError> {
        let record = self
            .entry(&system_actor(), candor_log::Action::CatalogChanged)
            .detail(format!("sha256:{sha256_hex}"))
            .record();
        self.store.note_catalog(sha256_hex, record).await?;
        Ok(())
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Resolves a bearer token to its principal.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, VaultError> {
        let found = self.known_token(&hash_token(token).0).await?;
        if found.revoked_at.is_some() {
            return Err(VaultError::TokenRevoked);
        }
        if found.expires_at.is_some_and(|e| e <= self.now_millis()) {
            return Err(VaultError::TokenExpired);
        }
        Ok(Principal { token_id: found.id, role: found.role, origin: None })
    }

    /// Checks that `principal` may act under the declared purpose. (What is known about the
    /// customer — consent, restriction, break-glass — is weighed by each operation that touches
    /// their data: see [`Vault::gate`].) `subject` is the customer the request is about, if
    /// known, so that a refusal is logged against them.
    pub async fn authorize(
        &self,
        principal: Principal,
        purpose: Option<&str>,
        subject: Option<SubjectId>,
    ) -> Result<Authorized, VaultError> {
        let refused = match access::declared_purpose(&self.catalog, &principal.role, purpose) {
            Ok(p) => {
                let d = self
                    .policy
                    .decide(&principal.role, Action::Act, p.id.as_str(), Target::Purpose, Situation::NEUTRAL)
                    .expect("declared role and purpose");
                if d.allowed {
                    return Ok(Authorized { principal, purpose: p.id.clone(), idempotency: None });
                }
                policy::denial(&d, &principal.role, p.id.as_str())
            }
            Err(denied) => VaultError::Access(denied),
        };
        let mut audit = self.entry(&principal, candor_log::Action::AccessDenied).subjects(subject.as_slice());
        if let Some(p) = self.catalog.purpose(purpose.unwrap_or_default().trim()) {
            audit = audit.purpose(&p.id);
        }
        self.refuse(audit, refused).await
    }

    /// Refuses a write the policy engine forbids (an operator policy narrowing the catalog).
    async fn check_writes(
        &self,
        auth: &Authorized,
        id: Option<SubjectId>,
        fields: &[&FieldName],
        situation: Situation,
    ) -> Result<(), VaultError> {
        for field in fields {
            let d = self.decide(auth, Action::Write, Target::Field(field.as_str()), situation);
            if !d.allowed {
                let action =
                    if id.is_some() { candor_log::Action::SubjectCorrect } else { candor_log::Action::SubjectCreate };
                let audit = self.audit(auth, action, id.as_slice()).fields([field.as_str()]);
                return self.refuse_decision(auth, audit, &d).await;
            }
        }
        Ok(())
    }

    /// A log record of `action` by the caller under its purpose, about `subjects`.
    fn audit(&self, auth: &Authorized, action: candor_log::Action, subjects: &[SubjectId]) -> Audit {
        self.entry(&auth.principal, action).purpose(&auth.purpose).subjects(subjects)
    }

    /// Refuses a write; attempts to touch fields outside the purpose are logged as denials.
    async fn refuse_write<T>(&self, auth: &Authorized, id: Option<SubjectId>, e: WriteError) -> Result<T, VaultError> {
        match &e {
            WriteError::NotAllowed { field, .. } | WriteError::RequiredOutsidePurpose { field, .. } => {
                let action =
                    if id.is_some() { candor_log::Action::SubjectCorrect } else { candor_log::Action::SubjectCreate };
                let audit = self.audit(auth, action, id.as_slice()).fields([field]);
                self.refuse(audit, VaultError::Write(e)).await
            }
            _ => Err(VaultError::Write(e)),
        }
    }

    /// Refuses (logged, `409 duplicate_value`) a value of a `unique` field that another customer
    /// already holds, found through the blind index under every index key held. Two writes racing
    /// with the same new value on different connections can both pass; the check stops the
    /// ordinary case (a customer setting their e-mail to someone else's).
    async fn refuse_duplicates(
        &self,
        auth: &Authorized,
        id: Option<SubjectId>,
        set: &[(&candor_core::catalog::FieldDecl, value::PersonalValue)],
    ) -> Result<(), VaultError> {
        for (decl, value) in set.iter().filter(|(d, _)| d.unique && d.lookup) {
            let Some(key) = value::lookup_key(decl.field_type, value.as_json()) else { continue };
            let holders = self.store.find_by_index(&decl.name, &self.keys.blind_indexes(&decl.name, &key)).await?;
            if holders.iter().any(|h| Some(*h) != id) {
                let audit = self
                    .audit(
                        auth,
                        if id.is_some() {
                            candor_log::Action::SubjectCorrect
                        } else {
                            candor_log::Action::SubjectCreate
                        },
                        id.as_slice(),
                    )
                    .fields([decl.name.as_str()]);
                return self.refuse(audit, VaultError::DuplicateValue(decl.name.to_string())).await;
            }
        }
        Ok(())
    }

    fn purpose(&self, auth: &Authorized) -> &Purpose {
        self.catalog.purpose(auth.purpose.as_str()).expect("authorized purposes are declared")
    }

    /// Stores a new subject with the given fields.
    pub async fn create_subject(
        &self,
        auth: &Authorized,
        fields: &Map<String, Value>,
    ) -> Result<SubjectId, VaultError> {
        if let Some(first) = self.replay(auth).await? {
            return Ok(first);
        }
        match self.create_new_subject(auth, fields).await {
            Err(e) => self.replay_or(auth, e).await,
            done => done,
        }
    }

    async fn create_new_subject(
        &self,
        auth: &Authorized,
        fields: &Map<String, Value>,
    ) -> Result<SubjectId, VaultError> {
        self.refuse_create_under_consent(auth).await?;
        let checked = match write::check_write(&self.catalog, self.purpose(auth), fields, WriteMode::Create) {
            Ok(c) => c,
            Err(e) => return self.refuse_write(auth, None, e).await,
        };
        let names: Vec<&FieldName> = checked.set.iter().map(|(d, _)| &d.name).collect();
        self.check_writes(auth, None, &names, Situation::NEUTRAL).await?;
        self.refuse_duplicates(auth, None, &checked.set).await?;
        let (subject, log) = self.new_subject(auth, &checked.set)?;
        let id = subject.id;
        self.store.create_subject(subject, log).await?;
        Ok(id)
    }

    /// A new customer of checked values: a fresh id and data key, the values sealed, the
    /// blind-index entries of lookup fields, and the log record of its creation (nothing stored).
    fn new_subject(
        &self,
        auth: &Authorized,
        set: &[(&candor_core::catalog::FieldDecl, PersonalValue)],
    ) -> Result<(NewSubject, candor_store::LogRecord), VaultError> {
        let id = SubjectId::random();
        let (key, dek) = self.keys.new_subject_key(id)?;
        let mut values = Vec::with_capacity(set.len());
        let mut index = Vec::new();
        for (decl, value) in set {
            values.push((decl.name.clone(), seal_value(&key, &decl.name, value)?));
            if decl.lookup
                && let Some(normalised) = value::lookup_key(decl.field_type, value.as_json())
            {
                index.push((decl.name.clone(), self.keys.blind_index(&decl.name, &normalised)));
            }
        }
        let log = self
            .audit(auth, candor_log::Action::SubjectCreate, &[id])
            .fields(set.iter().map(|(d, _)| d.name.as_str()))
            .idempotent(auth.idempotency.as_ref(), &id)
            .record();
        Ok((NewSubject { id, dek, values, index, now: self.now_millis() }, log))
    }

    /// The subject's fields as the policy engine lets the caller see them: in full, masked, or
    /// withheld (named in `withheld`).
    pub async fn read_subject(&self, auth: &Authorized, id: SubjectId) -> Result<SubjectView, VaultError> {
        // Load what the caller could see of anyone; the customer's situation only narrows it
        // (or, with break-glass, unmasks it).
        let neutral = self.policy.outcomes(&auth.principal.role, auth.purpose.as_str(), Situation::NEUTRAL);
        let neutral = neutral.expect("authorized requests name declared roles and purposes");
        let names: Vec<FieldName> = self
            .catalog
            .fields
            .iter()
            .zip(&neutral.fields)
            .filter(|(_, o)| **o != Outcome::Withheld)
            .map(|(f, _)| f.name.clone())
            .collect();
        // Under a consent purpose the ledger is read with the customer, in one snapshot.
        let purpose = self.purpose(auth);
        let (record, scope) = if purpose.needs_consent() {
            let (record, history) = self
                .store
                .load_subject_with_consents(id, &names, &purpose.id)
                .await?
                .ok_or(VaultError::SubjectNotFound)?;
            let channels = self.channels_in(purpose, &history);
            (record, ConsentScope::Active { purpose: purpose.clone(), channels })
        } else {
            (self.store.load_subject(id, &names).await?.ok_or(VaultError::SubjectNotFound)?, ConsentScope::NotNeeded)
        };
        let situation = self.situation(auth, id, &scope, record.restricted).await?;
        let outcomes = self.gate(auth, id, situation, candor_log::Action::SubjectRead).await?;
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let mut fields = Map::new();
        let mut masked = Vec::new();
        let mut withheld = Vec::new();
        for (decl, outcome) in self.catalog.fields.iter().zip(&outcomes.fields) {
            let outcome = if scope.allows(decl) { *outcome } else { Outcome::Withheld };
            let sealed = record.values.iter().find(|(n, _)| *n == decl.name).map(|(_, v)| v);
            match (outcome, sealed) {
                (Outcome::Withheld, _) => withheld.push(decl.name.to_string()),
                (_, None) => {}
                (outcome, Some(sealed)) => {
                    let plain = key.open_field(&decl.name, sealed)?;
                    let value: Value =
                        serde_json::from_slice(&plain).map_err(|_| CryptoError::Malformed("field value"))?;
                    let value = match outcome {
                        Outcome::Masked(style) => {
                            masked.push(decl.name.to_string());
                            style.apply(&value)
                        }
                        _ => value,
                    };
                    fields.insert(decl.name.to_string(), value);
                }
            }
        }
        let log = self.audit(auth, candor_log::Action::SubjectRead, &[id]).fields(fields.keys());
        let log = match (situation.break_glass, masked.is_empty()) {
            (true, _) => log.decision("break_glass"),
            (false, true) => log.decision("full"),
            (false, false) => log.decision("masked").detail(format!("masked: {}", masked.join(", "))),
        };
        self.store.append_log(vec![log.record()]).await?;
        Ok(SubjectView {
            id,
            fields,
            withheld,
            masked,
            break_glass: situation.break_glass,
            created_at: record.created_at,
            updated_at: record.updated_at,
        })
    }

    /// Corrects (or, with `null`, removes) fields. The old ciphertext is overwritten; no
    /// readable copy of the old value is kept.
    pub async fn correct_subject(
        &self,
        auth: &Authorized,
        id: SubjectId,
        fields: &Map<String, Value>,
    ) -> Result<Correction, VaultError> {
        if let Some(first) = self.replay(auth).await? {
            return Ok(first);
        }
        match self.correct(auth, id, fields, WriteMode::Correct).await {
            Err(e) => self.replay_or(auth, e).await,
            done => done,
        }
    }

    async fn correct(
        &self,
        auth: &Authorized,
        id: SubjectId,
        fields: &Map<String, Value>,
        mode: WriteMode,
    ) -> Result<Correction, VaultError> {
        let checked = match write::check_write(&self.catalog, self.purpose(auth), fields, mode) {
            Ok(c) => c,
            Err(e) => return self.refuse_write(auth, Some(id), e).await,
        };
        let scope = self.consent_scope(auth, id).await?;
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let situation = self.situation(auth, id, &scope, record.restricted).await?;
        let touched: Vec<&candor_core::catalog::FieldDecl> =
            checked.set.iter().map(|(d, _)| *d).chain(checked.remove.iter().copied()).collect();
        let names: Vec<&FieldName> = touched.iter().map(|d| &d.name).collect();
        self.check_writes(auth, Some(id), &names, situation).await?;
        if let Some(field) = touched.iter().find(|d| !scope.allows(d)) {
            let audit = self.audit(auth, candor_log::Action::SubjectCorrect, &[id]).fields([field.name.as_str()]);
            let error =
                VaultError::ChannelConsentRequired { field: field.name.to_string(), purpose: auth.purpose.to_string() };
            return self.refuse(audit, error).await;
        }
        self.refuse_duplicates(auth, Some(id), &checked.set).await?;
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let mut changes = Vec::new();
        for (decl, value) in &checked.set {
            let index = if decl.lookup {
                value::lookup_key(decl.field_type, value.as_json()).map(|n| self.keys.blind_index(&decl.name, &n))
            } else {
                None
            };
            changes.push(FieldChange::Set {
                field: decl.name.clone(),
                value: seal_value(&key, &decl.name, value)?,
                index,
            });
        }
        for decl in &checked.remove {
            changes.push(FieldChange::Remove { field: decl.name.clone() });
        }
        let names =
            checked.set.iter().map(|(d, _)| d.name.as_str()).chain(checked.remove.iter().map(|d| d.name.as_str()));
        let correction = Correction {
            updated: checked.set.iter().map(|(d, _)| d.name.to_string()).collect(),
            removed: checked.remove.iter().map(|d| d.name.to_string()).collect(),
        };
        let log = self
            .audit(auth, candor_log::Action::SubjectCorrect, &[id])
            .fields(names)
            .idempotent(auth.idempotency.as_ref(), &correction)
            .record();
        if !self.store.update_subject(id, changes, self.now_millis(), log).await? {
            return Err(VaultError::SubjectNotFound);
        }
        Ok(correction)
    }

    /// Subjects whose lookup field `field` equals `value` (exact match after normalisation).
    pub async fn lookup(&self, auth: &Authorized, field: &str, value_text: &str) -> Result<Vec<SubjectId>, VaultError> {
        let decl =
            self.catalog.field(field).ok_or_else(|| VaultError::UndeclaredLookupField(write::echo_name(field)))?;
        if !decl.lookup {
            return Err(VaultError::NotALookupField(field.to_string()));
        }
        let may_use = |action| self.decide(auth, action, Target::Field(field), Situation::NEUTRAL).allowed;
        if !may_use(Action::Read) && !may_use(Action::ReadMasked) {
            let audit = self.audit(auth, candor_log::Action::SubjectLookup, &[]).fields([field]);
            let error = VaultError::LookupNotAllowed { field: field.to_string(), purpose: auth.purpose.to_string() };
            return self.refuse(audit, error).await;
        }
        let value = value::lookup_value_from_text(decl.field_type, value_text);
        let found = match value::lookup_key(decl.field_type, &value) {
            Some(normalised) => {
                self.store.find_by_index(&decl.name, &self.keys.blind_indexes(&decl.name, &normalised)).await?
            }
            // Not a valid value of the type: nothing stored can match it.
            None => Vec::new(),
        };
        // Under a consent purpose, only customers who consented (to this field's channel) are found.
        let found = self.with_consent(auth, decl, found).await?;
        let log = self.audit(auth, candor_log::Action::SubjectLookup, &found).fields([field]).decision("full").record();
        self.store.append_log(vec![log]).await?;
        Ok(found)
    }

    /// Appends a behavioural event; its payload is sealed like any field value.
    pub async fn append_event(
        &self,
        auth: &Authorized,
        id: SubjectId,
        input: NewEventInput,
    ) -> Result<EventId, VaultError> {
        if let Some(first) = self.replay(auth).await? {
            return Ok(first);
        }
        let decl = self
            .catalog
            .event(&input.event_type)
            .ok_or_else(|| VaultError::UndeclaredEventType(write::echo_name(&input.event_type)))?;
        let write = self.decide(auth, Action::Write, Target::Event(decl.name.as_str()), Situation::NEUTRAL);
        if !write.allowed {
            let audit = self.audit(auth, candor_log::Action::EventAppend, &[id]).fields([decl.name.as_str()]);
            if write.operator_forbid().is_some() {
                return self.refuse_decision(auth, audit, &write).await;
            }
            let error =
                VaultError::EventTypeNotAllowed { event_type: input.event_type, purpose: auth.purpose.to_string() };
            return self.refuse(audit, error).await;
        }
        let scope = self.consent_scope(auth, id).await?;
        let data = value::validate_event_payload(&input.data)
            .map_err(|e| VaultError::InvalidInput { field: "data", message: e.0 })?;
        if let Some(t) = &input.occurred_at
            && t.parse::<jiff::Timestamp>().is_err()
        {
            return Err(VaultError::InvalidInput {
                field: "occurred_at",
                message: "must be an RFC 3339 time such as 2026-11-22T10:00:00Z".into(),
            });
        }
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let situation = self.situation(auth, id, &scope, record.restricted).await?;
        self.gate(auth, id, situation, candor_log::Action::EventAppend).await?;
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let event_id = EventId::random();
        let mut sealed_body = serde_json::json!({ "data": data.into_json() });
        if let Some(t) = input.occurred_at {
            sealed_body["occurred_at"] = Value::String(t);
        }
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&sealed_body).expect("JSON values serialise"));
        let payload = key.seal_event(event_id, &decl.name, &plain)?;
        let log = self
            .audit(auth, candor_log::Action::EventAppend, &[id])
            .fields([decl.name.as_str()])
            .idempotent(auth.idempotency.as_ref(), &event_id)
            .record();
        let event = NewEvent {
            id: event_id,
            subject: id,
            event_type: decl.name.clone(),
            recorded_at: self.now_millis(),
            payload,
        };
        match self.store.append_event(event, log).await {
            Ok(true) => Ok(event_id),
            Ok(false) => Err(VaultError::SubjectNotFound),
            Err(e) => self.replay_or(auth, e.into()).await,
        }
    }

    /// The subject's events of the types the purpose may see, oldest first, paged.
    pub async fn list_events(
        &self,
        auth: &Authorized,
        id: SubjectId,
        after: Option<i64>,
        limit: u32,
    ) -> Result<EventPage, VaultError> {
        let scope = self.consent_scope(auth, id).await?;
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let situation = self.situation(auth, id, &scope, record.restricted).await?;
        let outcomes = self.gate(auth, id, situation, candor_log::Action::EventRead).await?;
        let (allowed, withheld): (Vec<_>, Vec<_>) =
            self.catalog.events.iter().zip(&outcomes.events).partition(|(_, o)| **o == Outcome::Full);
        let (allowed, withheld): (Vec<_>, Vec<_>) =
            (allowed.into_iter().map(|(e, _)| e).collect(), withheld.into_iter().map(|(e, _)| e).collect());
        let key = self.keys.open_subject_key(id, &record.dek)?;
        let types: Vec<FieldName> = allowed.iter().map(|e| e.name.clone()).collect();
        let limit = limit.clamp(1, MAX_EVENT_PAGE);
        let stored = self.store.list_events(id, &types, after, limit).await?;
        let next = (stored.len() == limit as usize).then(|| stored.last().map(|e| e.seq)).flatten();
        let mut events = Vec::with_capacity(stored.len());
        for e in stored {
            events.push(open_event(&key, e)?);
        }
        let mut seen: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        let log = self.audit(auth, candor_log::Action::EventRead, &[id]).fields(seen).decision("full").record();
        self.store.append_log(vec![log]).await?;
        Ok(EventPage { events, withheld_types: withheld.iter().map(|e| e.name.to_string()).collect(), next })
    }

    /// Creates a token for `role`, stores its hash and returns the token (shown once).
    pub async fn create_token(
        &self,
        role: &str,
        description: &str,
        expires_at: Option<Millis>,
    ) -> Result<zeroize::Zeroizing<String>, VaultError> {
        if !self.catalog.is_known_role(role) {
            let known: Vec<&str> = std::iter::once(candor_core::catalog::ADMIN_ROLE)
                .chain(self.catalog.roles.iter().map(|r| r.id.as_str()))
                .collect();
            return Err(VaultError::InvalidInput {
                field: "role",
                message: format!("`{role}` is not declared in the catalog; declared roles: {}", known.join(", ")),
            });
        }
        let token = candor_crypto::generate_token()?;
        let id = uuid::Uuid::new_v4().to_string();
        let log = self
            .entry(&system_actor(), candor_log::Action::TokenCreate)
            .detail(format!("token {id} for role {role}"))
            .record();
        let new = NewToken {
            id,
            hash: hash_token(&token).0,
            role: role.to_string(),
            description: description.to_string(),
            created_at: self.now_millis(),
            expires_at,
        };
        self.store.insert_token(new, log).await?;
        Ok(token)
    }
}

/// Decrypts a stored event.
fn open_event(key: &SubjectKey, e: candor_store::StoredEvent) -> Result<EventView, VaultError> {
    let plain = key.open_event(e.id, &e.event_type, &e.payload)?;
    let mut body: Value = serde_json::from_slice(&plain).map_err(|_| CryptoError::Malformed("event payload"))?;
    Ok(EventView {
        id: e.id,
        event_type: e.event_type.to_string(),
        recorded_at: e.recorded_at,
        occurred_at: body.get("occurred_at").and_then(Value::as_str).map(str::to_string),
        data: body.get_mut("data").map(Value::take).unwrap_or(Value::Null),
    })
}

fn seal_value(
    key: &SubjectKey,
    field: &FieldName,
    value: &PersonalValue,
) -> Result<candor_core::Ciphertext, CryptoError> {
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(value.as_json()).expect("JSON values serialise"));
    key.seal_field(field, &plain)
}

/// The machine-readable code of a purpose-level refusal (as the API reports it).
pub fn denial_code(denied: &AccessDenied) -> &'static str {
    match denied {
        AccessDenied::PurposeRequired => "purpose_required",
        AccessDenied::UnknownPurpose(_) => "unknown_purpose",
        AccessDenied::UnknownRole(_) => "unknown_role",
        AccessDenied::PurposeNotAllowed { .. } => "purpose_not_allowed",
        AccessDenied::ConsentRequired(_) => "consent_required",
        AccessDenied::PolicyForbids { .. } => "policy_forbids",
    }
}
