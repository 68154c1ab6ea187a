//! Extractors for the cross-cutting parts of a request: who is calling, under which purpose,
//! which subject, and the JSON body. A handler that takes [`Authorized`] cannot forget to
//! authenticate or to check the purpose.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use candor_core::SubjectId;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::vault::{Authorized, Principal, VaultError};

/// The header naming the purpose of a request.
pub const PURPOSE_HEADER: &str = "candor-purpose";

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(VaultError::Unauthenticated("send the token in an `Authorization: Bearer <token>` header"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(VaultError::Unauthenticated("the Authorization header must be `Bearer <token>`"))?;
        let mut principal = state.vault.authenticate(token).await?;
        let client = super::client::ClientIp::from_request_parts(parts, state).await.unwrap_or_else(|e| match e {});
        principal.origin = state.caller_origin(client);
        Ok(principal)
    }
}

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let purpose = match parts.headers.get(PURPOSE_HEADER) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| {
                        ApiError::bad_request(
                            "unknown_purpose",
                            "the Candor-Purpose header must be a purpose id in ASCII",
                        )
                        .with_field("Candor-Purpose")
                    })?
                    .to_string(),
            ),
        };
        // The subject the request is about, if its path names one: a refusal is then logged
        // against that customer too, so it shows in their access log.
        let names_subject = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .is_some_and(|p| p.as_str().starts_with("/v1/subjects/{id}"));
        let subject = if names_subject {
            Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .ok()
                .and_then(|Path(params)| params.get("id").and_then(|id| SubjectId::parse(id)))
        } else {
            None
        };
        Ok(state.vault.authorize(principal, purpose.as_deref(), subject).await?)
    }
}

/// The `{id}` path segment, parsed as a subject id.
pub struct SubjectPath(pub SubjectId);

impl<S: Send + Sync> FromRequestParts<S> for SubjectPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| {
            ApiError::bad_request("invalid_id", "the subject id in the path is missing or malformed").with_field("id")
        })?;
        parse_subject_id(&raw).map(SubjectPath)
    }
}

/// Parses a subject id from a path segment.
pub fn parse_subject_id(raw: &str) -> Result<SubjectId, ApiError> {
    SubjectId::parse(raw).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_id",
            "the subject id must be a UUID such as 7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70",
        )
        .with_field("id")
    })
}

/// Describes the expected body, for error messages (the parser's own messages may quote input).
pub trait BodyShape {
    const EXPECTED: &'static str;
}

/// A JSON request body. Errors name the position or the expected shape, never the content.
pub struct JsonBody<T>(pub T);

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is larger than the server accepts",
    )
}

impl<T: DeserializeOwned + BodyShape> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        // Refuse a declared oversized body before reading any of it.
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
            return Err(too_large());
        }
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than the server accepts",
                )
            } else {
                ApiError::bad_request("malformed_body", "the request body could not be read")
            }
        })?;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(ApiError::bad_request("invalid_utf8", "the request body is not valid UTF-8"));
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(
                "malformed_json",
                format!("the request body is not valid JSON (line {}, column {})", e.line(), e.column()),
            )
        })?;
        serde_json::from_value(value).map(JsonBody).map_err(|_| {
            ApiError::bad_request("invalid_body", format!("the request body must look like {}", T::EXPECTED))
        })
    }
}
