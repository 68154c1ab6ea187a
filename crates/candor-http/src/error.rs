//! The one error type of the HTTP API: every failure maps here to a status code, a
//! machine-readable code and a message naming the field. Messages never contain values.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use candor_core::access::AccessDenied;
use candor_core::consent::ConsentError;
use candor_core::write::WriteError;
use candor_crypto::CryptoError;
use candor_vault::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::vault::VaultError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// For answers that cut a request short (`503`): whether a change it asked for may have
    /// been made.
    pub write_outcome: Option<WriteOutcome>,
    /// What the server log should say about a full disk (never sent to the client).
    storage_cause: Option<String>,
}

/// Whether a request answered `503` may have changed something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    /// The request asked for no change (GET, HEAD).
    NoneRequested,
    /// The change may or may not have been made: retry with the same `Idempotency-Key` (the
    /// first outcome comes back if it was made, otherwise it is made once), or read first.
    Unknown,
}

/// Attached to a `507 storage_full` response so the server can name the cause in its own log
/// (once, not per request).
#[derive(Debug, Clone)]
pub struct StorageFullCause(pub String);

/// `{"error": {"code": "...", "message": "...", "field": "..."}}`
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable error code, e.g. `undeclared_field`.
    pub code: &'static str,
    /// What went wrong and how to fix it, for humans.
    pub message: String,
    /// The field, header or parameter the error is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// On `503` answers: whether a change the request asked for may have been made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_outcome: Option<WriteOutcome>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, write_outcome: None, storage_cause: None }
    }
    pub fn with_write_outcome(mut self, outcome: WriteOutcome) -> Self {
        self.write_outcome = Some(outcome);
        self
    }
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Overload and a full disk are reported by the server once (see `crate::readiness`), not
        // once per request.
        let reported_elsewhere = matches!(self.code, "storage_full" | "database_unavailable" | "timeout");
        if self.status.is_server_error() && !reported_elsewhere {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let unavailable = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let cause = self.storage_cause;
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code,
                    message: self.message,
                    field: self.field,
                    write_outcome: self.write_outcome,
                },
            }),
        )
            .into_response();
        if unauthorized {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if unavailable {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(cause) = cause {
            response.extensions_mut().insert(StorageFullCause(cause));
        }
        response
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        let code = e.code();
        match e {
            VaultError::Unauthenticated(_) => ApiError::new(S::UNAUTHORIZED, code, msg),
            VaultError::InvalidToken => ApiError::new(S::UNAUTHORIZED, code, msg),
            VaultError::IdempotencyKeyReused => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, code, msg).with_field("Idempotency-Key")
            }
            VaultError::Store(StoreError::StorageFull(cause)) => ApiError {
                storage_cause: Some(cause),
                ..ApiError::new(S::INSUFFICIENT_STORAGE, code,
                    "the server's storage is full, so nothing can be recorded (every read is logged, so reads \
                     wait too); nothing was changed. Retry once space has been freed",
                )
            },
            VaultError::TokenExpired => ApiError::new(S::UNAUTHORIZED, code, msg),
            VaultError::TokenRevoked => ApiError::new(S::UNAUTHORIZED, code, msg),
            VaultError::Access(a) => {
                let status = match a {
                    AccessDenied::PurposeRequired | AccessDenied::UnknownPurpose(_) => S::BAD_REQUEST,
                    _ => S::FORBIDDEN,
                };
                let mut message = msg;
                if let AccessDenied::ConsentRequired(_) = a {
                    message.push_str(
                        " (consent is off until the customer grants it; a grant is recorded with \
                         POST /v1/subjects/{id}/consents, and a withdrawal takes effect at once)",
                    );
                }
                ApiError::new(status, code, message).with_field("Candor-Purpose")
            }
            VaultError::Write(w) => {
                let field = w.field().map(str::to_string);
                let status = match w {
                    WriteError::Empty => S::BAD_REQUEST,
                    WriteError::NotAllowed { .. } | WriteError::RequiredOutsidePurpose { .. } => S::FORBIDDEN,
                    _ => S::UNPROCESSABLE_ENTITY,
                };
                let e = ApiError::new(status, code, msg);
                match field {
                    Some(f) => e.with_field(f),
                    None => e.with_field("fields"),
                }
            }
            VaultError::UndeclaredLookupField(f) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, code, msg).with_field(f)
            }
            VaultError::NotALookupField(f) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, code, msg).with_field(f)
            }
            VaultError::LookupNotAllowed { field, .. } => {
                ApiError::new(S::FORBIDDEN, code, msg).with_field(field)
            }
            VaultError::UndeclaredEventType(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, code, msg).with_field("type")
            }
            VaultError::EventTypeNotAllowed { .. } => {
                ApiError::new(S::FORBIDDEN, code, msg).with_field("type")
            }
            VaultError::InvalidInput { field, .. } => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, code, msg).with_field(field)
            }
            VaultError::SubjectNotFound => ApiError::new(S::NOT_FOUND, code, msg).with_field("id"),
            VaultError::Consent(c) => {
                let status = match c {
                    ConsentError::SelfGrant { .. } => S::FORBIDDEN,
                    _ => S::UNPROCESSABLE_ENTITY,
                };
                ApiError::new(status, code, msg).with_field(c.field())
            }
            VaultError::MethodNotClaimable(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, code, msg).with_field("method")
            }
            VaultError::ReceiptNotFound => {
                ApiError::new(S::NOT_FOUND, code, msg).with_field("receipt_id")
            }
            VaultError::AudienceQuery { field, .. } => {
                ApiError::new(S::BAD_REQUEST, code, msg).with_field(field)
            }
            VaultError::ChannelConsentRequired { field, .. } => {
                ApiError::new(S::FORBIDDEN, code, msg).with_field(field)
            }
            VaultError::Integrity(CryptoError::Random) => ApiError::new(S::INTERNAL_SERVER_ERROR, code, msg),
            VaultError::Integrity(CryptoError::KekBudgetExhausted { .. }) => ApiError::new(S::SERVICE_UNAVAILABLE, code,
                "the key-encryption key has used its wrapping budget: no new customer can be stored until an \
                 operator rotates it (candor keys rotate); existing customers are unaffected",
            ),
            VaultError::Integrity(_) => ApiError::new(S::INTERNAL_SERVER_ERROR, code,
                format!(
                    "{msg}; nothing was returned. The stored record may have been tampered with: investigate before retrying"
                ),
            ),
            VaultError::AdminOnly => ApiError::new(S::FORBIDDEN, code, msg).with_field("Authorization"),
            VaultError::BreakGlassNotAllowed { .. } => {
                ApiError::new(S::FORBIDDEN, code, msg).with_field("Candor-Purpose")
            }
            VaultError::EraseNotAllowed { .. } => {
                ApiError::new(S::FORBIDDEN, code, msg).with_field("Authorization")
            }
            VaultError::ConsentRecordingNotAllowed { .. } => {
                ApiError::new(S::FORBIDDEN, code, msg).with_field("Authorization")
            }
            VaultError::LinkSenderNotAllowed(_) => {
                ApiError::new(S::FORBIDDEN, code, msg).with_field("Authorization")
            }
            VaultError::DuplicateValue(field) => {
                let field = field.clone();
                ApiError::new(S::CONFLICT, code, msg).with_field(&field)
            }
            VaultError::RestrictionRateLimited(_) => {
                ApiError::new(S::TOO_MANY_REQUESTS, code, msg).with_field("Authorization")
            }
            VaultError::ErasureRateLimited(_) => {
                ApiError::new(S::TOO_MANY_REQUESTS, code, msg).with_field("Authorization")
            }
            VaultError::AuditNotAllowed(_) => {
                ApiError::new(S::FORBIDDEN, code, msg).with_field("Authorization")
            }
            VaultError::TokenNotFound => ApiError::new(S::NOT_FOUND, code, msg).with_field("id"),
            VaultError::RequestNotFound => ApiError::new(S::NOT_FOUND, code, msg).with_field("id"),
            VaultError::NoticeNotFound => ApiError::new(S::NOT_FOUND, code, msg).with_field("id"),
            VaultError::Restricted => ApiError::new(S::FORBIDDEN, code, msg).with_field("id"),
            VaultError::LegalHold => ApiError::new(S::CONFLICT, code, msg).with_field("id"),
            VaultError::PrivacyCenterUnavailable => ApiError::new(S::CONFLICT, code, msg),
            VaultError::SignInLinkInvalid => ApiError::new(S::GONE, code, msg),
            VaultError::NotSignedIn => ApiError::new(S::UNAUTHORIZED, code, msg),
            VaultError::SessionExpired => ApiError::new(S::UNAUTHORIZED, code, msg),
            VaultError::UnknownRecipient(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, code, msg).with_field("recipient")
            }
            VaultError::AgreementExpired { .. } => ApiError::new(S::FORBIDDEN, code, msg),
            VaultError::RecipientNotDeclared { .. } => {
                ApiError::new(S::FORBIDDEN, code, msg).with_field("Candor-Purpose")
            }
            VaultError::FieldNotShared { .. } => ApiError::new(S::FORBIDDEN, code, msg).with_field("fields"),
            VaultError::GrantNotFound => ApiError::new(S::NOT_FOUND, code, msg).with_field("id"),
            VaultError::GrantRevoked => ApiError::new(S::UNAUTHORIZED, code, msg),
            VaultError::GrantExpired => ApiError::new(S::UNAUTHORIZED, code, msg),
            VaultError::GrantExhausted => ApiError::new(S::FORBIDDEN, code, msg),
            VaultError::WrongPurpose(_) => {
                ApiError::new(S::FORBIDDEN, code, msg).with_field("Candor-Purpose")
            }
            VaultError::Store(StoreError::Erased { at }) => ApiError::new(S::GONE, code,
                format!(
                    "this customer was erased on {}: their data key was destroyed, so no copy of their data can be read",
                    crate::clock::rfc3339(at)
                ),
            )
            .with_field("id"),
            VaultError::Store(StoreError::Unavailable(_)) => {
                ApiError::new(S::SERVICE_UNAVAILABLE, code, "the database is unavailable; retry shortly")
            }
            VaultError::Store(StoreError::OutOfRange(m)) => ApiError::new(S::BAD_REQUEST, code, m),
            VaultError::Store(StoreError::Conflict(_)) => {
                ApiError::new(S::CONFLICT, code, "the request conflicts with stored data; retry it")
            }
            VaultError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                ApiError::new(S::INTERNAL_SERVER_ERROR, code, "internal error; see the server log")
            }
        }
    }
}
