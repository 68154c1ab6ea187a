//! The privacy-request pages of the staff console: the queue with its legal deadlines, and one
//! request's page, from which the privacy team answers it.
//!
//! Each page and form is the API call it mirrors, under the role's `customer_requests` purpose:
//! the queue is `GET /v1/requests?status=open` (`request.list`), a request's page
//! `GET /v1/requests/{id}` (`request.read`), its forms `PATCH /v1/requests/{id}`
//! (`request.update`, `request.close`), and answering it `GET /v1/subjects/{id}/report` or
//! `/export` (`subject.report`, `subject.export`), `POST /v1/subjects/{id}/restriction`
//! (`subject.restrict`) or the erasure form of the customer's record (`subject.erase`).

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use candor_core::SubjectId;
use candor_core::rights::{REFUSAL_REASONS, refusal_reason};
use candor_vault::RequestUpdate;
use serde::Deserialize;

use super::{ERASE_CONFIRMATION, Person, RecordQuery, brand, person, refused};
use crate::AppState;
use crate::error::ApiError;
use crate::pages::render;
use crate::sign_in::field;
use crate::vault::{Authorized, Principal};

const DAY: i64 = 24 * 60 * 60 * 1000;

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
    /// "you", "nobody" or who has it.
    assignee: String,
    /// Its clock is stopped: waiting for the customer's proof of identity.
    waiting: bool,
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
pub(super) async fn requests_auth(
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

/// Who has a request, as the signed-in person reads it.
fn assignee_shown(assignee: Option<&str>, me: &str) -> String {
    match assignee {
        None => "nobody".into(),
        Some(a) if a == me => "you".into(),
        Some(a) => a.trim_start_matches("staff:").to_string(),
    }
}

/// Where a request stands against its deadline at `now`: (text, overdue).
fn standing(r: &candor_vault::Request, now: i64) -> (String, bool) {
    if r.waiting_since.is_some() {
        return ("clock stopped: waiting for proof of identity".into(), false);
    }
    if r.due_at <= now {
        (format!("overdue by {} days", (now - r.due_at).div_euclid(DAY)), true)
    } else {
        (format!("{} days left", (r.due_at - now).div_euclid(DAY)), false)
    }
}

/// The signed-in person behind a request page or form (a form's anti-forgery token `csrf`
/// checked), authorized under the purpose their role answers privacy requests under.
pub(super) async fn requests_person(
    state: &AppState,
    parts: &Parts,
    csrf: Option<&str>,
) -> Result<(Authorized, Person), Response> {
    let (principal, person) = person(state, parts, csrf).await?;
    requests_auth(state, principal, person).await
}

/// The queue's order and flags: overdue first, then by deadline; a second open request of the
/// same kind from the same customer is marked. `now` is Candor's clock (ms); `me` the
/// signed-in person's actor.
fn queue(mut open: Vec<candor_vault::Request>, now: i64, me: &str) -> Vec<QueuedRequest> {
    open.sort_by_key(|r| (!standing(r, now).1, r.due_at, r.received_at));
    let mut seen = std::collections::HashMap::new();
    for r in &open {
        *seen.entry((r.subject_id.clone(), r.kind.clone())).or_insert(0u32) += 1;
    }
    open.into_iter()
        .map(|r| {
            let (left, overdue) = standing(&r, now);
            QueuedRequest {
                duplicate: seen.get(&(r.subject_id.clone(), r.kind.clone())).is_some_and(|n| *n > 1),
                assignee: assignee_shown(r.assignee.as_deref(), me),
                waiting: r.waiting_since.is_some(),
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
    let done = query.ok().and_then(|Query(q)| q.done).filter(|d| matches!(d.as_str(), "completed" | "rejected"));
    let (auth, person) = match requests_person(&state, &parts, None).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let purpose = auth.purpose.to_string();
    match state.vault.list_requests(&auth, Some("open")).await {
        Ok(open) => {
            let requests = queue(open, state.vault.now_millis(), &auth.principal.token_id);
            render(StatusCode::OK, &RequestsPage { brand: brand(&state), person, purpose, requests, done })
        }
        Err(e) => refused(&state, Some(person), e.into(), None),
    }
}

/// `POST /console/requests/{id}/close` (form: `csrf`, `status` completed or rejected, and a
/// refusal's `reason` code): `PATCH /v1/requests/{id}`, same rules, same log entry.
pub async fn close_request(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let back = Some(request_path(&id, None));
    let (auth, person) = match requests_person(&state, &parts, field(&form, "csrf")).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let status = field(&form, "status").unwrap_or("");
    match state.vault.close_request(&auth, &id, status, field(&form, "reason")).await {
        Ok(closed) => Redirect::to(&format!("/console/requests?done={}", closed.status)).into_response(),
        Err(e) => refused(&state, Some(person), e.into(), back),
    }
}

/// A request page's address (`id` is only ever put in a path once the vault found it, or as
/// typed into one by the person: askama escapes it in the page).
fn request_path(id: &str, done: Option<&str>) -> String {
    let id: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    match done {
        Some(d) => format!("/console/requests/{id}?done={d}"),
        None => format!("/console/requests/{id}"),
    }
}

/// One request as its page shows it.
#[derive(Template)]
#[template(path = "console_request.html")]
struct RequestPage {
    brand: String,
    person: Person,
    purpose: String,
    id: String,
    kind: String,
    subject: String,
    open: bool,
    received: String,
    due: String,
    left: String,
    overdue: bool,
    waiting_since: Option<String>,
    paused_days: i64,
    assignee: String,
    assigned_to_me: bool,
    /// How it was closed: (status, when, reason's text).
    closed: Option<(String, String, Option<String>)>,
    reasons: Vec<(&'static str, &'static str)>,
    confirmation: &'static str,
    done: Option<String>,
}

impl RequestPage {
    fn who(&self) -> Option<&Person> {
        Some(&self.person)
    }
}

/// What a `done=` after a form may say on the request's page.
const DONE: [&str; 6] = ["assigned", "released", "waiting", "resumed", "restricted", "already_restricted"];

/// `GET /console/requests/{id}`: one request, read as `GET /v1/requests/{id}` (logged
/// `request.read`), with the forms that answer it.
pub async fn request_page(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    query: Result<Query<RecordQuery>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Response {
    let done = query.ok().and_then(|Query(q)| q.done).filter(|d| DONE.contains(&d.as_str()));
    let (auth, person) = match requests_person(&state, &parts, None).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let r = match state.vault.request(&auth, &id).await {
        Ok(r) => r,
        Err(e) => return refused(&state, Some(person), e.into(), Some("/console/requests".into())),
    };
    let now = state.vault.now_millis();
    let (left, overdue) = standing(&r, now);
    let me = auth.principal.token_id.as_str();
    let closed = (r.status != "open").then(|| {
        let reason = r.reason.as_deref().map(|c| format!("{c}: {}", refusal_reason(c).unwrap_or_default()));
        (r.status.clone(), r.closed_at.map(crate::clock::utc_second).unwrap_or_default(), reason)
    });
    let page = RequestPage {
        brand: brand(&state),
        purpose: auth.purpose.to_string(),
        open: r.status == "open",
        received: crate::clock::utc_second(r.received_at),
        due: crate::clock::utc_second(r.due_at),
        left,
        overdue: overdue && r.status == "open",
        waiting_since: r.waiting_since.map(crate::clock::utc_second),
        paused_days: r.paused_ms.div_euclid(DAY),
        assignee: assignee_shown(r.assignee.as_deref(), me),
        assigned_to_me: r.assignee.as_deref() == Some(me),
        closed,
        reasons: REFUSAL_REASONS.to_vec(),
        confirmation: ERASE_CONFIRMATION,
        done,
        person,
        id: r.id,
        kind: r.kind,
        subject: r.subject_id,
    };
    render(StatusCode::OK, &page)
}

/// `POST /console/requests/{id}/update` (form: `csrf` and `assignee` = `me` | `nobody`, or
/// `identity` = `requested` | `proven`): `PATCH /v1/requests/{id}` with that one change.
pub async fn update_request(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let back = Some(request_path(&id, None));
    let (auth, person) = match requests_person(&state, &parts, field(&form, "csrf")).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let update = match (field(&form, "assignee"), field(&form, "identity")) {
        (Some(a), None) => RequestUpdate::parse("assignee", a),
        (None, Some(i)) => RequestUpdate::parse("identity", i),
        _ => Err(candor_vault::VaultError::InvalidInput {
            field: "assignee",
            message: "choose one change: assign, release, or the proof of identity".into(),
        }),
    };
    let done = match &update {
        Ok(RequestUpdate::AssignToMe | RequestUpdate::AssignTo(_)) => "assigned",
        Ok(RequestUpdate::Unassign) => "released",
        Ok(RequestUpdate::IdentityRequested) => "waiting",
        Ok(RequestUpdate::IdentityProven) => "resumed",
        Err(_) => "",
    };
    let result = match update {
        Ok(u) => state.vault.update_request(&auth, &id, u).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(r) => Redirect::to(&request_path(&r.id, Some(done))).into_response(),
        Err(e) => refused(&state, Some(person), e.into(), back),
    }
}

/// The request `id` and its customer, read as the request's page reads it (logged), with the
/// person authorized under the requests purpose for that customer.
async fn request_and_customer(
    state: &AppState,
    parts: &Parts,
    id: &str,
    csrf: Option<&str>,
) -> Result<(Authorized, Person, candor_vault::Request, SubjectId), Response> {
    let (auth, person) = requests_person(state, parts, csrf).await?;
    let back = Some(request_path(id, None));
    let r = match state.vault.request(&auth, id).await {
        Ok(r) => r,
        Err(e) => return Err(refused(state, Some(person), e.into(), Some("/console/requests".into()))),
    };
    let Some(subject) = SubjectId::parse(&r.subject_id) else {
        let e = ApiError::new(StatusCode::NOT_FOUND, "subject_not_found", "the request names no valid customer id");
        return Err(refused(state, Some(person), e, back));
    };
    match state.vault.authorize(auth.principal, Some(auth.purpose.as_str()), Some(subject)).await {
        Ok(auth) => Ok((auth, person, r, subject)),
        Err(e) => Err(refused(state, Some(person), e.into(), back)),
    }
}

#[derive(Deserialize, Default)]
pub struct DownloadQuery {
    /// `json` (default) or `csv`, for the export.
    format: Option<String>,
}

/// `GET /console/requests/{id}/report`: the customer's access report as a file, exactly what
/// `GET /v1/subjects/{id}/report` answers (logged `subject.report`).
pub async fn report(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    parts: Parts,
) -> Response {
    let (auth, person, _, subject) = match request_and_customer(&state, &parts, &id, None).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    match crate::report::report_download(&state.vault, &auth, subject).await {
        Ok(file) => file,
        Err(e) => refused(&state, Some(person), e.into(), Some(request_path(&id, None))),
    }
}

/// `GET /console/requests/{id}/export?format=json|csv`: the customer's export as a file, exactly
/// what `GET /v1/subjects/{id}/export` answers (logged `subject.export`).
pub async fn export(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    query: Result<Query<DownloadQuery>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Response {
    let (auth, person, _, subject) = match request_and_customer(&state, &parts, &id, None).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let csv = match query.map(|Query(q)| q.format).unwrap_or_default().as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            let e = ApiError::bad_request("invalid_query", "format must be `json` or `csv`").with_field("format");
            return refused(&state, Some(person), e, Some(request_path(&id, None)));
        }
    };
    match crate::report::export_response(&state.vault, &auth, subject, csv, true).await {
        Ok(file) => file,
        Err(e) => refused(&state, Some(person), e.into(), Some(request_path(&id, None))),
    }
}

/// `POST /console/requests/{id}/restrict` (form: `csrf`): `POST /v1/subjects/{id}/restriction`
/// for the request's customer, same rules (the restriction brake included), same log entry.
pub async fn restrict(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let (auth, person, r, subject) = match request_and_customer(&state, &parts, &id, field(&form, "csrf")).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    match state.vault.restrict(&auth, subject, None).await {
        Ok(true) => Redirect::to(&request_path(&r.id, Some("restricted"))).into_response(),
        Ok(false) => Redirect::to(&request_path(&r.id, Some("already_restricted"))).into_response(),
        Err(e) => refused(&state, Some(person), e.into(), Some(request_path(&id, None))),
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
            "staff:stf_me",
        );
        let order: Vec<&str> = q.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(order, ["overdue", "later", "again", "other-kind"]);
        assert!(q[0].overdue && q[0].left == "overdue by 10 days");
        assert_eq!((q[1].overdue, q[1].left.as_str()), (false, "25 days left"));
        let dup: Vec<bool> = q.iter().map(|r| r.duplicate).collect();
        assert_eq!(dup, [false, true, true, false]);
    }

    #[test]
    fn a_paused_request_is_never_overdue_and_the_queue_says_who_has_each() {
        const DAY: i64 = 24 * 60 * 60 * 1000;
        let now = 100 * DAY;
        let mut paused = request("paused", "a", "erasure", 50 * DAY, 80 * DAY);
        paused.waiting_since = Some(70 * DAY);
        paused.assignee = Some("staff:stf_me".into());
        let mut theirs = request("theirs", "b", "access", 95 * DAY, 125 * DAY);
        theirs.assignee = Some("staff:stf_other".into());
        let late = request("late", "c", "access", 60 * DAY, 90 * DAY);
        let q = queue(vec![paused, theirs, late], now, "staff:stf_me");
        let order: Vec<&str> = q.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(order, ["late", "paused", "theirs"], "overdue first, then by deadline");
        assert!(!q[1].overdue && q[1].waiting && q[1].left.contains("waiting for proof of identity"));
        let who: Vec<&str> = q.iter().map(|r| r.assignee.as_str()).collect();
        assert_eq!(who, ["nobody", "you", "stf_other"]);
    }
}
