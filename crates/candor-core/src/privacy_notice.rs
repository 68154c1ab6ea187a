//! The public privacy notice, generated from the catalog: what is held, why, on which legal
//! basis, how long, where, who receives it, and the customer's rights. The same catalog also
//! gives the record of processing activities (`candor catalog ropa`) and what the system enforces,
//! so the three cannot disagree.

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Category, Channel, FieldType, Retention};

/// The whole notice. Serialised as `/v1/notice`; its canonical JSON's hash is its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyNotice {
    pub controller: Controller,
    pub storage: Storage,
    /// What is held, grouped by category (in the taxonomy's order).
    pub data: Vec<DataGroup>,
    pub purposes: Vec<PurposeEntry>,
    pub recipients: Vec<RecipientEntry>,
    pub rights: Vec<Right>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Controller {
    pub name: String,
    pub privacy_contact: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    pub region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub protection: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataGroup {
    pub category: String,
    pub label: String,
    pub items: Vec<DataItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataItem {
    /// The catalog's name (`email`, `purchase`).
    pub name: String,
    /// In words (`Email`, `Purchase history`).
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Why it is used: the purposes' descriptions, each with its legal basis in words.
    pub used_for: Vec<Use>,
    /// How long it is kept, in words.
    pub kept: String,
    /// Who receives it: "ParcelCo GmbH (DE)".
    pub shared_with: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Use {
    pub purpose: String,
    pub why: String,
    pub legal_basis: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurposeEntry {
    pub id: String,
    pub why: String,
    /// The legal basis's name (`consent`, `contract`, …) and in words.
    pub legal_basis: String,
    pub legal_basis_plain: String,
    /// Only with the customer's consent (off until they turn it on).
    pub needs_consent: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    pub data: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientEntry {
    pub name: String,
    pub country: String,
    /// Outside the EU/EEA: a transfer with its own safeguards.
    pub outside_eea: bool,
    pub why: Vec<String>,
    pub data: Vec<String>,
    pub agreement: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Right {
    pub name: String,
    pub what: String,
    pub how: String,
}

/// EU and EEA member states (ISO 3166-1 alpha-2).
const EEA: [&str; 30] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT",
    "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

/// "Only <roles, in their own words> can <what>." for the roles a catalog power is given to, or
/// `nobody` when none has it. Powers matter to customers; role ids do not.
fn who_may(catalog: &Catalog, has: fn(&crate::catalog::Role) -> bool, what: &str, nobody: &str) -> String {
    let who: Vec<String> = catalog
        .roles
        .iter()
        .filter(|r| has(r))
        .map(|r| {
            let d = r.description.as_deref().unwrap_or(r.id.as_str()).trim_end_matches('.');
            let mut c = d.chars();
            c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
        })
        .collect();
    match who.as_slice() {
        [] => format!("{nobody}."),
        [one] => format!("Only {one} can {what}."),
        [first @ .., last] => format!("Only {} and {last} can {what}.", first.join(", ")),
    }
}

/// Whether `country` is outside the EU/EEA.
pub fn outside_eea(country: &str) -> bool {
    !EEA.contains(&country)
}

/// The category in words.
pub fn category_label(c: Category) -> &'static str {
    match c {
        Category::Identity => "Who you are",
        Category::Contact => "How to reach you",
        Category::Financial => "Payments and purchases",
        Category::Location => "Addresses and places",
        Category::Behavioural => "How you use our services",
        Category::Demographic => "About you",
        Category::Technical => "Devices and technical data",
        Category::Preferences => "Your preferences",
        Category::SpecialCategory => "Sensitive data (health, beliefs and similar)",
        Category::CriminalOffence => "Criminal offence data",
    }
}

/// A catalog name in words: `date_of_birth` -> `Date of birth`.
pub fn label(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// An ISO 8601 period in words: `P2Y` -> `2 years`, `P1Y6M` -> `1 year and 6 months`.
pub fn period_plain(period: &str) -> String {
    let Ok(span) = period.parse::<jiff::Span>() else { return period.to_string() };
    let parts: Vec<String> = [
        (span.get_years() as i64, "year"),
        (span.get_months() as i64, "month"),
        (span.get_weeks() as i64, "week"),
        (span.get_days() as i64, "day"),
        (span.get_hours() as i64, "hour"),
    ]
    .iter()
    .filter(|(n, _)| *n != 0)
    .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
    .collect();
    match parts.len() {
        0 => period.to_string(),
        1 => parts[0].clone(),
        n => format!("{} and {}", parts[..n - 1].join(", "), parts[n - 1]),
    }
}

/// How long a value is kept, in words.
pub fn retention_plain(r: &Retention) -> String {
    match r {
        Retention::Fixed { period } => format!("{} after it is recorded", period_plain(period)),
        Retention::WhileAccountExists { grace: None } => "while your account exists".into(),
        Retention::WhileAccountExists { grace: Some(g) } => {
            format!("while your account exists, then {} after you close it", period_plain(g))
        }
    }
}

fn type_label(name: &str, ty: Option<FieldType>) -> String {
    match ty {
        Some(FieldType::Email) if name == "email" => "E-mail address".into(),
        Some(FieldType::Phone) if name == "phone" => "Phone number".into(),
        _ => label(name),
    }
}

/// A field of `catalog` in words, as the notice names it: `email` -> `E-mail address`.
pub fn field_label(catalog: &Catalog, name: &str) -> String {
    type_label(name, catalog.field(name).map(|d| d.field_type))
}

/// One event of a type in words: `page_view` -> `Page view`.
pub fn event_label(name: &str) -> String {
    label(name)
}

/// The events of a type, as the notice lists them: `page_view` -> `Page view history`.
pub fn event_history_label(name: &str) -> String {
    format!("{} history", event_label(name))
}

/// Anything the catalog declares as held (a field, or a type of event) in the notice's words;
/// a name it does not declare (any more) in words too.
pub fn item_label(catalog: &Catalog, name: &str) -> String {
    if catalog.field(name).is_some() {
        field_label(catalog, name)
    } else if catalog.event(name).is_some() {
        event_history_label(name)
    } else {
        label(name)
    }
}

/// A purpose in words: its description (why it is used), as the notice gives it; the name in
/// words for a purpose the catalog does not declare (any more).
pub fn purpose_plain(catalog: &Catalog, id: &str) -> String {
    catalog.purpose(id).map_or_else(|| label(id), |p| p.description.clone())
}

/// A contact channel in words: `sms` -> `text message (SMS)`.
pub fn channel_plain(c: Channel) -> &'static str {
    match c {
        Channel::Email => "e-mail",
        Channel::Sms => "text message (SMS)",
        Channel::Phone => "phone",
        Channel::Post => "post",
        Channel::Push => "app notification",
    }
}

/// A channel's catalog name in words (the name itself if it is not a channel).
pub fn channel_name_plain(name: &str) -> String {
    Channel::parse(name).map_or_else(|| name.to_string(), |c| channel_plain(c).to_string())
}

/// The notice of `catalog`.
pub fn privacy_notice(catalog: &Catalog) -> PrivacyNotice {
    let org = &catalog.organisation;
    let uses = |purposes: &[crate::PurposeId]| -> Vec<Use> {
        purposes
            .iter()
            .filter_map(|p| catalog.purpose(p.as_str()))
            .map(|p| Use {
                purpose: p.id.to_string(),
                why: p.description.clone(),
                legal_basis: p.legal_basis.plain().to_string(),
            })
            .collect()
    };
    let shared = |name: &str| -> Vec<String> {
        catalog
            .recipients
            .iter()
            .filter(|r| r.fields.iter().any(|f| f.as_str() == name))
            .map(|r| format!("{} ({})", r.name, r.country))
            .collect()
    };
    let mut data = Vec::new();
    for (_, category) in Category::ALL {
        let mut items = Vec::new();
        for f in catalog.fields.iter().filter(|f| f.category == category) {
            items.push(DataItem {
                name: f.name.to_string(),
                label: type_label(f.name.as_str(), Some(f.field_type)),
                description: f.description.clone(),
                used_for: uses(&f.purposes),
                kept: retention_plain(&f.retention),
                shared_with: shared(f.name.as_str()),
            });
        }
        for e in catalog.events.iter().filter(|e| e.category == category) {
            items.push(DataItem {
                name: e.name.to_string(),
                label: event_history_label(e.name.as_str()),
                description: e.description.clone(),
                used_for: uses(&e.purposes),
                kept: retention_plain(&e.retention),
                shared_with: Vec::new(),
            });
        }
        if !items.is_empty() {
            data.push(DataGroup {
                category: category.name().to_string(),
                label: category_label(category).into(),
                items,
            });
        }
    }
    let purposes = catalog
        .purposes
        .iter()
        .map(|p| PurposeEntry {
            id: p.id.to_string(),
            why: p.description.clone(),
            legal_basis: p.legal_basis.name().to_string(),
            legal_basis_plain: p.legal_basis.plain().to_string(),
            needs_consent: p.needs_consent(),
            channels: p.channels.iter().map(|c| c.name().to_string()).collect(),
            data: if p.customer_requests {
                // It reads everything held about one customer, for that customer's own request.
                vec!["everything we hold about you, only to answer your own request".to_string()]
            } else {
                catalog
                    .fields
                    .iter()
                    .filter(|f| f.allows(&p.id))
                    .map(|f| type_label(f.name.as_str(), Some(f.field_type)))
                    .chain(
                        catalog.events.iter().filter(|e| e.allows(&p.id)).map(|e| event_history_label(e.name.as_str())),
                    )
                    .collect()
            },
        })
        .collect();
    let recipients = catalog
        .recipients
        .iter()
        .map(|r| RecipientEntry {
            name: r.name.clone(),
            country: r.country.clone(),
            outside_eea: outside_eea(&r.country),
            why: r.purposes.iter().filter_map(|p| catalog.purpose(p.as_str())).map(|p| p.description.clone()).collect(),
            data: r
                .fields
                .iter()
                .map(|f| type_label(f.as_str(), catalog.field(f.as_str()).map(|d| d.field_type)))
                .collect(),
            agreement: r.agreement.clone(),
        })
        .collect();
    let contact = &org.privacy_contact;
    let how = format!("Write to {contact}. We answer within one month.");
    let right = |name: &str, what: &str, how: &str| Right { name: name.into(), what: what.into(), how: how.into() };
    let rights = vec![
        right("See your data", "Ask what we hold about you, why, and who we shared it with.", &how),
        right("Take your data with you", "Get your data in a common format (JSON or CSV) to reuse elsewhere.", &how),
        right("Correct your data", "Have wrong or incomplete data corrected.", &how),
        right(
            "Delete your data",
            &format!(
                "Have your data erased. We destroy the key that encrypts it, so no copy can be read again; \
                 data the law makes us keep is kept until then, and we tell you which. {}",
                who_may(
                    catalog,
                    |r| r.erase,
                    "delete your account on your behalf",
                    "Nobody on our side can delete your account on your behalf"
                )
            ),
            &how,
        ),
        right("Restrict use", "Have us keep your data but stop using it, for example while you contest it.", &how),
        right("Object", "Object to uses based on our legitimate interests, and to direct marketing at any time.", &how),
        right(
            "Withdraw consent",
            &format!(
                "Turn off anything you agreed to, as easily as you turned it on. It takes effect at once. {}",
                who_may(
                    catalog,
                    |r| r.record_consent,
                    "record a consent you give them (such as a box you tick in their form), and the record names them",
                    "Nobody on our side can record a consent for you: only you can give it"
                )
            ),
            &how,
        ),
        right(
            "Complain",
            "Complain to a data protection authority, in particular where you live or work.",
            "Contact your national data protection authority.",
        ),
    ];
    PrivacyNotice {
        controller: Controller { name: org.name.clone(), privacy_contact: contact.clone() },
        storage: Storage {
            region: org.storage_region.clone(),
            provider: org.storage_provider.clone(),
            protection: "Each piece of your data is encrypted on its own (AES-256-GCM) with a key that is yours \
                         alone, itself encrypted and kept apart from the data. Only the people and services that \
                         need a piece of data, for a stated purpose, can read it, and every access is recorded in a \
                         tamper-evident log you can check."
                .into(),
        },
        data,
        purposes,
        recipients,
        rights,
    }
}

/// What changed from `old` to `new`, in plain sentences (empty if nothing did).
pub fn changes(old: &PrivacyNotice, new: &PrivacyNotice) -> Vec<String> {
    let mut out = Vec::new();
    if old.controller != new.controller {
        out.push(format!(
            "Who is responsible, or how to reach them, changed: now {} ({}).",
            new.controller.name, new.controller.privacy_contact
        ));
    }
    if old.storage.region != new.storage.region || old.storage.provider != new.storage.provider {
        let with = new.storage.provider.as_deref().map(|p| format!(", with {p}")).unwrap_or_default();
        out.push(format!("Where your data is stored changed: now {}{with}.", new.storage.region));
    }
    for p in &new.purposes {
        match old.purposes.iter().find(|o| o.id == p.id) {
            None => out.push(format!("New use of data: {} ({}).", p.why, p.legal_basis_plain)),
            Some(o) if o != p => out.push(format!("Changed use of data: {}", describe_purpose_change(o, p))),
            _ => {}
        }
    }
    for o in &old.purposes {
        if !new.purposes.iter().any(|p| p.id == o.id) {
            out.push(format!("We no longer use data to: {}", o.why));
        }
    }
    let items = |n: &PrivacyNotice| -> Vec<DataItem> { n.data.iter().flat_map(|g| g.items.clone()).collect() };
    let (old_items, new_items) = (items(old), items(new));
    for i in &new_items {
        match old_items.iter().find(|o| o.name == i.name) {
            None => out.push(format!("We now hold: {}.", i.label)),
            Some(o) if o.kept != i.kept => out.push(format!("{}: now kept {} (was {}).", i.label, i.kept, o.kept)),
            _ => {}
        }
    }
    for o in &old_items {
        if !new_items.iter().any(|i| i.name == o.name) {
            out.push(format!("We no longer hold: {}.", o.label));
        }
    }
    for r in &new.recipients {
        match old.recipients.iter().find(|o| o.name == r.name) {
            None => out.push(format!("New recipient: {} ({}) receives {}.", r.name, r.country, r.data.join(", "))),
            Some(o) if o != r => out.push(format!("{} ({}) now receives {}.", r.name, r.country, r.data.join(", "))),
            _ => {}
        }
    }
    for o in &old.recipients {
        if !new.recipients.iter().any(|r| r.name == o.name) {
            out.push(format!("{} no longer receives your data.", o.name));
        }
    }
    out
}

fn describe_purpose_change(o: &PurposeEntry, p: &PurposeEntry) -> String {
    let mut parts = Vec::new();
    if o.why != p.why {
        parts.push(format!("was: {}", o.why));
    }
    if o.legal_basis != p.legal_basis {
        parts.push(format!("legal basis now {}", p.legal_basis_plain));
    }
    let added: Vec<&String> = p.data.iter().filter(|d| !o.data.contains(d)).collect();
    let removed: Vec<&String> = o.data.iter().filter(|d| !p.data.contains(d)).collect();
    if !added.is_empty() {
        parts.push(format!("now also uses {}", added.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("no longer uses {}", removed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")));
    }
    if parts.is_empty() { p.why.clone() } else { format!("{} ({})", p.why, parts.join("; ")) }
}

/// What a log entry's action means, in plain words for the customer's "who accessed my data".
pub fn action_plain(action: &str) -> &'static str {
    match action {
        "subject.create" => "Created your record",
        "subject.read" => "Looked at your details",
        "subject.correct" => "Changed your details",
        "subject.lookup" => "Searched for you",
        "subject.report" => "Looked at everything held about you",
        "subject.export" => "Downloaded a copy of your data",
        "subject.erase" => "Deleted your data",
        "subject.restrict" => "Restricted the use of your data",
        "subject.unrestrict" => "Lifted the restriction on your data",
        "event.append" => "Recorded an activity",
        "event.read" => "Looked at your recorded activity",
        "consent.read" | "consent.history" | "consent.receipt" => "Looked at your choices",
        "consent.change" => "Recorded a change of your choices",
        "consent.audience" => "Checked who agreed to be contacted",
        "hold.place" => "Placed a legal hold",
        "hold.lift" => "Lifted a legal hold",
        "hold.read" => "Checked for a legal hold",
        "break_glass.open" => "Opened emergency access",
        "access_log.read" => "Looked at who accessed your data",
        "retention.delete" => "Deleted data whose time was up",
        "breach.country" => "Checked your country to count who a data breach affects",
        "keys.reindex" => "Re-computed the search key of your details (no person saw them)",
        "request.open" | "request.close" => "Handled your request",
        "privacy_center.link" => "Sent you a sign-in link",
        "privacy_center.sign_in" => "Signed in to this privacy center",
        "privacy_center.sign_out" => "Signed out of this privacy center",
        "access.denied" => "Tried to use your data",
        "grant.create" => "Shared your data with a recipient",
        "grant.read" => "Received your data (shared)",
        "grant.revoke" => "Stopped sharing your data",
        "message.register" => "Sent you a message",
        "message.verify" => "Checked that a message to you is genuine",
        "message.list" => "Looked at the messages sent to you",
        _ => "Used your data",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::EXAMPLE_CATALOG;

    fn catalog(src: &str) -> Catalog {
        Catalog::from_toml_str(src, "test").unwrap()
    }

    #[test]
    fn the_notice_says_who_may_delete_an_account_or_record_a_consent_on_the_customers_behalf() {
        let n = privacy_notice(&catalog(EXAMPLE_CATALOG));
        let what = |name: &str| n.rights.iter().find(|r| r.name == name).unwrap().what.clone();
        assert!(
            what("Delete your data")
                .ends_with("Only staff who answer customers' privacy requests can delete your account on your behalf."),
            "{}",
            what("Delete your data")
        );
        assert!(what("Withdraw consent").contains("Only the shop's own backend can record a consent you give them"));
        let nobody = EXAMPLE_CATALOG.replace("erase = true\n", "").replace("record_consent = true\n", "");
        let n = privacy_notice(&catalog(&nobody));
        assert!(n.rights.iter().any(|r| r.what.contains("Nobody on our side can delete your account")));
        assert!(n.rights.iter().any(|r| r.what.contains("only you can give it")));
    }

    #[test]
    fn the_notice_groups_data_by_category_with_why_how_long_and_who() {
        let n = privacy_notice(&catalog(EXAMPLE_CATALOG));
        let contact = n.data.iter().find(|g| g.category == "contact").unwrap();
        assert_eq!(contact.label, "How to reach you");
        let email = contact.items.iter().find(|i| i.name == "email").unwrap();
        assert_eq!(email.label, "E-mail address");
        assert_eq!(email.kept, "while your account exists, then 30 days after you close it");
        assert!(email.shared_with.contains(&"PayFast Ltd (IE)".to_string()));
        assert!(email.used_for.iter().any(|u| u.purpose == "marketing" && u.legal_basis.contains("consent")));
        let views = n.data.iter().flat_map(|g| &g.items).find(|i| i.name == "page_view").unwrap();
        assert_eq!(
            (views.label.as_str(), views.kept.as_str()),
            ("Page view history", "13 months after it is recorded")
        );
        let marketing = n.purposes.iter().find(|p| p.id == "marketing").unwrap();
        assert!(marketing.needs_consent && marketing.channels == ["email", "sms"]);
        let requests = n.purposes.iter().find(|p| p.id == "privacy_requests").unwrap();
        assert_eq!(requests.data, ["everything we hold about you, only to answer your own request"]);
        assert!(n.recipients.iter().all(|r| !r.outside_eea));
        assert_eq!(n.rights.len(), 8);
        assert!(n.rights[0].how.contains("privacy@shop.example"));
    }

    #[test]
    fn a_published_notice_reads_back_as_it_was() {
        let n = privacy_notice(&catalog(EXAMPLE_CATALOG));
        let back: PrivacyNotice = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn periods_read_as_words() {
        assert_eq!(period_plain("P2Y"), "2 years");
        assert_eq!(period_plain("P13M"), "13 months");
        assert_eq!(period_plain("P1Y6M"), "1 year and 6 months");
        assert_eq!(period_plain("P30D"), "30 days");
        assert_eq!(period_plain("nonsense"), "nonsense");
        assert!(outside_eea("US") && !outside_eea("DE"));
    }

    #[test]
    fn changes_are_listed_in_plain_sentences() {
        let old = privacy_notice(&catalog(EXAMPLE_CATALOG));
        assert!(changes(&old, &old).is_empty());
        let new_src = EXAMPLE_CATALOG
            .replace("retention = \"P13M\"", "retention = \"P2Y\"")
            .replace("country = \"IE\"", "country = \"US\"")
            .replace(
                "Send you offers and news, only if you asked for them.",
                "Send you offers, news and tips, only if you asked for them.",
            );
        let new = privacy_notice(&catalog(&new_src));
        let c = changes(&old, &new);
        assert!(
            c.iter().any(|s| s
                == "Page view history: now kept 2 years after it is recorded (was 13 months after it is recorded)."),
            "{c:?}"
        );
        assert!(
            c.iter().any(|s| s.starts_with("Changed use of data: Send you offers, news and tips")
                && s.contains("(was: Send you offers and news")),
            "{c:?}"
        );
        assert!(c.iter().any(|s| s.starts_with("PayFast Ltd (US) now receives")), "{c:?}");
    }

    #[test]
    fn every_logged_action_has_plain_words_for_the_customer() {
        for action in ["subject.read", "subject.report", "break_glass.open", "privacy_center.sign_in", "consent.change"]
        {
            assert_ne!(action_plain(action), "Used your data", "{action}");
        }
        assert_eq!(action_plain("something.new"), "Used your data");
    }
}
