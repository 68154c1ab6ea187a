//! Message authenticity over HTTP: the mailer registers each message (`POST /v1/messages`) and
//! prints the code (or the check link) it gets back; anyone holding the message can check it
//! (`GET /v1/messages/verify?code=`, the page `/privacy/check?code=`), rate-limited per client
//! address.

use std::time::Instant;

use askama::Template;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::client::ClientIp;
use super::error::{ApiError, ErrorBody};
use super::extract::{BodyShape, JsonBody, parse_subject_id};
use super::pages::{Chrome, error_page, minute, render, too_many};
use super::sign_in::SignedIn;
use super::{AppState, rfc3339};
use crate::vault::{Authorized, MessageView, Verification};

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"subject_id": "7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70", "channel": "email", "subject_line": "Your order has shipped", "body_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}))]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    #[schema(format = Uuid)]
    pub subject_id: String,
    /// email, sms, phone, post or push.
    #[schema(pattern = "^(email|sms|phone|post|push)$")]
    pub channel: String,
    /// The subject line (or first line) as the customer sees it; stored encrypted, shown only
    /// to that customer.
    pub subject_line: String,
    /// SHA-256 of the message body, 64 hexadecimal characters (the body itself is not sent).
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub body_sha256: String,
}

impl BodyShape for MessageBody {
    const EXPECTED: &'static str =
        r#"{"subject_id": "…", "channel": "email", "subject_line": "…", "body_sha256": "<64 hex>"}"#;
}

#[derive(Serialize, ToSchema)]
pub struct RegisteredResponse {
    pub id: String,
    /// Print this in the message: the customer can check it in the privacy center.
    pub code: String,
    /// Or print this link: it opens a page that says whether the message is genuine.
    pub check_url: String,
    pub sent_at: String,
}

