//! Checking a write (creating a subject or correcting fields) against the catalog and the
//! declared purpose, before anything is encrypted or stored.

use serde_json::{Map, Value};

use crate::catalog::{Catalog, FieldDecl, Purpose};
use crate::value::{self, PersonalValue, ValueError};

/// Whether the write creates a subject or corrects an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Create,
    Correct,
    /// The customer correcting their own data (right to rectification, in the privacy center):
    /// any declared field, under a `customer_requests` purpose that declares none.
    Rectify,
}

/// A write that passed every check: values to set and fields to remove.
#[derive(Debug)]
pub struct CheckedWrite<'c> {
    pub set: Vec<(&'c FieldDecl, PersonalValue)>,
    pub remove: Vec<&'c FieldDecl>,
}

/// Why a write was refused. Field names are echoed (truncated); values never are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("no fields were given")]
    Empty,
    #[error("field `{0}` is not declared in the catalog; Candor stores only declared fields")]
    UndeclaredField(String),
    #[error("field `{field}` may not be written under purpose `{purpose}`")]
    NotAllowed { field: String, purpose: String },
    #[error("field `{field}` {reason}")]
    Invalid { field: String, reason: ValueError },
    #[error("field `{0}` is required")]
    Missing(String),
    #[error(
        "field `{field}` is required, but purpose `{purpose}` may not write it; create customers under a purpose that covers every required field"
    )]
    RequiredOutsidePurpose { field: String, purpose: String },
    #[error("field `{0}` is required and cannot be removed")]
    RequiredRemoval(String),
}

impl WriteError {
    /// The field the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            WriteError::Empty => None,
            WriteError::UndeclaredField(f)
            | WriteError::Missing(f)
            | WriteError::RequiredRemoval(f)
            | WriteError::NotAllowed { field: f, .. }
            | WriteError::Invalid { field: f, .. }
            | WriteError::RequiredOutsidePurpose { field: f, .. } => Some(f),
        }
    }
}

/// Safe to echo: at most 64 characters of a client-supplied field name.
pub fn echo_name(name: &str) -> String {
    name.chars().take(64).collect()
}

/// Checks `fields` (name -> JSON value; `null` removes a field when correcting).
/// Problems are reported one at a time, in field-name order, so the answer is deterministic.
pub fn check_write<'c>(
    catalog: &'c Catalog,
    purpose: &Purpose,
    fields: &Map<String, Value>,
    mode: WriteMode,
) -> Result<CheckedWrite<'c>, WriteError> {
    if fields.is_empty() {
        return Err(WriteError::Empty);
    }
    let mut names: Vec<&String> = fields.keys().collect();
    names.sort();
    let mut checked = CheckedWrite { set: Vec::new(), remove: Vec::new() };
    for name in names {
        let value = &fields[name.as_str()];
        let decl = catalog.field(name).ok_or_else(|| WriteError::UndeclaredField(echo_name(name)))?;
        let rectifying = mode == WriteMode::Rectify && purpose.customer_requests;
        if !(decl.allows(&purpose.id) || rectifying) {
            return Err(WriteError::NotAllowed { field: name.clone(), purpose: purpose.id.to_string() });
        }
        if value.is_null() && mode != WriteMode::Create {
            if decl.required {
                return Err(WriteError::RequiredRemoval(name.clone()));
            }
            checked.remove.push(decl);
            continue;
        }
        let v = value::validate(decl.field_type, value)
            .map_err(|reason| WriteError::Invalid { field: name.clone(), reason })?;
        checked.set.push((decl, v));
    }
    if mode == WriteMode::Create {
        for decl in catalog.fields.iter().filter(|f| f.required) {
            if !fields.contains_key(decl.name.as_str()) {
                if !decl.allows(&purpose.id) {
                    return Err(WriteError::RequiredOutsidePurpose {
                        field: decl.name.to_string(),
                        purpose: purpose.id.to_string(),
                    });
                }
                return Err(WriteError::Missing(decl.name.to_string()));
            }
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::catalog::EXAMPLE_CATALOG;

    fn check(purpose: &str, v: Value, mode: WriteMode) -> Result<(usize, usize), WriteError> {
        let c = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap();
        let p = c.purpose(purpose).unwrap().clone();
        check_write(&c, &p, v.as_object().unwrap(), mode).map(|w| (w.set.len(), w.remove.len()))
    }

    #[test]
    fn a_valid_create_passes() {
        let v = json!({"email": "ada@example.com", "full_name": "Ada", "date_of_birth": "1990-01-02"});
        assert_eq!(check("account", v, WriteMode::Create), Ok((3, 0)));
    }

    #[test]
    fn customers_rectify_any_declared_field_but_only_under_a_customer_requests_purpose() {
        let v = json!({"phone": "+442079460000", "date_of_birth": "1990-01-02", "loyalty_points": null});
        assert_eq!(check("privacy_requests", v.clone(), WriteMode::Rectify), Ok((2, 1)));
        assert_eq!(
            check("privacy_requests", v.clone(), WriteMode::Correct),
            Err(WriteError::NotAllowed { field: "date_of_birth".into(), purpose: "privacy_requests".into() })
        );
        assert!(check("account", v, WriteMode::Rectify).is_err(), "not a customer_requests purpose");
        let e = check("privacy_requests", json!({"email": null}), WriteMode::Rectify);
        assert_eq!(e, Err(WriteError::RequiredRemoval("email".into())));
        let e = check("privacy_requests", json!({"shoe_size": 1}), WriteMode::Rectify);
        assert_eq!(e, Err(WriteError::UndeclaredField("shoe_size".into())));
    }

    #[test]
    fn undeclared_disallowed_invalid_and_missing_fields_are_named() {
        let e = check("account", json!({"email": "a@x.io", "full_name": "A", "shoe_size": 42}), WriteMode::Create);
        assert_eq!(e, Err(WriteError::UndeclaredField("shoe_size".into())));
        let e =
            check("account", json!({"email": "a@x.io", "full_name": "A", "phone": "+4420794600"}), WriteMode::Create);
        assert_eq!(e, Err(WriteError::NotAllowed { field: "phone".into(), purpose: "account".into() }));
        let e = check("account", json!({"email": "nope", "full_name": "A"}), WriteMode::Create).unwrap_err();
        assert_eq!(e.field(), Some("email"));
        let e = check("account", json!({"email": "a@x.io"}), WriteMode::Create);
        assert_eq!(e, Err(WriteError::Missing("full_name".into())));
        let e = check("order_fulfilment", json!({"phone": "+442079460000"}), WriteMode::Create).unwrap_err();
        assert_eq!(e.field(), Some("email"));
        assert_eq!(check("account", json!({}), WriteMode::Create), Err(WriteError::Empty));
    }

    #[test]
    fn corrections_may_remove_optional_fields_only() {
        assert_eq!(check("account", json!({"date_of_birth": null}), WriteMode::Correct), Ok((0, 1)));
        assert_eq!(
            check("account", json!({"email": null}), WriteMode::Correct),
            Err(WriteError::RequiredRemoval("email".into()))
        );
        assert_eq!(check("account", json!({"email": "new@x.io"}), WriteMode::Correct), Ok((1, 0)));
    }

    #[test]
    fn long_undeclared_names_are_truncated_when_echoed() {
        let long = "x".repeat(500);
        let e = check("account", json!({ long.clone(): 1 }), WriteMode::Correct).unwrap_err();
        assert_eq!(e.field().unwrap().len(), 64);
    }
}
