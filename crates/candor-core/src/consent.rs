//! Consent and communication preferences as a ledger.
//!
//! Every grant or withdrawal is an append-only ledger entry for one *slot*: a consent-based
//! purpose and, for purposes declared with channels, one channel. The current state of a slot is
//! derived from its entries (the latest by time given, then by order recorded); nothing is ever
//! edited in place. A slot that was never granted is off: consent is opt-in.
//!
//! A grant counts only while the purpose's notice is the one it was given on, unless the purpose
//! says `material_change = "keep"`. This module is pure: the vault supplies the entries and the
//! current notice versions.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::{CUSTOMER_ROLE, Catalog, Channel, FieldDecl, MaterialChange, Purpose};
use crate::ids::{PurposeId, SubjectId};

/// Most changes accepted in one request.
pub const MAX_CHANGES: usize = 50;
/// Shortest reason a staff member must give for recording a customer's choice.
pub const MIN_REASON_CHARS: usize = 10;
pub const MAX_REASON_CHARS: usize = 500;
pub const MAX_EVIDENCE_CHARS: usize = 200;

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub const ALL: &[(&'static str, $name)] = &[$(($text, $name::$variant)),+];

            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
            }

            /// The accepted names, for error messages.
            pub fn names() -> String {
                Self::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            }
        }
    };
}

named_enum!(
    /// What a ledger entry does.
    ConsentAction { Grant = "grant", Withdraw = "withdraw" }
);

named_enum!(
    /// How the customer's choice reached Candor.
    ConsentMethod {
        PrivacyCenter = "privacy_center",
        Api = "api",
        Import = "import",
        Paper = "paper",
        Gpc = "gpc",
    }
);

impl ConsentMethod {
    /// Methods an API caller may claim. The others are recorded by Candor itself (the privacy
    /// center, a Global Privacy Control signal, `candor import consents`).
    pub fn claimable_over_api(self) -> bool {
        matches!(self, ConsentMethod::Api | ConsentMethod::Paper)
    }
}

named_enum!(
    /// Who made the change.
    ActorKind {
        /// The customer themselves (through the privacy center, or an app acting for them).
        Subject = "subject",
        /// A staff member recording the customer's choice, with a reason.
        Staff = "staff",
        /// The operator, importing consents collected elsewhere.
        Operator = "operator",
    }
);

/// One purpose and, for purposes with channels, one channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slot {
    pub purpose: PurposeId,
    pub channel: Option<Channel>,
}

impl Slot {
    /// `marketing/email`, or the purpose id alone.
    pub fn label(&self) -> String {
        match self.channel {
            Some(c) => format!("{}/{}", self.purpose, c.name()),
            None => self.purpose.to_string(),
        }
    }
}

/// The slots of a consent purpose: one per channel, or one for the purpose.
pub fn purpose_slots(purpose: &Purpose) -> Vec<Slot> {
    if purpose.channels.is_empty() {
        vec![Slot { purpose: purpose.id.clone(), channel: None }]
    } else {
        purpose.channels.iter().map(|c| Slot { purpose: purpose.id.clone(), channel: Some(*c) }).collect()
    }
}

/// What the current state needs to know of one ledger entry.
#[derive(Debug, Clone)]
pub struct LedgerFact {
    pub slot: Slot,
    pub action: ConsentAction,
    pub notice_version: String,
    /// When the customer made the choice (milliseconds); for imports, the original time.
    pub given_at: i64,
    /// Order of recording, breaking ties between equal times.
    pub seq: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Granted,
    Withdrawn,
    /// Never granted: off (opt-in).
    NotGiven,
    /// Granted on an earlier notice of a purpose that has since changed: off until renewed.
    RenewalNeeded,
}

/// The current state of one slot.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub slot: Slot,
    pub status: ConsentStatus,
    /// When the latest entry was given.
    pub since: Option<i64>,
    /// The notice version of the latest entry.
    pub notice_version: Option<String>,
}

impl SlotState {
    pub fn is_active(&self) -> bool {
        self.status == ConsentStatus::Granted
    }
}

