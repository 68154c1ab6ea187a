//! Notices to recipients (GDPR Art. 19): the recipient's signed confirmation
//! (`POST /v1/notices/{id}/confirm`) and the list of those not yet confirmed (`GET /v1/notices`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use candor_crypto::webhook::verify_webhook;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::{AppState, rfc3339};
use crate::vault::Authorized;

/// A notice to a recipient: what it says and where it stands.
#[derive(Serialize, ToSchema)]
pub struct RecipientNotice {
    pub id: String,
    pub recipient: String,
    pub subject_id: String,
    /// `erasure`, `correction` or `restriction`.
    pub kind: String,
    /// The fields a correction changed.
    pub fields: Vec<String>,
    pub created_at: String,
    /// Delivery attempts so far.
    pub attempts: u64,
    /// While undelivered: when the next attempt is due.
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    pub confirmed_at: Option<String>,
    /// Why the last attempt failed (Candor's own short words).
    pub last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RecipientNoticeList {
    pub notices: Vec<RecipientNotice>,
}

fn notice_json(n: &candor_vault::Notice) -> Value {
    json!({
        "id": n.id, "recipient": n.recipient, "subject_id": n.subject, "kind": n.kind, "fields": n.fields,
        "created_at": rfc3339(n.created_at), "attempts": n.attempts,
        "next_attempt_at": n.delivered_at.is_none().then(|| rfc3339(n.next_attempt_at)),
        "delivered_at": n.delivered_at.map(rfc3339), "confirmed_at": n.confirmed_at.map(rfc3339),
        "last_error": n.last_error,
    })
}

/// The recipient confirms it acted on a notice. Signed like the webhook, over the notice id:
/// `Candor-Timestamp: <unix seconds>`, `Candor-Signature: v1=<hex HMAC-SHA-256(secret,
/// "<timestamp>.<notice id>")>`, within 5 minutes. Logged.
#[utoipa::path(post, path = "/v1/notices/{id}/confirm", tag = "sharing",
    params(("id" = String, Path, description = "Notice id (the webhook's Candor-Idempotency-Key)"),
           ("Candor-Timestamp" = String, Header, description = "Unix seconds when the confirmation was signed (within 5 minutes of now)"),
           ("Candor-Signature" = String, Header, description = "`v1=<hex HMAC-SHA-256(webhook secret, \"<Candor-Timestamp>.<notice id>\")>`")),
    responses(
        (status = 200, body = RecipientNotice),
        (status = 401, description = "`invalid_signature`", body = ErrorBody),
        (status = 404, description = "`notice_not_found`", body = ErrorBody),
    ))]
pub async fn confirm(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let not_found =
        || ApiError::new(StatusCode::NOT_FOUND, "notice_not_found", "no notice with this id").with_field("id");
    let notice = state.vault.recipient_notice(&id).await?.ok_or_else(not_found)?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let timestamp = header("candor-timestamp").and_then(|t| t.parse::<i64>().ok());
    let signature = header("candor-signature");
    let secret = state.webhook_secrets.get(&notice.recipient);
    let valid = match (timestamp, signature, secret) {
        (Some(t), Some(s), Some(secret)) => {
            verify_webhook(secret, t, id.as_bytes(), s, crate::clock::now().as_second())
        }
        _ => false,
    };
    if !valid {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "sign `<Candor-Timestamp>.<notice id>` with your webhook secret (HMAC-SHA-256) in Candor-Signature: v1=<hex>, within 5 minutes",
        )
        .with_field("Candor-Signature"));
    }
    let notice = state.vault.confirm_notice(&notice).await?.ok_or_else(not_found)?;
    Ok(Json(notice_json(&notice)))
}

/// Notices recipients have not confirmed yet (delivered or not), oldest first. Under a purpose
/// declared customer_requests = true.
#[utoipa::path(get, path = "/v1/notices", tag = "sharing",
    params(("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    responses((status = 200, body = RecipientNoticeList), (status = 403, description = "`purpose_not_allowed` (not a customer_requests purpose)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn unconfirmed(State(state): State<AppState>, auth: Authorized) -> Result<Json<Value>, ApiError> {
    let list = state.vault.unconfirmed_notices(&auth).await?;
    Ok(Json(json!({"notices": list.iter().map(notice_json).collect::<Vec<_>>()})))
}

/// Sends an undelivered notice to its recipient again now (the outbox picks it up at its next
/// round, within seconds). Under a purpose declared customer_requests = true; logged
/// (`recipient_notice.retry`).
#[utoipa::path(post, path = "/v1/notices/{id}/retry", tag = "sharing",
    params(("id" = String, Path, description = "Notice id"), ("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    responses(
        (status = 200, body = RecipientNotice),
        (status = 403, description = "`purpose_not_allowed` (not a customer_requests purpose)", body = ErrorBody),
        (status = 404, description = "`notice_not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: the notice was already delivered", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(notice_json(&state.vault.retry_notice(&auth, &id).await?)))
}
