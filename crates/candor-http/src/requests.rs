//! `/v1/requests`: customer requests with their legal deadline; `/metrics` counts the overdue.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use candor_vault::{Request, RequestUpdate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{BodyShape, JsonBody, parse_subject_id};
use super::{AppState, rfc3339};
use crate::vault::{Authorized, Principal};

#[derive(Serialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    pub subject_id: String,
    /// access, export, correction, erasure, restriction or objection.
    pub kind: String,
    /// open, completed or rejected.
    pub status: String,
    pub received_at: String,
    /// The legal deadline: one month after receipt.
    pub due_at: String,
    pub overdue: bool,
    /// Token id of who recorded it, and who closed it.
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    /// Who on the privacy team has it (`staff:stf_…` or a token id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// Since when its clock is stopped, waiting for the customer to prove who they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for_identity_since: Option<String>,
    /// Days its clock stood still in all (`due_at` includes them).
    pub paused_days: i64,
    /// Why it was refused (a code; see `reason` on PATCH).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

pub(crate) fn view(r: Request, now: i64) -> RequestView {
    RequestView {
        overdue: r.status == "open" && r.waiting_since.is_none() && r.due_at < now,
        id: r.id,
        subject_id: r.subject_id,
        kind: r.kind,
        status: r.status,
        received_at: rfc3339(r.received_at),
        due_at: rfc3339(r.due_at),
        created_by: r.created_by,
        closed_at: r.closed_at.map(rfc3339),
        closed_by: r.closed_by,
        assignee: r.assignee,
        waiting_for_identity_since: r.waiting_since.map(rfc3339),
        paused_days: r.paused_ms.div_euclid(DAY_MS),
        reason: r.reason,
    }
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"subject_id": "7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70", "kind": "access"}))]
#[serde(deny_unknown_fields)]
pub struct NewRequestBody {
    #[schema(format = Uuid)]
    pub subject_id: String,
    #[schema(pattern = "^(access|export|correction|erasure|restriction|objection)$")]
    pub kind: String,
    /// When the customer made the request (default: now).
    #[schema(format = DateTime)]
    pub received_at: Option<String>,
}

impl BodyShape for NewRequestBody {
    const EXPECTED: &'static str = r#"{"subject_id": "...", "kind": "access" | "export" | "correction" | "erasure" | "restriction" | "objection", "received_at": "<optional RFC 3339>"}"#;
}

