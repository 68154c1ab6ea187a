//! The texts a breach calls for, from its facts: the summary for the supervisory authority
//! (GDPR Art. 33(3)) and the plain-language notice to each affected customer (Art. 34(2)).
//! Pure functions; the facts hold no personal value.

use crate::catalog::{Catalog, Category};
use crate::privacy_notice::category_label;

/// What is known about a breach.
pub struct BreachFacts<'a> {
    pub id: &'a str,
    /// RFC 3339.
    pub detected_at: &'a str,
    /// RFC 3339: detected_at + 72 hours.
    pub authority_deadline: &'a str,
    pub nature: &'a str,
    /// Data category names (`contact`, `financial`…).
    pub categories: &'a [String],
    pub customers: u64,
    /// Records concerned (log accesses or customers, as assessed).
    pub records: u64,
    pub consequences: &'a str,
    pub measures: &'a str,
    /// Affected customers per country (ISO code, `unknown`), when the assessment counted them.
    pub countries: &'a [(String, u64)],
}

fn labels(categories: &[String]) -> Vec<&'static str> {
    categories
        .iter()
        .filter_map(|c| Category::ALL.iter().find(|(n, _)| n == c).map(|(_, cat)| category_label(*cat)))
        .collect()
}

/// The notification to the supervisory authority (Art. 33(3)), as Markdown.
pub fn authority_summary(catalog: &Catalog, f: &BreachFacts<'_>) -> String {
    let org = &catalog.organisation;
    let cats = labels(f.categories);
    format!(
        "# Personal data breach notification (GDPR Art. 33)\n\n\
         Controller: {name}. Contact point: {contact}.\n\
         Breach reference: {id}. Became aware: {detected}. Notification due by: {deadline}.\n\n\
         ## (a) Nature of the breach\n{nature}\n\n\
         Categories of personal data concerned: {cats}.\n\
         Approximate number of data subjects concerned: {customers}.\n\
         Approximate number of personal data records concerned: {records}.\n{countries}\n\
         ## (b) Contact point for more information\n{contact}\n\n\
         ## (c) Likely consequences\n{consequences}\n\n\
         ## (d) Measures taken or proposed\n{measures}\n\n\
         Affected data subjects are informed individually (Art. 34) through a notice registered with \
         Candor, which they can check as genuine in the privacy center.\n",
        name = org.name,
        contact = org.privacy_contact,
        id = f.id,
        detected = f.detected_at,
        deadline = f.authority_deadline,
        nature = f.nature.trim(),
        cats = if cats.is_empty() { "none identified".to_string() } else { cats.join(", ") },
        customers = f.customers,
        records = f.records,
        countries = if f.countries.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = f.countries.iter().map(|(c, n)| format!("{c} {n}")).collect();
            format!(
                "Data subjects concerned per country: {} (other supervisory authorities concerned, Art. 56).\n",
                list.join(", ")
            )
        },
        consequences = f.consequences.trim(),
        measures = f.measures.trim(),
    )
}

/// The notice to an affected customer (Art. 34(2)), in plain language.
pub fn customer_notice(catalog: &Catalog, f: &BreachFacts<'_>) -> String {
    let org = &catalog.organisation;
    let cats = labels(f.categories);
    let what = if cats.is_empty() {
        "some of your data".to_string()
    } else {
        cats.iter().map(|c| c.to_lowercase()).collect::<Vec<_>>().join(", ")
    };
    format!(
        "We are writing to tell you about a security incident that affects your personal data.\n\n\
         What happened: {nature}\n\n\
         Which of your data: {what}. We have not found that any other data of yours was affected.\n\n\
         What it may mean for you: {consequences}\n\n\
         What we have done: {measures}\n\n\
         What you can do: be careful with messages that claim to come from {name}; check any message \
         from us in your privacy center (\"Check a message\") before you act on it, and never share \
         passwords or payment details in reply to a message.\n\n\
         Questions: write to {contact}. Reference: {id}.",
        nature = f.nature.trim(),
        consequences = f.consequences.trim(),
        measures = f.measures.trim(),
        name = org.name,
        contact = org.privacy_contact,
        id = f.id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::EXAMPLE_CATALOG;

    #[test]
    fn both_texts_carry_the_facts_the_law_asks_for() {
        let c = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap();
        let cats = vec!["contact".to_string(), "identity".to_string()];
        let f = BreachFacts {
            id: "br-1",
            detected_at: "2026-11-20T09:00:00Z",
            authority_deadline: "2026-11-23T09:00:00Z",
            nature: "A support agent's access token was used from an unknown device.",
            categories: &cats,
            customers: 3,
            records: 3,
            consequences: "Phishing messages in our name are possible.",
            measures: "The token was revoked and all staff tokens were rotated.",
            countries: &[("DE".into(), 2), ("GB".into(), 1)],
        };
        let a = authority_summary(&c, &f);
        for needle in [
            "Example Shop Ltd",
            "privacy@shop.example",
            "2026-11-23T09:00:00Z",
            "data subjects concerned: 3",
            "How to reach you",
            "(d) Measures",
            "per country: DE 2, GB 1",
        ] {
            assert!(a.contains(needle), "{needle} in {a}");
        }
        let n = customer_notice(&c, &f);
        assert!(n.contains("how to reach you") && n.contains("Check a message") && n.contains("br-1"), "{n}");
    }
}
