//! The catalog (data map): everything Candor stores is declared here, with why, how long,
//! where and for whom. The privacy notice, the record of processing and every access decision
//! are derived from this one description, so they cannot drift apart.
//!
//! Parsing and validation live in [`parse`]; this module is the validated model.

mod parse;

use serde::Serialize;

use crate::ids::{FieldName, PurposeId, RoleId};

pub use parse::{CatalogError, CatalogErrors};

/// The example catalog of an online shop that `candor init` writes.
pub const EXAMPLE_CATALOG: &str = include_str!("example_catalog.toml");

/// The built-in role of the token `candor init` prints. It manages the installation and may
/// read the catalog; it acts under no purpose, so it never sees personal data.
pub const ADMIN_ROLE: &str = "admin";

/// The built-in role of a customer signed in to the privacy center. It acts only under
/// `customer_requests` purposes and only ever about the signed-in customer (the vault binds the
/// session to them); no token can carry it.
pub const CUSTOMER_ROLE: &str = "customer";

/// Reserved: Candor acting on its own (start-up, the CLI, retention sweeps) in the log.
pub const SYSTEM_ROLE: &str = "system";

/// Reserved: an anonymous visitor (public notice, checkpoints, message checks).
pub const PUBLIC_ROLE: &str = "public";

/// Role ids a catalog may not declare.
pub const RESERVED_ROLES: [&str; 4] = [ADMIN_ROLE, SYSTEM_ROLE, PUBLIC_ROLE, CUSTOMER_ROLE];

/// A validated catalog. Construct it with [`Catalog::from_toml_str`].
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub organisation: Organisation,
    pub purposes: Vec<Purpose>,
    pub fields: Vec<FieldDecl>,
    pub events: Vec<EventDecl>,
    pub recipients: Vec<Recipient>,
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Organisation {
    pub name: String,
    /// Where customers reach the privacy team (e-mail address or URL).
    pub privacy_contact: String,
    /// Where the data is stored, in words a customer understands ("EU — Frankfurt").
    pub storage_region: String,
    /// Who hosts it ("Example Cloud GmbH"), if declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_provider: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Purpose {
    pub id: PurposeId,
    /// Customer-facing description: why the data is needed.
    pub description: String,
    pub legal_basis: LegalBasis,
    /// Channels a consent may be given for (communication purposes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<Channel>,
    /// What happens to consents given on an earlier notice when the notice of this purpose
    /// changes (consent purposes only).
    pub material_change: MaterialChange,
    /// A Global Privacy Control signal (`Sec-GPC: 1`) withdraws this purpose's consent.
    pub gpc: bool,
    /// Answering customers' requests (access report, export): may read everything held about
    /// one customer. Only with legal basis `legal_obligation`.
    pub customer_requests: bool,
}

/// What a change of a consent purpose's notice does to consents given on an earlier version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaterialChange {
    /// They need renewal and stop counting (the default).
    Renew,
    /// They keep counting (for changes the operator judges not material).
    Keep,
}

impl MaterialChange {
    pub const ALL: [(&'static str, MaterialChange); 2] =
        [("renew", MaterialChange::Renew), ("keep", MaterialChange::Keep)];
}

impl Purpose {
    /// A consent-based purpose is off for every customer until that customer grants it.
    pub fn needs_consent(&self) -> bool {
        self.legal_basis == LegalBasis::Consent
    }
}

/// GDPR Art. 6(1) legal bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterests,
    PublicTask,
    LegitimateInterests,
}

impl LegalBasis {
    pub const ALL: [(&'static str, LegalBasis); 6] = [
        ("consent", LegalBasis::Consent),
        ("contract", LegalBasis::Contract),
        ("legal_obligation", LegalBasis::LegalObligation),
        ("vital_interests", LegalBasis::VitalInterests),
        ("public_task", LegalBasis::PublicTask),
        ("legitimate_interests", LegalBasis::LegitimateInterests),
    ];

    pub fn name(self) -> &'static str {
        name_in(&Self::ALL, self)
    }
}

/// Communication channels a consent can be scoped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Phone,
    Post,
    Push,
}