/// Whether an entry with `action` on `notice_version` makes the slot active now.
pub fn counts(purpose: &Purpose, action: ConsentAction, notice_version: &str, current_version: &str) -> bool {
    action == ConsentAction::Grant
        && (purpose.material_change == MaterialChange::Keep || notice_version == current_version)
}

/// The current state of every slot of `purpose`, derived from `facts` (entries of one customer,
/// in any order; entries of other purposes are ignored).
pub fn purpose_state(purpose: &Purpose, current_version: &str, facts: &[LedgerFact]) -> Vec<SlotState> {
    purpose_slots(purpose)
        .into_iter()
        .map(|slot| {
            let latest = facts.iter().filter(|f| f.slot == slot).max_by_key(|f| (f.given_at, f.seq));
            let status = match latest {
                None => ConsentStatus::NotGiven,
                Some(f) if f.action == ConsentAction::Withdraw => ConsentStatus::Withdrawn,
                Some(f) if counts(purpose, f.action, &f.notice_version, current_version) => ConsentStatus::Granted,
                Some(_) => ConsentStatus::RenewalNeeded,
            };
            SlotState {
                slot,
                status,
                since: latest.map(|f| f.given_at),
                notice_version: latest.map(|f| f.notice_version.clone()),
            }
        })
        .collect()
}

/// The current state of every slot of every consent purpose of the catalog.
/// `current_version` gives each purpose's notice version in force.
pub fn current_state<'v>(
    catalog: &Catalog,
    current_version: impl Fn(&Purpose) -> &'v str,
    facts: &[LedgerFact],
) -> Vec<SlotState> {
    catalog
        .purposes
        .iter()
        .filter(|p| p.needs_consent())
        .flat_map(|p| purpose_state(p, current_version(p), facts))
        .collect()
}

/// The channels (or `None` for a purpose without channels) on which consent is active.
pub fn active_channels(states: &[SlotState]) -> Vec<Option<Channel>> {
    states.iter().filter(|s| s.is_active()).map(|s| s.slot.channel).collect()
}

/// Whether `field` may be used under consent purpose `purpose` given the active channels.
/// A field that addresses a channel of the purpose (the e-mail address for `email`, the phone
/// number for `sms` or `phone`, the postal address for `post`) needs consent on such a channel;
/// any other field of the purpose needs consent on at least one channel.
pub fn field_usable(field: &FieldDecl, purpose: &Purpose, active: &[Option<Channel>]) -> bool {
    if active.is_empty() {
        return false;
    }
    let addressed_by: Vec<Channel> =
        purpose.channels.iter().copied().filter(|c| c.address_type() == Some(field.field_type)).collect();
    addressed_by.is_empty() || addressed_by.iter().any(|c| active.contains(&Some(*c)))
}

/// Streams the audience of one slot: fed the slot's entries ordered by subject, then time given,
/// then order recorded, it yields each subject whose latest entry counts.
pub struct AudienceFold<'a> {
    purpose: &'a Purpose,
    current_version: &'a str,
    pending: Option<(SubjectId, bool)>,
}

impl<'a> AudienceFold<'a> {
    pub fn new(purpose: &'a Purpose, current_version: &'a str) -> Self {
        Self { purpose, current_version, pending: None }
    }

    /// Feeds one entry; returns a subject whose entries are complete and whose consent counts.
    pub fn push(&mut self, subject: SubjectId, action: ConsentAction, notice_version: &str) -> Option<SubjectId> {
        let counts = counts(self.purpose, action, notice_version, self.current_version);
        match self.pending.replace((subject, counts)) {
            Some((previous, true)) if previous != subject => Some(previous),
            _ => None,
        }
    }

    /// The last subject, once every entry has been fed.
    pub fn finish(self) -> Option<SubjectId> {
        self.pending.filter(|(_, counts)| *counts).map(|(s, _)| s)
    }
}

/// A change as requested: names still to be checked against the catalog.
#[derive(Debug, Clone)]
pub struct RequestedChange {
    pub purpose: String,
    pub channel: Option<String>,
    pub action: String,
}

