//! The notice of a purpose, generated from the catalog: what a customer is told when they are
//! asked for consent. Its hash is the *notice version* a consent is recorded against, so a
//! change of what the purpose means (its description, the data it uses, who receives it) is a
//! new version, and consents given on the old one can be asked again.

use std::fmt::Write;

use crate::catalog::{Catalog, LegalBasis, Purpose, Retention};

impl LegalBasis {
    /// The legal basis in words a customer understands.
    pub fn plain(self) -> &'static str {
        match self {
            LegalBasis::Consent => "your consent, which you can withdraw at any time",
            LegalBasis::Contract => "our contract with you",
            LegalBasis::LegalObligation => "a legal obligation we must meet",
            LegalBasis::VitalInterests => "protecting someone's life",
            LegalBasis::PublicTask => "a task in the public interest",
            LegalBasis::LegitimateInterests => "our legitimate interests, which you can object to",
        }
    }
}

impl Retention {
    /// How long a value is kept, in words.
    pub fn plain(&self) -> String {
        match self {
            Retention::Fixed { period } => format!("{period} (ISO 8601) after it was recorded"),
            Retention::WhileAccountExists { grace: None } => "while your account exists".into(),
            Retention::WhileAccountExists { grace: Some(g) } => {
                format!("while your account exists, then {g} (ISO 8601)")
            }
        }
    }
}

/// The notice text of `purpose`: the controller, why, on which legal basis, over which channels,
/// which data and which recipients. Deterministic: the same catalog meaning gives the same text.
pub fn purpose_notice(catalog: &Catalog, purpose: &Purpose) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Controller: {} (privacy contact: {})",
        catalog.organisation.name, catalog.organisation.privacy_contact
    );
    let _ = writeln!(t, "Purpose: {}", purpose.id);
    let _ = writeln!(t, "Why: {}", purpose.description);
    let _ = writeln!(t, "Legal basis: {}", purpose.legal_basis.plain());
    if !purpose.channels.is_empty() {
        let names: Vec<&str> = purpose.channels.iter().map(|c| c.name()).collect();
        let _ = writeln!(t, "Channels: {}", names.join(", "));
    }
    let _ = writeln!(t, "Data used:");
    let mut any = false;
    for f in catalog.fields.iter().filter(|f| f.allows(&purpose.id)) {
        any = true;
        let _ = write!(t, "- {} ({})", f.name, f.category.name());
        if let Some(d) = &f.description {
            let _ = write!(t, ": {d}");
        }
        t.push('\n');
    }
    for e in catalog.events.iter().filter(|e| e.allows(&purpose.id)) {
        any = true;
        let _ = write!(t, "- events `{}` ({})", e.name, e.category.name());
        if let Some(d) = &e.description {
            let _ = write!(t, ": {d}");
        }
        t.push('\n');
    }
    if !any {
        t.push_str("- none\n");
    }
    let _ = writeln!(t, "Shared with:");
    let recipients: Vec<_> = catalog.recipients.iter().filter(|r| r.purposes.contains(&purpose.id)).collect();
    if recipients.is_empty() {
        t.push_str("- nobody\n");
    }
    for r in recipients {
        let fields: Vec<&str> = r
            .fields
            .iter()
            .filter(|f| catalog.field(f.as_str()).is_some_and(|d| d.allows(&purpose.id)))
            .map(|f| f.as_str())
            .collect();
        let _ = writeln!(t, "- {} ({}): {}", r.name, r.country, fields.join(", "));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::EXAMPLE_CATALOG;

    fn catalog(src: &str) -> Catalog {
        Catalog::from_toml_str(src, "test").unwrap()
    }

    #[test]
    fn the_notice_says_why_what_and_with_whom() {
        let c = catalog(EXAMPLE_CATALOG);
        let text = purpose_notice(&c, c.purpose("marketing").unwrap());
        assert!(text.contains("Why: Send you offers and news"), "{text}");
        assert!(text.contains("Legal basis: your consent, which you can withdraw at any time"));
        assert!(text.contains("Channels: email, sms"));
        assert!(text.contains("- email (contact)") && text.contains("- phone (contact)"));
        assert!(!text.contains("full_name"));
        let fulfilment = purpose_notice(&c, c.purpose("order_fulfilment").unwrap());
        assert!(fulfilment.contains("- ParcelCo GmbH (DE): full_name, shipping_address, phone"), "{fulfilment}");
    }

    #[test]
    fn the_notice_changes_when_the_meaning_changes_and_only_then() {
        let base = catalog(EXAMPLE_CATALOG);
        let marketing = |c: &Catalog| purpose_notice(c, c.purpose("marketing").unwrap());
        // Another purpose's change leaves this notice alone.
        let other = catalog(&EXAMPLE_CATALOG.replace("Deliver what you ordered", "Deliver your order"));
        assert_eq!(marketing(&base), marketing(&other));
        // New wording, or data newly used, is a new notice.
        let reworded = catalog(&EXAMPLE_CATALOG.replace("Send you offers and news", "Send you offers, news and tips"));
        assert_ne!(marketing(&base), marketing(&reworded));
        let more_data = catalog(&EXAMPLE_CATALOG.replace(
            "purposes = [\"account\", \"order_fulfilment\", \"customer_support\", \"legal_accounting\"]",
            "purposes = [\"account\", \"order_fulfilment\", \"customer_support\", \"legal_accounting\", \"marketing\"]",
        ));
        assert_ne!(marketing(&base), marketing(&more_data));
    }
}
