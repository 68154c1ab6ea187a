//! `POST /v1/subjects/{id}/break-glass`: open a time-boxed override that unmasks one customer's
//! data for the caller, with a written reason.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{BodyShape, JsonBody, SubjectPath};
use super::subjects::SubjectIdParam;
use super::{AppState, rfc3339};
use crate::vault::{Authorized, OverrideView};

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"reason": "The customer called about a lost parcel and the courier needs the full phone number today"}))]
#[serde(deny_unknown_fields)]
pub struct BreakGlassBody {
    /// What the emergency is, in your own words (20 to 500 characters, four or more different
    /// words). Stored encrypted with the customer's data and shown to the customer.
    pub reason: Option<String>,
}

impl BodyShape for BreakGlassBody {
    const EXPECTED: &'static str = r#"{"reason": "what the emergency is"}"#;
}

#[derive(Serialize, ToSchema)]
pub struct OverrideResponse {
    pub id: String,
    pub subject_id: String,
    pub role: String,
    pub purpose: String,
    pub opened_at: String,
    /// Until then, this token's reads of this customer under this purpose are unmasked.
    pub expires_at: String,
}

pub fn override_response(o: OverrideView) -> OverrideResponse {
    OverrideResponse {
        id: o.id,
        subject_id: o.subject.to_string(),
        role: o.role,
        purpose: o.purpose,
        opened_at: rfc3339(o.opened_at),
        expires_at: rfc3339(o.expires_at),
    }
}

/// Open a break-glass override: for the configured time (default 15 minutes), this token's
/// reads of this customer under this purpose return masked fields in full. Only for roles the
/// catalog marks `break_glass = true`; never past consent or a restriction. Logged as
/// break-glass, counted in /metrics and shown to the customer with the reason.
#[utoipa::path(post, path = "/v1/subjects/{id}/break-glass", tag = "policy",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "The purpose of the emergency access")),
    request_body = BreakGlassBody,
    responses(
        (status = 201, body = OverrideResponse),
        (status = 403, description = "`break_glass_not_allowed`, `consent_required`, `restricted`, `policy_forbids`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody), (status = 410, description = "`subject_erased`", body = ErrorBody),
        (status = 422, description = "`invalid_value`: the reason is missing, too short or boilerplate", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn open(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
    JsonBody(body): JsonBody<BreakGlassBody>,
) -> Result<(StatusCode, Json<OverrideResponse>), ApiError> {
    let opened = state.vault.open_break_glass(&auth, id, body.reason.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(override_response(opened))))
}
