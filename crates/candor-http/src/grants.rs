//! Sharing over HTTP: the recipients registry (`GET /v1/recipients`), grants (`POST`, `GET`,
//! `DELETE /v1/grants[/{id}]`) and the recipient's reads (`GET /v1/grants/{id}/records`, with the
//! grant's own credential as bearer token).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use candor_vault::Grant;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{BodyShape, JsonBody, parse_subject_id};
use super::{AppState, rfc3339};
use crate::vault::{Authorized, DEFAULT_GRANT_PAGE, GrantInput, Principal, VaultError};

/// The recipients the catalog declares, with their agreement's state today.
#[utoipa::path(get, path = "/v1/recipients", tag = "sharing",
    responses((status = 200, body = RecipientList)), security(("bearer" = [])))]
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
#[schema(example = json!({"recipient": "parcel_carrier", "subjects": ["7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70"], "fields": ["full_name"], "expires_at": "2026-12-31T23:59:59Z", "max_reads": 10}))]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// A recipient declared in the catalog for the request's purpose.
    pub recipient: String,
    /// Customer ids (1 to 10,000). Under a consent purpose, those without consent are left out.
    #[serde(default)]
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub subjects: Vec<String>,
    /// Instead of subjects, under a consent purpose: everyone who consented,
    /// `{"channel": "email"}` for a purpose with channels, `{}` otherwise.
    pub audience: Option<AudienceBody>,
    /// Fields the recipient may read (each declared for the recipient and the purpose).
    pub fields: Vec<String>,
    /// Required: RFC 3339, at most `[sharing] max_grant_days` ahead.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// How many pages the recipient may read in all (a whole number the database can store).
    #[serde(default, deserialize_with = "storable_count")]
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub max_reads: Option<u64>,
}

