//! The declared purpose of a request, checked against the catalog before any decision.
//!
//! A request acts under one declared purpose, named in the `Candor-Purpose` header. Whether the
//! token's role may act under it, and what it may then see and do, is decided by the policy
//! engine (`candor-policy`); this module only says whether the purpose and role exist at all.

use crate::catalog::{Catalog, Purpose};

/// Why a request may not act under the purpose it declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenied {
    #[error("this request reads or changes personal data: declare why in the Candor-Purpose header")]
    PurposeRequired,
    #[error("purpose `{0}` is not declared in the catalog")]
    UnknownPurpose(String),
    #[error("the token's role `{0}` is no longer declared in the catalog")]
    UnknownRole(String),
    #[error("role `{role}` may not act under purpose `{purpose}`")]
    PurposeNotAllowed { role: String, purpose: String },
    #[error("purpose `{0}` is based on consent, and this customer has not given it")]
    ConsentRequired(String),
    #[error("refused by policy `{policy}`{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    PolicyForbids { policy: String, reason: Option<String> },
}

/// The declared purpose, if it is declared, and the role exists.
pub fn declared_purpose<'c>(
    catalog: &'c Catalog,
    role: &str,
    purpose: Option<&str>,
) -> Result<&'c Purpose, AccessDenied> {
    let purpose = purpose.map(str::trim).filter(|p| !p.is_empty()).ok_or(AccessDenied::PurposeRequired)?;
    let Some(declared) = catalog.purpose(purpose) else {
        return Err(AccessDenied::UnknownPurpose(purpose.chars().take(64).collect()));
    };
    if !catalog.is_known_role(role) {
        return Err(AccessDenied::UnknownRole(role.to_string()));
    }
    Ok(declared)
}

/// Shortest and longest break-glass reason, in characters.
pub const MIN_BREAK_GLASS_REASON: usize = 20;
pub const MAX_BREAK_GLASS_REASON: usize = 500;

/// Reasons that say nothing about the emergency, refused however they are spelled.
const BOILERPLATE: [&str; 12] = [
    "emergency",
    "urgent",
    "break glass",
    "breakglass",
    "needed",
    "need access",
    "access needed",
    "customer request",
    "test",
    "testing",
    "n a",
    "na",
];

/// Checks a break-glass reason: written by a person, saying what the emergency is. At least
/// 20 characters and four different words, no control characters, not boilerplate (such as
/// "urgent urgent urgent" or "emergency access needed").
pub fn check_break_glass_reason(reason: Option<&str>) -> Result<&str, String> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty()).ok_or("is required: say what the emergency is")?;
    let chars = reason.chars().count();
    if !(MIN_BREAK_GLASS_REASON..=MAX_BREAK_GLASS_REASON).contains(&chars) {
        return Err(format!(
            "must be {MIN_BREAK_GLASS_REASON} to {MAX_BREAK_GLASS_REASON} characters: say what the emergency is"
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    let words: Vec<String> =
        reason.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    let mut distinct: Vec<&str> = words.iter().map(String::as_str).filter(|w| w.chars().count() >= 2).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let meaningful: Vec<&str> =
        distinct.iter().copied().filter(|w| !BOILERPLATE.iter().any(|b| b.split(' ').any(|bw| bw == *w))).collect();
    if distinct.len() < 4 || meaningful.len() < 3 {
        return Err(
            "must describe the emergency in your own words (four or more different words), not boilerplate".into()
        );
    }
    Ok(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::EXAMPLE_CATALOG;

    #[test]
    fn the_purpose_must_be_declared_and_the_role_known() {
        let c = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap();
        assert_eq!(declared_purpose(&c, "shop_backend", Some("account")).unwrap().id.as_str(), "account");
        let denied = |role: &str, purpose: Option<&str>| declared_purpose(&c, role, purpose).unwrap_err();
        assert_eq!(denied("shop_backend", None), AccessDenied::PurposeRequired);
        assert_eq!(denied("shop_backend", Some(" ")), AccessDenied::PurposeRequired);
        assert_eq!(denied("shop_backend", Some("resale")), AccessDenied::UnknownPurpose("resale".into()));
        assert_eq!(denied("gone", Some("account")), AccessDenied::UnknownRole("gone".into()));
    }

    #[test]
    fn break_glass_reasons_must_say_what_the_emergency_is() {
        let ok = "Customer locked out, fraud team confirmed takeover on call #4411";
        assert_eq!(check_break_glass_reason(Some(ok)), Ok(ok));
        for bad in [
            None,
            Some("   "),
            Some("urgent"),
            Some("urgent urgent urgent urgent"),
            Some("emergency access needed urgent test"),
            Some("break glass break glass break glass"),
            Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            Some("Customer locked out\u{7} fraud confirmed on call"),
        ] {
            assert!(check_break_glass_reason(bad).is_err(), "{bad:?}");
        }
        assert!(check_break_glass_reason(Some(&"word ".repeat(200))).is_err(), "too long");
    }
}
