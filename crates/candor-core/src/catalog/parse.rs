//! TOML -> validated [`Catalog`], with every problem reported as `file:line:column: what is
//! wrong. How to fix it.` All problems are collected, not just the first.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::{
    ADMIN_ROLE, CUSTOMER_ROLE, Catalog, Category, Channel, EventDecl, FieldDecl, FieldType, LegalBasis, MaterialChange,
    Organisation, PUBLIC_ROLE, Purpose, Recipient, RecipientRole, Retention, Role, SYSTEM_ROLE,
};
use crate::ids::{FieldName, PurposeId, RoleId};
use crate::mask::MaskStyle;

/// One problem in a catalog, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every problem found in a catalog source.
#[derive(Debug, Clone)]
pub struct CatalogErrors {
    pub source_name: String,
    pub errors: Vec<CatalogError>,
}

impl fmt::Display for CatalogErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.source_name, e.line, e.column, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for CatalogErrors {}

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    organisation: Option<S<RawOrganisation>>,
    #[serde(default)]
    purposes: Vec<S<RawPurpose>>,
    #[serde(default)]
    fields: Vec<S<RawField>>,
    #[serde(default)]
    events: Vec<S<RawEvent>>,
    #[serde(default)]
    recipients: Vec<S<RawRecipient>>,
    #[serde(default)]
    roles: Vec<S<RawRole>>,
    // Installation settings may share the file with the catalog (candor.toml); they are read
    // by the server's config loader, not here.
    #[serde(rename = "catalog")]
    _catalog: Option<toml::Value>,
    #[serde(rename = "database")]
    _database: Option<toml::Value>,
    #[serde(rename = "server")]
    _server: Option<toml::Value>,
    #[serde(rename = "keys")]
    _keys: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganisation {
    name: Option<S<String>>,
    privacy_contact: Option<S<String>>,
    storage_region: Option<S<String>>,
    storage_provider: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    id: S<String>,
    description: Option<S<String>>,
    legal_basis: Option<S<String>>,
    #[serde(default)]
    channels: Vec<S<String>>,
    material_change: Option<S<String>>,
    gpc: Option<S<bool>>,
    customer_requests: Option<S<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: S<String>,
    description: Option<String>,
    #[serde(rename = "type")]
    field_type: Option<S<String>>,
    category: Option<S<String>>,
    purposes: Option<S<Vec<S<String>>>>,
    retention: Option<S<String>>,
    retention_grace: Option<S<String>>,
    #[serde(default)]
    lookup: Option<S<bool>>,
    unique: Option<S<bool>>,
    #[serde(default)]
    required: bool,
    mask: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    name: S<String>,
    description: Option<String>,
    category: Option<S<String>>,
    purposes: Option<S<Vec<S<String>>>>,
    retention: Option<S<String>>,
    retention_grace: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipient {
    id: S<String>,
    name: Option<S<String>>,
    country: Option<S<String>>,
    #[serde(default)]
    purposes: Vec<S<String>>,
    #[serde(default)]
    fields: Vec<S<String>>,
    agreement: Option<S<String>>,
    role: Option<S<String>>,
    agreement_expires: Option<S<String>>,
    contact: Option<S<String>>,
    webhook_url: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    id: S<String>,
    description: Option<String>,
    #[serde(default)]
    purposes: Vec<S<String>>,
    #[serde(default)]
    mask: Vec<S<String>>,
    #[serde(default)]
    break_glass: bool,
    #[serde(default)]
    share: bool,
    #[serde(default)]
    record_consent: bool,
    #[serde(default)]
    erase: bool,
    #[serde(default)]
    audit: bool,
}

struct Checker<'a> {
    src: &'a str,
    errors: Vec<(usize, String)>,
}

