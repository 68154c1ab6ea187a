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
}
