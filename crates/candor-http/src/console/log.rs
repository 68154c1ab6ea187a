//! `GET /console/log`: the tamper-evident log as an auditor reads it.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;

use super::{Person, auditor, brand, refused};
use crate::AppState;
use crate::error::ApiError;
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
    /// Entries at or after this day (`YYYY-MM-DD`, UTC) or time (RFC 3339).
    since: Option<String>,
    /// Entries on or before this day (`YYYY-MM-DD`, UTC), or before this time (RFC 3339).
    until: Option<String>,
}

/// A time bound of the filter, in milliseconds: a day's start (`since`) or the next day's start
/// (`until`), or the time given. `Ok(None)` when empty.
pub(super) fn bound(field: &'static str, value: Option<&str>, next_day: bool) -> Result<Option<i64>, ApiError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    if let Ok(t) = v.parse::<jiff::Timestamp>() {
        return Ok(Some(t.as_millisecond()));
    }
    let bad = || {
        ApiError::bad_request("invalid_query", format!("`{field}` takes a day (YYYY-MM-DD) or an RFC 3339 time"))
            .with_field(field)
    };
    let day: jiff::civil::Date = v.parse().map_err(|_| bad())?;
    let day = if next_day { day.tomorrow().map_err(|_| bad())? } else { day };
    let t = day.to_zoned(jiff::tz::TimeZone::UTC).map_err(|_| bad())?.timestamp();
    Ok(Some(t.as_millisecond()))
}

/// An entry's time in milliseconds (0 if it has none that parses).
fn entry_millis(e: &candor_log::entry::LogEntry) -> i64 {
    e.time.parse::<jiff::Timestamp>().map_or(0, |t| t.as_millisecond())
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
    /// Every action the log knows, for the filter's menu.
    actions: Vec<&'static str>,
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
fn matches(entry: &candor_log::entry::LogEntry, q: &LogQuery, since: Option<i64>, until: Option<i64>) -> bool {
    let at = entry_millis(entry);
    let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    given(&q.action).is_none_or(|a| entry.action == a)
        && given(&q.role).is_none_or(|r| entry.actor.role == r)
        && given(&q.actor).is_none_or(|a| entry.actor.token == a || entry.actor.token == candor_log::actor::staff(&a))
        && given(&q.customer).is_none_or(|c| entry.subjects.contains(&c))
        && since.is_none_or(|s| at >= s)
        && until.is_none_or(|u| at < u)
}

/// The first index at or after which entries are at or after `until` (entries are appended
/// in time order): a binary search, one entry read per step.
async fn first_at_or_after(state: &AppState, size: u64, until: i64) -> Result<u64, crate::vault::VaultError> {
    let (mut lo, mut hi) = (0, size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let bytes = state.vault.log_entry_bytes(mid, mid + 1).await?;
        let at = bytes.first().and_then(|b| candor_log::entry::LogEntry::from_bytes(b)).map_or(0, |e| entry_millis(&e));
        if at < until {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// `GET /console/log`: the log as an auditor reads it (`GET /v1/log/entries`: the admin or a
/// role with `audit = true`; refusals logged), newest first, filtered by action, role, staff
/// pseudonym, customer or time, a window of entries at a time, with the latest signed checkpoint
/// (entries past it are shown too, marked as not yet signed).
pub async fn log(
    State(state): State<AppState>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Response {
    let filter = query.map(|Query(q)| q).unwrap_or_default();
    let (_, person) = match auditor(&state, &parts, None).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let checkpoint = match state.vault.latest_checkpoint().await {
        Ok(c) => c,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let signed = checkpoint.lines().nth(1).and_then(|l| l.trim().parse::<u64>().ok()).unwrap_or(0);
    let size = match state.vault.log_size().await {
        Ok(n) => n,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let (since, until) =
        match (bound("since", filter.since.as_deref(), false), bound("until", filter.until.as_deref(), true)) {
            (Ok(s), Ok(u)) => (s, u),
            (Err(e), _) | (_, Err(e)) => return refused(&state, Some(person), e, Some("/console/log".into())),
        };
    // Up to a time: the window ends where the entries reach it.
    let end = match (filter.before, until) {
        (Some(before), _) => before,
        (None, Some(u)) => match first_at_or_after(&state, size, u).await {
            Ok(i) => i,
            Err(e) => return refused(&state, Some(person), e.into(), None),
        },
        (None, None) => size,
    };
    let to = end.min(size);
    let from = to.saturating_sub(LOG_WINDOW);
    let stored = match state.vault.log_entries(from, to).await {
        Ok(e) => e,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let entries = stored
        .iter()
        .rev()
        .filter_map(|e| candor_log::entry::LogEntry::from_bytes(&e.bytes).map(|entry| (e.index, entry)))
        .filter(|(_, entry)| matches(entry, &filter, since, until))
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
            ("since", &filter.since),
            ("until", &filter.until),
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
        &LogPage {
            brand: brand(&state),
            person,
            checkpoint,
            signed,
            size,
            from,
            to,
            filter,
            actions: candor_log::Action::ALL.iter().map(|a| a.as_str()).collect(),
            entries,
            older,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_bounds_from_its_start_to_the_next_days_start_and_a_time_is_taken_as_it_is() {
        let ms = |t: &str| t.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        assert_eq!(bound("since", Some("2026-12-03"), false).unwrap(), Some(ms("2026-12-03T00:00:00Z")));
        assert_eq!(bound("until", Some("2026-12-03"), true).unwrap(), Some(ms("2026-12-04T00:00:00Z")));
        assert_eq!(bound("until", Some("2026-12-03T10:30:00Z"), true).unwrap(), Some(ms("2026-12-03T10:30:00Z")));
        assert_eq!(bound("since", Some("  "), false).unwrap(), None);
        let e = bound("since", Some("yesterday"), false).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("invalid_query", Some("since")));
    }
}
