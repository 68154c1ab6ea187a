//! `/v1/requests`: customer requests with their legal deadline; `/metrics` counts the overdue.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use candor_vault::Request;
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
}

fn view(r: Request) -> RequestView {
    let now = crate::vault::now_millis();
    RequestView {
        overdue: r.status == "open" && r.due_at < now,
        id: r.id,
        subject_id: r.subject_id,
        kind: r.kind,
        status: r.status,
        received_at: rfc3339(r.received_at),
        due_at: rfc3339(r.due_at),
        created_by: r.created_by,
        closed_at: r.closed_at.map(rfc3339),
        closed_by: r.closed_by,
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
    Ok((StatusCode::CREATED, Json(view(r))))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"status": "completed"}))]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// completed or rejected.
    #[schema(pattern = "^(completed|rejected)$")]
    pub status: String,
}

impl BodyShape for CloseBody {
    const EXPECTED: &'static str = r#"{"status": "completed" | "rejected"}"#;
}

/// Close a request as completed or rejected (once).
#[utoipa::path(patch, path = "/v1/requests/{id}", tag = "rights",
    params(("id" = String, Path, description = "Request id"), ("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    request_body = CloseBody,
    responses(
        (status = 200, body = RequestView),
        (status = 403, description = "`purpose_not_allowed` (not a customer_requests purpose)", body = ErrorBody),
        (status = 404, description = "`request_not_found` (or already closed)", body = ErrorBody),
        (status = 422, description = "`invalid_value`: status must be completed or rejected", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn close_request(
    State(state): State<AppState>,
    auth: Authorized,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CloseBody>,
) -> Result<Json<RequestView>, ApiError> {
    Ok(Json(view(state.vault.close_request(&auth, &id, &body.status).await?)))
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
    let requests: Vec<RequestView> =
        state.vault.list_requests(&auth, query.status.as_deref()).await?.into_iter().map(view).collect();
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