impl Checker<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push((span.start, message.into()));
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.src[..offset.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    /// Checks that a declared name is an identifier; returns it either way so checking goes on.
    fn identifier(&mut self, what: &str, name: &S<String>) -> String {
        if !is_identifier(name.get_ref()) {
            self.err(
                name.span(),
                format!(
                    "{what} `{}` is not a valid identifier. Use 1 to 64 lower-case letters, digits \
                     and underscores, starting with a letter (for example `order_fulfilment`).",
                    name.get_ref()
                ),
            );
        }
        name.get_ref().clone()
    }

    fn required_text(&mut self, owner_span: Range<usize>, what: &str, v: &Option<S<String>>) -> String {
        match v {
            Some(s) if !s.get_ref().trim().is_empty() => s.get_ref().trim().to_string(),
            Some(s) => {
                self.err(s.span(), format!("{what} is empty. Write it out; customers will read it."));
                String::new()
            }
            None => {
                self.err(owner_span, format!("{what} is missing. Add it to this table."));
                String::new()
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        owner_span: Range<usize>,
        what: &str,
        v: &Option<S<String>>,
        table: &[(&str, T)],
    ) -> Option<T> {
        let options = table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        match v {
            None => {
                self.err(owner_span, format!("{what} is missing. Add one of: {options}."));
                None
            }
            Some(s) => match table.iter().find(|(n, _)| *n == s.get_ref()) {
                Some((_, t)) => Some(*t),
                None => {
                    self.err(s.span(), format!("{what} `{}` is not known. Use one of: {options}.", s.get_ref()));
                    None
                }
            },
        }
    }

    fn retention(
        &mut self,
        owner: &str,
        owner_span: Range<usize>,
        retention: &Option<S<String>>,
        grace: &Option<S<String>>,
    ) -> Option<Retention> {
        let Some(r) = retention else {
            self.err(
                owner_span,
                format!(
                    "{owner} has no retention. Say how long it is kept: an ISO 8601 duration such \
                     as retention = \"P2Y\", or retention = \"while_account_exists\"."
                ),
            );
            return None;
        };
        let grace_value = grace.as_ref().and_then(|g| {
            if is_positive_duration(g.get_ref()) {
                Some(g.get_ref().clone())
            } else {
                self.err(
                    g.span(),
                    format!(
                        "{owner}: retention_grace `{}` is not a positive ISO 8601 duration. Use \
                         for example \"P30D\".",
                        g.get_ref()
                    ),
                );
                None
            }
        });
        if r.get_ref() == "while_account_exists" {
            return Some(Retention::WhileAccountExists { grace: grace_value });
        }
        if let Some(g) = grace {
            self.err(
                g.span(),
                format!(
                    "{owner}: retention_grace only applies to retention = \"while_account_exists\". \
                     Remove it, or lengthen the fixed period instead."
                ),
            );
        }
        if is_positive_duration(r.get_ref()) {
            Some(Retention::Fixed { period: r.get_ref().clone() })
        } else {
            self.err(
                r.span(),
                format!(
                    "{owner}: retention `{}` is neither a positive ISO 8601 duration (such as \
                     \"P13M\" or \"P10Y\") nor \"while_account_exists\".",
                    r.get_ref()
                ),
            );
            None
        }
    }

    /// Resolves purpose references; unknown ones are reported.
    fn purpose_refs(&mut self, owner: &str, refs: &[S<String>], declared: &HashSet<String>) -> Vec<PurposeId> {
        let mut out: Vec<PurposeId> = Vec::new();
        for r in refs {
            if !declared.contains(r.get_ref()) {
                self.err(
                    r.span(),
                    format!(
                        "{owner} refers to purpose `{}`, which is not declared. Declare it in a \
                         [[purposes]] table or fix the spelling.",
                        r.get_ref()
                    ),
                );
            } else if out.iter().any(|p| p.as_str() == r.get_ref()) {
                self.err(r.span(), format!("{owner} lists purpose `{}` twice. Remove one.", r.get_ref()));
            } else {
                out.push(PurposeId::new(r.get_ref().clone()));
            }
        }
        out
    }

    fn duplicate(&mut self, seen: &mut HashSet<String>, what: &str, name: &S<String>) {
        if !seen.insert(name.get_ref().clone()) {
            self.err(
                name.span(),
                format!("{what} `{}` is declared twice. Remove or rename one of them.", name.get_ref()),
            );
        }
    }
}

pub(super) fn parse(src: &str, source_name: &str) -> Result<Catalog, CatalogErrors> {
    let mut c = Checker { src, errors: Vec::new() };
    let raw: RawCatalog = match toml::from_str(src) {
        Ok(raw) => raw,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            c.err(offset..offset, e.message().trim().to_string());
            return Err(finish(c, source_name).unwrap_err());
        }
    };

    let organisation = match &raw.organisation {
        None => {
            c.err(
                0..0,
                "the [organisation] table is missing. Add it with name, privacy_contact and \
                 storage_region, so customers know who holds their data and where.",
            );
            None
        }
        Some(o) => {
            let span = o.span();
            let o = o.get_ref();
            Some(Organisation {
                name: c.required_text(span.clone(), "organisation name", &o.name),
                privacy_contact: c.required_text(span.clone(), "organisation privacy_contact", &o.privacy_contact),
                storage_region: c.required_text(span, "organisation storage_region", &o.storage_region),
                storage_provider: o.storage_provider.clone(),
            })
        }
    };

    // Purposes first: everything else refers to them.
    let mut seen = HashSet::new();
    let mut purposes = Vec::new();
    for p in &raw.purposes {
        let span = p.span();
        let p = p.get_ref();
        let id = c.identifier("purpose id", &p.id);
        c.duplicate(&mut seen, "purpose", &p.id);
        let description = c.required_text(span.clone(), &format!("purpose `{id}`: description"), &p.description);
        if let Some(word) = sells_data(&id, &description) {
            c.err(
                p.id.span(),
                format!(
                    "purpose `{id}` sells or monetises customer data (it mentions \"{word}\"). \
                     Candor does not allow declaring such a purpose: remove it. Sharing with a \
                     processor for a service it performs for you is declared as a recipient."
                ),
            );
        }
        let legal_basis = match &p.legal_basis {
            None => {
                c.err(
                    span.clone(),
                    format!(
                        "purpose `{id}` has no legal basis. Add legal_basis = one of: consent, \
                         contract, legal_obligation, vital_interests, public_task, legitimate_interests."
                    ),
                );
                None
            }
            b => c.choice(span.clone(), &format!("purpose `{id}`: legal_basis"), b, &LegalBasis::ALL),
        };
        let mut channels = Vec::new();
        for ch in &p.channels {
            if let Some(ch) = c.choice(ch.span(), &format!("purpose `{id}`: channel"), &Some(ch.clone()), &Channel::ALL)
            {
                if channels.contains(&ch) {
                    c.err(p.channels[0].span(), format!("purpose `{id}` lists a channel twice. Remove one."));
                } else {
                    channels.push(ch);
                }
            }
        }
        let material_change = match &p.material_change {
            None => Some(MaterialChange::Renew),
            m => c.choice(span.clone(), &format!("purpose `{id}`: material_change"), m, &MaterialChange::ALL),
        };
        let gpc = p.gpc.as_ref().is_some_and(|g| *g.get_ref());
        if legal_basis.is_some_and(|b| b != LegalBasis::Consent) {
            if let Some(m) = &p.material_change {
                c.err(
                    m.span(),
                    format!(
                        "purpose `{id}`: material_change applies to consent purposes only (it says what \
                         happens to consents given on an earlier notice). Remove it."
                    ),
                );
            }
            if let Some(g) = p.gpc.as_ref().filter(|g| *g.get_ref()) {
                c.err(
                    g.span(),
                    format!(
                        "purpose `{id}`: gpc = true applies to consent purposes only (a Global Privacy \
                         Control signal withdraws consent). Remove it or make the purpose consent-based."
                    ),
                );
            }
        }
        let customer_requests = p.customer_requests.as_ref().is_some_and(|r| *r.get_ref());
        if let Some(r) = p.customer_requests.as_ref().filter(|r| *r.get_ref())
            && legal_basis.is_some_and(|b| b != LegalBasis::LegalObligation)
        {
            c.err(
                r.span(),
                format!(
                    "purpose `{id}`: customer_requests = true needs legal_basis = \"legal_obligation\" (answering \
                     access and portability requests is one). Change the legal basis or remove it."
                ),
            );
        }
        if let (Some(legal_basis), Some(material_change)) = (legal_basis, material_change) {
            purposes.push(Purpose {
                id: PurposeId::new(id),
                description,
                legal_basis,
                channels,
                material_change,
                gpc,
                customer_requests,
            });
        }
    }
    let purpose_ids: HashSet<String> = raw.purposes.iter().map(|p| p.get_ref().id.get_ref().clone()).collect();

    let mut seen = HashSet::new();
    let mut fields = Vec::new();
    for f in &raw.fields {
        let span = f.span();
        let f = f.get_ref();
        let name = c.identifier("field name", &f.name);
        c.duplicate(&mut seen, "field", &f.name);
        let owner = format!("field `{name}`");
        let field_type = c.choice(span.clone(), &format!("{owner}: type"), &f.field_type, &FieldType::ALL);
        let category = c.choice(span.clone(), &format!("{owner}: category"), &f.category, &Category::ALL);
        let purposes = purposes_of(&mut c, &owner, span.clone(), &f.purposes, &purpose_ids);
        let retention = c.retention(&owner, span.clone(), &f.retention, &f.retention_grace);
        let lookup = f.lookup.as_ref().is_some_and(|l| *l.get_ref());
        if let (Some(l), Some(t)) = (&f.lookup, field_type)
            && *l.get_ref()
            && !t.supports_lookup()
        {
            c.err(
                l.span(),
                format!(
                    "{owner}: lookup = true is not supported for this type. Only text, email, \
                     phone, date and number fields can be searched by exact value."
                ),
            );
        }
        let unique = f.unique.as_ref().is_some_and(|u| *u.get_ref());
        if let Some(u) = &f.unique
            && *u.get_ref()
            && !lookup
        {
            c.err(
                u.span(),
                format!(
                    "{owner}: unique = true needs lookup = true (uniqueness is checked through the blind index). \
                     Add lookup = true, or drop unique."
                ),
            );
        }
        let mask = match (&f.mask, field_type) {
            (Some(m), Some(t)) => match MaskStyle::ALL.iter().find(|(n, _)| n == m.get_ref()) {
                Some((_, style)) if style.fits(t) => Some(*style),
                Some(_) => {
                    let fitting: Vec<&str> =
                        MaskStyle::ALL.iter().filter(|(_, s)| s.fits(t)).map(|(n, _)| *n).collect();
                    c.err(
                        m.span(),
                        format!(
                            "{owner}: mask `{}` does not fit its type; use one of: {}",
                            m.get_ref(),
                            if fitting.is_empty() {
                                "none (this type cannot be masked)".to_string()
                            } else {
                                fitting.join(", ")
                            }
                        ),
                    );
                    None
                }
                None => {
                    let names: Vec<&str> = MaskStyle::ALL.iter().map(|(n, _)| *n).collect();
                    c.err(
                        m.span(),
                        format!("{owner}: unknown mask `{}`; use one of: {}", m.get_ref(), names.join(", ")),
                    );
                    None
                }
            },
            (None, Some(t)) => MaskStyle::default_for(t),
            _ => None,
        };
        if let (Some(field_type), Some(category), Some(retention)) = (field_type, category, retention) {
            fields.push(FieldDecl {
                name: FieldName::new(name),
                description: f.description.clone(),
                field_type,
                category,
                purposes,
                retention,
                lookup,
                unique,
                required: f.required,
                mask,
            });
        }
    }
    let field_names: HashSet<String> = raw.fields.iter().map(|f| f.get_ref().name.get_ref().clone()).collect();

    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for e in &raw.events {
        let span = e.span();
        let e = e.get_ref();
        let name = c.identifier("event type name", &e.name);
        c.duplicate(&mut seen, "event type", &e.name);
        let owner = format!("event type `{name}`");
        let category = c.choice(span.clone(), &format!("{owner}: category"), &e.category, &Category::ALL);
        let purposes = purposes_of(&mut c, &owner, span.clone(), &e.purposes, &purpose_ids);
        let retention = c.retention(&owner, span, &e.retention, &e.retention_grace);
        if let (Some(category), Some(retention)) = (category, retention) {
            events.push(EventDecl {
                name: FieldName::new(name),
                description: e.description.clone(),
                category,
                purposes,
                retention,
            });
        }
    }

    let mut seen = HashSet::new();
    let mut recipients = Vec::new();
    for r in &raw.recipients {
        let span = r.span();
        let r = r.get_ref();
        let id = c.identifier("recipient id", &r.id);
        c.duplicate(&mut seen, "recipient", &r.id);
        let owner = format!("recipient `{id}`");
        let name = c.required_text(span.clone(), &format!("{owner}: name"), &r.name);
        let country = c.required_text(span.clone(), &format!("{owner}: country"), &r.country);
        let is_alpha2 = country.len() == 2 && country.chars().all(|ch| ch.is_ascii_uppercase());
        if let Some(s) = &r.country
            && !country.is_empty()
            && !is_alpha2
        {
            c.err(
                s.span(),
                format!(
                    "{owner}: country `{country}` is not an ISO 3166-1 alpha-2 code. Use two capital letters, such as \"DE\"."
                ),
            );
        }
        let agreement = c.required_text(
            span.clone(),
            &format!("{owner}: agreement (the reference of the data processing or sharing agreement)"),
            &r.agreement,
        );
        if r.purposes.is_empty() {
            c.err(span.clone(), format!("{owner} has no purposes. List why it receives data: purposes = [\"...\"]."));
        }
        let rp = c.purpose_refs(&owner, &r.purposes, &purpose_ids);
        let mut rf = Vec::new();
        for f in &r.fields {
            if !field_names.contains(f.get_ref()) {
                c.err(
                    f.span(),
                    format!("{owner} refers to field `{}`, which is not declared. Declare it in a [[fields]] table or fix the spelling.", f.get_ref()),
                );
                continue;
            }
            if let Some(decl) = fields.iter().find(|d| d.name.as_str() == f.get_ref())
                && !rp.iter().any(|p| decl.allows(p))
            {
                c.err(
                    f.span(),
                    format!(
                        "{owner} receives field `{}`, but that field is declared for none of the \
                         recipient's purposes. Add one of them to the field, or stop sharing it.",
                        f.get_ref()
                    ),
                );
            }
            rf.push(FieldName::new(f.get_ref().clone()));
        }
        let role = match r.role.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("processor") => RecipientRole::Processor,
            Some("controller") => RecipientRole::Controller,
            Some(other) => {
                let s = r.role.as_ref().expect("some");
                c.err(
                    s.span(),
                    format!("{owner}: role `{other}` is not known. Use \"processor\" (acts on your instructions) or \"controller\" (decides for itself)."),
                );
                RecipientRole::Processor
            }
        };
        let agreement_expires = r.agreement_expires.as_ref().and_then(|s| {
            let d = s.get_ref().trim();
            if d.parse::<jiff::civil::Date>().is_ok() && d.len() == 10 {
                Some(d.to_string())
            } else {
                c.err(s.span(), format!("{owner}: agreement_expires `{d}` is not a date. Write it as \"2027-12-31\"."));
                None
            }
        });
        let contact = r.contact.as_ref().map(|s| s.get_ref().trim().to_string()).filter(|s| !s.is_empty());
        let webhook_url = r.webhook_url.as_ref().and_then(|s| {
            let u = s.get_ref().trim();
            let ok = (u.starts_with("https://") || u.starts_with("http://"))
                && u.len() > "http://".len() + 1
                && u.chars().all(|ch| ch.is_ascii_graphic());
            if !ok {
                c.err(s.span(), format!("{owner}: webhook_url `{u}` must be an http:// or https:// address"));
            }
            ok.then(|| u.to_string())
        });
        recipients.push(Recipient {
            id,
            name,
            country,
            purposes: rp,
            fields: rf,
            agreement,
            role,
            agreement_expires,
            contact,
            webhook_url,
        });
    }

    let mut seen = HashSet::new();
    let mut roles = Vec::new();
    for r in &raw.roles {
        let span = r.span();
        let r = r.get_ref();
        let id = c.identifier("role id", &r.id);
        if id == ADMIN_ROLE {
            c.err(
                r.id.span(),
                "role `admin` is built in (it manages the installation and sees no personal data). \
                 Give your role another name.",
            );
        }
        if id == CUSTOMER_ROLE {
            c.err(
                r.id.span(),
                "role `customer` is built in (a customer signed in to the privacy center). Give your role another name.",
            );
        }
        if id == SYSTEM_ROLE || id == PUBLIC_ROLE {
            c.err(
                r.id.span(),
                format!(
                    "role `{id}` is reserved (`{SYSTEM_ROLE}` is Candor acting on its own, `{PUBLIC_ROLE}` an anonymous \
                     visitor). Give your role another name."
                ),
            );
        }
        c.duplicate(&mut seen, "role", &r.id);
        let owner = format!("role `{id}`");
        if r.purposes.is_empty() {
            c.err(span, format!("{owner} has no purposes. List the purposes it may act under."));
        }
        let purposes = c.purpose_refs(&owner, &r.purposes, &purpose_ids);
        let mut mask = Vec::new();
        for m in &r.mask {
            let Some(decl) = fields.iter().find(|d| d.name.as_str() == m.get_ref()) else {
                if !field_names.contains(m.get_ref()) {
                    c.err(m.span(), format!("{owner} masks field `{}`, which is not declared", m.get_ref()));
                }
                continue;
            };
            if decl.mask.is_none() {
                c.err(
                    m.span(),
                    format!(
                        "{owner} masks field `{}`, but a {} field cannot be masked. Leave it out of the role's \
                         purposes instead, so the role never sees it.",
                        m.get_ref(),
                        super::name_in(&FieldType::ALL, decl.field_type)
                    ),
                );
            } else if !purposes.iter().any(|p| decl.allows(p)) {
                c.err(
                    m.span(),
                    format!("{owner} masks field `{}`, which none of the role's purposes uses", m.get_ref()),
                );
            }
            mask.push(decl.name.clone());
        }
        roles.push(Role {
            id: RoleId::new(id),
            description: r.description.clone(),
            purposes,
            mask,
            break_glass: r.break_glass,
            share: r.share,
            record_consent: r.record_consent,
            erase: r.erase,
            audit: r.audit,
        });
    }

    if raw.purposes.is_empty() {
        c.err(0..0, "no purposes are declared. Add at least one [[purposes]] table.");
    }

    let catalog =
        organisation.map(|organisation| Catalog { organisation, purposes, fields, events, recipients, roles });
    match finish(c, source_name) {
        Ok(()) => Ok(catalog.expect("an organisation error was reported")),
        Err(e) => Err(e),
    }
}

