//! Purpose-based access decisions, derived from the catalog.
//!
//! A request acts under one declared purpose. The token's role must be allowed that purpose;
//! only fields and event types declared for the purpose may be read or written under it; a
//! consent-based purpose additionally needs the customer's active consent.
//! (The full policy engine with masking and break-glass builds on this.)

use crate::catalog::{ADMIN_ROLE, Catalog, EventDecl, FieldDecl, Purpose};

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
}

/// Checks that `role` may act under the declared `purpose` and returns the purpose.
pub fn authorize_purpose<'c>(
    catalog: &'c Catalog,
    role: &str,
    purpose: Option<&str>,
) -> Result<&'c Purpose, AccessDenied> {
    let purpose = purpose.map(str::trim).filter(|p| !p.is_empty()).ok_or(AccessDenied::PurposeRequired)?;
    let Some(declared) = catalog.purpose(purpose) else {
        return Err(AccessDenied::UnknownPurpose(purpose.chars().take(64).collect()));
    };
    let allowed = if role == ADMIN_ROLE {
        false
    } else {
        let r = catalog.role(role).ok_or_else(|| AccessDenied::UnknownRole(role.to_string()))?;
        r.purposes.contains(&declared.id)
    };
    if !allowed {
        return Err(AccessDenied::PurposeNotAllowed { role: role.to_string(), purpose: purpose.to_string() });
    }
    Ok(declared)
}

/// Consent gate for one customer: a consent-based purpose needs `consent_given`.
pub fn require_consent(purpose: &Purpose, consent_given: bool) -> Result<(), AccessDenied> {
    if purpose.needs_consent() && !consent_given {
        return Err(AccessDenied::ConsentRequired(purpose.id.to_string()));
    }
    Ok(())
}

/// Splits the declared fields into those `purpose` may touch and those it may not.
pub fn fields_for<'c>(catalog: &'c Catalog, purpose: &Purpose) -> (Vec<&'c FieldDecl>, Vec<&'c FieldDecl>) {
    catalog.fields.iter().partition(|f| f.allows(&purpose.id))
}

/// Splits the declared event types into those `purpose` may touch and those it may not.
pub fn events_for<'c>(catalog: &'c Catalog, purpose: &Purpose) -> (Vec<&'c EventDecl>, Vec<&'c EventDecl>) {
    catalog.events.iter().partition(|e| e.allows(&purpose.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::EXAMPLE_CATALOG;

    fn catalog() -> Catalog {
        Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap()
    }

    #[test]
    fn a_role_acts_only_under_its_purposes() {
        let c = catalog();
        assert_eq!(authorize_purpose(&c, "shop_backend", Some("account")).unwrap().id.as_str(), "account");
        let denied = |role: &str, purpose: Option<&str>| authorize_purpose(&c, role, purpose).unwrap_err();
        assert_eq!(
            denied("support_agent", Some("account")),
            AccessDenied::PurposeNotAllowed { role: "support_agent".into(), purpose: "account".into() }
        );
        assert_eq!(denied("shop_backend", None), AccessDenied::PurposeRequired);
        assert_eq!(denied("shop_backend", Some(" ")), AccessDenied::PurposeRequired);
        assert_eq!(denied("shop_backend", Some("resale")), AccessDenied::UnknownPurpose("resale".into()));
        assert_eq!(denied("gone", Some("account")), AccessDenied::UnknownRole("gone".into()));
    }

    #[test]
    fn the_admin_role_sees_no_personal_data() {
        let c = catalog();
        for p in &c.purposes {
            assert!(authorize_purpose(&c, ADMIN_ROLE, Some(p.id.as_str())).is_err());
        }
    }

    #[test]
    fn consent_purposes_are_off_until_granted() {
        let c = catalog();
        let marketing = c.purpose("marketing").unwrap();
        assert_eq!(require_consent(marketing, false), Err(AccessDenied::ConsentRequired("marketing".into())));
        assert!(require_consent(marketing, true).is_ok());
        assert!(require_consent(c.purpose("account").unwrap(), false).is_ok());
    }

    #[test]
    fn a_purpose_sees_exactly_its_declared_fields() {
        let c = catalog();
        let (allowed, withheld) = fields_for(&c, c.purpose("account").unwrap());
        let names: Vec<_> = allowed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["email", "full_name", "date_of_birth", "loyalty_points", "shop_preferences"]);
        assert_eq!(withheld.len(), c.fields.len() - allowed.len());
        let (events, _) = events_for(&c, c.purpose("analytics").unwrap());
        assert_eq!(events.len(), 1);
    }
}
