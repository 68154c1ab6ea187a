//! Routes about the service itself: health, the catalog, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::{
    consents, grants, log, messages, notices, overrides, privacy, report, requests, rights, sign_in, subjects, tokens,
};
use crate::vault::Principal;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the server and its database answer.
    pub status: &'static str,
}

/// Liveness and database reachability. No token needed.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, body = Health), (status = 503, description = "Database unavailable", body = ErrorBody)))]
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state
        .vault
        .store()
        .ping()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database is unavailable"))?;
    Ok(Json(Health { status: "ok" }))
}

/// The catalog (data map): organisation, purposes, fields, event types, recipients, roles.
#[utoipa::path(get, path = "/v1/catalog", tag = "meta",
    responses((status = 200, description = "The catalog as JSON", body = Object), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn catalog(State(state): State<AppState>, _caller: Principal) -> impl IntoResponse {
    Json(state.vault.catalog().clone())
}

/// This document.
pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("A Candor token (`candor token create`)"))
                        .build(),
                ),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Candor", description = "Customer-data vault: field-level encrypted personal data, purpose-bound access. Every request that touches personal data names its purpose in the `Candor-Purpose` header."),
    paths(
        healthz, catalog, privacy::notice,
        subjects::create_subject, subjects::lookup_subjects, subjects::get_subject, subjects::correct_subject,
        subjects::append_event, subjects::list_events,
        consents::get_consents, consents::post_consents, consents::get_history, consents::get_receipt,
        consents::audience,
        rights::erase_subject, rights::place_hold, rights::lift_hold, rights::get_hold, rights::restrict,
        rights::lift_restriction, report::report, report::export,
        requests::open_request, requests::close_request, requests::list_requests,
        tokens::list, tokens::revoke, overrides::open, sign_in::create_link,
        messages::register, messages::verify,
        grants::recipients, grants::create, grants::get, grants::revoke, grants::records,
        notices::confirm, notices::unconfirmed,
        log::checkpoint, log::key, log::entries, log::inclusion, log::consistency, log::access_log,
    ),
    components(schemas(ErrorBody, ErrorDetail, Health)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;
