//! `/v1/subjects`: create, read, correct and look up customers, and their behavioural events.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{BodyShape, JsonBody, SubjectPath};
use super::{AppState, rfc3339};
use crate::vault::{Authorized, DEFAULT_EVENT_PAGE, NewEventInput};

/// Fields to store or correct, by declared field name.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldsBody {
    /// Declared field name -> value. In a PATCH, `null` removes an optional field.
    #[schema(schema_with = named_values, example = json!({"email": "ada@example.com", "full_name": "Ada Lovelace"}))]
    pub fields: Map<String, Value>,
}

/// An object of one or more named values.
fn named_values() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new().min_properties(Some(1)).build()
}

impl BodyShape for FieldsBody {
    const EXPECTED: &'static str = r#"{"fields": {"<declared field name>": <value>, ...}}"#;
}

#[derive(Serialize, ToSchema)]
pub struct Created {
    pub id: String,
}

#[derive(Serialize, ToSchema)]
pub struct SubjectResponse {
    pub id: String,
    /// The purpose the fields were read under.
    pub purpose: String,
    /// The fields this purpose may see that hold a value.
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
    /// Declared fields this purpose may not see: withheld, not missing.
    pub withheld: Vec<String>,
    /// Fields in `fields` that are masked (e-mail `j***@example.com`, phone `***18`, …).
    pub masked: Vec<String>,
    /// The values are shown under a break-glass override (logged and shown to the customer).
    pub break_glass: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct CorrectionResponse {
    pub id: String,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LookupResponse {
    /// Ids of the subjects whose field equals the value (exact match).
    pub ids: Vec<String>,
}

/// Store a new customer.
#[utoipa::path(post, path = "/v1/subjects", tag = "subjects",
    params(("Candor-Purpose" = String, Header, description = "Why the data is collected (a declared purpose id)"), IdempotencyKey),
    request_body = FieldsBody,
    responses(
        (status = 201, description = "Stored", body = Created,
         headers(("Location" = String, description = "`/v1/subjects/{id}` of the new customer"))),
        (status = 403, description = "The role or purpose may not write a field (`field_not_allowed`, `purpose_not_allowed`, `policy_forbids`)", body = ErrorBody),
        (status = 409, description = "`duplicate_value`: another customer has this value of a `unique` field", body = ErrorBody),
        (status = 422, description = "`undeclared_field`, `invalid_value`, `missing_field`; `idempotency_key_reused`: the key came with another request", body = ErrorBody),
        (status = 503, description = "`key_rotation_required`: the key-encryption key has used its budget; or the database is unavailable (`database_unavailable`, `timeout`, `unavailable`)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_subject(
    State(state): State<AppState>,
    auth: Authorized,
    JsonBody(body): JsonBody<FieldsBody>,
) -> Result<impl IntoResponse, ApiError> {
    let id = state.vault.create_subject(&auth, &body.fields).await?;
    let mut headers = HeaderMap::new();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/subjects/{id}")) {
        headers.insert(header::LOCATION, loc);
    }
    Ok((StatusCode::CREATED, headers, Json(Created { id: id.to_string() })))
}

/// Read a customer's fields, as the declared purpose may see them.
#[utoipa::path(get, path = "/v1/subjects/{id}", tag = "subjects",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "Why the data is read")),
    responses(
        (status = 200, body = SubjectResponse),
        (status = 403, description = "`purpose_not_allowed`, `consent_required`, `restricted`, `policy_forbids`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_subject(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
) -> Result<Json<SubjectResponse>, ApiError> {
    let view = state.vault.read_subject(&auth, id).await?;
    Ok(Json(SubjectResponse {
        id: view.id.to_string(),
        purpose: auth.purpose.to_string(),
        fields: view.fields,
        withheld: view.withheld,
        masked: view.masked,
        break_glass: view.break_glass,
        created_at: rfc3339(view.created_at),
        updated_at: rfc3339(view.updated_at),
    }))
}

/// Correct fields (or remove optional ones with `null`). Old values are not kept.
#[utoipa::path(patch, path = "/v1/subjects/{id}", tag = "subjects",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "Why the data is changed"), IdempotencyKey),
    request_body = FieldsBody,
    responses(
        (status = 200, body = CorrectionResponse),
        (status = 403, description = "`field_not_allowed`, `purpose_not_allowed`, `consent_required`, `policy_forbids`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 409, description = "`duplicate_value`: another customer has this value of a `unique` field", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
        (status = 422, description = "`undeclared_field`, `invalid_value`, `required_field`; `idempotency_key_reused`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn correct_subject(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
    JsonBody(body): JsonBody<FieldsBody>,
) -> Result<Json<CorrectionResponse>, ApiError> {
    let c = state.vault.correct_subject(&auth, id, &body.fields).await?;
    Ok(Json(CorrectionResponse { id: id.to_string(), updated: c.updated, removed: c.removed }))
}

/// Find customers by the exact value of one lookup field (through its blind index).
#[utoipa::path(get, path = "/v1/subjects", tag = "subjects",
    params(
        ("lookup" = std::collections::HashMap<String, String>, Query, style = Form, explode,
         description = "Exactly one field declared `lookup = true` in the catalog and the value to match, as `?email=ada@example.com` (`meta.rs` adds: one name, a value that is not blank)",
         example = json!({"email": "ada@example.com"})),
        ("Candor-Purpose" = String, Header, description = "Why the lookup is made"),
    ),
    responses(
        (status = 200, body = LookupResponse),
        (status = 403, description = "`field_not_allowed`, `purpose_not_allowed`", body = ErrorBody),
        (status = 422, description = "`undeclared_field`, or `not_a_lookup_field`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn lookup_subjects(
    State(state): State<AppState>,
    auth: Authorized,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<LookupResponse>, ApiError> {
    let Query(pairs) = query.map_err(|_| ApiError::bad_request("invalid_query", "the query string is malformed"))?;
    let [(field, value)] = pairs.as_slice() else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "give exactly one lookup field and its value, for example ?email=ada@example.com",
        ));
    };
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("the value to look up for `{}` is empty", candor_core::write::echo_name(field)),
        )
        .with_field(candor_core::write::echo_name(field)));
    }
    let ids = state.vault.lookup(&auth, field, value).await?;
    Ok(Json(LookupResponse { ids: ids.iter().map(ToString::to_string).collect() }))
}

/// A behavioural event to record.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"type": "purchase", "data": {"item": "Notebook", "price_eur": 12.5}}))]
#[serde(deny_unknown_fields)]
pub struct NewEventBody {
    /// A declared event type, such as `page_view`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's details (a JSON object); sealed like any personal value.
    #[schema(value_type = Object)]
    #[serde(default = "empty_object")]
    pub data: Value,
    /// When it happened (RFC 3339), if not now.
    #[schema(format = DateTime)]
    pub occurred_at: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl BodyShape for NewEventBody {
    const EXPECTED: &'static str =
        r#"{"type": "<declared event type>", "data": {...}, "occurred_at": "<RFC 3339 time, optional>"}"#;
}

#[derive(Serialize, ToSchema)]
pub struct EventResponse {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub recorded_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Serialize, ToSchema)]
pub struct EventsResponse {
    pub events: Vec<EventResponse>,
    /// Declared event types this purpose may not see.
    pub withheld_types: Vec<String>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    /// Cursor from a previous page's `next`.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// The `{id}` of a customer in a path (described here, read by [`SubjectPath`]).
#[derive(IntoParams)]
#[allow(dead_code)]
#[into_params(parameter_in = Path)]
pub struct SubjectIdParam {
    /// The customer's id, as `POST /v1/subjects` returned it.
    #[param(format = Uuid, example = "7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70")]
    pub id: String,
}

/// The optional `Idempotency-Key` of a write that may be retried (described here, read by the
/// idempotency layer).
#[derive(IntoParams)]
#[allow(dead_code)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// 1 to 255 visible ASCII characters chosen by the client. A retry with the same key and the
    /// same request gets the first answer again, without making the change twice; the same key
    /// with another request is refused (`422 idempotency_key_reused`).
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    pub key: Option<String>,
}

/// Record a behavioural event (page view, purchase) for a customer.
#[utoipa::path(post, path = "/v1/subjects/{id}/events", tag = "events",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "Why the event is recorded"), IdempotencyKey),
    request_body = NewEventBody,
    responses(
        (status = 201, body = Created),
        (status = 403, description = "`event_type_not_allowed`, `purpose_not_allowed`, `consent_required`, `restricted`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
        (status = 422, description = "`undeclared_event_type`, `invalid_value`; `idempotency_key_reused`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn append_event(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
    JsonBody(body): JsonBody<NewEventBody>,
) -> Result<impl IntoResponse, ApiError> {
    let input = NewEventInput { event_type: body.event_type, data: body.data, occurred_at: body.occurred_at };
    let event = state.vault.append_event(&auth, id, input).await?;
    Ok((StatusCode::CREATED, Json(Created { id: event.to_string() })))
}

/// List a customer's events of the types the declared purpose may see, oldest first.
#[utoipa::path(get, path = "/v1/subjects/{id}/events", tag = "events",
    params(SubjectIdParam, EventsParams, ("Candor-Purpose" = String, Header, description = "Why the events are read")),
    responses(
        (status = 200, body = EventsResponse),
        (status = 403, description = "`purpose_not_allowed`, `consent_required`, `restricted`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_events(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
    query: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Json<EventsResponse>, ApiError> {
    let Query(params) = query.map_err(|_| {
        ApiError::bad_request("invalid_query", "the query string is malformed; only `after` and `limit` are accepted")
    })?;
    let after = match &params.after {
        None => None,
        Some(a) => Some(a.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request("invalid_query", "`after` must be the `next` value of a previous page")
                .with_field("after")
        })?),
    };
    let limit = match &params.limit {
        None => DEFAULT_EVENT_PAGE,
        Some(l) => {
            l.parse::<u32>().ok().filter(|n| (1..=crate::vault::MAX_EVENT_PAGE).contains(n)).ok_or_else(|| {
                ApiError::bad_request("invalid_query", "`limit` must be a whole number from 1 to 1000")
                    .with_field("limit")
            })?
        }
    };
    let page = state.vault.list_events(&auth, id, after, limit).await?;
    Ok(Json(EventsResponse {
        events: page
            .events
            .into_iter()
            .map(|e| EventResponse {
                id: e.id.to_string(),
                event_type: e.event_type,
                recorded_at: rfc3339(e.recorded_at),
                occurred_at: e.occurred_at,
                data: e.data,
            })
            .collect(),
        withheld_types: page.withheld_types,
        next: page.next.map(|n| n.to_string()),
    }))
}
