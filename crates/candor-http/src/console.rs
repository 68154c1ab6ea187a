//! The staff console's customer pages (find and serve a customer), and what every console page
//! shares (the signed-in `Person`, refusals as pages); the other pages are the submodules.
//!
//! Server-rendered forms over the same vault operations as the API, with the person's staff
//! session as the caller: `GET /console/customers` (find by a lookup field under a purpose the
//! person chooses, every time), `POST /console/customers/find`, `GET /console/customers/{id}`
//! (the record as the policy lets the role see it, masked fields marked), `POST
//! /console/customers/{id}/correct`, `POST /console/customers/{id}/events`, `POST
//! /console/customers/{id}/break-glass` and `POST /console/customers/{id}/erase`.
//!
//! Nothing here decides who may do what: every page calls `Vault::authorize` and the same vault
//! method as the API route it mirrors, so the policy decisions and log entries are the API's
//! (`subject.lookup`, `subject.read`, `subject.correct`, `event.append`, `break_glass.open`). Forms carry the
//! session's anti-forgery token; `[staff.require_mfa]` guards the break-glass form as it guards
//! the API call. Personal values are shown to the person, never put in a URL or the server log:
//! the search is a POST and the record's address holds only the customer id and the purpose.

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use candor_core::SubjectId;
use candor_core::catalog::FieldType;
use serde::Deserialize;
use serde_json::{Map, Value};

mod accountability;
mod incidents;
mod log;
mod requests;
mod sharing;

pub use accountability::accountability;
pub use incidents::{incidents, record as record_breach, update as update_breach};
pub use log::log;
use requests::requests_purpose;
pub use requests::{close_request, export, report, request_page, requests, restrict, update_request};
pub use sharing::{retry_notice, sharing, stop_grant};

use super::AppState;
use super::error::ApiError;
use super::pages::render;
use super::sign_in::field;
use crate::vault::{Authorized, Principal, SubjectView};

/// What every console work page shows of the signed-in person.
pub struct Person {
    pub role: String,
    pub csrf: String,
    /// Whether the role answers privacy requests (the menu links the queue only then).
    pub handles_requests: bool,
    /// Whether the role reads the whole log (the menu links the log view only then).
    pub audits: bool,
}

/// One purpose the person's role acts under, as the purpose menu offers it.
pub struct PurposeChoice {
    pub id: String,
    pub description: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "console_find.html")]
struct FindPage {
    brand: String,
    person: Person,
    purposes: Vec<PurposeChoice>,
    lookup_fields: Vec<(String, bool)>,
    /// What the last search found, if there was one.
    outcome: Option<String>,
    matches: Vec<String>,
    purpose: String,
}

#[derive(Template)]
#[template(path = "console_customer.html")]
struct CustomerPage {
    brand: String,
    person: Person,
    id: String,
    purpose: String,
    purpose_description: String,
    /// (field, value as text, masked)
    fields: Vec<(String, String, bool)>,
    withheld: Vec<String>,
    /// Fields this page offers to correct (text-like values the purpose covers).
    correctable: Vec<String>,
    /// Event types the catalog lets this purpose record.
    event_types: Vec<String>,
    /// Until when (UTC) an open break-glass override unmasks this customer for this person.
    break_glass_until: Option<String>,
    may_break_glass: bool,
    /// The role may erase (the catalog's `erase = true`) and acts under a customer-requests purpose.
    may_erase: bool,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "console_message.html")]
struct MessagePage {
    brand: String,
    person: Option<Person>,
    heading: String,
    message: String,
    link: Option<(String, String)>,
}

// The signed-in person, for the menu: a page the role would be refused is not linked.
impl FindPage {
    fn who(&self) -> Option<&Person> {
        Some(&self.person)
    }
}
impl CustomerPage {
    fn who(&self) -> Option<&Person> {
        Some(&self.person)
    }
}
impl MessagePage {
    fn who(&self) -> Option<&Person> {
        self.person.as_ref()
    }
}

fn brand(state: &AppState) -> String {
    state.vault.catalog().organisation.name.clone()
}