/// A change checked against the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedChange {
    pub slot: Slot,
    pub action: ConsentAction,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error("list at least one change")]
    NoChanges,
    #[error("at most {MAX_CHANGES} changes are accepted at once")]
    TooManyChanges,
    #[error("purpose `{purpose}` is not declared in the catalog")]
    UnknownPurpose { index: usize, purpose: String },
    #[error("purpose `{purpose}` is not based on consent, so there is no consent to grant or withdraw")]
    NotConsentBased { index: usize, purpose: String },
    #[error("`{channel}` is not a channel; use one of: email, sms, phone, post, push")]
    UnknownChannel { index: usize, channel: String },
    #[error("purpose `{purpose}` is not declared for channel `{channel}`; its channels are: {declared}")]
    ChannelNotDeclared { index: usize, purpose: String, channel: String, declared: String },
    #[error("purpose `{purpose}` has no channels: leave `channel` out")]
    NoChannels { index: usize, purpose: String },
    #[error("`{action}` is not an action; use grant or withdraw")]
    UnknownAction { index: usize, action: String },
    #[error("`{slot}` is changed twice in one request")]
    Duplicate { index: usize, slot: String },
    #[error(
        "a caller acting under consent purpose `{purpose}` may record withdrawals only: a grant is \
         recorded under the purpose through which the customer gave it (for example their account)"
    )]
    SelfGrant { index: usize, purpose: String },
    #[error("{field} {message}")]
    InvalidNote { field: &'static str, message: String },
}

impl ConsentError {
    /// The request field the error is about (`changes[1].channel`).
    pub fn field(&self) -> String {
        match self {
            ConsentError::NoChanges | ConsentError::TooManyChanges => "changes".into(),
            ConsentError::UnknownPurpose { index, .. }
            | ConsentError::NotConsentBased { index, .. }
            | ConsentError::SelfGrant { index, .. } => format!("changes[{index}].purpose"),
            ConsentError::UnknownChannel { index, .. }
            | ConsentError::ChannelNotDeclared { index, .. }
            | ConsentError::NoChannels { index, .. }
            | ConsentError::Duplicate { index, .. } => format!("changes[{index}].channel"),
            ConsentError::UnknownAction { index, .. } => format!("changes[{index}].action"),
            ConsentError::InvalidNote { field, .. } => (*field).into(),
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ConsentError::UnknownPurpose { .. } => "unknown_purpose",
            ConsentError::NotConsentBased { .. } => "not_consent_based",
            ConsentError::UnknownChannel { .. } | ConsentError::ChannelNotDeclared { .. } => "invalid_channel",
            ConsentError::NoChannels { .. } => "invalid_channel",
            ConsentError::SelfGrant { .. } => "consent_self_grant",
            ConsentError::Duplicate { .. } => "duplicate_change",
            ConsentError::NoChanges | ConsentError::TooManyChanges | ConsentError::UnknownAction { .. } => {
                "invalid_changes"
            }
            ConsentError::InvalidNote { .. } => "invalid_value",
        }
    }
}

