//! Customer rights as data: what an erasure certificate states. Pure: the vault supplies what
//! was stored (names and counts) and signs the result.

use serde_json::{Value, json};

use crate::catalog::{Catalog, Retention};
use crate::ids::{FieldName, SubjectId};
use crate::privacy_notice::{category_label, retention_plain};

/// When a value stored at `stored_at` (milliseconds) is due for deletion under `retention`:
/// `None` for values kept while the account exists (they go when it is closed or erased).
pub fn retention_end(retention: &Retention, stored_at: i64) -> Option<i64> {
    let Retention::Fixed { period } = retention else {
        return None;
    };
    let span: jiff::Span = period.parse().ok()?;
    let start = jiff::Timestamp::from_millisecond(stored_at).ok()?;
    let end = start.to_zoned(jiff::tz::TimeZone::UTC).checked_add(span).ok()?;
    Some(end.timestamp().as_millisecond())
}

/// Why a privacy request may be refused: a code the request records and the customer's
/// explanation the privacy center shows (never free text, which could hold a personal value).
pub const REFUSAL_REASONS: [(&str, &str); 6] = [
    (
        "identity_not_proven",
        "We could not confirm that the request came from you (GDPR Art. 12(6)). You can ask again and prove who you are.",
    ),
    ("manifestly_unfounded", "The request was manifestly unfounded (GDPR Art. 12(5))."),
    ("excessive", "The request was excessive, in particular because it repeated an earlier one (GDPR Art. 12(5))."),
    (
        "legal_obligation",
        "The law obliges us to keep the data concerned (GDPR Art. 17(3)(b)); it is used for that obligation only.",
    ),
    (
        "legal_claims",
        "The data is needed to establish, exercise or defend legal claims (GDPR Art. 17(3)(e), Art. 21(1)).",
    ),
    ("rights_of_others", "Answering would adversely affect the rights and freedoms of others (GDPR Art. 15(4))."),
];

/// What the customer is told about their right to complain whenever a request is refused
/// (GDPR Art. 12(4)).
pub const REFUSAL_REMEDIES: &str =
    "You may lodge a complaint with a data protection supervisory authority and seek a judicial remedy.";

/// The customer's explanation of a refusal reason code, if it is one.
pub fn refusal_reason(code: &str) -> Option<&'static str> {
    REFUSAL_REASONS.iter().find(|(c, _)| *c == code).map(|(_, text)| *text)
}

/// What a retention rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleTarget {
    Field,
    Event,
}

/// Values of one field (or events of one type) stored at or before `cutoff` are due for deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    pub target: RuleTarget,
    pub name: FieldName,
    pub cutoff: i64,
}

/// The retention rules in force at `now` (milliseconds): one per field or event type with a
/// fixed retention period. Values kept while the account exists go with the account.
pub fn retention_rules(catalog: &Catalog, now: i64) -> Vec<RetentionRule> {
    let cutoff = |retention: &Retention| -> Option<i64> {
        let Retention::Fixed { period } = retention else {
            return None;
        };
        let span: jiff::Span = period.parse().ok()?;
        let now = jiff::Timestamp::from_millisecond(now).ok()?.to_zoned(jiff::tz::TimeZone::UTC);
        Some(now.checked_sub(span).ok()?.timestamp().as_millisecond())
    };
    let fields = catalog.fields.iter().filter_map(|f| {
        Some(RetentionRule { target: RuleTarget::Field, name: f.name.clone(), cutoff: cutoff(&f.retention)? })
    });
    let events = catalog.events.iter().filter_map(|e| {
        Some(RetentionRule { target: RuleTarget::Event, name: e.name.clone(), cutoff: cutoff(&e.retention)? })
    });
    fields.chain(events).collect()
}

/// What was erased, by name and count.
pub struct Erased<'a> {
    pub fields: &'a [FieldName],
    pub events: &'a [(FieldName, u64)],
    pub consent_entries: u64,
}

/// Who asked for the erasure (ids and names only).
pub struct Requester<'a> {
    pub token: &'a str,
    pub role: &'a str,
    pub purpose: &'a str,
}

/// A recipient that received the customer's data (it holds them in a grant) and is sent a
/// notice of the erasure (GDPR Art. 19), with the fields it was given.
pub struct Told<'a> {
    pub recipient: &'a str,
    pub fields: &'a [String],
}