/// Record a customer request; its deadline is one month after receipt.
#[utoipa::path(post, path = "/v1/requests", tag = "rights",
    params(("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    request_body = NewRequestBody,
    responses(
        (status = 201, body = RequestView),
        (status = 403, description = "`purpose_not_allowed` (not a customer_requests purpose)", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
        (status = 422, description = "`invalid_value`: kind or received_at", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn open_request(
    State(state): State<AppState>,
    auth: Authorized,
    JsonBody(body): JsonBody<NewRequestBody>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let subject = parse_subject_id(&body.subject_id).map_err(|e| e.with_field("subject_id"))?;
    let r = state.vault.open_request(&auth, subject, &body.kind, body.received_at.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(view(r, state.vault.now_millis()))))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"status": "rejected", "reason": "excessive"}))]
#[serde(deny_unknown_fields)]
pub struct RequestChangeBody {
    /// Closes the request.
    #[schema(pattern = "^(completed|rejected)$")]
    pub status: Option<String>,
    /// With `status: rejected` (and only then): why, one of `identity_not_proven`,
    /// `manifestly_unfounded`, `excessive`, `legal_obligation`, `legal_claims`,
    /// `rights_of_others`. The customer reads the explanation in the privacy center.
    pub reason: Option<String>,
    /// Assigns the request: `me`, `nobody` or a staff pseudonym (`stf_…`).
    pub assignee: Option<String>,
    /// `requested`: the customer was asked to prove who they are, the clock stops;
    /// `proven`: it runs again, the deadline moved by the time it stood still.
    #[schema(pattern = "^(requested|proven)$")]
    pub identity: Option<String>,
}

impl BodyShape for RequestChangeBody {
    const EXPECTED: &'static str = r#"one of {"status": "completed"}, {"status": "rejected", "reason": "<code>"}, {"assignee": "me" | "nobody" | "stf_..."}, {"identity": "requested" | "proven"}"#;
}

#[utoipa::path(patch, path = "/v1/requests/{id}", tag = "rights",
    params(("id" = String, Path, description = "Request id"), ("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    request_body = RequestChangeBody,
    responses(
        (status = 200, body = RequestView),
        (status = 403, description = "`purpose_not_allowed` (not a customer_requests purpose)", body = ErrorBody),
        (status = 404, description = "`request_not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: the request is closed and cannot be assigned or paused", body = ErrorBody),
        (status = 422, description = "`invalid_value`: status, reason, assignee or identity", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn change_request(
    State(state): State<AppState>,
    auth: Authorized,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RequestChangeBody>,
) -> Result<Json<RequestView>, ApiError> {
    let changed = match (&body.status, &body.assignee, &body.identity) {
        (Some(status), None, None) => state.vault.close_request(&auth, &id, status, body.reason.as_deref()).await?,
        (None, Some(a), None) if body.reason.is_none() => {
            state.vault.update_request(&auth, &id, RequestUpdate::parse("assignee", a)?).await?
        }
        (None, None, Some(i)) if body.reason.is_none() => {
            state.vault.update_request(&auth, &id, RequestUpdate::parse("identity", i)?).await?
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_value",
                format!("send exactly one change: {}", RequestChangeBody::EXPECTED),
            )
            .with_field("status"));
        }
    };
    Ok(Json(view(changed, state.vault.now_millis())))
}

/// One request, with how it is being handled; logged (`request.read`).
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "rights",
    params(("id" = String, Path, description = "Request id"), ("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    responses(
        (status = 200, body = RequestView),
        (status = 403, description = "`purpose_not_allowed` (not a customer_requests purpose)", body = ErrorBody),
        (status = 404, description = "`request_not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_request(
    State(state): State<AppState>,
    auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    Ok(Json(view(state.vault.request(&auth, &id).await?, state.vault.now_millis())))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// open, completed or rejected.
    #[param(value_type = Option<String>, pattern = "^(open|completed|rejected)$")]
    pub status: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<RequestView>,
    pub overdue: usize,
}

/// Requests, newest first (at most 1,000).
#[utoipa::path(get, path = "/v1/requests", tag = "rights",
    params(ListQuery, ("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    responses(
        (status = 200, body = RequestList),
        (status = 403, description = "`purpose_not_allowed` (not a customer_requests purpose)", body = ErrorBody),
        (status = 422, description = "`invalid_value`: an unknown status", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_requests(
    State(state): State<AppState>,
    auth: Authorized,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RequestList>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::bad_request("invalid_query", "the only query parameter is `status`").with_field("status")
    })?;
    let now = state.vault.now_millis();
    let requests: Vec<RequestView> =
        state.vault.list_requests(&auth, query.status.as_deref()).await?.into_iter().map(|r| view(r, now)).collect();
    let overdue = requests.iter().filter(|r| r.overdue).count();
    Ok(Json(RequestList { requests, overdue }))
}

/// Prometheus metrics (text format): counts only, never an id or a value. Like every route
/// but `/healthz` and `/openapi.json`, it needs a valid token (any role: it reads nothing
/// personal), so a scraper is identified and its access can be revoked.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)),
    security(("bearer" = [])))]
pub async fn metrics(State(state): State<AppState>, _caller: Principal) -> Result<impl IntoResponse, ApiError> {
    let crate::vault::Metrics {
        requests_overdue: overdue,
        requests_open: open,
        log_entries: log_size,
        break_glass_total: break_glass,
        break_glass_open,
        notices_undelivered: undelivered,
        notices_unconfirmed: unconfirmed,
    } = state.vault.metrics().await?;
    let body = format!(
        "# HELP candor_requests_overdue Open customer requests past their legal deadline.\n\
         # TYPE candor_requests_overdue gauge\n\
         candor_requests_overdue {overdue}\n\
         # HELP candor_requests_open Open customer requests.\n\
         # TYPE candor_requests_open gauge\n\
         candor_requests_open {open}\n\
         # HELP candor_log_entries Entries in the tamper-evident log.\n\
         # TYPE candor_log_entries gauge\n\
         candor_log_entries {log_size}\n\
         # HELP candor_break_glass_total Break-glass overrides ever opened (erasing a customer does not lower it).\n\
         # TYPE candor_break_glass_total counter\n\
         candor_break_glass_total {break_glass}\n\
         # HELP candor_break_glass_open Break-glass overrides open now.\n\
         # TYPE candor_break_glass_open gauge\n\
         candor_break_glass_open {break_glass_open}\n\
         # HELP candor_recipient_notices_undelivered Notices to recipients (erasure, correction, restriction) not delivered yet.\n\
         # TYPE candor_recipient_notices_undelivered gauge\n\
         candor_recipient_notices_undelivered {undelivered}\n\
         # HELP candor_recipient_notices_unconfirmed Notices delivered but not yet confirmed by their recipient.\n\
         # TYPE candor_recipient_notices_unconfirmed gauge\n\
         candor_recipient_notices_unconfirmed {unconfirmed}\n"
    );
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], body))
}