/// Checks requested changes against the catalog. A change without a channel on a purpose with
/// channels applies to every channel. `acting_under` is the purpose a staff or service caller
/// declared (`None` when the customer acts directly): a caller acting under a consent purpose may
/// only withdraw, so a marketing tool can unsubscribe a customer but never subscribe them.
pub fn check_changes(
    catalog: &Catalog,
    acting_under: Option<&Purpose>,
    changes: &[RequestedChange],
) -> Result<Vec<CheckedChange>, ConsentError> {
    if changes.is_empty() {
        return Err(ConsentError::NoChanges);
    }
    if changes.len() > MAX_CHANGES {
        return Err(ConsentError::TooManyChanges);
    }
    let mut checked = Vec::new();
    let mut seen = HashSet::new();
    for (index, change) in changes.iter().enumerate() {
        let echo = |s: &str| s.chars().take(64).collect::<String>();
        let purpose = catalog
            .purpose(&change.purpose)
            .ok_or_else(|| ConsentError::UnknownPurpose { index, purpose: echo(&change.purpose) })?;
        if !purpose.needs_consent() {
            return Err(ConsentError::NotConsentBased { index, purpose: purpose.id.to_string() });
        }
        let action = ConsentAction::parse(&change.action)
            .ok_or_else(|| ConsentError::UnknownAction { index, action: echo(&change.action) })?;
        if action == ConsentAction::Grant && acting_under.is_some_and(Purpose::needs_consent) {
            return Err(ConsentError::SelfGrant {
                index,
                purpose: acting_under.map(|p| p.id.to_string()).unwrap_or_default(),
            });
        }
        let slots = match change.channel.as_deref() {
            None => purpose_slots(purpose),
            Some(name) => {
                let channel =
                    Channel::parse(name).ok_or_else(|| ConsentError::UnknownChannel { index, channel: echo(name) })?;
                if purpose.channels.is_empty() {
                    return Err(ConsentError::NoChannels { index, purpose: purpose.id.to_string() });
                }
                if !purpose.channels.contains(&channel) {
                    let declared: Vec<&str> = purpose.channels.iter().map(|c| c.name()).collect();
                    return Err(ConsentError::ChannelNotDeclared {
                        index,
                        purpose: purpose.id.to_string(),
                        channel: name.to_string(),
                        declared: declared.join(", "),
                    });
                }
                vec![Slot { purpose: purpose.id.clone(), channel: Some(channel) }]
            }
        };
        for slot in slots {
            if !seen.insert(slot.clone()) {
                return Err(ConsentError::Duplicate { index, slot: slot.label() });
            }
            checked.push(CheckedChange { slot, action });
        }
    }
    Ok(checked)
}

/// Checks the free-text parts of a change: a staff member must give a reason; the evidence
/// reference is optional. Both are bounded; control characters are refused.
pub fn check_note(actor: ActorKind, reason: Option<&str>, evidence: Option<&str>) -> Result<(), ConsentError> {
    let invalid = |field, message: &str| Err(ConsentError::InvalidNote { field, message: message.to_string() });
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    match (actor, reason) {
        (ActorKind::Staff, None) => {
            return invalid("reason", "is required when staff record a customer's choice: say how they gave it");
        }
        (_, Some(r)) if r.chars().count() < MIN_REASON_CHARS || is_boilerplate(r) => {
            return invalid("reason", "must say in at least 10 characters how the customer gave their choice");
        }
        (_, Some(r)) if r.chars().count() > MAX_REASON_CHARS => {
            return invalid("reason", "must be at most 500 characters");
        }
        _ => {}
    }
    if let Some(e) = evidence
        && (e.trim().is_empty() || e.chars().count() > MAX_EVIDENCE_CHARS)
    {
        return invalid("evidence", "must be a reference of 1 to 200 characters (a form number, a document id)");
    }
    if [reason, evidence].into_iter().flatten().any(|t| t.chars().any(char::is_control)) {
        return invalid(
            if evidence.is_some_and(|e| e.chars().any(char::is_control)) { "evidence" } else { "reason" },
            "must not contain control characters",
        );
    }
    Ok(())
}

fn is_boilerplate(reason: &str) -> bool {
    let letters: String = reason.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
    let distinct: HashSet<char> = letters.chars().collect();
    distinct.len() < 4 || ["nareason", "none", "test", "asdf", "xxx", "reason", "consent"].iter().any(|b| letters == *b)
}

/// What a consent receipt records about one change.
pub struct ReceiptChange<'a> {
    pub change: &'a CheckedChange,
    pub notice_version: &'a str,
}

/// Who made the change, as the receipt states it.
pub struct ReceiptActor<'a> {
    pub kind: ActorKind,
    /// The token that transmitted the change (its id, never the token), if any.
    pub token: Option<&'a str>,
    pub role: Option<&'a str>,
}

/// Who put the change on record, in words, when it was not the customer acting themself (a
/// staff member or a service recording the customer's choice, or an import).
fn recorded_by(catalog: &Catalog, actor: &ReceiptActor<'_>) -> Option<String> {
    match (actor.kind, actor.role) {
        (_, Some(CUSTOMER_ROLE)) => None,
        (_, Some(role)) => {
            let who = catalog.role(role).and_then(|r| r.description.as_deref()).unwrap_or(role).trim_end_matches('.');
            Some(format!("Recorded on the customer's behalf by: {who} (role {role})"))
        }
        (ActorKind::Operator, None) => {
            Some("Recorded on the customer's behalf by: the operator, imported from records collected elsewhere".into())
        }
        (_, None) => None,
    }
}