/// A refusal or failure as a console page: the API's status and message, a way back.
fn refused(state: &AppState, person: Option<Person>, e: ApiError, back: Option<String>) -> Response {
    let heading = match e.status {
        StatusCode::UNAUTHORIZED => "Please sign in",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::GONE => "This customer was erased",
        StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => "This could not be done",
        _ => "Something went wrong",
    };
    let link = match (e.status, back) {
        (StatusCode::UNAUTHORIZED, _) => Some(("/console/sign-in".to_string(), "Sign in".to_string())),
        (_, _) if e.code == "reauthentication_required" => {
            Some((super::staff::REAUTH_PATH.to_string(), "Sign in again with a second factor".to_string()))
        }
        (_, Some(back)) => Some((back, "Back".to_string())),
        (_, None) => Some(("/console/customers".to_string(), "Find a customer".to_string())),
    };
    let message = format!("{} ({})", e.message, e.code);
    render(e.status, &MessagePage { brand: brand(state), person, heading: heading.into(), message, link })
}

/// The signed-in person behind a console request: their principal and what the page shows of
/// them. `csrf` is the form's anti-forgery token (`None` on a GET).
async fn person(state: &AppState, parts: &Parts, csrf: Option<&str>) -> Result<(Principal, Person), Response> {
    let not_signed_in =
        || ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in at /console to use the staff console");
    let principal = match super::staff::session_principal_with(parts, state, csrf).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(refused(state, None, not_signed_in(), None)),
        Err(e) => return Err(refused(state, None, e, None)),
    };
    let csrf = super::staff::console_csrf(state, &parts.headers).unwrap_or_default();
    let person = person_for(state, &principal.role, csrf);
    let client = parts.extensions.get::<super::client::ClientIp>().copied();
    let origin = client.and_then(|c| state.caller_origin(c));
    let principal = Principal { origin, ..principal };
    Ok((principal, person))
}

/// The signed-in person behind an auditor's page or form (a form's anti-forgery token `csrf`
/// checked), refused — and the refusal logged — unless their role audits (admin or
/// `audit = true`).
async fn auditor(state: &AppState, parts: &Parts, csrf: Option<&str>) -> Result<(Principal, Person), Response> {
    let (principal, person) = person(state, parts, csrf).await?;
    match state.vault.require_audit(&principal).await {
        Ok(()) => Ok((principal, person)),
        Err(e) => Err(refused(state, Some(person), e.into(), None)),
    }
}

/// What the console shows of a signed-in person with `role`, and the menu their role gets.
pub fn person_for(state: &AppState, role: &str, csrf: String) -> Person {
    let handles_requests = requests_purpose(state, role).is_some();
    Person { role: role.to_string(), csrf, handles_requests, audits: state.vault.may_audit(role) }
}

/// The purposes the role acts under, the chosen one marked.
fn purposes_of(state: &AppState, role: &str, chosen: &str) -> Vec<PurposeChoice> {
    let catalog = state.vault.catalog();
    let Some(role) = catalog.roles.iter().find(|r| r.id.as_str() == role) else { return Vec::new() };
    role.purposes
        .iter()
        .filter_map(|p| catalog.purposes.iter().find(|d| d.id == *p))
        .map(|p| PurposeChoice {
            id: p.id.to_string(),
            description: p.description.clone(),
            selected: p.id.as_str() == chosen,
        })
        .collect()
}

fn find_page(state: &AppState, person: Person, purpose: &str, field: &str) -> FindPage {
    let purposes = purposes_of(state, &person.role, purpose);
    let lookup_fields = state
        .vault
        .catalog()
        .fields
        .iter()
        .filter(|f| f.lookup)
        .map(|f| (f.name.to_string(), f.name.as_str() == field))
        .collect();
    FindPage {
        brand: brand(state),
        person,
        purposes,
        lookup_fields,
        outcome: None,
        matches: Vec::new(),
        purpose: purpose.to_string(),
    }
}

/// `GET /console/customers`: the search form.
pub async fn find_form(State(state): State<AppState>, parts: Parts) -> Response {
    let (_, person) = match person(&state, &parts, None).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    render(StatusCode::OK, &find_page(&state, person, "", ""))
}