/// The unsigned body of an erasure certificate: what was erased (field names with their
/// categories, event counts), when, how, and which recipients are told (GDPR Art. 19).
///
/// `told` are the recipients that actually received the customer's data and are sent a notice
/// with this erasure; the other recipients the catalog declares never received it, and the
/// certificate says so. `None` when it is no longer known (a copy of the data restored after
/// the erasure, without the certificate kept then).
pub fn erasure_certificate(
    catalog: &Catalog,
    certificate_id: &str,
    subject: SubjectId,
    erased_at: i64,
    erased: &Erased<'_>,
    told: Option<&[Told<'_>]>,
    requester: &Requester<'_>,
) -> Value {
    let time = jiff::Timestamp::from_millisecond(erased_at).map(|t| t.to_string()).unwrap_or_default();
    let fields: Vec<Value> = erased
        .fields
        .iter()
        .map(|f| json!({"field": f.as_str(), "category": catalog.field(f.as_str()).map(|d| d.category.name())}))
        .collect();
    let events: Vec<Value> = erased.events.iter().map(|(t, n)| json!({"type": t.as_str(), "count": n})).collect();
    let declared = |id: &str| catalog.recipients.iter().find(|r| r.id == id);
    let name_of = |id: &str| declared(id).map_or_else(|| id.to_string(), |r| r.name.clone());
    let told_list = told.unwrap_or_default();
    let to_notify: Vec<Value> = told_list
        .iter()
        .map(|t| {
            let r = declared(t.recipient);
            json!({
                "recipient": t.recipient,
                "name": name_of(t.recipient),
                "country": r.map(|r| r.country.clone()),
                "fields": t.fields,
                "agreement": r.map(|r| r.agreement.clone()),
            })
        })
        .collect();
    let notified: Vec<Value> =
        told_list.iter().map(|t| json!({"recipient": t.recipient, "name": name_of(t.recipient)})).collect();
    let names: Vec<String> = told_list.iter().map(|t| name_of(t.recipient)).collect();
    let summary = match (told, names.as_slice()) {
        (None, _) => "This copy of the data no longer holds the certificate issued at the erasure: the recipients \
                      told then are in the notices sent at the time (GET /v1/notices lists those not yet confirmed)."
            .to_string(),
        (Some(_), []) => {
            "No company received this customer's data from us, so there is no one else to tell.".to_string()
        }
        (Some(_), [one]) => format!("{one} received this customer's data from us and is told to delete it too."),
        (Some(_), many) => format!(
            "{} and {} received this customer's data from us and are told to delete it too.",
            many[..many.len() - 1].join(", "),
            many[many.len() - 1]
        ),
    };
    let mut body = json!({
        "certificate_version": "candor-erasure-certificate/1",
        "certificate_id": certificate_id,
        "subject_id": subject.to_string(),
        "erased_at": time,
        "controller": {"name": catalog.organisation.name, "contact": catalog.organisation.privacy_contact},
        "method": "crypto-shredding: the customer's data key was destroyed in the key store, then their values, \
                   lookup index entries, behavioural events and consent records were deleted. Copies of the data \
                   made before (backups) cannot be decrypted without the key.",
        "erased": {"fields": fields, "events": events, "consent_entries": erased.consent_entries},
        "recipients_summary": summary,
        "recipients_to_notify": to_notify,
        "recipients_notified": {
            "how": "a signed notice (webhook) to each, written with this erasure and retried until delivered; confirmations: GET /v1/notices",
            "recipients": notified,
        },
        "requested_by": {"token": requester.token, "role": requester.role, "purpose": requester.purpose},
    });
    if told.is_some() {
        let never: Vec<Value> = catalog
            .recipients
            .iter()
            .filter(|r| !told_list.iter().any(|t| t.recipient == r.id))
            .map(|r| json!({"recipient": r.id, "name": r.name, "country": r.country}))
            .collect();
        body["recipients_not_told"] = json!({
            "why": "declared in the privacy notice as possible recipients, but this customer's data was never \
                    shared with them, so they hold nothing to delete",
            "recipients": never,
        });
    }
    body
}

/// Why a stored item is held, as the access report explains it: its category, the purposes it
/// serves with their legal basis, how long it is kept and until when, where it is stored and
/// which recipients it goes to. Catalog names (for programs) come with the public notice's words
/// beside them (for people): `category_label`, `legal_basis_plain`, `kept`.
pub fn explain(
    catalog: &Catalog,
    category: crate::catalog::Category,
    purposes: &[crate::ids::PurposeId],
    retention: &Retention,
    stored_at: i64,
    field: Option<&FieldName>,
) -> Value {
    let time = |ms: i64| jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default();
    let purposes: Vec<Value> = purposes
        .iter()
        .filter_map(|id| catalog.purpose(id.as_str()))
        .map(|p| {
            json!({"purpose": p.id.as_str(), "why": p.description, "legal_basis": p.legal_basis.name(),
                   "legal_basis_plain": p.legal_basis.plain()})
        })
        .collect();
    let recipients: Vec<Value> = match field {
        Some(f) => catalog
            .recipients
            .iter()
            .filter(|r| r.fields.contains(f))
            .map(|r| json!({"recipient": r.id, "name": r.name, "country": r.country}))
            .collect(),
        None => Vec::new(),
    };
    json!({
        "category": category.name(),
        "category_label": category_label(category),
        "purposes": purposes,
        "kept": retention_plain(retention),
        "retention": retention,
        "delete_after": retention_end(retention, stored_at).map(time),
        "stored_in": catalog.organisation.storage_region,
        "recipients": recipients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::EXAMPLE_CATALOG;

    #[test]
    fn fixed_retention_counts_calendar_months_and_years_from_storage() {
        let at = jiff::Timestamp::from_second(1_706_745_600).unwrap().as_millisecond(); // 2024-02-01
        let end = |p: &str| {
            retention_end(&Retention::Fixed { period: p.into() }, at)
                .map(|ms| jiff::Timestamp::from_millisecond(ms).unwrap().to_string())
        };
        assert_eq!(end("P13M").as_deref(), Some("2025-03-01T00:00:00Z"));
        assert_eq!(end("P10Y").as_deref(), Some("2034-02-01T00:00:00Z"));
        assert_eq!(end("P30D").as_deref(), Some("2024-03-02T00:00:00Z"));
        assert_eq!(retention_end(&Retention::WhileAccountExists { grace: None }, at), None);
    }

    #[test]
    fn retention_rules_cover_fixed_periods_only_and_agree_with_retention_end() {
        let c = Catalog::from_toml_str(crate::catalog::EXAMPLE_CATALOG, "example").unwrap();
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap().as_millisecond();
        let rules = retention_rules(&c, now);
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["page_view", "purchase"], "fields are kept while the account exists");
        let page_view = &rules[0];
        assert_eq!(page_view.target, RuleTarget::Event);
        // Something stored exactly at the cutoff is due now, by retention_end's reckoning too.
        let end = retention_end(&Retention::Fixed { period: "P13M".into() }, page_view.cutoff).unwrap();
        assert_eq!(end, now);
    }

    #[test]
    fn the_explanation_speaks_the_notices_words_beside_the_catalogs_names() {
        let c = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap();
        let email = c.field("email").unwrap();
        let about = explain(&c, email.category, &email.purposes, &email.retention, 0, Some(&email.name));
        assert_eq!(about["category"], "contact");
        assert_eq!(about["category_label"], "How to reach you");
        assert_eq!(about["kept"], "while your account exists, then 30 days after you close it");
        assert_eq!(about["retention"], json!({"kind": "while_account_exists", "grace": "P30D"}));
        let marketing = about["purposes"].as_array().unwrap().iter().find(|p| p["purpose"] == "marketing").unwrap();
        assert_eq!(marketing["legal_basis"], "consent");
        assert_eq!(marketing["legal_basis_plain"], "your consent, which you can withdraw at any time");
        let views = c.event("page_view").unwrap();
        let about = explain(&c, views.category, &views.purposes, &views.retention, 0, None);
        assert_eq!(about["kept"], "13 months after it is recorded");
        assert!(!about.to_string().contains("ISO 8601"));
    }

    fn certificate(told: Option<&[Told<'_>]>) -> Value {
        let c = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap();
        let fields = [FieldName::new("email"), FieldName::new("phone")];
        let events = [(FieldName::new("purchase"), 3)];
        erasure_certificate(
            &c,
            "cert-1",
            SubjectId::random(),
            1_700_000_000_000,
            &Erased { fields: &fields, events: &events, consent_entries: 2 },
            told,
            &Requester { token: "t", role: "shop_backend", purpose: "account" },
        )
    }

    fn ids(list: &Value) -> Vec<&str> {
        list.as_array().unwrap().iter().map(|r| r["recipient"].as_str().unwrap()).collect()
    }

    #[test]
    fn the_certificate_names_categories_counts_and_the_recipients_told() {
        let phone = ["phone".to_string()];
        let body = certificate(Some(&[Told { recipient: "parcel_carrier", fields: &phone }]));
        assert_eq!(body["erased_at"], "2023-11-14T22:13:20Z");
        assert_eq!(body["erased"]["fields"][1], json!({"field": "phone", "category": "contact"}));
        assert_eq!(body["erased"]["events"][0]["count"], 3);
        assert_eq!(ids(&body["recipients_to_notify"]), ["parcel_carrier"]);
        assert_eq!(body["recipients_to_notify"][0]["fields"], json!(["phone"]));
        assert_eq!(body["recipients_to_notify"][0]["name"], "ParcelCo GmbH");
        assert_eq!(ids(&body["recipients_notified"]["recipients"]), ["parcel_carrier"], "the same recipients");
        assert_eq!(ids(&body["recipients_not_told"]["recipients"]), ["payment_provider"]);
        assert_eq!(
            body["recipients_summary"],
            "ParcelCo GmbH received this customer's data from us and is told to delete it too."
        );
    }

    #[test]
    fn a_customer_whose_data_was_never_shared_names_nobody_as_told() {
        let body = certificate(Some(&[]));
        assert_eq!(body["recipients_to_notify"], json!([]));
        assert_eq!(body["recipients_notified"]["recipients"], json!([]));
        assert_eq!(ids(&body["recipients_not_told"]["recipients"]), ["parcel_carrier", "payment_provider"]);
        assert_eq!(
            body["recipients_summary"],
            "No company received this customer's data from us, so there is no one else to tell."
        );
        // When it is no longer known, the certificate says so instead of guessing.
        let unknown = certificate(None);
        assert_eq!(unknown["recipients_to_notify"], json!([]));
        assert!(unknown.get("recipients_not_told").is_none());
        assert!(unknown["recipients_summary"].as_str().unwrap().contains("GET /v1/notices"));
    }
}
