//! `candor catalog ropa`: the record of processing activities (GDPR Art. 30(1)) from the
//! catalog — one activity per purpose — as Markdown (to read and sign) and CSV (to import).
//! Built from the same catalog as the privacy notice and the policies, so the three agree.

use candor_core::catalog::{Catalog, Category};
use candor_core::privacy_notice::{category_label, label, outside_eea, retention_plain};

/// The technical and organisational security measures (Art. 30(1)(g), Art. 32), as enforced.
pub const SECURITY_MEASURES: &str = "Field-level encryption of every personal value (AES-256-GCM) with a data key per \
customer, wrapped by a key-encryption key; wrapped keys kept in a key store apart from the data; erasure by \
destroying the customer's key (crypto-shredding); pseudonymous random customer ids; lookups through keyed blind \
indexes; access only by token, role and declared purpose, decided by a policy engine compiled from this catalog, \
with masking and time-boxed, logged break-glass; every access and change recorded in a tamper-evident, signed \
Merkle log; tokens stored as hashes; keys in owner-only files or the environment.";

/// One processing activity (a purpose) as a row.
pub struct Activity {
    pub purpose: String,
    pub description: String,
    pub legal_basis: String,
    pub data_subjects: String,
    pub data_categories: Vec<String>,
    pub data_items: Vec<String>,
    pub recipients: Vec<String>,
    pub transfers: Vec<String>,
    pub retention: Vec<String>,
}

pub fn activities(catalog: &Catalog) -> Vec<Activity> {
    catalog
        .purposes
        .iter()
        .map(|p| {
            let fields: Vec<_> = catalog.fields.iter().filter(|f| f.allows(&p.id)).collect();
            let events: Vec<_> = catalog.events.iter().filter(|e| e.allows(&p.id)).collect();
            let mut categories: Vec<Category> =
                fields.iter().map(|f| f.category).chain(events.iter().map(|e| e.category)).collect();
            categories.sort_by_key(|c| Category::ALL.iter().position(|(_, x)| x == c));
            categories.dedup();
            let recipients: Vec<_> = catalog.recipients.iter().filter(|r| r.purposes.contains(&p.id)).collect();
            Activity {
                purpose: p.id.to_string(),
                description: p.description.clone(),
                legal_basis: format!("{} ({})", p.legal_basis.name(), p.legal_basis.plain()),
                data_subjects: "customers".into(),
                data_categories: categories.iter().map(|c| format!("{} ({})", c.name(), category_label(*c))).collect(),
                data_items: fields
                    .iter()
                    .map(|f| label(f.name.as_str()))
                    .chain(events.iter().map(|e| format!("{} events", label(e.name.as_str()))))
                    .collect(),
                recipients: recipients
                    .iter()
                    .map(|r| {
                        format!(
                            "{} ({}, agreement {}): {}",
                            r.name,
                            r.country,
                            r.agreement,
                            r.fields.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    })
                    .collect(),
                transfers: recipients
                    .iter()
                    .filter(|r| outside_eea(&r.country))
                    .map(|r| format!("{} ({}), safeguards in agreement {}", r.name, r.country, r.agreement))
                    .collect(),
                retention: fields
                    .iter()
                    .map(|f| format!("{}: {}", label(f.name.as_str()), retention_plain(&f.retention)))
                    .chain(
                        events
                            .iter()
                            .map(|e| format!("{} events: {}", label(e.name.as_str()), retention_plain(&e.retention))),
                    )
                    .collect(),
            }
        })
        .collect()
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join("; ") }
}

/// The record as Markdown.
pub fn markdown(catalog: &Catalog) -> String {
    let org = &catalog.organisation;
    let mut out = format!(
        "# Record of processing activities — {}\n\nGDPR Art. 30(1). Generated from the catalog by `candor catalog ropa`; \
         the privacy notice and the access policies are generated from the same catalog.\n\n\
         - Controller: {}\n- Contact for data protection: {}\n- Storage: {}{}\n\n## Security measures\n\n{}\n",
        org.name,
        org.name,
        org.privacy_contact,
        org.storage_region,
        org.storage_provider.as_deref().map(|p| format!(" ({p})")).unwrap_or_default(),
        SECURITY_MEASURES
    );
    for a in activities(catalog) {
        let list = |items: &[String]| -> String {
            if items.is_empty() { "none".into() } else { items.iter().map(|i| format!("\n  - {i}")).collect() }
        };
        out.push_str(&format!(
            "\n## Activity: {}\n\n- Purpose: {}\n- Legal basis: {}\n- Data subjects: {}\n- Categories of personal data: {}\n\
             - Personal data: {}\n- Recipients: {}\n- Transfers outside the EU/EEA: {}\n- Retention: {}\n",
            a.purpose,
            a.description,
            a.legal_basis,
            a.data_subjects,
            list(&a.data_categories),
            list(&a.data_items),
            list(&a.recipients),
            list(&a.transfers),
            list(&a.retention),
        ));
    }
    out
}

/// The record as CSV: one row per activity.
pub fn csv(catalog: &Catalog) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "activity",
        "purpose",
        "legal_basis",
        "data_subjects",
        "data_categories",
        "personal_data",
        "recipients",
        "transfers_outside_eea",
        "retention",
        "security_measures",
        "controller",
        "contact",
    ])?;
    for a in activities(catalog) {
        w.write_record([
            a.purpose.as_str(),
            &a.description,
            &a.legal_basis,
            &a.data_subjects,
            &or_none(&a.data_categories),
            &or_none(&a.data_items),
            &or_none(&a.recipients),
            &or_none(&a.transfers),
            &or_none(&a.retention),
            SECURITY_MEASURES,
            &catalog.organisation.name,
            &catalog.organisation.privacy_contact,
        ])?;
    }
    Ok(String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::catalog::EXAMPLE_CATALOG;

    #[test]
    fn one_activity_per_purpose_with_what_article_30_asks() {
        let c = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap();
        let md = markdown(&c);
        assert!(md.contains("## Activity: order_fulfilment"));
        assert!(md.contains("ParcelCo GmbH (DE, agreement DPA-2026-014): full_name, shipping_address, phone"), "{md}");
        assert!(md.contains("Page view events: 13 months after it is recorded"));
        let csv = csv(&c).unwrap();
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), c.purposes.len());
        let marketing = rows.iter().find(|r| &r[0] == "marketing").unwrap();
        assert!(marketing[2].starts_with("consent"));
        assert_eq!(&marketing[7], "none");
        // A recipient outside the EU/EEA is a transfer.
        let us = Catalog::from_toml_str(&EXAMPLE_CATALOG.replace("country = \"IE\"", "country = \"US\""), "x").unwrap();
        assert!(markdown(&us).contains("PayFast Ltd (US), safeguards in agreement DPA-2025-102"));
    }
}