/// `POST /console/customers/find` (form: `csrf`, `purpose`, `field`, `value`): the API's lookup
/// under the chosen purpose; one match opens the record, several are listed.
pub async fn find(
    State(state): State<AppState>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let (principal, person) = match person(&state, &parts, field(&form, "csrf")).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let purpose = field(&form, "purpose").unwrap_or("").trim().to_string();
    let lookup = field(&form, "field").unwrap_or("").trim().to_string();
    let value = field(&form, "value").unwrap_or("");
    let back = Some("/console/customers".to_string());
    if value.trim().is_empty() {
        let e = ApiError::bad_request("invalid_query", "type the value to look for").with_field("value");
        return refused(&state, Some(person), e, back);
    }
    let auth = match state.vault.authorize(principal, Some(&purpose), None).await {
        Ok(a) => a,
        Err(e) => return refused(&state, Some(person), e.into(), back),
    };
    let ids = match state.vault.lookup(&auth, &lookup, value).await {
        Ok(ids) => ids,
        Err(e) => return refused(&state, Some(person), e.into(), back),
    };
    if let [one] = ids.as_slice() {
        return Redirect::to(&record_path(*one, &purpose, None)).into_response();
    }
    let mut page = find_page(&state, person, &purpose, &lookup);
    page.outcome = Some(match ids.len() {
        0 => format!("No customer has that {lookup}."),
        n => format!("{n} customers have that {lookup}; open the one you are serving."),
    });
    page.matches = ids.iter().map(|id| id.to_string()).collect();
    render(StatusCode::OK, &page)
}

/// The record page's address: the customer id and the purpose (a declared purpose id, which
/// `Vault::authorize` accepted before any path is built from it), never a personal value.
fn record_path(id: SubjectId, purpose: &str, done: Option<&str>) -> String {
    let mut path = format!("/console/customers/{id}?purpose={purpose}");
    if let Some(done) = done {
        path.push_str(&format!("&done={done}"));
    }
    path
}

#[derive(Deserialize)]
pub struct RecordQuery {
    purpose: Option<String>,
    done: Option<String>,
}

/// The page for a console path whose customer id is not one.
fn no_such_customer(state: &AppState, person: Person) -> Response {
    let e = ApiError::new(StatusCode::NOT_FOUND, "subject_not_found", "no customer has that id");
    refused(state, Some(person), e, None)
}