fn purposes_of(
    c: &mut Checker<'_>,
    owner: &str,
    span: Range<usize>,
    refs: &Option<S<Vec<S<String>>>>,
    declared: &HashSet<String>,
) -> Vec<PurposeId> {
    match refs {
        Some(list) if !list.get_ref().is_empty() => c.purpose_refs(owner, list.get_ref(), declared),
        Some(list) => {
            c.err(list.span(), format!("{owner} has no purpose. Say why it is needed: purposes = [\"...\"]."));
            Vec::new()
        }
        None => {
            c.err(span, format!("{owner} has no purpose. Say why it is needed: purposes = [\"...\"]."));
            Vec::new()
        }
    }
}

fn finish(c: Checker<'_>, source_name: &str) -> Result<(), CatalogErrors> {
    if c.errors.is_empty() {
        return Ok(());
    }
    let mut errors: Vec<CatalogError> = c
        .errors
        .iter()
        .map(|(offset, message)| {
            let (line, column) = c.position(*offset);
            CatalogError { line, column, message: message.clone() }
        })
        .collect();
    errors.sort_by_key(|e| (e.line, e.column));
    Err(CatalogErrors { source_name: source_name.to_string(), errors })
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= 64
        && chars.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
}

fn is_positive_duration(s: &str) -> bool {
    s.starts_with('P') && s.parse::<jiff::Span>().is_ok_and(|span| span.is_positive())
}