impl Channel {
    pub const ALL: [(&'static str, Channel); 5] = [
        ("email", Channel::Email),
        ("sms", Channel::Sms),
        ("phone", Channel::Phone),
        ("post", Channel::Post),
        ("push", Channel::Push),
    ];

    pub fn name(self) -> &'static str {
        name_in(&Self::ALL, self)
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, c)| *c)
    }

    /// The type of field a message over this channel is addressed to (e-mail address, phone
    /// number, postal address); `None` for push notifications (addressed to a device).
    pub fn address_type(self) -> Option<FieldType> {
        match self {
            Channel::Email => Some(FieldType::Email),
            Channel::Sms | Channel::Phone => Some(FieldType::Phone),
            Channel::Post => Some(FieldType::PostalAddress),
            Channel::Push => None,
        }
    }
}

/// The name of `value` in one of the `ALL` tables.
fn name_in<T: PartialEq + Copy>(table: &[(&'static str, T)], value: T) -> &'static str {
    table.iter().find(|(_, v)| *v == value).map(|(n, _)| *n).expect("every variant is in its table")
}

pub use crate::field_type::FieldType;

/// The fixed taxonomy of personal-data categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Identity,
    Contact,
    Financial,
    Location,
    Behavioural,
    Demographic,
    Technical,
    Preferences,
    /// GDPR Art. 9: health, religion, ethnicity, biometrics, sexual orientation, …
    SpecialCategory,
    /// GDPR Art. 10.
    CriminalOffence,
}

impl Category {
    pub const ALL: [(&'static str, Category); 10] = [
        ("identity", Category::Identity),
        ("contact", Category::Contact),
        ("financial", Category::Financial),
        ("location", Category::Location),
        ("behavioural", Category::Behavioural),
        ("demographic", Category::Demographic),
        ("technical", Category::Technical),
        ("preferences", Category::Preferences),
        ("special_category", Category::SpecialCategory),
        ("criminal_offence", Category::CriminalOffence),
    ];

    pub fn name(self) -> &'static str {
        name_in(&Self::ALL, self)
    }
}

/// How long a value is kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Retention {
    /// A fixed period (ISO 8601 duration, e.g. `P13M`) counted from when the value was stored.
    Fixed { period: String },
    /// As long as the customer's account exists, plus an optional grace period after closure.
    WhileAccountExists {
        #[serde(skip_serializing_if = "Option::is_none")]
        grace: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldDecl {
    pub name: FieldName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    pub category: Category,
    pub purposes: Vec<PurposeId>,
    pub retention: Retention,
    /// May be searched by exact value through a blind index.
    pub lookup: bool,
    /// No two customers may hold the same value (checked through the blind index; needs `lookup`).
    pub unique: bool,
    /// Must be present when a subject is created, and cannot be removed.
    pub required: bool,
    /// How the field is shown to roles that see it masked (`None`: it cannot be masked, so
    /// those roles get it withheld). The field's own `mask`, or its type's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<crate::mask::MaskStyle>,
}

impl FieldDecl {
    /// Whether this field may be used under `purpose`.
    pub fn allows(&self, purpose: &PurposeId) -> bool {
        self.purposes.contains(purpose)
    }
}

/// A type of behavioural event (page view, purchase). Its payload is protected like a field.
#[derive(Debug, Clone, Serialize)]
pub struct EventDecl {
    pub name: FieldName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub category: Category,
    pub purposes: Vec<PurposeId>,
    pub retention: Retention,
}

impl EventDecl {
    pub fn allows(&self, purpose: &PurposeId) -> bool {
        self.purposes.contains(purpose)
    }
}

/// A third party that receives some data (processor or partner).
#[derive(Debug, Clone, Serialize)]
pub struct Recipient {
    pub id: String,
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    pub purposes: Vec<PurposeId>,
    pub fields: Vec<FieldName>,
    /// Reference of the data processing / sharing agreement.
    pub agreement: String,
    /// Whether the recipient processes data for us or decides for itself.
    pub role: RecipientRole,
    /// Last day the agreement covers (`YYYY-MM-DD`); from the next day nothing is shared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement_expires: Option<String>,
    /// Whom to contact there about shared data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Where erasure, correction and restriction notices are sent (signed webhooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

/// GDPR roles of a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientRole {
    /// Processes data on our behalf and on our instructions (Art. 28).
    Processor,
    /// Decides for itself what to do with the data (an independent controller).
    Controller,
}

impl RecipientRole {
    pub fn name(self) -> &'static str {
        match self {
            RecipientRole::Processor => "processor",
            RecipientRole::Controller => "controller",
        }
    }
}

impl Recipient {
    /// Whether the agreement still covers the day `today` (`YYYY-MM-DD`, UTC).
    pub fn agreement_in_force(&self, today: &str) -> bool {
        self.agreement_expires.as_deref().is_none_or(|last| today <= last)
    }
}

/// A role that tokens carry; it may act under the listed purposes only.
#[derive(Debug, Clone, Serialize)]
pub struct Role {
    pub id: RoleId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub purposes: Vec<PurposeId>,
    /// Fields this role sees masked rather than in full.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mask: Vec<FieldName>,
    /// May override masking for one customer in an emergency, with a written reason
    /// (time-boxed, logged, shown to the customer).
    pub break_glass: bool,
    /// May share data with recipients through grants (data rooms).
    pub share: bool,
    /// May record a consent *grant* on the customer's behalf (e.g. the tick box of its own
    /// sign-up form), with evidence. Withdrawing never needs it.
    pub record_consent: bool,
    /// May erase a customer (crypto-shredding) and lift a restriction the customer asked for,
    /// under a purpose that is not consent-based.
    pub erase: bool,
    /// May read the whole tamper-evident log's entries (auditors); checkpoints and hash tiles
    /// are public.
    pub audit: bool,
}

impl Catalog {
    /// Parses and validates a catalog. `source_name` is used in error messages (`file:line:col`).
    pub fn from_toml_str(src: &str, source_name: &str) -> Result<Catalog, CatalogErrors> {
        parse::parse(src, source_name)
    }

    pub fn purpose(&self, id: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.id.as_str() == id)
    }
    pub fn field(&self, name: &str) -> Option<&FieldDecl> {
        self.fields.iter().find(|f| f.name.as_str() == name)
    }
    pub fn event(&self, name: &str) -> Option<&EventDecl> {
        self.events.iter().find(|e| e.name.as_str() == name)
    }
    pub fn role(&self, id: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.id.as_str() == id)
    }
    /// Whether `role` names a role tokens may carry (a declared one or the built-in admin).
    pub fn is_known_role(&self, role: &str) -> bool {
        role == ADMIN_ROLE || self.role(role).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_say_their_role_and_how_long_their_agreement_runs() {
        let c = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap();
        let carrier = c.recipients.iter().find(|r| r.id == "parcel_carrier").unwrap();
        assert_eq!(carrier.role, RecipientRole::Processor);
        assert!(carrier.agreement_in_force("2028-06-30"));
        assert!(!carrier.agreement_in_force("2028-07-01"));
        assert!(c.role("shop_backend").unwrap().share);
        assert!(!c.role("support_agent").unwrap().share);
        let bad = EXAMPLE_CATALOG.replace("agreement_expires = \"2028-06-30\"", "agreement_expires = \"soon\"");
        let e = Catalog::from_toml_str(&bad, "c.toml").unwrap_err().to_string();
        assert!(e.contains("agreement_expires `soon` is not a date"), "{e}");
        let bad = EXAMPLE_CATALOG.replace("role = \"processor\"", "role = \"partner\"");
        assert!(
            Catalog::from_toml_str(&bad, "c.toml").unwrap_err().to_string().contains("role `partner` is not known")
        );
    }

    #[test]
    fn the_example_catalog_is_valid() {
        let c = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap();
        assert!(c.field("email").unwrap().lookup);
        assert!(c.purpose("marketing").unwrap().needs_consent());
        assert!(c.is_known_role(ADMIN_ROLE));
        assert!(c.event("page_view").is_some());
    }

    #[test]
    fn the_catalog_serialises_to_json_with_snake_case_names() {
        let c = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["fields"][0]["type"], "email");
        assert_eq!(json["purposes"][0]["legal_basis"], "contract");
    }
}
