//! The notice of a purpose, generated from the catalog: what a customer is told when they are
//! asked for consent. Its hash is the *notice version* a consent is recorded against, so a
//! change of what the purpose means (its description, the data it uses, who receives it) is a
//! new version, and consents given on the old one can be asked again.

use std::fmt::Write;

use crate::catalog::{Catalog, LegalBasis, Purpose};
use crate::privacy_notice::{category_label, channel_plain, event_history_label, field_label};

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

/// The notice of `purpose` as a customer reads it where they choose, beneath the purpose's
/// description: the same facts as [`purpose_notice`] in the public notice's words (data by
/// label, categories and channels in words). [`purpose_notice`]'s text is what is hashed into
/// the notice version and keeps the catalog's names; this is only how it is shown.
pub fn purpose_notice_plain(catalog: &Catalog, purpose: &Purpose) -> String {
    let lower_first = |s: &str| -> String {
        let mut c = s.chars();
        c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
    };
    let mut t = String::new();
    let _ = writeln!(t, "Legal basis: {}.", purpose.legal_basis.plain());
    if !purpose.channels.is_empty() {
        let ways: Vec<&str> = purpose.channels.iter().map(|c| channel_plain(*c)).collect();
        let _ = writeln!(t, "How we would contact you: {}.", ways.join(", "));
    }
    let mut data = Vec::new();
    for f in catalog.fields.iter().filter(|f| f.allows(&purpose.id)) {
        let item = field_label(catalog, f.name.as_str());
        data.push((item, f.category, f.description.as_deref()));
    }
    for e in catalog.events.iter().filter(|e| e.allows(&purpose.id)) {
        data.push((event_history_label(e.name.as_str()), e.category, e.description.as_deref()));
    }
    if data.is_empty() {
        t.push_str("Data used: none.\n");
    } else {
        t.push_str("Data used:\n");
        for (item, category, description) in data {
            let _ = write!(t, "- {item} ({})", lower_first(category_label(category)));
            if let Some(d) = description {
                let _ = write!(t, ": {d}");
            }
            t.push('\n');
        }
    }
    let recipients: Vec<_> = catalog.recipients.iter().filter(|r| r.purposes.contains(&purpose.id)).collect();
    if recipients.is_empty() {
        t.push_str("Shared with: nobody.\n");
    } else {
        t.push_str("Shared with:\n");
        for r in recipients {
            let fields: Vec<String> = r
                .fields
                .iter()
                .filter(|f| catalog.field(f.as_str()).is_some_and(|d| d.allows(&purpose.id)))
                .map(|f| field_label(catalog, f.as_str()))
                .collect();
            let _ = writeln!(t, "- {} ({}): {}", r.name, r.country, fields.join(", "));
        }
    }
    let _ = writeln!(
        t,
        "Responsible: {} (privacy contact: {}).",
        catalog.organisation.name, catalog.organisation.privacy_contact
    );
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
    fn the_hashed_notice_text_stays_exactly_as_it_was() {
        // Its hash is the notice version consents are recorded on: a change here would ask every
        // customer to agree again. How it is shown (`purpose_notice_plain`) may change freely.
        let c = catalog(EXAMPLE_CATALOG);
        assert_eq!(
            purpose_notice(&c, c.purpose("marketing").unwrap()),
            "Controller: Example Shop Ltd (privacy contact: privacy@shop.example)\n\
             Purpose: marketing\n\
             Why: Send you offers and news, only if you asked for them.\n\
             Legal basis: your consent, which you can withdraw at any time\n\
             Channels: email, sms\n\
             Data used:\n\
             - email (contact)\n\
             - phone (contact)\n\
             Shared with:\n\
             - nobody\n"
        );
        assert_eq!(
            purpose_notice(&c, c.purpose("analytics").unwrap()),
            "Controller: Example Shop Ltd (privacy contact: privacy@shop.example)\n\
             Purpose: analytics\n\
             Why: Understand how the shop is used so we can improve it, only if you agree.\n\
             Legal basis: your consent, which you can withdraw at any time\n\
             Data used:\n\
             - events `page_view` (behavioural): Pages you viewed in the shop.\n\
             Shared with:\n\
             - nobody\n"
        );
    }

    #[test]
    fn the_shown_notice_says_the_same_in_the_public_notices_words() {
        let c = catalog(EXAMPLE_CATALOG);
        let marketing = purpose_notice_plain(&c, c.purpose("marketing").unwrap());
        assert_eq!(
            marketing,
            "Legal basis: your consent, which you can withdraw at any time.\n\
             How we would contact you: e-mail, text message (SMS).\n\
             Data used:\n\
             - E-mail address (how to reach you)\n\
             - Phone number (how to reach you)\n\
             Shared with: nobody.\n\
             Responsible: Example Shop Ltd (privacy contact: privacy@shop.example).\n"
        );
        let analytics = purpose_notice_plain(&c, c.purpose("analytics").unwrap());
        assert!(
            analytics.contains("- Page view history (how you use our services): Pages you viewed in the shop."),
            "{analytics}"
        );
        let fulfilment = purpose_notice_plain(&c, c.purpose("order_fulfilment").unwrap());
        assert!(fulfilment.contains("- ParcelCo GmbH (DE): Full name, Shipping address, Phone number"), "{fulfilment}");
        // No catalog name, category name or markup reaches the customer.
        for p in &c.purposes {
            let shown = purpose_notice_plain(&c, p);
            assert!(!shown.contains('`') && !shown.contains('_') && !shown.contains("Purpose:"), "{shown}");
            for name in c.fields.iter().map(|f| f.name.as_str()).chain(c.events.iter().map(|e| e.name.as_str())) {
                assert!(!shown.contains(&format!("- {name}")), "{name} in {shown}");
            }
            for (category, _) in crate::catalog::Category::ALL {
                assert!(!shown.contains(&format!("({category})")), "{category} in {shown}");
            }
        }
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