/// Words that say a purpose sells or monetises data. Returns the word found, unless the text
/// negates it ("we never sell your data").
fn sells_data(id: &str, description: &str) -> Option<&'static str> {
    const ID_WORDS: [&str; 5] = ["sell", "resell", "monetis", "monetiz", "broker"];
    let id_words: Vec<&str> = id.split('_').collect();
    for w in ID_WORDS {
        if id_words.iter().any(|part| part.starts_with(w)) {
            return Some(w);
        }
    }
    if id_words.contains(&"data") && id_words.iter().any(|p| p.starts_with("sale")) {
        return Some("data sales");
    }
    let text = description.to_lowercase();
    let negated = ["not ", "never ", "no ", "n't "];
    for w in ["sell", "resell", "monetis", "monetiz", "data broker"] {
        for (pos, _) in text.match_indices(w) {
            let start = pos.saturating_sub(24);
            let window = &text[floor_char_boundary(&text, start)..pos];
            if !negated.iter().any(|n| window.contains(n)) {
                return Some(w);
            }
        }
    }
    None
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: &str = "[organisation]\nname = \"Shop\"\nprivacy_contact = \"p@x.example\"\nstorage_region = \"EU\"\n";

    fn errors(src: &str) -> Vec<String> {
        match Catalog::from_toml_str(src, "c.toml") {
            Ok(_) => vec![],
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    fn with_org(rest: &str) -> String {
        format!("{ORG}{rest}")
    }

    #[test]
    fn a_field_without_purpose_or_retention_is_refused_with_its_line() {
        let src = with_org(
            "[[purposes]]\nid = \"account\"\ndescription = \"d\"\nlegal_basis = \"contract\"\n\
             [[fields]]\nname = \"email\"\ntype = \"email\"\ncategory = \"contact\"\n",
        );
        let errs = errors(&src);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("c.toml:9:1: field `email` has no purpose"), "{errs:?}");
        assert!(errs[1].contains("field `email` has no retention"), "{errs:?}");
    }

    #[test]
    fn a_purpose_without_legal_basis_is_refused() {
        let errs = errors(&with_org("[[purposes]]\nid = \"account\"\ndescription = \"d\"\n"));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("purpose `account` has no legal basis. Add legal_basis"), "{errs:?}");
    }

    #[test]
    fn references_to_undeclared_names_are_refused_at_the_reference() {
        let src = with_org(
            "[[purposes]]\nid = \"account\"\ndescription = \"d\"\nlegal_basis = \"contract\"\n\
             [[fields]]\nname = \"email\"\ntype = \"email\"\ncategory = \"contact\"\npurposes = [\"acount\"]\nretention = \"P1Y\"\n\
             [[roles]]\nid = \"support\"\npurposes = [\"support\"]\n\
             [[recipients]]\nid = \"carrier\"\nname = \"C\"\ncountry = \"DE\"\nagreement = \"A\"\npurposes = [\"account\"]\nfields = [\"phone\"]\n",
        );
        let errs = errors(&src);
        assert!(
            errs.iter().any(|e| e.starts_with("c.toml:13:13: field `email` refers to purpose `acount`")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.contains("role `support` refers to purpose `support`")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("recipient `carrier` refers to field `phone`")), "{errs:?}");
    }

    #[test]
    fn consent_settings_belong_to_consent_purposes_only() {
        let p = "[[purposes]]\nid = \"account\"\ndescription = \"d\"\nlegal_basis = \"contract\"\n\
                 material_change = \"keep\"\ngpc = true\n\
                 [[purposes]]\nid = \"news\"\ndescription = \"d\"\nlegal_basis = \"consent\"\n\
                 material_change = \"sometimes\"\n";
        let errs = errors(&with_org(p));
        assert!(
            errs.iter().any(|e| e.contains("`account`: material_change applies to consent purposes only")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.contains("`account`: gpc = true applies to consent purposes only")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.contains("material_change `sometimes` is not known. Use one of: renew, keep")),
            "{errs:?}"
        );
        let ok = Catalog::from_toml_str(
            &with_org("[[purposes]]\nid = \"news\"\ndescription = \"d\"\nlegal_basis = \"consent\"\ngpc = true\n"),
            "t",
        )
        .unwrap();
        let news = ok.purpose("news").unwrap();
        assert_eq!((news.material_change, news.gpc), (MaterialChange::Renew, true), "renew is the default");
    }

    #[test]
    fn duplicates_are_refused() {
        let p = "[[purposes]]\nid = \"account\"\ndescription = \"d\"\nlegal_basis = \"contract\"\n";
        let errs = errors(&with_org(&format!("{p}{p}")));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("purpose `account` is declared twice"), "{errs:?}");
    }

    #[test]
    fn purposes_that_sell_data_cannot_be_declared() {
        for (id, desc) in [
            ("data_sales", "Share data with partners."),
            ("partners", "We sell your profile to advertisers."),
            ("insights", "Monetise purchase history with data brokers."),
        ] {
            let src = with_org(&format!(
                "[[purposes]]\nid = \"{id}\"\ndescription = \"{desc}\"\nlegal_basis = \"consent\"\n"
            ));
            let errs = errors(&src);
            assert!(errs.iter().any(|e| e.contains("sells or monetises customer data")), "{id}: {errs:?}");
        }
        // Saying that data is never sold is fine.
        let ok = with_org(
            "[[purposes]]\nid = \"account\"\ndescription = \"Run your account. We never sell your data.\"\nlegal_basis = \"contract\"\n",
        );
        assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
    }

    #[test]
    fn syntax_errors_and_unknown_keys_have_positions() {
        let errs = errors("[organisation\nname = 1");
        assert!(errs[0].starts_with("c.toml:1:"), "{errs:?}");
        let errs = errors(&with_org("[[feilds]]\nname = \"x\"\n"));
        assert!(errs[0].starts_with("c.toml:5:"), "{errs:?}");
        assert!(errs[0].contains("feilds"), "{errs:?}");
    }

    #[test]
    fn bad_enumerations_list_the_valid_choices() {
        let src = with_org(
            "[[purposes]]\nid = \"account\"\ndescription = \"d\"\nlegal_basis = \"because\"\n\
             [[fields]]\nname = \"Email\"\ntype = \"mail\"\ncategory = \"contact\"\npurposes = [\"account\"]\nretention = \"forever\"\n",
        );
        let errs = errors(&src);
        assert!(
            errs.iter().any(|e| e.contains("legal_basis `because` is not known. Use one of: consent, contract")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.contains("field name `Email` is not a valid identifier")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("type `mail` is not known")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("retention `forever` is neither")), "{errs:?}");
    }

    #[test]
    fn the_admin_role_is_reserved_and_lookup_needs_a_searchable_type() {
        let src = with_org(
            "[[purposes]]\nid = \"account\"\ndescription = \"d\"\nlegal_basis = \"contract\"\n\
             [[fields]]\nname = \"prefs\"\ntype = \"json\"\ncategory = \"preferences\"\npurposes = [\"account\"]\nretention = \"P1Y\"\nlookup = true\n\
             [[roles]]\nid = \"admin\"\npurposes = [\"account\"]\n",
        );
        let errs = errors(&src);
        assert!(errs.iter().any(|e| e.contains("role `admin` is built in")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("lookup = true is not supported")), "{errs:?}");
    }

    #[test]
    fn every_reserved_role_id_is_refused_with_its_line() {
        for id in super::super::RESERVED_ROLES {
            let src = with_org(&format!(
                "[[purposes]]\nid = \"account\"\ndescription = \"d\"\nlegal_basis = \"contract\"\n\
                 [[roles]]\nid = \"{id}\"\npurposes = [\"account\"]\n"
            ));
            let errs = errors(&src);
            let line = src.lines().position(|l| l == format!("id = \"{id}\"")).unwrap() + 1;
            assert!(
                errs.iter().any(|e| e.starts_with(&format!("c.toml:{line}:")) && e.contains(&format!("role `{id}`"))),
                "{id}: {errs:?}"
            );
        }
    }

    #[test]
    fn powers_are_false_unless_the_catalog_gives_them() {
        let c = Catalog::from_toml_str(super::super::EXAMPLE_CATALOG, "example").unwrap();
        let role = |id: &str| c.role(id).unwrap().clone();
        assert!(role("shop_backend").record_consent && !role("shop_backend").erase && !role("shop_backend").audit);
        assert!(role("privacy_team").erase && role("privacy_team").audit && !role("privacy_team").record_consent);
        for id in ["support_agent", "fraud_service", "marketing_tool", "analytics_service"] {
            let r = role(id);
            assert!(!r.record_consent && !r.erase && !r.audit, "{id}");
        }
    }

    #[test]
    fn retention_grace_only_goes_with_account_lifetime() {
        let src = with_org(
            "[[purposes]]\nid = \"account\"\ndescription = \"d\"\nlegal_basis = \"contract\"\n\
             [[fields]]\nname = \"name\"\ntype = \"text\"\ncategory = \"identity\"\npurposes = [\"account\"]\nretention = \"P1Y\"\nretention_grace = \"P30D\"\n",
        );
        let errs = errors(&src);
        assert!(errs.iter().any(|e| e.contains("retention_grace only applies")), "{errs:?}");
    }

    #[test]
    fn installation_tables_may_share_the_file() {
        let src = format!(
            "database = \"data/candor.db\"\n[server]\nlisten = \"127.0.0.1:1\"\n{ORG}\
             [[purposes]]\nid = \"account\"\ndescription = \"d\"\nlegal_basis = \"contract\"\n"
        );
        assert!(errors(&src).is_empty(), "{:?}", errors(&src));
    }
}