/// The unsigned body of a consent receipt: the fields of ISO/IEC TS 27560 and the Kantara
/// Consent Receipt (receipt id, timestamp, controller and contact, subject, purposes with their
/// descriptions and legal basis, notice version, method), in snake case.
#[allow(clippy::too_many_arguments)]
pub fn receipt_body(
    catalog: &Catalog,
    receipt_id: &str,
    given_at: i64,
    recorded_at: i64,
    subject: SubjectId,
    method: ConsentMethod,
    actor: &ReceiptActor<'_>,
    changes: &[ReceiptChange<'_>],
) -> Value {
    let time = |ms: i64| jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default();
    let purposes: Vec<Value> = changes
        .iter()
        .map(|c| {
            let purpose = catalog.purpose(c.change.slot.purpose.as_str());
            let categories: Vec<&str> = {
                let mut cats: Vec<&str> = catalog
                    .fields
                    .iter()
                    .filter(|f| f.allows(&c.change.slot.purpose))
                    .map(|f| f.category.name())
                    .chain(
                        catalog.events.iter().filter(|e| e.allows(&c.change.slot.purpose)).map(|e| e.category.name()),
                    )
                    .collect();
                cats.sort_unstable();
                cats.dedup();
                cats
            };
            let third_parties: Vec<&str> = catalog
                .recipients
                .iter()
                .filter(|r| r.purposes.contains(&c.change.slot.purpose))
                .map(|r| r.name.as_str())
                .collect();
            json!({
                "purpose": c.change.slot.purpose.as_str(),
                "description": purpose.map(|p| p.description.as_str()).unwrap_or_default(),
                "legal_basis": purpose.map(|p| p.legal_basis.name()).unwrap_or_default(),
                "channel": c.change.slot.channel.map(Channel::name),
                "action": c.change.action.name(),
                "notice_version": c.notice_version,
                "data_categories": categories,
                "third_parties": third_parties,
            })
        })
        .collect();
    json!({
        "receipt_version": "candor-consent-receipt/1",
        "receipt_id": receipt_id,
        "timestamp": time(given_at),
        "recorded_at": time(recorded_at),
        "controller": {
            "name": catalog.organisation.name,
            "contact": catalog.organisation.privacy_contact,
        },
        "subject_id": subject.to_string(),
        "method": method.name(),
        "actor": { "kind": actor.kind.name(), "token": actor.token, "role": actor.role },
        "recorded_by": recorded_by(catalog, actor),
        "purposes": purposes,
        "withdrawal": format!(
            "You can withdraw consent at any time, as easily as you gave it: in the privacy center or by writing to {}.",
            catalog.organisation.privacy_contact
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::EXAMPLE_CATALOG;

    fn catalog() -> Catalog {
        Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap()
    }

    fn change(purpose: &str, channel: Option<&str>, action: &str) -> RequestedChange {
        RequestedChange { purpose: purpose.into(), channel: channel.map(Into::into), action: action.into() }
    }

    fn fact(purpose: &str, channel: Option<Channel>, action: ConsentAction, version: &str, at: i64) -> LedgerFact {
        LedgerFact {
            slot: Slot { purpose: PurposeId::new(purpose), channel },
            action,
            notice_version: version.into(),
            given_at: at,
            seq: at,
        }
    }

    #[test]
    fn consent_is_off_until_granted() {
        let c = catalog();
        let state = current_state(&c, |_| "v1", &[]);
        let labels: Vec<String> = state.iter().map(|s| s.slot.label()).collect();
        assert_eq!(labels, ["marketing/email", "marketing/sms", "analytics"]);
        assert!(state.iter().all(|s| s.status == ConsentStatus::NotGiven && !s.is_active()));
    }

    #[test]
    fn the_latest_entry_decides_by_time_given_then_order_recorded() {
        let c = catalog();
        let email = Some(Channel::Email);
        let mut facts = vec![
            fact("marketing", email, ConsentAction::Grant, "v1", 10),
            fact("marketing", email, ConsentAction::Withdraw, "v1", 20),
            // An import of an older grant, recorded later, does not override the withdrawal.
            LedgerFact { seq: 99, ..fact("marketing", email, ConsentAction::Grant, "v1", 5) },
        ];
        let state = purpose_state(c.purpose("marketing").unwrap(), "v1", &facts);
        assert_eq!(state[0].status, ConsentStatus::Withdrawn);
        assert_eq!(state[0].since, Some(20));
        assert_eq!(state[1].status, ConsentStatus::NotGiven, "sms is its own slot");
        facts.push(fact("marketing", email, ConsentAction::Grant, "v1", 30));
        let state = purpose_state(c.purpose("marketing").unwrap(), "v1", &facts);
        assert_eq!(state[0].status, ConsentStatus::Granted);
        // Same time: the one recorded later wins.
        let tie = [
            LedgerFact { seq: 2, ..fact("analytics", None, ConsentAction::Withdraw, "v1", 50) },
            LedgerFact { seq: 1, ..fact("analytics", None, ConsentAction::Grant, "v1", 50) },
        ];
        assert_eq!(purpose_state(c.purpose("analytics").unwrap(), "v1", &tie)[0].status, ConsentStatus::Withdrawn);
    }

    #[test]
    fn a_grant_on_an_old_notice_needs_renewal_unless_the_purpose_keeps_it() {
        let c = catalog();
        let facts = [fact("analytics", None, ConsentAction::Grant, "v1", 10)];
        let analytics = c.purpose("analytics").unwrap();
        assert_eq!(purpose_state(analytics, "v2", &facts)[0].status, ConsentStatus::RenewalNeeded);
        let keep = Catalog::from_toml_str(
            &EXAMPLE_CATALOG.replace(
                "legal_basis = \"consent\"\ngpc = true",
                "legal_basis = \"consent\"\ngpc = true\nmaterial_change = \"keep\"",
            ),
            "t",
        )
        .unwrap();
        assert_eq!(purpose_state(keep.purpose("analytics").unwrap(), "v2", &facts)[0].status, ConsentStatus::Granted);
    }

    #[test]
    fn channel_fields_need_their_channel() {
        let c = catalog();
        let marketing = c.purpose("marketing").unwrap();
        let email = c.field("email").unwrap();
        let phone = c.field("phone").unwrap();
        assert!(field_usable(email, marketing, &[Some(Channel::Email)]));
        assert!(!field_usable(phone, marketing, &[Some(Channel::Email)]));
        assert!(field_usable(phone, marketing, &[Some(Channel::Sms)]));
        assert!(!field_usable(email, marketing, &[]));
        // A field no channel addresses needs consent on any channel.
        let name = c.field("full_name").unwrap();
        assert!(field_usable(name, marketing, &[Some(Channel::Sms)]));
    }

    #[test]
    fn the_audience_fold_yields_subjects_whose_latest_entry_counts() {
        let c = catalog();
        let analytics = c.purpose("analytics").unwrap();
        let (a, b, d) = (SubjectId::random(), SubjectId::random(), SubjectId::random());
        let mut fold = AudienceFold::new(analytics, "v2");
        let mut out = Vec::new();
        let rows = [
            (a, ConsentAction::Grant, "v2"),
            (b, ConsentAction::Grant, "v2"),
            (b, ConsentAction::Withdraw, "v2"),
            (d, ConsentAction::Grant, "v1"),
            (d, ConsentAction::Withdraw, "v1"),
            (d, ConsentAction::Grant, "v2"),
        ];
        for (s, action, v) in rows {
            out.extend(fold.push(s, action, v));
        }
        out.extend(fold.finish());
        assert_eq!(out, [a, d]);
        let mut old = AudienceFold::new(analytics, "v3");
        assert_eq!(old.push(a, ConsentAction::Grant, "v2"), None);
        assert_eq!(old.finish(), None, "a grant on an old notice does not count");
    }

    #[test]
    fn changes_are_checked_against_the_catalog() {
        let c = catalog();
        let all = check_changes(&c, None, &[change("marketing", None, "grant")]).unwrap();
        assert_eq!(all.len(), 2, "no channel means every channel");
        let err = |changes: &[RequestedChange]| check_changes(&c, None, changes).unwrap_err();
        assert_eq!(err(&[]), ConsentError::NoChanges);
        let e = err(&[change("analytics", None, "grant"), change("account", None, "grant")]);
        assert_eq!(e.field(), "changes[1].purpose");
        assert_eq!(e.code(), "not_consent_based");
        let e = err(&[change("marketing", Some("post"), "grant")]);
        assert!(e.to_string().contains("its channels are: email, sms"), "{e}");
        assert_eq!(e.field(), "changes[0].channel");
        assert_eq!(err(&[change("analytics", Some("email"), "grant")]).code(), "invalid_channel");
        assert_eq!(err(&[change("marketing", Some("fax"), "grant")]).code(), "invalid_channel");
        assert_eq!(err(&[change("marketing", None, "maybe")]).field(), "changes[0].action");
        assert_eq!(err(&[change("resale", None, "grant")]).code(), "unknown_purpose");
        let twice = err(&[change("marketing", Some("email"), "grant"), change("marketing", None, "withdraw")]);
        assert_eq!(twice.code(), "duplicate_change");
        let many: Vec<_> = (0..=MAX_CHANGES).map(|_| change("analytics", None, "grant")).collect();
        assert_eq!(err(&many), ConsentError::TooManyChanges);
    }

    #[test]
    fn a_consent_purpose_may_withdraw_but_never_grant_itself() {
        let c = catalog();
        let marketing = c.purpose("marketing");
        let e = check_changes(&c, marketing, &[change("marketing", Some("email"), "grant")]).unwrap_err();
        assert_eq!(e.code(), "consent_self_grant");
        assert!(check_changes(&c, marketing, &[change("marketing", Some("email"), "withdraw")]).is_ok());
        assert!(check_changes(&c, c.purpose("account"), &[change("marketing", None, "grant")]).is_ok());
    }

    #[test]
    fn staff_give_a_real_reason_and_notes_are_bounded() {
        assert!(check_note(ActorKind::Subject, None, None).is_ok());
        assert_eq!(check_note(ActorKind::Staff, None, None).unwrap_err().field(), "reason");
        assert!(check_note(ActorKind::Staff, Some("n/a"), None).is_err());
        assert!(check_note(ActorKind::Staff, Some("xxxxxxxxxxxx"), None).is_err());
        assert!(check_note(ActorKind::Staff, Some("Customer asked on the phone, call 4411"), None).is_ok());
        assert!(check_note(ActorKind::Staff, Some(&"long reason ".repeat(50)), None).is_err());
        let e = check_note(ActorKind::Subject, None, Some(&"x".repeat(201))).unwrap_err();
        assert_eq!(e.field(), "evidence");
        assert_eq!(check_note(ActorKind::Subject, None, Some("form\n42")).unwrap_err().field(), "evidence");
    }

    #[test]
    fn a_receipt_names_controller_subject_purposes_and_notice() {
        let c = catalog();
        let subject = SubjectId::random();
        let changes = check_changes(&c, None, &[change("marketing", Some("email"), "grant")]).unwrap();
        let body = receipt_body(
            &c,
            "r-1",
            1_700_000_000_000,
            1_700_000_000_500,
            subject,
            ConsentMethod::Api,
            &ReceiptActor { kind: ActorKind::Subject, token: Some("t-1"), role: Some("shop_backend") },
            &[ReceiptChange { change: &changes[0], notice_version: "sha256:abc" }],
        );
        assert_eq!(body["controller"]["name"], "Example Shop Ltd");
        assert_eq!(body["subject_id"], subject.to_string());
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(body["purposes"][0]["legal_basis"], "consent");
        assert_eq!(body["purposes"][0]["channel"], "email");
        assert_eq!(body["purposes"][0]["notice_version"], "sha256:abc");
        assert_eq!(body["purposes"][0]["data_categories"], json!(["contact"]));
        assert_eq!(body["method"], "api");
    }
}
