//! The `Idempotency-Key` header, the HTTP side: checked and bound to a hash of the request
//! here, honoured by the vault (see `crate::vault::IdempotencyKey`) on the writes listed in
//! [`HONOURED`]. Elsewhere it is refused on every route that takes a token rather than ignored,
//! so no client believes a retry is safe where it is not.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::vault::IdempotencyKey;

pub const HEADER: &str = "idempotency-key";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// The writes that honour the header: (method, route).
pub const HONOURED: &[(Method, &str)] = &[
    (Method::POST, "/v1/subjects"),
    (Method::PATCH, "/v1/subjects/{id}"),
    (Method::POST, "/v1/subjects/{id}/events"),
    (Method::POST, "/v1/subjects/{id}/consents"),
];

/// A checked `Idempotency-Key` and the hash of the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyRequest {
    sent: String,
    request: [u8; 32],
}

impl IdempotencyRequest {
    /// The key as the vault keeps it: bound to the caller's token.
    pub fn for_token(&self, token_id: &str) -> IdempotencyKey {
        IdempotencyKey::new(token_id, &self.sent, self.request)
    }
}

/// Marks a request that sent the header to a route that does not honour it: the token
/// extractor refuses it (`400 idempotency_not_supported`), so a route that does not serve the
/// method still answers 405, and public read routes (safe to repeat anyway) ignore it.
#[derive(Debug, Clone, Copy)]
pub struct NotHonoured;

/// The refusal of a key sent where it is not honoured.
pub fn not_honoured() -> ApiError {
    let honoured: Vec<String> = HONOURED.iter().map(|(m, r)| format!("{m} {r}")).collect();
    ApiError::bad_request(
        "idempotency_not_supported",
        format!(
            "Idempotency-Key is honoured on {} only; this route does not take it (erasure, restriction and holds \
             give the same answer when repeated)",
            honoured.join(", ")
        ),
    )
    .with_field("Idempotency-Key")
}

/// Checks the header and, on a route that honours it, hashes the request (method, path,
/// purpose, body) so a retry can be told from a different request under the same key.
pub async fn guard(State(max_body_bytes): State<usize>, mut req: Request, next: Next) -> Response {
    let mut values = req.headers().get_all(HEADER).iter();
    let Some(value) = values.next() else { return next.run(req).await };
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    if !HONOURED.iter().any(|(m, r)| m == req.method() && *r == route) {
        req.extensions_mut().insert(NotHonoured);
        return next.run(req).await;
    }
    let refuse = |message: String| {
        ApiError::bad_request("invalid_idempotency_key", message).with_field("Idempotency-Key").into_response()
    };
    if values.next().is_some() {
        return refuse("send one Idempotency-Key header, not several".into());
    }
    let sent = match value.to_str() {
        Ok(s) if valid_key(s) => s.to_string(),
        _ => {
            return refuse(format!(
                "the Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters (a UUID is a good choice)"
            ));
        }
    };
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than the server accepts ({max_body_bytes} bytes)"),
            )
            .into_response();
        }
    };
    let purpose = parts.headers.get(super::extract::PURPOSE_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    let request = request_hash(parts.method.as_str(), parts.uri.path(), purpose, &bytes);
    parts.extensions.insert(IdempotencyRequest { sent, request });
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn valid_key(s: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// SHA-256 over the parts of a request that decide what it does, each length-prefixed.
fn request_hash(method: &str, path: &str, purpose: &[u8], body: &[u8]) -> [u8; 32] {
    let mut all = Vec::with_capacity(method.len() + path.len() + purpose.len() + body.len() + 32);
    for part in [method.as_bytes(), path.as_bytes(), purpose, body] {
        all.extend_from_slice(&(part.len() as u64).to_be_bytes());
        all.extend_from_slice(part);
    }
    candor_crypto::sha256(&all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(valid_key("7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70"));
        assert!(valid_key(&"k".repeat(MAX_KEY_LEN)));
        assert!(!valid_key(""));
        assert!(!valid_key(&"k".repeat(MAX_KEY_LEN + 1)));
        assert!(!valid_key("with space"));
        assert!(!valid_key("tab\there"));
    }

    #[test]
    fn the_request_hash_tells_requests_apart() {
        let h = request_hash("POST", "/v1/subjects", b"account", b"{}");
        assert_eq!(h, request_hash("POST", "/v1/subjects", b"account", b"{}"));
        assert_ne!(h, request_hash("POST", "/v1/subjects", b"marketing", b"{}"));
        assert_ne!(h, request_hash("POST", "/v1/subjects", b"account", b"{ }"));
        // Parts cannot run into each other.
        assert_ne!(request_hash("POST", "/a", b"b", b""), request_hash("POST", "/ab", b"", b""));
    }
}
