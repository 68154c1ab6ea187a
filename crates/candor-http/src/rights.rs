//! Customer-rights routes: erasure (with a signed certificate), legal holds, restriction.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{BodyShape, JsonBody, SubjectPath};
use super::subjects::SubjectIdParam;
use super::{AppState, rfc3339};
use crate::vault::Authorized;

/// Erase a customer by crypto-shredding: their data key is destroyed, then their values,
/// index entries, events and consents are deleted. Idempotent: erasing again returns the same
/// certificate. Blocked by a legal hold (409 `legal_hold`).
#[utoipa::path(delete, path = "/v1/subjects/{id}", tag = "rights",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "The purpose the request belongs to (not a consent purpose)")),
    responses(
        (status = 200, description = "The signed erasure certificate (verify with `candor receipt verify FILE`); the same again when erased before", body = Object),
        (status = 403, description = "`erase_not_allowed`, `purpose_not_allowed`, `policy_forbids`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 409, description = "`legal_hold`: a legal hold blocks erasure", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
        (status = 429, description = "`erasure_rate_limited`: this token erased `[policy] erasures_per_hour` customers in the last hour", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn erase_subject(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.vault.erase_subject(&auth, id).await?))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"reason": "Court order 2026/123 requires keeping these records"}))]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why (10 to 500 characters). Stored encrypted with the customer's data.
    pub reason: Option<String>,
}

impl BodyShape for ReasonBody {
    const EXPECTED: &'static str = r#"{"reason": "..."}"#;
}

#[derive(Serialize, ToSchema)]
pub struct ToggleResponse {
    pub subject_id: String,
    /// The state now.
    pub active: bool,
    /// Whether this request changed it (false: it already was so).
    pub changed: bool,
}

fn toggled(id: candor_core::SubjectId, active: bool, changed: bool) -> Json<ToggleResponse> {
    Json(ToggleResponse { subject_id: id.to_string(), active, changed })
}

/// Place a legal hold (blocks erasure). Under a purpose whose legal basis is legal_obligation.
#[utoipa::path(post, path = "/v1/subjects/{id}/hold", tag = "rights",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "A legal-obligation purpose")),
    request_body = ReasonBody,
    responses(
        (status = 200, body = ToggleResponse),
        (status = 403, description = "`purpose_not_allowed`, `policy_forbids`", body = ErrorBody), (status = 404, description = "`subject_not_found`", body = ErrorBody), (status = 410, description = "`subject_erased`", body = ErrorBody),
        (status = 422, description = "`invalid_value`: the reason is missing, too short or too long", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn place_hold(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<ToggleResponse>, ApiError> {
    let changed = state.vault.place_hold(&auth, id, body.reason.as_deref()).await?;
    Ok(toggled(id, true, changed))
}

/// Lift the legal hold.
#[utoipa::path(delete, path = "/v1/subjects/{id}/hold", tag = "rights",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "A legal-obligation purpose")),
    responses((status = 200, body = ToggleResponse), (status = 403, description = "`purpose_not_allowed`, `policy_forbids`", body = ErrorBody), (status = 404, description = "`subject_not_found`", body = ErrorBody), (status = 410, description = "`subject_erased`", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn lift_hold(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
) -> Result<Json<ToggleResponse>, ApiError> {
    let changed = state.vault.lift_hold(&auth, id).await?;
    Ok(toggled(id, false, changed))
}

#[derive(Serialize, ToSchema)]
pub struct HoldResponse {
    pub subject_id: String,
    pub held: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The legal hold in place, if any.
#[utoipa::path(get, path = "/v1/subjects/{id}/hold", tag = "rights",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "A legal-obligation purpose")),
    responses((status = 200, body = HoldResponse), (status = 403, description = "`purpose_not_allowed`, `policy_forbids`", body = ErrorBody), (status = 404, description = "`subject_not_found`", body = ErrorBody), (status = 410, description = "`subject_erased`", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_hold(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
) -> Result<Json<HoldResponse>, ApiError> {
    let hold = state.vault.hold(&auth, id).await?;
    Ok(Json(HoldResponse {
        subject_id: id.to_string(),
        held: hold.is_some(),
        placed_at: hold.as_ref().map(|h| rfc3339(h.placed_at)),
        reason: hold.map(|h| h.reason),
    }))
}

/// Restrict processing: the customer's data is kept, but reads under any purpose other than a
/// legal obligation are refused with 403 `restricted` until the restriction is lifted.
#[utoipa::path(post, path = "/v1/subjects/{id}/restriction", tag = "rights",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "The purpose the request belongs to")),
    request_body = ReasonBody,
    responses(
        (status = 200, body = ToggleResponse),
        (status = 403, description = "`purpose_not_allowed`, `policy_forbids`", body = ErrorBody), (status = 404, description = "`subject_not_found`", body = ErrorBody), (status = 410, description = "`subject_erased`", body = ErrorBody),
        (status = 422, description = "`invalid_value`: the reason is too short or too long", body = ErrorBody),
        (status = 429, description = "`restriction_rate_limited`: this token restricted `[policy] restrictions_per_hour` customers in the last hour", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn restrict(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<(StatusCode, Json<ToggleResponse>), ApiError> {
    let changed = state.vault.restrict(&auth, id, body.reason.as_deref()).await?;
    Ok((StatusCode::OK, toggled(id, true, changed)))
}

/// Lift the restriction (logged).
#[utoipa::path(delete, path = "/v1/subjects/{id}/restriction", tag = "rights",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "The purpose the request belongs to")),
    responses((status = 200, body = ToggleResponse), (status = 403, description = "`erase_not_allowed` (lifting needs the power to erase), `purpose_not_allowed`, `policy_forbids`", body = ErrorBody), (status = 404, description = "`subject_not_found`", body = ErrorBody), (status = 410, description = "`subject_erased`", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn lift_restriction(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
) -> Result<Json<ToggleResponse>, ApiError> {
    let changed = state.vault.lift_restriction(&auth, id).await?;
    Ok(toggled(id, false, changed))
}
