//! `GET /console/log`: the tamper-evident log as an auditor reads it.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;

use super::{Person, brand, person, refused};
use crate::AppState;
use crate::pages::render;

/// Most log entries one page of the console's log view looks through.
const LOG_WINDOW: u64 = 1000;

#[derive(Deserialize, Default)]
pub struct LogQuery {
    /// Look at entries before this index (default: the end of the log).
    before: Option<u64>,
    action: Option<String>,
    role: Option<String>,
    /// A staff pseudonym (`stf_…`) or any actor (`staff:stf_…`, a token id, `client:…`).
    actor: Option<String>,
    customer: Option<String>,
}

/// One entry as the log view shows it (names, ids and times only: the log holds no values).
struct ShownEntry {
    index: u64,
    time: String,
    action: String,
    actor: String,
    role: String,
    purpose: String,
    decision: String,
    customers: String,
    fields: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "console_log.html")]
struct LogPage {
    brand: String,
    person: Person,
    /// The latest signed checkpoint, as published, and how many entries it covers.
    checkpoint: String,
    signed: u64,
    /// Entries in the log now.
    size: u64,
    from: u64,
    to: u64,
    filter: LogQuery,
    entries: Vec<ShownEntry>,
    older: Option<String>,
}

impl LogPage {
    fn who(&self) -> Option<&Person> {
        Some(&self.person)
    }
}

/// Whether a log entry matches the view's filters (all given ones; each exact, except the
/// actor, which may be given as the bare pseudonym).
fn matches(entry: &candor_log::entry::LogEntry, q: &LogQuery) -> bool {
    let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    given(&q.action).is_none_or(|a| entry.action == a)
        && given(&q.role).is_none_or(|r| entry.actor.role == r)
        && given(&q.actor).is_none_or(|a| entry.actor.token == a || entry.actor.token == candor_log::actor::staff(&a))
        && given(&q.customer).is_none_or(|c| entry.subjects.contains(&c))
}

/// `GET /console/log`: the log as an auditor reads it (`GET /v1/log/entries`: the admin or a
/// role with `audit = true`; refusals logged), newest first, filtered by action, role, staff
/// pseudonym or customer, a window of entries at a time, with the latest signed checkpoint
/// (entries past it are shown too, marked as not yet signed).
pub async fn log(
    State(state): State<AppState>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Response {
    let (principal, person) = match person(&state, &parts, None).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let filter = query.map(|Query(q)| q).unwrap_or_default();
    if let Err(e) = state.vault.require_audit(&principal).await {
        return refused(&state, Some(person), e.into(), None);
    }
    let checkpoint = match state.vault.latest_checkpoint().await {
        Ok(c) => c,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let signed = checkpoint.lines().nth(1).and_then(|l| l.trim().parse::<u64>().ok()).unwrap_or(0);
    let size = match state.vault.log_size().await {
        Ok(n) => n,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let to = filter.before.unwrap_or(size).min(size);
    let from = to.saturating_sub(LOG_WINDOW);
    let stored = match state.vault.log_entries(from, to).await {
        Ok(e) => e,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let entries = stored
        .iter()
        .rev()
        .filter_map(|e| candor_log::entry::LogEntry::from_bytes(&e.bytes).map(|entry| (e.index, entry)))
        .filter(|(_, entry)| matches(entry, &filter))
        .map(|(index, e)| ShownEntry {
            index,
            time: e.time.clone(),
            action: e.action.clone(),
            actor: e.actor.token.clone(),
            role: e.actor.role.clone(),
            purpose: e.purpose.clone().unwrap_or_default(),
            decision: e.decision.clone().unwrap_or_default(),
            customers: e.subjects.join(", "),
            fields: e.fields.join(", "),
            detail: e.detail.clone().unwrap_or_default(),
        })
        .collect();
    let older = (from > 0).then(|| {
        let mut q = vec![format!("before={from}")];
        for (name, value) in [
            ("action", &filter.action),
            ("role", &filter.role),
            ("actor", &filter.actor),
            ("customer", &filter.customer),
        ] {
            // Names, ids and pseudonyms need no escaping; anything else is no name in the log.
            let plain = |v: &&String| {
                !v.trim().is_empty() && v.trim().chars().all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
            };
            if let Some(v) = value.as_ref().filter(plain) {
                q.push(format!("{name}={}", v.trim()));
            }
        }
        format!("/console/log?{}", q.join("&"))
    });
    render(
        StatusCode::OK,
        &LogPage { brand: brand(&state), person, checkpoint, signed, size, from, to, filter, entries, older },
    )
}
