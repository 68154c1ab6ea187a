//! Routes about the service itself: health, the catalog, the OpenAPI document.

use std::sync::OnceLock;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
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

/// This document, built once per process and served as the same bytes every time.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], openapi_document().clone())
}

/// The OpenAPI document as JSON. Building it takes about 20 times the work of answering
/// `/healthz`, and it cannot change while the process runs, so it is built on first use only.
pub fn openapi_document() -> &'static Bytes {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| Bytes::from(serde_json::to_vec(&ApiDoc::openapi()).expect("the OpenAPI document serialises")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_is_built_once() {
        let first = openapi_document();
        assert!(std::ptr::eq(first, openapi_document()));
        assert_eq!(first.as_ptr(), openapi_document().clone().as_ptr(), "served without a copy");
        let doc: serde_json::Value = serde_json::from_slice(first).expect("JSON");
        assert!(doc["paths"].get("/v1/subjects/{id}").is_some());
        assert_eq!(doc, serde_json::to_value(ApiDoc::openapi()).unwrap(), "the document as built");
    }
}