/// A count the database stores as a signed 64-bit integer: a larger one is refused rather than
/// stored wrapped (it would have read as negative: a grant spent before its first read). JSON
/// does not tell `10` from `10.0`, so a whole number written with a fraction is that number.
fn storable_count<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(de)? else { return Ok(None) };
    let whole = n
        .as_u64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && (0.0..=i64::MAX as f64).contains(f)).map(|f| f as u64));
    match whole {
        Some(n) if n <= i64::MAX as u64 => Ok(Some(n)),
        _ => Err(serde::de::Error::custom("a whole number from 0 to 2^63 - 1")),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceBody {
    #[schema(pattern = "^(email|sms|phone|post|push)$")]
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
        (status = 201, body = CreatedGrant),
        (status = 403, description = "agreement_expired, recipient_not_declared, field_not_shared, purpose_not_allowed, policy_forbids, share_not_allowed (the role may not read the named field in full, so it may not share it)", body = ErrorBody),
        (status = 422, description = "unknown_recipient, undeclared_field, invalid_value (expires_at, max_reads, subjects, fields, audience)", body = ErrorBody),
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
    responses(
        (status = 200, body = GrantView),
        (status = 403, description = "`purpose_not_allowed`", body = ErrorBody),
        (status = 404, description = "`grant_not_found` (or made under another purpose)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
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
    params(("id" = String, Path, description = "Grant id"), ("Candor-Purpose" = String, Header, description = "The grant's purpose, or a customer_requests purpose (the privacy team stopping any grant)")),
    responses(
        (status = 200, body = GrantView),
        (status = 403, description = "`share_not_allowed`, `purpose_not_allowed`, `erase_not_allowed` (under a customer_requests purpose, stopping any grant needs erase = true)", body = ErrorBody),
        (status = 404, description = "`grant_not_found` (or made under another purpose)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // Under a customer-requests purpose: the privacy team stopping any grant (needs `erase`).
    if state.vault.catalog().purpose(auth.purpose.as_str()).is_some_and(|p| p.customer_requests) {
        return Ok(Json(grant_json(&state.vault.stop_grant(&auth, &id).await?)));
    }
    Ok(Json(grant_json(&state.vault.revoke_grant(&auth, &id).await?)))
}

/// A grant with how many customers it holds, as the oversight list shows it.
#[derive(Serialize, ToSchema)]
pub struct GrantSummaryView {
    #[serde(flatten)]
    pub grant: GrantView,
    pub customers: u64,
    /// `active`, `expired`, `used_up` or `revoked`.
    pub state: String,
}

#[derive(Serialize, ToSchema)]
pub struct GrantList {
    pub grants: Vec<GrantSummaryView>,
}

/// Whether a grant still lets its recipient read at `now`.
pub fn grant_state(g: &Grant, now: i64) -> &'static str {
    if g.revoked_at.is_some() {
        "revoked"
    } else if g.expires_at <= now {
        "expired"
    } else if g.max_reads.is_some_and(|m| g.reads >= m) {
        "used_up"
    } else {
        "active"
    }
}

/// Every grant, newest first, with how many customers it holds and whether it is still in
/// force: the privacy team's oversight of what is shared (logged `grant.list`, naming nobody).
#[utoipa::path(get, path = "/v1/grants", tag = "sharing",
    params(("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    responses(
        (status = 200, body = GrantList),
        (status = 403, description = "`purpose_not_allowed` (not a customer_requests purpose)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, auth: Authorized) -> Result<Json<GrantList>, ApiError> {
    let now = state.vault.now_millis();
    let grants = state
        .vault
        .grant_summaries(&auth)
        .await?
        .into_iter()
        .map(|s| GrantSummaryView {
            state: grant_state(&s.grant, now).to_string(),
            customers: s.customers,
            grant: GrantView {
                id: s.grant.id,
                recipient: s.grant.recipient,
                purpose: s.grant.purpose,
                fields: s.grant.fields,
                created_at: rfc3339(s.grant.created_at),
                expires_at: rfc3339(s.grant.expires_at),
                max_reads: s.grant.max_reads,
                reads: s.grant.reads,
                revoked_at: s.grant.revoked_at.map(rfc3339),
            },
        })
        .collect();
    Ok(Json(GrantList { grants }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// The `next` of the previous page.
    #[param(format = Uuid)]
    pub after: Option<String>,
    /// Customers per page, 1 to 500 (default 100; other numbers are brought within).
    #[param(maximum = 4294967295_u64)]
    pub limit: Option<u32>,
}

/// A recipient the catalog declares.
#[derive(Serialize, ToSchema)]
pub struct RecipientView {
    pub id: String,
    pub name: String,
    /// ISO 3166 country code.
    pub country: String,
    /// `processor` or `controller`.
    pub role: String,
    pub purposes: Vec<String>,
    pub fields: Vec<String>,
    /// The data-processing or sharing agreement's reference.
    pub agreement: String,
    /// The agreement's last day (`YYYY-MM-DD`), if it ends.
    pub agreement_expires: Option<String>,
    /// Whether the agreement covers today.
    pub agreement_in_force: bool,
    pub contact: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RecipientList {
    pub recipients: Vec<RecipientView>,
}

/// A grant, without its credential.
#[derive(Serialize, ToSchema)]
pub struct GrantView {
    pub id: String,
    pub recipient: String,
    pub purpose: String,
    pub fields: Vec<String>,
    pub created_at: String,
    pub expires_at: String,
    /// Pages the recipient may read in all, if limited.
    pub max_reads: Option<u64>,
    /// Pages read so far.
    pub reads: u64,
    pub revoked_at: Option<String>,
}

/// The customers a new grant left out, and why.
#[derive(Serialize, ToSchema)]
pub struct LeftOut {
    pub without_consent: u64,
    pub restricted: u64,
    pub not_found: u64,
}

/// A new grant, with the recipient's credential (shown this once).
#[derive(Serialize, ToSchema)]
pub struct CreatedGrant {
    #[serde(flatten)]
    pub grant: GrantView,
    /// The recipient's credential (`cndg_…`) for `GET /v1/grants/{id}/records`.
    pub credential: String,
    pub records_url: String,
    /// How many customers the grant holds.
    pub included: u64,
    pub left_out: LeftOut,
}

/// One customer's shared fields.
#[derive(Serialize, ToSchema)]
pub struct SharedRecord {
    pub subject_id: String,
    #[schema(value_type = Object)]
    pub fields: Value,
}

/// One page of a grant's records.
#[derive(Serialize, ToSchema)]
pub struct RecordsPage {
    pub grant_id: String,
    pub records: Vec<SharedRecord>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next: Option<String>,
    /// Granted fields the catalog in force no longer declares for the recipient and purpose.
    pub withheld: Vec<String>,
}

/// The recipient's read: one page of the grant's customers and fields. Authenticated with the
/// grant's credential (`Authorization: Bearer cndg_…`); each page counts as one read and is
/// logged with the recipient as actor. Customers who withdrew consent or were restricted or
/// erased since the grant was made are left out; so are granted fields the catalog in force no
/// longer declares for the recipient and the grant's purpose (listed in `withheld`).
#[utoipa::path(get, path = "/v1/grants/{id}/records", tag = "sharing",
    params(("id" = String, Path, description = "Grant id"), RecordsQuery),
    responses(
        (status = 200, body = RecordsPage),
        (status = 401, description = "`unauthenticated`, `invalid_token` (not this grant's credential, or no such grant), `grant_revoked`, `grant_expired`", body = ErrorBody),
        (status = 403, description = "grant_exhausted, agreement_expired, recipient_not_declared (the catalog no longer declares the recipient for the grant's purpose), field_not_shared (nor for any of its fields)", body = ErrorBody),
        (status = 404, description = "`grant_not_found`: the grant's purpose is no longer in the catalog", body = ErrorBody),
    ),
    security(("grant" = [])))]
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