/// Register a message sent to a customer, under the purpose it is sent for (a consent purpose
/// needs consent on the channel). Returns a verification code to print in it. Logged.
#[utoipa::path(post, path = "/v1/messages", tag = "messages",
    params(("Candor-Purpose" = String, Header, description = "The purpose the message is sent for")),
    request_body = MessageBody,
    responses(
        (status = 201, body = RegisteredResponse),
        (status = 403, description = "`consent_required`, `restricted`, `purpose_not_allowed`, `policy_forbids`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
        (status = 422, description = "`invalid_value` naming channel, subject_line or body_sha256", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn register(
    State(state): State<AppState>,
    auth: Authorized,
    JsonBody(body): JsonBody<MessageBody>,
) -> Result<(StatusCode, Json<RegisteredResponse>), ApiError> {
    let id = parse_subject_id(&body.subject_id).map_err(|e| e.with_field("subject_id"))?;
    let m = state.vault.register_message(&auth, id, &body.channel, &body.subject_line, &body.body_sha256).await?;
    let check_url = format!("{}/privacy/check?code={}", state.public_base(), m.code);
    Ok((
        StatusCode::CREATED,
        Json(RegisteredResponse { id: m.id, code: m.code, check_url, sent_at: rfc3339(m.sent_at) }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CodeQuery {
    /// The code printed in the message (case, spaces and dashes do not matter), or the check
    /// link that holds it.
    #[param(required = true, example = "7KQ2M-X9D4A")]
    pub code: Option<String>,
}

/// Whether a message is genuine. Says nothing about whom it was sent to.
#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    /// `genuine`: the company registered a message with this code; `unknown`: it did not.
    pub result: VerifyResult,
    /// Who sent it (genuine only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    /// How it was sent (genuine only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// When it was sent (genuine only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VerifyResult {
    Genuine,
    Unknown,
}

/// The code in a query, or in a pasted check link.
fn code_of(query: Result<Query<CodeQuery>, QueryRejection>) -> Option<String> {
    let raw = query.ok()?.0.code?;
    let raw = raw.trim();
    match raw.split_once("code=") {
        Some((_, rest)) => Some(rest.split('&').next().unwrap_or_default().to_string()),
        None => Some(raw.to_string()),
    }
}

fn too_many_checks(wait: u64) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", format!("too many checks; wait {wait} seconds"))
}

/// Check whether a message is genuine: `genuine` (with its channel and when it was sent) or
/// `unknown`. Public; rate-limited per client address. Says nothing about whom it was sent to.
#[utoipa::path(get, path = "/v1/messages/verify", tag = "messages", params(CodeQuery),
    responses(
        (status = 200, body = VerifyResponse),
        (status = 400, description = "`invalid_query`: no code", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: too many checks from this address", body = ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    query: Result<Query<CodeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    if let Err(wait) = state.message_limiter.attempt(ip, Instant::now()) {
        let mut response = too_many_checks(wait).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Ok(response);
    }
    let code = code_of(query).ok_or_else(|| {
        ApiError::bad_request("invalid_query", "give the message's code as ?code=").with_field("code")
    })?;
    let body = match state.vault.verify_message_code(&code).await? {
        Verification::Genuine { channel, sent_at } => VerifyResponse {
            result: VerifyResult::Genuine,
            organisation: Some(state.vault.catalog().organisation.name.clone()),
            channel: Some(channel),
            sent_at: Some(rfc3339(sent_at)),
        },
        Verification::Unknown => {
            VerifyResponse { result: VerifyResult::Unknown, organisation: None, channel: None, sent_at: None }
        }
    };
    Ok(Json(body).into_response())
}

#[derive(Template)]
#[template(path = "check.html")]
struct CheckPage<'a> {
    chrome: Chrome,
    org: &'a str,
    contact: &'a str,
    code: String,
    /// `None`: nothing checked yet; `Some(None)`: unknown; `Some(Some(..))`: genuine.
    result: Option<Option<CheckedMessage>>,
    messages: Vec<CheckedMessage>,
    signed_in: bool,
}

struct CheckedMessage {
    when: String,
    channel: String,
    subject_line: Option<String>,
    /// Why it was sent (the purpose's description).
    why: String,
}

fn checked(state: &AppState, m: &MessageView) -> CheckedMessage {
    let why = state.vault.catalog().purpose(&m.purpose).map(|p| p.description.clone()).unwrap_or_default();
    CheckedMessage {
        when: minute(&rfc3339(m.sent_at)),
        channel: m.channel.clone(),
        subject_line: Some(m.subject_line.clone()),
        why,
    }
}

fn limited(chrome: Chrome, wait: u64) -> Response {
    too_many(chrome, "Too many checks", wait, "try again")
}

/// `GET /privacy/check[?code=]`: the public check page (the link printed in messages).
pub async fn check_page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    query: Result<Query<CodeQuery>, QueryRejection>,
) -> Response {
    let code = code_of(query).filter(|c| !c.is_empty());
    let result = match &code {
        None => None,
        Some(c) => {
            if let Err(wait) = state.message_limiter.attempt(ip, Instant::now()) {
                return limited(state.chrome("", None), wait);
            }
            match state.vault.verify_message_code(c).await {
                Ok(Verification::Genuine { channel, sent_at }) => Some(Some(CheckedMessage {
                    when: minute(&rfc3339(sent_at)),
                    channel,
                    subject_line: None,
                    why: String::new(),
                })),
                Ok(Verification::Unknown) => Some(None),
                Err(e) => return error_page(&state, e),
            }
        }
    };
    let org = &state.vault.catalog().organisation;
    let page = CheckPage {
        chrome: state.chrome("", None),
        org: &org.name,
        contact: &org.privacy_contact,
        code: code.unwrap_or_default(),
        result,
        messages: Vec::new(),
        signed_in: false,
    };
    render(StatusCode::OK, &page)
}

/// `GET /privacy/me/messages[?code=]`: every message sent to the signed-in customer, and a
/// check of a code (their own messages only).
pub async fn own_messages(
    State(state): State<AppState>,
    me: SignedIn,
    ClientIp(ip): ClientIp,
    query: Result<Query<CodeQuery>, QueryRejection>,
) -> Response {
    let code = code_of(query).filter(|c| !c.is_empty());
    let result = match &code {
        None => None,
        Some(c) => {
            if let Err(wait) = state.message_limiter.attempt(ip, Instant::now()) {
                return limited(state.chrome("messages", Some(me.csrf.clone())), wait);
            }
            match state.vault.verify_own_message(&me.session, c).await {
                Ok(found) => Some(found.as_ref().map(|m| checked(&state, m))),
                Err(e) => return error_page(&state, e),
            }
        }
    };
    let messages = match state.vault.own_messages(&me.session).await {
        Ok(list) => list.iter().map(|m| checked(&state, m)).collect(),
        Err(e) => return error_page(&state, e),
    };
    let org = &state.vault.catalog().organisation;
    let page = CheckPage {
        chrome: state.chrome("messages", Some(me.csrf)),
        org: &org.name,
        contact: &org.privacy_contact,
        code: code.unwrap_or_default(),
        result,
        messages,
        signed_in: true,
    };
    render(StatusCode::OK, &page)
}