/// `GET /console/customers/{id}?purpose=P`: the record, read exactly as `GET /v1/subjects/{id}`
/// with `Candor-Purpose: P` (and logged so).
pub async fn record(
    State(state): State<AppState>,
    axum::extract::Path(raw): axum::extract::Path<String>,
    query: Result<Query<RecordQuery>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Response {
    let (principal, person) = match person(&state, &parts, None).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let Some(id) = SubjectId::parse(&raw) else { return no_such_customer(&state, person) };
    let (purpose, done) = match query {
        Ok(Query(q)) => (q.purpose.unwrap_or_default(), q.done),
        Err(_) => (String::new(), None),
    };
    if purpose.is_empty() {
        let e = ApiError::bad_request("unknown_purpose", "choose the purpose you are serving this customer for")
            .with_field("purpose");
        return refused(&state, Some(person), e, None);
    }
    let auth = match state.vault.authorize(principal, Some(&purpose), Some(id)).await {
        Ok(a) => a,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let view = match state.vault.read_subject(&auth, id).await {
        Ok(v) => v,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let until = if view.break_glass {
        match state.vault.break_glass_until(&auth, id).await {
            Ok(until) => until.map(crate::clock::utc_second),
            Err(e) => return refused(&state, Some(person), e.into(), None),
        }
    } else {
        None
    };
    render(StatusCode::OK, &customer_page(&state, person, &auth, view, until, done))
}

fn customer_page(
    state: &AppState,
    person: Person,
    auth: &Authorized,
    view: SubjectView,
    break_glass_until: Option<String>,
    done: Option<String>,
) -> CustomerPage {
    let catalog = state.vault.catalog();
    let purpose = auth.purpose.as_str();
    let fields =
        view.fields.iter().map(|(name, value)| (name.clone(), shown(value), view.masked.contains(name))).collect();
    let correctable = catalog
        .fields
        .iter()
        .filter(|f| f.purposes.iter().any(|p| p.as_str() == purpose) && form_value_type(f.field_type))
        .map(|f| f.name.to_string())
        .collect();
    let role = catalog.roles.iter().find(|r| r.id.as_str() == auth.principal.role);
    CustomerPage {
        brand: brand(state),
        person,
        id: view.id.to_string(),
        purpose: purpose.to_string(),
        purpose_description: catalog
            .purposes
            .iter()
            .find(|p| p.id.as_str() == purpose)
            .map(|p| p.description.clone())
            .unwrap_or_default(),
        fields,
        withheld: view.withheld,
        correctable,
        break_glass_until,
        may_break_glass: role.is_some_and(|r| r.break_glass) && !view.break_glass,
        may_erase: role.is_some_and(|r| r.erase) && catalog.purpose(purpose).is_some_and(|p| p.customer_requests),
        event_types: catalog.events.iter().filter(|e| e.allows(&auth.purpose)).map(|e| e.name.to_string()).collect(),
        done: done.filter(|d| matches!(d.as_str(), "corrected" | "break_glass" | "event")),
    }
}

/// A value as the page shows it (text as it is, anything else as JSON).
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Field types a one-line form can correct (a postal address or a list needs the API).
fn form_value_type(t: FieldType) -> bool {
    matches!(t, FieldType::Text | FieldType::Email | FieldType::Phone | FieldType::Date | FieldType::Number)
}

/// The signed-in person, the customer id and the purpose a console form acts under.
async fn form_context(
    state: &AppState,
    parts: &Parts,
    raw: &str,
    form: &[(String, String)],
) -> Result<(Authorized, Person, SubjectId), Response> {
    let (principal, person) = person(state, parts, field(form, "csrf")).await?;
    let Some(id) = SubjectId::parse(raw) else { return Err(no_such_customer(state, person)) };
    let purpose = field(form, "purpose").unwrap_or("").trim().to_string();
    match state.vault.authorize(principal, Some(&purpose), Some(id)).await {
        Ok(auth) => Ok((auth, person, id)),
        Err(e) => Err(refused(state, Some(person), e.into(), None)),
    }
}

/// `POST /console/customers/{id}/correct` (form: `csrf`, `purpose`, `field`, `value`; an empty
/// value removes an optional field): `PATCH /v1/subjects/{id}` with that one field.
pub async fn correct(
    State(state): State<AppState>,
    axum::extract::Path(raw): axum::extract::Path<String>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let (auth, person, id) = match form_context(&state, &parts, &raw, &form).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let back = Some(record_path(id, auth.purpose.as_str(), None));
    let name = field(&form, "field").unwrap_or("").trim().to_string();
    let text = field(&form, "value").unwrap_or("").trim();
    let value = match state.vault.catalog().field(&name).map(|f| f.field_type) {
        _ if text.is_empty() => Value::Null,
        Some(FieldType::Number) => match text.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            Some(n) => Value::Number(n),
            None => {
                let e = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_value",
                    format!("`{name}` takes a number"),
                )
                .with_field(&name);
                return refused(&state, Some(person), e, back);
            }
        },
        Some(t) if form_value_type(t) => Value::String(text.to_string()),
        // Undeclared (the vault refuses and logs it) or a structured value the form cannot hold.
        None => Value::String(text.to_string()),
        Some(_) => {
            let e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_value",
                format!("`{name}` is a structured value; correct it through the API (PATCH /v1/subjects/{{id}})"),
            )
            .with_field(&name);
            return refused(&state, Some(person), e, back);
        }
    };
    let fields = Map::from_iter([(name, value)]);
    match state.vault.correct_subject(&auth, id, &fields).await {
        Ok(_) => Redirect::to(&record_path(id, auth.purpose.as_str(), Some("corrected"))).into_response(),
        Err(e) => refused(&state, Some(person), e.into(), back),
    }
}

