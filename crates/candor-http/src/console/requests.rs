//! The privacy-request pages of the staff console: the queue with its legal deadlines.

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use super::{Person, RecordQuery, brand, person, refused};
use crate::AppState;
use crate::error::ApiError;
use crate::pages::render;
use crate::sign_in::field;
use crate::vault::{Authorized, Principal};

/// One open request as the queue shows it.
struct QueuedRequest {
    id: String,
    subject: String,
    kind: String,
    received: String,
    due: String,
    /// "overdue by N days" or "N days left".
    left: String,
    overdue: bool,
    /// Another open request of the same kind from the same customer.
    duplicate: bool,
}

#[derive(Template)]
#[template(path = "console_requests.html")]
struct RequestsPage {
    brand: String,
    person: Person,
    purpose: String,
    requests: Vec<QueuedRequest>,
    done: Option<String>,
}

impl RequestsPage {
    fn who(&self) -> Option<&Person> {
        Some(&self.person)
    }
}

/// The purpose the role answers privacy requests under (one declared `customer_requests`).
pub(super) fn requests_purpose(state: &AppState, role: &str) -> Option<String> {
    let catalog = state.vault.catalog();
    let role = catalog.roles.iter().find(|r| r.id.as_str() == role)?;
    role.purposes
        .iter()
        .find(|p| catalog.purposes.iter().any(|d| d.id == **p && d.customer_requests))
        .map(|p| p.to_string())
}

/// The person authorized under the purpose their role answers privacy requests under, or the
/// page saying their role answers none.
async fn requests_auth(
    state: &AppState,
    principal: Principal,
    person: Person,
) -> Result<(Authorized, Person), Response> {
    let Some(purpose) = requests_purpose(state, &person.role) else {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "purpose_not_allowed",
            format!("the role `{}` answers no privacy requests", person.role),
        );
        return Err(refused(state, Some(person), e, None));
    };
    match state.vault.authorize(principal, Some(&purpose), None).await {
        Ok(auth) => Ok((auth, person)),
        Err(e) => Err(refused(state, Some(person), e.into(), None)),
    }
}

/// The queue's order and flags: overdue first, then by deadline; a second open request of the
/// same kind from the same customer is marked. `now` is Candor's clock (ms).
fn queue(mut open: Vec<candor_vault::Request>, now: i64) -> Vec<QueuedRequest> {
    open.sort_by_key(|r| (r.due_at, r.received_at));
    let mut seen = std::collections::HashMap::new();
    for r in &open {
        *seen.entry((r.subject_id.clone(), r.kind.clone())).or_insert(0u32) += 1;
    }
    const DAY: i64 = 24 * 60 * 60 * 1000;
    open.into_iter()
        .map(|r| {
            let overdue = r.due_at <= now;
            let left = if overdue {
                format!("overdue by {} days", (now - r.due_at).div_euclid(DAY))
            } else {
                format!("{} days left", (r.due_at - now).div_euclid(DAY))
            };
            QueuedRequest {
                duplicate: seen.get(&(r.subject_id.clone(), r.kind.clone())).is_some_and(|n| *n > 1),
                id: r.id,
                subject: r.subject_id,
                kind: r.kind,
                received: crate::clock::utc_second(r.received_at),
                due: crate::clock::utc_second(r.due_at),
                left,
                overdue,
            }
        })
        .collect()
}

/// `GET /console/requests`: the open privacy requests with their legal deadlines, overdue
/// first — `GET /v1/requests?status=open` under the role's `customer_requests` purpose.
pub async fn requests(
    State(state): State<AppState>,
    query: Result<Query<RecordQuery>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Response {
    let (principal, person) = match person(&state, &parts, None).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let done = query.ok().and_then(|Query(q)| q.done).filter(|d| matches!(d.as_str(), "completed" | "rejected"));
    let (auth, person) = match requests_auth(&state, principal, person).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let purpose = auth.purpose.to_string();
    match state.vault.list_requests(&auth, Some("open")).await {
        Ok(open) => {
            let requests = queue(open, crate::clock::now_millis());
            render(StatusCode::OK, &RequestsPage { brand: brand(&state), person, purpose, requests, done })
        }
        Err(e) => refused(&state, Some(person), e.into(), None),
    }
}

/// `POST /console/requests/{id}/close` (form: `csrf`, `status` completed or rejected):
/// `PATCH /v1/requests/{id}`, same rules, same log entry.
pub async fn close_request(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let (principal, person) = match person(&state, &parts, field(&form, "csrf")).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let back = Some("/console/requests".to_string());
    let (auth, person) = match requests_auth(&state, principal, person).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let status = field(&form, "status").unwrap_or("");
    match state.vault.close_request(&auth, &id, status, field(&form, "reason")).await {
        Ok(closed) => Redirect::to(&format!("/console/requests?done={}", closed.status)).into_response(),
        Err(e) => refused(&state, Some(person), e.into(), back),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, subject: &str, kind: &str, received_at: i64, due_at: i64) -> candor_vault::Request {
        candor_vault::Request {
            id: id.into(),
            subject_id: subject.into(),
            kind: kind.into(),
            status: "open".into(),
            received_at,
            due_at,
            created_by: "t".into(),
            closed_at: None,
            closed_by: None,
            assignee: None,
            waiting_since: None,
            paused_ms: 0,
            reason: None,
        }
    }

    #[test]
    fn the_queue_puts_overdue_requests_first_and_marks_duplicates() {
        const DAY: i64 = 24 * 60 * 60 * 1000;
        let now = 100 * DAY;
        let q = queue(
            vec![
                request("later", "a", "access", 95 * DAY, 125 * DAY),
                request("overdue", "b", "erasure", 60 * DAY, 90 * DAY),
                request("again", "a", "access", 99 * DAY, 129 * DAY),
                request("other-kind", "a", "export", 99 * DAY, 129 * DAY),
            ],
            now,
        );
        let order: Vec<&str> = q.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(order, ["overdue", "later", "again", "other-kind"]);
        assert!(q[0].overdue && q[0].left == "overdue by 10 days");
        assert_eq!((q[1].overdue, q[1].left.as_str()), (false, "25 days left"));
        let dup: Vec<bool> = q.iter().map(|r| r.duplicate).collect();
        assert_eq!(dup, [false, true, true, false]);
    }
}
