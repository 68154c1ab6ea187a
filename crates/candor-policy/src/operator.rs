//! The operator's own policies: parsed, given ids, checked against Candor's schema and the
//! catalog's names. Every error says `file:line:column: message`, so start-up can refuse a bad
//! file in a way an operator can act on.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use candor_core::catalog::{ADMIN_ROLE, CUSTOMER_ROLE, Catalog, Category};
use cedar_policy::{
    Effect, Policy, PolicyId, PolicySet, PrincipalConstraint, ResourceConstraint, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;

use crate::generate::CATALOG_PREFIX;
use crate::{Origin, PolicyInfo};

/// An operator's policy file.
#[derive(Debug, Clone, Copy)]
pub struct OperatorPolicies<'a> {
    /// How errors name the file (its path).
    pub source_name: &'a str,
    pub text: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Everything wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors {
    pub source_name: String,
    pub errors: Vec<PolicyError>,
}

impl PolicyErrors {
    pub(crate) fn single(source_name: &str, line: usize, message: String) -> Self {
        PolicyErrors { source_name: source_name.to_string(), errors: vec![PolicyError { line, column: 1, message }] }
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.source_name, e.line, e.column, e.message)?;
        }
        Ok(())
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// Flattens a Cedar diagnostic (and its related ones) into located messages.
fn located(text: &str, d: &dyn Diagnostic, out: &mut Vec<PolicyError>) {
    let offset = d.labels().and_then(|mut l| l.next()).map(|l| l.offset()).unwrap_or(0);
    let (line, column) = line_col(text, offset);
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        message.push_str(&format!(" ({help})"));
    }
    out.push(PolicyError { line, column, message });
    if let Some(related) = d.related() {
        for r in related {
            located(text, r, out);
        }
    }
}

pub(crate) fn parse(
    op: OperatorPolicies<'_>,
    catalog: &Catalog,
    schema: &Schema,
) -> Result<Vec<(Policy, PolicyInfo)>, PolicyErrors> {
    let fail = |errors: Vec<PolicyError>| PolicyErrors { source_name: op.source_name.to_string(), errors };
    let set = match PolicySet::from_str(op.text) {
        Ok(s) => s,
        Err(e) => {
            let mut errors = Vec::new();
            located(op.text, &e, &mut errors);
            errors.dedup();
            return Err(fail(errors));
        }
    };
    if set.templates().next().is_some() {
        return Err(fail(vec![PolicyError {
            line: 1,
            column: 1,
            message: "policy templates (?principal, ?resource) are not supported; write plain policies".into(),
        }]));
    }
    let mut errors = Vec::new();
    let validation = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    for e in validation.validation_errors() {
        located(op.text, e, &mut errors);
    }

    // Policies in source order: `from_str` names them policy0, policy1, … in order.
    let mut ordered: Vec<&Policy> = set.policies().collect();
    ordered.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX));
    let known = KnownNames::of(catalog);
    let mut seen = HashSet::new();
    let mut from = 0;
    let mut out = Vec::new();
    for p in ordered {
        let text = p.to_string();
        let start = op.text[from..].find(text.trim()).map(|i| from + i).unwrap_or(from);
        from = start + text.trim().len().min(op.text.len() - start);
        let (line, column) = line_col(op.text, start);
        let at = |message: String| PolicyError { line, column, message };
        let id = match p.annotation("id") {
            Some(id) if id.starts_with(CATALOG_PREFIX) => {
                errors.push(at(format!(
                    "policy id `{id}`: ids starting with `{CATALOG_PREFIX}` are reserved for the catalog's policies"
                )));
                continue;
            }
            Some(id) if !seen.insert(id.to_string()) => {
                errors.push(at(format!("policy id `{id}` is used twice")));
                continue;
            }
            Some(id) => id.to_string(),
            None => format!("{}:{line}", op.source_name),
        };
        if let Some(problem) = known.check_scope(p) {
            errors.push(at(problem));
        }
        let info = PolicyInfo {
            id: id.clone(),
            forbid: p.effect() == Effect::Forbid,
            reason: p.annotation("reason").map(str::to_string),
            origin: Origin::File { name: op.source_name.to_string(), line },
        };
        out.push((p.new_id(PolicyId::new(id)), info));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        errors.sort_by_key(|e| (e.line, e.column));
        errors.dedup();
        Err(fail(errors))
    }
}

/// The entity names a policy's scope may mention.
struct KnownNames {
    roles: HashSet<String>,
    fields: HashSet<String>,
    events: HashSet<String>,
    purposes: HashSet<String>,
    categories: HashSet<String>,
}

impl KnownNames {
    fn of(catalog: &Catalog) -> Self {
        KnownNames {
            roles: catalog
                .roles
                .iter()
                .map(|r| r.id.to_string())
                .chain([ADMIN_ROLE.to_string(), CUSTOMER_ROLE.to_string()])
                .collect(),
            fields: catalog.fields.iter().map(|f| f.name.to_string()).collect(),
            events: catalog.events.iter().map(|e| e.name.to_string()).collect(),
            purposes: catalog.purposes.iter().map(|p| p.id.to_string()).collect(),
            categories: Category::ALL.iter().map(|(n, _)| n.to_string()).collect(),
        }
    }

    /// A scope that names an entity the catalog does not declare would silently never match.
    fn check_scope(&self, p: &Policy) -> Option<String> {
        let mut uids = Vec::new();
        match p.principal_constraint() {
            PrincipalConstraint::Eq(u) | PrincipalConstraint::In(u) | PrincipalConstraint::IsIn(_, u) => uids.push(u),
            _ => {}
        }
        match p.resource_constraint() {
            ResourceConstraint::Eq(u) | ResourceConstraint::In(u) | ResourceConstraint::IsIn(_, u) => uids.push(u),
            _ => {}
        }
        for u in uids {
            let ty = u.type_name().to_string();
            let id = u.id().unescaped().to_string();
            let (known, what) = match ty.as_str() {
                "Candor::Role" => (self.roles.contains(&id), "role"),
                "Candor::Field" => (self.fields.contains(&id), "field"),
                "Candor::Event" => (self.events.contains(&id), "event type"),
                "Candor::Purpose" => (self.purposes.contains(&id), "purpose"),
                "Candor::Category" => (self.categories.contains(&id), "category"),
                _ => (true, ""),
            };
            if !known {
                return Some(format!("{what} `{id}` is not declared in the catalog, so this policy would never apply"));
            }
        }
        None
    }
}