/// `POST /console/customers/{id}/break-glass` (form: `csrf`, `purpose`, `reason`): `POST
/// /v1/subjects/{id}/break-glass`, same rules, same log entry.
pub async fn break_glass(
    State(state): State<AppState>,
    axum::extract::Path(raw): axum::extract::Path<String>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let (auth, person, id) = match form_context(&state, &parts, &raw, &form).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let back = Some(record_path(id, auth.purpose.as_str(), None));
    match state.vault.open_break_glass(&auth, id, field(&form, "reason")).await {
        Ok(_) => Redirect::to(&record_path(id, auth.purpose.as_str(), Some("break_glass"))).into_response(),
        Err(e) => refused(&state, Some(person), e.into(), back),
    }
}

/// Longest note a console event holds.
const EVENT_NOTE_MAX: usize = 2000;

/// `POST /console/customers/{id}/events` (form: `csrf`, `purpose`, `event_type`, `note`):
/// `POST /v1/subjects/{id}/events` with `{"type": event_type, "data": {"note": note}}` — same
/// rules (the catalog's event types for the purpose, the policy), same log entry.
pub async fn append_event(
    State(state): State<AppState>,
    axum::extract::Path(raw): axum::extract::Path<String>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let (auth, person, id) = match form_context(&state, &parts, &raw, &form).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let back = Some(record_path(id, auth.purpose.as_str(), None));
    let note = field(&form, "note").unwrap_or("").trim();
    if note.is_empty() || note.chars().count() > EVENT_NOTE_MAX {
        let e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            format!("say what happened in 1 to {EVENT_NOTE_MAX} characters"),
        )
        .with_field("note");
        return refused(&state, Some(person), e, back);
    }
    let input = crate::vault::NewEventInput {
        event_type: field(&form, "event_type").unwrap_or("").trim().to_string(),
        data: serde_json::json!({ "note": note }),
        occurred_at: None,
    };
    match state.vault.append_event(&auth, id, input).await {
        Ok(_) => Redirect::to(&record_path(id, auth.purpose.as_str(), Some("event"))).into_response(),
        Err(e) => refused(&state, Some(person), e.into(), back),
    }
}

/// The word a person types to confirm an erasure (it cannot be undone).
const ERASE_CONFIRMATION: &str = "erase";

#[derive(Template)]
#[template(path = "console_erased.html")]
struct ErasedPage {
    brand: String,
    person: Person,
    id: String,
    /// The signed erasure certificate, as the API returns it.
    certificate: String,
    /// The privacy request the erasure answers, when it was done from one (to close it next).
    request: Option<String>,
}

impl ErasedPage {
    fn who(&self) -> Option<&Person> {
        Some(&self.person)
    }
}

/// `POST /console/customers/{id}/erase` (form: `csrf`, `purpose`, `confirm` = `erase`, and the
/// `request` it answers, if any, so the certificate page offers to close it):
/// `DELETE /v1/subjects/{id}` — same rules (the role's `erase`, a customer-requests purpose,
/// the erasure brake, legal holds, `[staff.require_mfa]`), same log entry — and the signed
/// certificate shown. Without the typed confirmation nothing happens.
pub async fn erase(
    State(state): State<AppState>,
    axum::extract::Path(raw): axum::extract::Path<String>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let (auth, person, id) = match form_context(&state, &parts, &raw, &form).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let back = Some(record_path(id, auth.purpose.as_str(), None));
    if field(&form, "confirm").map(str::trim) != Some(ERASE_CONFIRMATION) {
        let e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "confirmation_required",
            format!("type `{ERASE_CONFIRMATION}` to confirm: an erasure cannot be undone"),
        )
        .with_field("confirm");
        return refused(&state, Some(person), e, back);
    }
    match state.vault.erase_subject(&auth, id).await {
        Ok(certificate) => {
            let certificate = serde_json::to_string_pretty(&certificate).unwrap_or_default();
            // Only an id the way requests are named goes back into the page's form.
            let request = field(&form, "request")
                .filter(|r| !r.is_empty() && r.len() <= 64 && r.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
                .map(str::to_string);
            render(
                StatusCode::OK,
                &ErasedPage { brand: brand(&state), person, id: id.to_string(), certificate, request },
            )
        }
        Err(e) => refused(&state, Some(person), e.into(), back),
    }
}
