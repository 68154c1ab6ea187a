//! Consent routes: a customer's consents, their history and receipts, recording grants and
//! withdrawals, and the audience query for marketing tools.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use candor_core::consent::{RequestedChange, SlotState};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{BodyShape, JsonBody, SubjectPath, parse_subject_id};
use super::subjects::{IdempotencyKey, SubjectIdParam};
use super::{AppState, rfc3339};
use crate::vault::{Authorized, ChangeInput, Vault};

/// The header a browser sends when its user turned on Global Privacy Control.
pub const GPC_HEADER: &str = "sec-gpc";

#[derive(Serialize, ToSchema)]
pub struct SlotView {
    pub purpose: String,
    /// The channel, for purposes consented per channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'static str>,
    /// `granted`, `withdrawn`, `not_given` (off: consent is opt-in) or `renewal_needed` (given on
    /// an earlier notice of a purpose that has changed: off until renewed).
    #[schema(example = "granted")]
    pub status: &'static str,
    /// When the latest grant or withdrawal was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The notice version the latest entry was given on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice_version: Option<String>,
    /// The notice version in force now.
    pub current_notice_version: String,
}

#[derive(Serialize, ToSchema)]
pub struct NoticeView {
    pub purpose: String,
    pub version: String,
    /// What the customer is told when asked for this consent.
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentsResponse {
    pub subject_id: String,
    pub consents: Vec<SlotView>,
    /// The notice in force for each consent purpose: show it at the moment of choice.
    pub notices: Vec<NoticeView>,
}

fn slot_views(vault: &Vault, states: Vec<SlotState>) -> Vec<SlotView> {
    states
        .into_iter()
        .map(|s| SlotView {
            current_notice_version: vault.notices().version(&s.slot.purpose).to_string(),
            purpose: s.slot.purpose.to_string(),
            channel: s.slot.channel.map(|c| c.name()),
            status: match s.status {
                candor_core::consent::ConsentStatus::Granted => "granted",
                candor_core::consent::ConsentStatus::Withdrawn => "withdrawn",
                candor_core::consent::ConsentStatus::NotGiven => "not_given",
                candor_core::consent::ConsentStatus::RenewalNeeded => "renewal_needed",
            },
            since: s.since.map(rfc3339),
            notice_version: s.notice_version,
        })
        .collect()
}

/// The customer's consents: the current state of every consent purpose (and channel).
#[utoipa::path(get, path = "/v1/subjects/{id}/consents", tag = "consents",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "Why the consents are read")),
    responses(
        (status = 200, body = ConsentsResponse),
        (status = 403, description = "`purpose_not_allowed`, `consent_required`, `restricted`, `policy_forbids`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_consents(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
) -> Result<Json<ConsentsResponse>, ApiError> {
    let overview = state.vault.consents(&auth, id).await?;
    let notices = state
        .vault
        .catalog()
        .purposes
        .iter()
        .filter(|p| p.needs_consent())
        .map(|p| {
            let n = state.vault.notices().get(&p.id);
            NoticeView { purpose: p.id.to_string(), version: n.version.clone(), text: n.text.clone() }
        })
        .collect();
    Ok(Json(ConsentsResponse {
        subject_id: id.to_string(),
        consents: slot_views(&state.vault, overview.states),
        notices,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct HistoryEntry {
    pub purpose: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'static str>,
    /// `grant` or `withdraw`.
    pub action: &'static str,
    pub notice_version: String,
    /// `privacy_center`, `api`, `import`, `paper` or `gpc`.
    pub method: &'static str,
    /// `subject` (the customer), `staff` or `operator` (an import).
    pub actor: &'static str,
    /// Id of the token that transmitted the change, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// When the customer made the choice.
    pub given_at: String,
    /// When Candor recorded it.
    pub recorded_at: String,
    pub receipt_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryResponse {
    pub subject_id: String,
    /// Every grant and withdrawal, in the order recorded. Nothing is ever edited or removed.
    pub entries: Vec<HistoryEntry>,
}

/// The customer's consent ledger: every grant and withdrawal ever recorded.
#[utoipa::path(get, path = "/v1/subjects/{id}/consents/history", tag = "consents",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "Why the history is read")),
    responses(
        (status = 200, body = HistoryResponse),
        (status = 403, description = "`purpose_not_allowed`, `consent_required`, `restricted`, `policy_forbids`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_history(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
) -> Result<Json<HistoryResponse>, ApiError> {
    let history = state.vault.consent_history(&auth, id).await?;
    let entries = history
        .into_iter()
        .map(|c| HistoryEntry {
            purpose: c.purpose.to_string(),
            channel: c.channel.map(|ch| ch.name()),
            action: c.action.name(),
            notice_version: c.notice_version,
            method: c.method.name(),
            actor: c.actor_kind.name(),
            token: c.actor_token,
            given_at: rfc3339(c.given_at),
            recorded_at: rfc3339(c.recorded_at),
            receipt_id: c.receipt_id,
        })
        .collect();
    Ok(Json(HistoryResponse { subject_id: id.to_string(), entries }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeItem {
    /// A consent-based purpose.
    pub purpose: String,
    /// For purposes consented per channel: `email`, `sms`, `phone`, `post` or `push`. Left out,
    /// the change applies to every channel of the purpose.
    #[schema(pattern = "^(email|sms|phone|post|push)$")]
    pub channel: Option<String>,
    /// `grant` or `withdraw`.
    #[schema(pattern = "^(grant|withdraw)$")]
    pub action: String,
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"changes": [{"purpose": "marketing", "channel": "email", "action": "grant"}], "evidence": "signup-form v3, checkbox"}))]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    /// One or several changes, recorded together or not at all.
    #[serde(default)]
    pub changes: Vec<ChangeItem>,
    /// `api` (default) or `paper` (staff entering a signed form).
    #[schema(value_type = Option<String>, pattern = "^(api|paper)$")]
    pub method: Option<String>,
    /// `subject` (default: the customer chose, in an app acting for them) or `staff` (staff
    /// recorded the customer's choice; `reason` required).
    #[schema(value_type = Option<String>, pattern = "^(subject|staff)$")]
    pub actor: Option<String>,
    /// How the customer gave their choice (required for staff; 10 to 500 characters). Stored
    /// encrypted with the customer's data.
    pub reason: Option<String>,
    /// A reference to evidence (form number, document id; up to 200 characters). Stored encrypted.
    pub evidence: Option<String>,
}

impl BodyShape for ChangeBody {
    const EXPECTED: &'static str = r#"{"changes": [{"purpose": "<consent purpose>", "channel": "<optional channel>", "action": "grant" | "withdraw"}], "actor": "subject" | "staff", "reason": "...", "evidence": "..."}"#;
}

#[derive(Serialize, ToSchema)]
pub struct ChangeResponse {
    /// The signed consent receipts of this change (verify with `candor receipt verify FILE`).
    #[schema(value_type = Vec<Object>)]
    pub receipts: Vec<Value>,
    /// The state after the change.
    pub consents: Vec<SlotView>,
}

/// Grant or withdraw consents, one or several at once (atomically). Each change gets a signed
/// receipt and a log entry. With `Sec-GPC: 1` and actor `subject`, every active consent of a
/// purpose declared `gpc = true` is also withdrawn (method `gpc`), unless chosen in this request.
#[utoipa::path(post, path = "/v1/subjects/{id}/consents", tag = "consents",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "The purpose the caller acts under (a consent purpose may only withdraw)"),
           ("Sec-GPC" = Option<String>, Header, description = "`1` when the customer's browser sends Global Privacy Control"),
           IdempotencyKey),
    request_body = ChangeBody,
    responses(
        (status = 201, body = ChangeResponse),
        (status = 403, description = "`consent_recording_not_allowed`, `consent_self_grant` (a consent purpose granting), `purpose_not_allowed`, `restricted`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
        (status = 422, description = "`invalid_changes`, `unknown_purpose`, `not_consent_based`, `invalid_channel`, `duplicate_change`, `invalid_value` (actor, method, reason, evidence); `idempotency_key_reused`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn post_consents(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<(StatusCode, Json<ChangeResponse>), ApiError> {
    let gpc = headers.get(GPC_HEADER).is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
    let input = ChangeInput {
        changes: body
            .changes
            .into_iter()
            .map(|c| RequestedChange { purpose: c.purpose, channel: c.channel, action: c.action })
            .collect(),
        method: body.method,
        actor: body.actor,
        reason: body.reason,
        evidence: body.evidence,
        gpc,
    };
    let outcome = state.vault.change_consents(&auth, id, input).await?;
    Ok((
        StatusCode::CREATED,
        Json(ChangeResponse { receipts: outcome.receipts, consents: slot_views(&state.vault, outcome.states) }),
    ))
}

/// One signed consent receipt, exactly as issued.
#[utoipa::path(get, path = "/v1/subjects/{id}/consents/receipts/{receipt_id}", tag = "consents",
    params(SubjectIdParam, ("receipt_id" = String, Path, description = "Receipt id, as the consent change or its history gave it"),
           ("Candor-Purpose" = String, Header, description = "Why the receipt is read")),
    responses(
        (status = 200, description = "The signed receipt (JSON), exactly as issued", body = Object),
        (status = 403, description = "`purpose_not_allowed`, `consent_required`, `restricted`, `policy_forbids`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`, `receipt_not_found`", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_receipt(
    State(state): State<AppState>,
    auth: Authorized,
    Path((id, receipt_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_subject_id(&id)?;
    let body = state.vault.consent_receipt(&auth, id, &receipt_id).await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AudienceQuery {
    /// The channel, for purposes consented per channel: required for them, refused for others.
    #[param(value_type = Option<ChannelName>, inline)]
    pub channel: Option<String>,
}

/// The channels consent can be given on.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ChannelName {
    Email,
    Sms,
    Phone,
    Post,
    Push,
}

/// The customers who may be contacted for the declared (consent-based) purpose on a channel,
/// right now: their ids, one per line (`text/plain`), streamed. No personal values. If the
/// stream fails midway, the response is cut off (no final chunk): treat a truncated transfer as
/// an error, never as a shorter audience.
#[utoipa::path(get, path = "/v1/consents/audience", tag = "consents",
    params(AudienceQuery, ("Candor-Purpose" = String, Header, description = "The consent purpose, such as marketing")),
    responses(
        (status = 200, description = "Subject ids, one per line", content_type = "text/plain", body = String),
        (status = 400, description = "`invalid_audience_query`: a query parameter other than `channel`, a channel the purpose does not have, or a purpose that is not consent-based; or any malformed request", body = ErrorBody),
        (status = 403, description = "`purpose_not_allowed`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn audience(
    State(state): State<AppState>,
    auth: Authorized,
    query: Result<Query<AudienceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::bad_request("invalid_audience_query", "the only query parameter is `channel`").with_field("channel")
    })?;
    let rx = state.vault.audience(&auth, query.channel.as_deref()).await?;
    // One chunk per batch of ids; a store error ends the body with an error (the transfer is cut).
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = match rx.recv().await? {
            Ok(ids) => {
                let mut text = String::with_capacity(ids.len() * 37);
                for id in ids {
                    use std::fmt::Write;
                    let _ = writeln!(text, "{id}");
                }
                Ok(Bytes::from(text))
            }
            Err(e) => {
                tracing::error!(error = %e, "audience stream failed");
                Err(std::io::Error::other("the audience stream failed"))
            }
        };
        Some((chunk, rx))
    });
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], Body::from_stream(stream))
        .into_response())
}

/// One consent slot's customers by their latest choice.
#[derive(Serialize, ToSchema)]
pub struct SlotCountView {
    pub purpose: String,
    /// Absent for a purpose consented as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub granted: u64,
    pub withdrawn: u64,
    /// Granted on an earlier notice of a purpose that changed since: off until renewed.
    pub renewal_needed: u64,
}

#[derive(Serialize, ToSchema)]
pub struct SlotCounts {
    pub slots: Vec<SlotCountView>,
}

/// For each consent purpose and channel, how many customers granted, withdrew, or must renew
/// their consent: counts only, no customer named. Under a purpose declared
/// customer_requests = true; logged (`consent.counts`).
#[utoipa::path(get, path = "/v1/consents/counts", tag = "consent",
    params(("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    responses(
        (status = 200, body = SlotCounts),
        (status = 403, description = "`purpose_not_allowed` (not a customer_requests purpose)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn counts(State(state): State<AppState>, auth: Authorized) -> Result<Json<SlotCounts>, ApiError> {
    let slots = state
        .vault
        .consent_tallies(&auth)
        .await?
        .into_iter()
        .map(|t| SlotCountView {
            purpose: t.purpose,
            channel: t.channel,
            granted: t.granted,
            withdrawn: t.withdrawn,
            renewal_needed: t.renewal_needed,
        })
        .collect();
    Ok(Json(SlotCounts { slots }))
}
