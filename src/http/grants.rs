//! Sharing over HTTP: the recipients registry (`GET /v1/recipients`), grants (`POST`, `GET`,
//! `DELETE /v1/grants[/{id}]`) and the recipient's reads (`GET /v1/grants/{id}/records`, with the
//! grant's own credential as bearer token).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use candor_store::Grant;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{BodyShape, JsonBody, parse_subject_id};
use super::{AppState, rfc3339};
use crate::vault::{Authorized, DEFAULT_GRANT_PAGE, GrantInput, Principal, VaultError};

/// The recipients the catalog declares, with their agreement's state today.
#[utoipa::path(get, path = "/v1/recipients", tag = "sharing",
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn recipients(State(state): State<AppState>, _caller: Principal) -> Json<Value> {
    let today = crate::clock::now().strftime("%Y-%m-%d").to_string();
    let list: Vec<Value> = state
        .vault
        .catalog()
        .recipients
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "name": r.name, "country": r.country, "role": r.role.name(),
                "purposes": r.purposes, "fields": r.fields, "agreement": r.agreement,
                "agreement_expires": r.agreement_expires, "agreement_in_force": r.agreement_in_force(&today),
                "contact": r.contact,
            })
        })
        .collect();
    Json(json!({ "recipients": list }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// A recipient declared in the catalog for the request's purpose.
    pub recipient: String,
    /// Customer ids (1 to 10,000). Under a consent purpose, those without consent are left out.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Instead of subjects, under a consent purpose: everyone who consented,
    /// `{"channel": "email"}` for a purpose with channels, `{}` otherwise.
    pub audience: Option<AudienceBody>,
    /// Fields the recipient may read (each declared for the recipient and the purpose).
    pub fields: Vec<String>,
    /// Required: RFC 3339, at most `[sharing] max_grant_days` ahead.
    pub expires_at: Option<String>,
    /// How many pages the recipient may read in all.
    pub max_reads: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceBody {
    pub channel: Option<String>,
}

impl BodyShape for GrantBody {
    const EXPECTED: &'static str = r#"{"recipient": "…", "subjects": ["<id>", …], "fields": ["…"], "expires_at": "2026-12-31T23:59:59Z", "max_reads": 10}"#;
}

fn grant_json(g: &Grant) -> Value {
    json!({
        "id": g.id, "recipient": g.recipient, "purpose": g.purpose, "fields": g.fields,
        "created_at": rfc3339(g.created_at), "expires_at": rfc3339(g.expires_at),
        "max_reads": g.max_reads, "reads": g.reads, "revoked_at": g.revoked_at.map(rfc3339),
    })
}

/// Share named fields of named customers with a recipient, under the request's purpose, until
/// `expires_at`. Returns the recipient's credential once. Logged against each customer included.
#[utoipa::path(post, path = "/v1/grants", tag = "sharing",
    params(("Candor-Purpose" = String, Header, description = "The purpose the data is shared for")),
    request_body = GrantBody,
    responses(
        (status = 201, body = Object),
        (status = 403, description = "agreement_expired, recipient_not_declared, field_not_shared, purpose_not_allowed, policy_forbids, share_not_allowed (the role may not read the named field in full, so it may not share it)", body = ErrorBody),
        (status = 422, description = "unknown_recipient, undeclared_field, invalid_value (expires_at, max_reads, subjects, fields)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authorized,
    JsonBody(body): JsonBody<GrantBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut subjects = Vec::with_capacity(body.subjects.len());
    for (i, s) in body.subjects.iter().enumerate() {
        subjects.push(parse_subject_id(s).map_err(|e| e.with_field(format!("subjects[{i}]")))?);
    }
    let input = GrantInput {
        recipient: body.recipient,
        subjects,
        audience: body.audience.map(|a| a.channel),
        fields: body.fields,
        expires_at: body.expires_at,
        max_reads: body.max_reads,
    };
    let made = state.vault.create_grant(&auth, input).await?.map_err(|refused| {
        ApiError::new(StatusCode::FORBIDDEN, "share_not_allowed", refused.to_string()).with_field(refused.field)
    })?;
    let mut out = grant_json(&made.grant);
    out["credential"] = json!(made.credential.as_str());
    out["records_url"] = json!(format!("{}/v1/grants/{}/records", state.public_base(), made.grant.id));
    out["included"] = json!(made.included);
    out["left_out"] =
        json!({"without_consent": made.without_consent, "restricted": made.restricted, "not_found": made.not_found});
    Ok((StatusCode::CREATED, Json(out)))
}

/// A grant (without its credential), under its purpose.
#[utoipa::path(get, path = "/v1/grants/{id}", tag = "sharing",
    params(("id" = String, Path, description = "Grant id"), ("Candor-Purpose" = String, Header, description = "The grant's purpose")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(grant_json(&state.vault.grant_of(&auth, &id).await?)))
}

/// Revoke a grant: the recipient's next read is refused (`401 grant_revoked`). Logged against
/// each customer it held. Works whatever the catalog now says about the grant's fields (the
/// operator can also revoke from the command line: `candor grants revoke ID`).
#[utoipa::path(delete, path = "/v1/grants/{id}", tag = "sharing",
    params(("id" = String, Path, description = "Grant id"), ("Candor-Purpose" = String, Header, description = "The grant's purpose")),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(grant_json(&state.vault.revoke_grant(&auth, &id).await?)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// 1 to 500 (default 100).
    pub limit: Option<u32>,
}

/// The recipient's read: one page of the grant's customers and fields. Authenticated with the
/// grant's credential (`Authorization: Bearer cndg_…`); each page counts as one read and is
/// logged with the recipient as actor. Customers who withdrew consent or were restricted or
/// erased since the grant was made are left out; so are granted fields the catalog in force no
/// longer declares for the recipient and the grant's purpose (listed in `withheld`).
#[utoipa::path(get, path = "/v1/grants/{id}/records", tag = "sharing",
    params(("id" = String, Path, description = "Grant id"), RecordsQuery),
    responses(
        (status = 200, body = Object),
        (status = 401, description = "invalid_token, grant_revoked, grant_expired", body = ErrorBody),
        (status = 403, description = "grant_exhausted, agreement_expired, recipient_not_declared (the catalog no longer declares the recipient for the grant's purpose), field_not_shared (nor for any of its fields)", body = ErrorBody),
    ))]
pub async fn records(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: super::client::ClientIp,
    headers: HeaderMap,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let credential = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(VaultError::Unauthenticated(
            "send the grant's credential in an `Authorization: Bearer cndg_…` header",
        ))?;
    let Query(query) = query.map_err(|_| ApiError::bad_request("invalid_query", "use ?after=<id>&limit=<1..500>"))?;
    let after = match query.after.as_deref() {
        None => None,
        Some(a) => Some(parse_subject_id(a).map_err(|e| e.with_field("after"))?),
    };
    let page = state
        .vault
        .read_grant(&id, credential, after, query.limit.unwrap_or(DEFAULT_GRANT_PAGE), state.caller_origin(client))
        .await?;
    let records: Vec<Value> =
        page.records.into_iter().map(|(s, fields)| json!({"subject_id": s.to_string(), "fields": fields})).collect();
    Ok(Json(json!({
        "grant_id": id, "records": records, "next": page.next.map(|n| n.to_string()), "withheld": page.withheld,
    })))
}
