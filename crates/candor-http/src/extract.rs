//! Extractors for the cross-cutting parts of a request: who is calling, under which purpose,
//! which subject, and the JSON body. A handler that takes [`Authorized`] cannot forget to
//! authenticate or to check the purpose.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use candor_core::SubjectId;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::AppState;
use super::error::ApiError;
use crate::vault::{Authorized, Principal, VaultError};

/// The header naming the purpose of a request.
pub const PURPOSE_HEADER: &str = "candor-purpose";

/// Refuses a request with more than one `Authorization` header: which one counts would depend on
/// the code (or proxy) that reads it, so none does.
pub fn single_authorization(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.get_all(header::AUTHORIZATION).iter().nth(1).is_some() {
        return Err(ApiError::bad_request(
            "invalid_authorization",
            "send exactly one `Authorization` header; this request has more than one",
        )
        .with_field("Authorization"));
    }
    Ok(())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        single_authorization(&parts.headers)?;
        // A person signed in at /console: the session cookie stands in for the token.
        if let Some(mut principal) = super::staff::session_principal(parts, state).await? {
            if parts.extensions.get::<super::idempotency::NotHonoured>().is_some() {
                return Err(super::idempotency::not_honoured());
            }
            let client = super::client::ClientIp::from_request_parts(parts, state).await.unwrap_or_else(|e| match e {});
            principal.origin = state.caller_origin(client);
            return Ok(principal);
        }
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
        // An access token (JWT) from the company's identity provider, if the installation takes them.
        let mut principal = match super::staff::machine_principal(token, state).await? {
            Some(client) => client,
            None => state.vault.authenticate(token).await?,
        };
        if parts.extensions.get::<super::idempotency::NotHonoured>().is_some() {
            return Err(super::idempotency::not_honoured());
        }
        let client = super::client::ClientIp::from_request_parts(parts, state).await.unwrap_or_else(|e| match e {});
        principal.origin = state.caller_origin(client);
        Ok(principal)
    }
}

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if parts.headers.get_all(PURPOSE_HEADER).iter().nth(1).is_some() {
            return Err(ApiError::bad_request(
                "unknown_purpose",
                "send exactly one Candor-Purpose header; this request has more than one",
            )
            .with_field("Candor-Purpose"));
        }
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
        let mut authorized = state.vault.authorize(principal, purpose.as_deref(), subject).await?;
        authorized.idempotency = parts
            .extensions
            .get::<super::idempotency::IdempotencyRequest>()
            .map(|r| r.for_token(&authorized.principal.token_id));
        Ok(authorized)
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
        // JSON leaves duplicate keys to the reader (`serde_json` keeps the last): refuse them,
        // so what is stored cannot differ from what another reader of the same body saw.
        if let Some(dup) = duplicate_key(&bytes) {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!(
                    "the request body has the key `{}` twice in one object (line {}, column {}); send each key once",
                    dup.key, dup.line, dup.column
                ),
            )
            .with_field(dup.key));
        }
        serde_json::from_value(value).map(JsonBody).map_err(|_| {
            ApiError::bad_request("invalid_body", format!("the request body must look like {}", T::EXPECTED))
        })
    }
}

/// A key found twice in one JSON object: its name (as [`candor_core::write::echo_name`] echoes
/// names) and where its second occurrence ends.
#[derive(Debug, PartialEq)]
pub struct DuplicateKey {
    pub key: String,
    pub line: usize,
    pub column: usize,
}

/// The first key that appears twice in one object, at any depth, of the JSON text `bytes`
/// (keys are compared once unescaped, so `"a"` and `"\u0061"` are the same key). One pass over
/// the text that keeps only each open object's keys. `None` when every object's keys are
/// distinct, or when `bytes` is not JSON (the parser that reads the body reports that).
pub fn duplicate_key(bytes: &[u8]) -> Option<DuplicateKey> {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match (UniqueKeys { found: &mut found }).deserialize(&mut de) {
        Err(e) => found.map(|key| DuplicateKey { key, line: e.line(), column: e.column() }),
        Ok(()) => None,
    }
}

/// Walks a JSON value, failing at the first object that names a key twice (recorded in `found`).
struct UniqueKeys<'f> {
    found: &'f mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let found = self.found;
        while seq.next_element_seed(UniqueKeys { found: &mut *found })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let found = self.found;
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if seen.contains(&key) {
                *found = Some(candor_core::write::echo_name(&key));
                return Err(de::Error::custom("duplicate key"));
            }
            seen.insert(key);
            map.next_value_seed(UniqueKeys { found: &mut *found })?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the text unless it had escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(key))
    }
    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::{DuplicateKey, duplicate_key};

    #[test]
    fn duplicate_keys_are_found_at_any_depth() {
        let dup = |key: &str, line, column| Some(DuplicateKey { key: key.to_string(), line, column });
        assert_eq!(duplicate_key(br#"{"a": 1, "a": 2}"#), dup("a", 1, 12));
        assert_eq!(duplicate_key(br#"{"a": {"b": [{"c": 1, "d": 2, "c": 3}]}}"#), dup("c", 1, 33));
        assert_eq!(duplicate_key(b"{\"fields\": {},\n \"fields\": {}}"), dup("fields", 2, 9));
        // The same key once unescaped.
        assert_eq!(duplicate_key(br#"{"email": 1, "em\u0061il": 2}"#), dup("email", 1, 25));
        // Long keys are cut, as every echoed name is.
        let long = "k".repeat(100);
        let text = format!(r#"{{"{long}": 1, "{long}": 2}}"#);
        assert_eq!(duplicate_key(text.as_bytes()).unwrap().key, "k".repeat(64));
    }

    #[test]
    fn distinct_keys_and_non_objects_pass() {
        for text in [
            r#"{"a": 1, "b": {"a": 1}, "c": [{"a": 1}, {"a": 2}]}"#,
            r#"[1, "a", null, true, -1.5, {}, []]"#,
            r#""text""#,
            r#"{"a": "a", "A": "a"}"#,
            "{",
            "",
        ] {
            assert_eq!(duplicate_key(text.as_bytes()), None, "{text}");
        }
    }
}
