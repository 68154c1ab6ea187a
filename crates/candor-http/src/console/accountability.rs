//! `GET /console/accountability`: what an auditor checks, in one place — the log (its latest
//! signed checkpoint, and on request the whole log checked from inside, as `candor log verify`
//! checks it), the installation's own findings (`candor doctor`) and key status, and for the
//! admin the tokens and the staff role mapping in effect.
//!
//! For the admin and roles with `audit = true` only (others get 403 and no link, the refusal
//! logged as `GET /v1/log/entries`'s is). Listing tokens is `GET /v1/tokens` (admin only,
//! logged `token.list`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use candor_core::catalog::ADMIN_ROLE;
use serde::Deserialize;

use super::{Person, auditor, brand, refused};
use crate::AppState;
use crate::pages::render;
use crate::settings::FindingLevel;

#[derive(Deserialize, Default)]
pub struct AccountabilityQuery {
    /// `1`: check the whole log now.
    verify: Option<String>,
}

/// The outcome of checking the log, as the page says it.
struct Checked {
    passed: bool,
    lines: Vec<String>,
}

/// One token as the admin's list shows it (never its secret: only its id).
struct ShownToken {
    id: String,
    role: String,
    description: String,
    created: String,
    expires: String,
    state: &'static str,
}

#[derive(Template)]
#[template(path = "console_accountability.html")]
struct AccountabilityPage {
    brand: String,
    person: Person,
    entries: u64,
    signed: u64,
    checkpoint: String,
    /// Where verifiers reach this server (`candor log verify --url`).
    public_base: String,
    checked: Option<Checked>,
    /// (level tag, finding), when the installation reports on itself.
    findings: Option<Vec<(&'static str, String)>>,
    keys: Vec<String>,
    /// The admin's extras: tokens, and `[staff.roles]` / `[staff.clients]`.
    tokens: Option<Vec<ShownToken>>,
    staff_roles: Vec<(String, String)>,
    staff_clients: Vec<(String, String)>,
}

impl AccountabilityPage {
    fn who(&self) -> Option<&Person> {
        Some(&self.person)
    }
}

fn checked(check: &candor_vault::LogCheck) -> Checked {
    let mut lines = vec![format!(
        "{} entries read, parsed and hashed again; the latest checkpoint covers {}.",
        check.entries, check.checkpoint_size
    )];
    lines.push(if check.signature_ok {
        "The checkpoint's signature verifies with the log key.".into()
    } else {
        "The checkpoint's signature does NOT verify with the log key.".into()
    });
    lines.push(if check.checkpoint_matches {
        "The entries it covers hash to the root it signs.".into()
    } else {
        "The entries do NOT hash to the root the checkpoint signs: entries were changed, removed or added.".into()
    });
    lines.push(if check.head_matches {
        "All entries hash to the tree the server proves inclusion against.".into()
    } else {
        "The entries do NOT hash to the tree the server keeps: its proofs are not of these entries.".into()
    });
    match check.map_matches {
        Some(true) => lines.push("Every customer's history rebuilt from the entries makes the completeness map it commits to.".into()),
        Some(false) => lines.push(
            "The customers' histories rebuilt from the entries do NOT make the completeness map the checkpoint commits to.".into(),
        ),
        None => lines.push("The checkpoint commits to no completeness map.".into()),
    }
    if !check.altered.is_empty() {
        let at: Vec<String> = check.altered.iter().map(u64::to_string).collect();
        lines.push(format!("Entries whose bytes do not match their stored hash: {}.", at.join(", ")));
    }
    if !check.malformed.is_empty() {
        let at: Vec<String> = check.malformed.iter().map(u64::to_string).collect();
        lines.push(format!("Entries that are not log entries at all: {}.", at.join(", ")));
    }
    Checked { passed: check.passed(), lines }
}

/// `GET /console/accountability` (`?verify=1` checks the whole log).
pub async fn accountability(
    State(state): State<AppState>,
    query: Result<Query<AccountabilityQuery>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Response {
    let (principal, person) = match auditor(&state, &parts, None).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let checkpoint = match state.vault.latest_checkpoint().await {
        Ok(c) => c,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let signed = checkpoint.lines().nth(1).and_then(|l| l.trim().parse::<u64>().ok()).unwrap_or(0);
    let entries = match state.vault.log_size().await {
        Ok(n) => n,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let checked = match query.verify.as_deref() {
        Some("1") => match state.vault.check_log(&principal).await {
            Ok(c) => Some(checked(&c)),
            Err(e) => return refused(&state, Some(person), e.into(), None),
        },
        _ => None,
    };
    let (findings, keys) = match &state.installation {
        Some(report) => {
            let health = report.health().await;
            let findings = health
                .findings
                .into_iter()
                .map(|(level, what)| {
                    let tag = match level {
                        FindingLevel::Ok => "ok",
                        FindingLevel::Warn => "warning",
                        FindingLevel::Fail => "FAIL",
                    };
                    (tag, what)
                })
                .collect();
            (Some(findings), health.keys)
        }
        None => (None, Vec::new()),
    };
    let admin = principal.role == ADMIN_ROLE;
    let tokens = if admin {
        match state.vault.tokens(&principal).await {
            Ok(list) => Some(
                list.into_iter()
                    .map(|t| ShownToken {
                        state: if t.revoked_at.is_some() {
                            "revoked"
                        } else if t.expires_at.is_some_and(|e| e <= state.vault.now_millis()) {
                            "expired"
                        } else {
                            "active"
                        },
                        id: t.id,
                        role: t.role,
                        description: t.description,
                        created: crate::clock::utc_second(t.created_at),
                        expires: t.expires_at.map(crate::clock::utc_second).unwrap_or_else(|| "never".into()),
                    })
                    .collect(),
            ),
            Err(e) => return refused(&state, Some(person), e.into(), None),
        }
    } else {
        None
    };
    let (staff_roles, staff_clients) = match (&state.staff, admin) {
        (Some(staff), true) => {
            let (roles, clients) = staff.role_mapping();
            let pairs = |m: &std::collections::BTreeMap<String, String>| {
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()
            };
            (pairs(roles), pairs(clients))
        }
        _ => (Vec::new(), Vec::new()),
    };
    render(
        StatusCode::OK,
        &AccountabilityPage {
            brand: brand(&state),
            person,
            entries,
            signed,
            checkpoint,
            public_base: state.public_base(),
            checked,
            findings,
            keys,
            tokens,
            staff_roles,
            staff_clients,
        },
    )
}
