//! The signed-in privacy center: one page per task (My data, Choices, Who accessed my data,
//! Download, Correct, Delete, Check a message). Server-rendered, no script; every form is a POST
//! with the session's anti-forgery token. Each handler calls one vault operation as the
//! signed-in customer (see `vault/center.rs`) and renders its result.

use askama::Template;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use candor_core::catalog::{CUSTOMER_ROLE, Catalog, Channel, FieldType};
use candor_core::consent::{ConsentStatus, RequestedChange, SlotState};
use candor_core::notice::purpose_notice_plain;
use candor_core::privacy_notice::{
    action_plain, category_label, channel_plain, event_history_label, field_label, item_label, label, purpose_plain,
    retention_plain,
};
use serde_json::{Map, Value};

use super::AppState;
use super::error::ApiError;
use super::pages::{Chrome, day, error_page, minute, render};
use super::report::export_response;
use super::sign_in::{SignedIn, field};
use crate::vault::{Document, VaultError};

mod requests;

pub use requests::own_requests;

type FormData = Result<axum::Form<Vec<(String, String)>>, FormRejection>;

/// A held value as text for a page (an address on one line, parts separated by commas).
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(parts) => ADDRESS_PARTS
            .iter()
            .filter_map(|(k, _)| parts.get(*k).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The address parts of `candor_core::value::ADDRESS_KEYS`, with their labels on the form.
const ADDRESS_PARTS: [(&str, &str); 6] = [
    ("street", "Street and number"),
    ("line2", "Address line 2"),
    ("postal_code", "Postal code"),
    ("city", "City"),
    ("region", "Region"),
    ("country", "Country (two letters, such as DE)"),
];

// ------------------------------------------------------------------ My data

struct DataItem {
    label: String,
    value: String,
    /// Each purpose's description and its legal basis, in the notice's words.
    why: Vec<(String, String)>,
    kept: String,
    shared_with: String,
}

struct DataGroup {
    label: &'static str,
    items: Vec<DataItem>,
}

#[derive(Template)]
#[template(path = "center_data.html")]
struct DataPage<'a> {
    chrome: Chrome,
    org: &'a str,
    subject: String,
    stored_in: &'a str,
    restricted: bool,
    legal_hold: bool,
    groups: Vec<DataGroup>,
    events: Vec<String>,
    /// Security incidents that affected the customer: (date, notice text).
    incidents: Vec<(String, String)>,
}

/// `GET /privacy/me`: everything held, grouped by category, with why, where and until when.
pub async fn my_data(State(state): State<AppState>, me: SignedIn) -> Response {
    let vault = &state.vault;
    let (head, _events) = match vault.report_head(me.session.auth(), me.session.subject, Document::Report).await {
        Ok(h) => h,
        Err(e) => return error_page(&state, e),
    };
    let catalog = vault.catalog();
    let mut groups: Vec<DataGroup> = Vec::new();
    for (name, value, about) in &head.fields {
        let category = catalog.field(name.as_str()).map(|d| d.category);
        let why = about["purposes"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        Some((p["why"].as_str()?.to_string(), p["legal_basis_plain"].as_str()?.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let kept = match about["delete_after"].as_str() {
            Some(t) => format!("{} ({})", day_of(t), about["kept"].as_str().unwrap_or_default()),
            None => about["kept"].as_str().unwrap_or_default().to_string(),
        };
        let recipients: Vec<String> = about["recipients"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        format!(
                            "{} ({})",
                            r["name"].as_str().unwrap_or_default(),
                            r["country"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let item = DataItem {
            label: field_label(catalog, name.as_str()),
            value: value_text(value),
            why,
            kept,
            shared_with: if recipients.is_empty() { "Nobody".into() } else { recipients.join(", ") },
        };
        let group_label = category.map_or("Other", category_label);
        match groups.iter_mut().find(|g| g.label == group_label) {
            Some(g) => g.items.push(item),
            None => groups.push(DataGroup { label: group_label, items: vec![item] }),
        }
    }
    let events = head
        .event_counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| {
            let records = format!("{n} record{}", if *n == 1 { "" } else { "s" });
            match catalog.event(t.as_str()) {
                Some(e) => {
                    format!(
                        "{}: {records}, each kept {}.",
                        event_history_label(t.as_str()),
                        retention_plain(&e.retention)
                    )
                }
                None => format!("{}: {records}.", item_label(catalog, t.as_str())),
            }
        })
        .collect();
    let incidents = match vault.own_breaches(&me.session).await {
        Ok(list) => list.iter().map(|b| (day(b.detected_at), vault.breach_notice_text(b))).collect(),
        Err(e) => return error_page(&state, e),
    };
    let page = DataPage {
        incidents,
        chrome: state.chrome("data", Some(me.csrf.clone())),
        org: &catalog.organisation.name,
        subject: head.subject.to_string(),
        stored_in: &catalog.organisation.storage_region,
        restricted: head.restricted,
        legal_hold: head.legal_hold,
        groups,
        events,
    };
    render(StatusCode::OK, &page)
}

fn day_of(rfc3339: &str) -> &str {
    rfc3339.get(..10).unwrap_or(rfc3339)
}

// ------------------------------------------------------------------ Choices

struct ChoiceSlot {
    key: String,
    label: String,
    checked: bool,
    status: String,
}

struct ChoicePurpose {
    /// What the purpose is for (its description, as the public notice says it).
    title: String,
    /// The rest of its notice in the public notice's words (the hashed notice text that the
    /// consent is recorded on keeps the catalog's names; see `purpose_notice_plain`).
    notice: String,
    slots: Vec<ChoiceSlot>,
}

#[derive(Template)]
#[template(path = "center_choices.html")]
struct ChoicesPage<'a> {
    chrome: Chrome,
    org: &'a str,
    purposes: Vec<ChoicePurpose>,
    saved: Option<String>,
}

fn slot_key(s: &SlotState) -> String {
    match s.slot.channel {
        Some(c) => format!("{}.{}", s.slot.purpose, c.name()),
        None => s.slot.purpose.to_string(),
    }
}

fn channel_label(c: Channel) -> String {
    format!("By {}", channel_plain(c))
}

fn status_text(s: &SlotState) -> String {
    match (s.status, s.since) {
        (ConsentStatus::Granted, Some(t)) => format!("On since {}", day(t)),
        (ConsentStatus::Granted, None) => "On".into(),
        (ConsentStatus::Withdrawn, Some(t)) => format!("Off since {}", day(t)),
        (ConsentStatus::Withdrawn, None) | (ConsentStatus::NotGiven, _) => "Off".into(),
        (ConsentStatus::RenewalNeeded, _) => {
            "Off: what we do with it changed since you agreed; turn it on again if you still agree".into()
        }
    }
}

fn choices_page(state: &AppState, csrf: String, states: &[SlotState], saved: Option<String>) -> Response {
    let catalog: &Catalog = state.vault.catalog();
    let mut purposes: Vec<ChoicePurpose> = Vec::new();
    for p in catalog.purposes.iter().filter(|p| p.needs_consent()) {
        let slots = states
            .iter()
            .filter(|s| s.slot.purpose == p.id)
            .map(|s| ChoiceSlot {
                key: slot_key(s),
                label: s.slot.channel.map_or_else(|| "Yes, I agree".to_string(), channel_label),
                checked: s.is_active(),
                status: status_text(s),
            })
            .collect();
        purposes.push(ChoicePurpose {
            title: p.description.clone(),
            notice: purpose_notice_plain(catalog, p).trim_end().into(),
            slots,
        });
    }
    let page =
        ChoicesPage { chrome: state.chrome("choices", Some(csrf)), org: &catalog.organisation.name, purposes, saved };
    render(StatusCode::OK, &page)
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
}

/// `GET /privacy/me/choices`: every consent, on or off, with the text it is given on.
pub async fn choices(State(state): State<AppState>, me: SignedIn) -> Response {
    match state.vault.consents(me.session.auth(), me.session.subject).await {
        Ok(overview) => choices_page(&state, me.csrf, &overview.states, None),
        Err(e) => error_page(&state, e),
    }
}

/// `POST /privacy/me/choices` (form: `shown` and `on` per slot): records what changed, with
/// method `privacy_center`.
pub async fn save_choices(
    State(state): State<AppState>,
    me: SignedIn,
    headers: axum::http::HeaderMap,
    form: FormData,
) -> Response {
    if let Some(r) = me.refuse_forged(&state, &form) {
        return r;
    }
    let form = form.map(|f| f.0).unwrap_or_default();
    let overview = match state.vault.consents(me.session.auth(), me.session.subject).await {
        Ok(o) => o,
        Err(e) => return error_page(&state, e),
    };
    let has = |name: &str, key: &str| form.iter().any(|(k, v)| k == name && v == key);
    let mut changes = Vec::new();
    for s in &overview.states {
        let key = slot_key(s);
        let on = has("on", &key);
        let action = match (on, s.is_active(), has("shown", &key)) {
            (true, false, _) => "grant",
            (false, true, true) => "withdraw",
            _ => continue,
        };
        changes.push(RequestedChange {
            purpose: s.slot.purpose.to_string(),
            channel: s.slot.channel.map(|c| c.name().to_string()),
            action: action.into(),
        });
    }
    // A Global Privacy Control signal withdraws what it covers, except what is chosen right here.
    let gpc = headers.get("sec-gpc").is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
    if changes.is_empty() && !gpc {
        return choices_page(&state, me.csrf, &overview.states, Some("Nothing changed.".into()));
    }
    let n = changes.len();
    match state.vault.change_own_consents(&me.session, changes, gpc).await {
        Ok(outcome) if n == 0 => choices_page(&state, me.csrf, &outcome.states, Some("Nothing changed.".into())),
        Ok(outcome) => {
            let saved = format!(
                "Saved: {n} choice{} changed. Each change has a signed receipt.",
                if n == 1 { "" } else { "s" }
            );
            choices_page(&state, me.csrf, &outcome.states, Some(saved))
        }
        Err(e) => error_page(&state, e),
    }
}

// ------------------------------------------------------------------ Who accessed my data

struct AccessRow {
    when: String,
    who: String,
    what: &'static str,
    purpose: String,
    fields: String,
    break_glass: bool,
    refused: bool,
}

struct ShareRow {
    recipient: String,
    fields: String,
    purpose: String,
    when: String,
    until: String,
    state: String,
}

struct OverrideRow {
    when: String,
    until: String,
    who: String,
    purpose: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "center_access.html")]
struct AccessPage {
    chrome: Chrome,
    rows: Vec<AccessRow>,
    total: usize,
    /// The customer's own visits to the privacy center are left out unless asked for.
    own_hidden: usize,
    show_own: bool,
    overrides: Vec<OverrideRow>,
    shares: Vec<ShareRow>,
    /// What independent witnesses have confirmed of the log, if the installation has any.
    witnessed: Option<Witnessed>,
}

/// The log as the witnesses confirmed it, in the customer's words.
struct Witnessed {
    /// The witnesses' names, joined.
    names: String,
    count: usize,
    /// Entries listed here that the cosigned checkpoint covers, and all entries listed.
    covered: usize,
    listed: usize,
}

#[derive(serde::Deserialize)]
pub struct AccessQuery {
    mine: Option<String>,
}

/// Who a log actor is, in the customer's words: roles, never staff names.
fn who(catalog: &Catalog, role: &str, token: &str, own_session: &str) -> String {
    match role {
        CUSTOMER_ROLE if token == own_session => "You, in this privacy center (now)".into(),
        CUSTOMER_ROLE => "You, in this privacy center".into(),
        "system" => format!("{}'s systems, automatically", catalog.organisation.name),
        "admin" => "An administrator".into(),
        r if candor_log::actor::recipient_of(r).is_some() => {
            let id = candor_log::actor::recipient_of(r).unwrap_or_default();
            match catalog.recipients.iter().find(|x| x.id == id) {
                Some(x) => format!("{} ({}), a company we share data with", x.name, x.country),
                None => label(id),
            }
        }
        "public" => "Someone holding a message we sent you".into(),
        r => catalog
            .role(r)
            .and_then(|r| r.description.as_deref())
            .map(|d| d.trim_end_matches('.').to_string())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| label(r)),
    }
}

fn purpose_text(catalog: &Catalog, purpose: Option<&str>) -> String {
    match purpose {
        Some(p) => purpose_plain(catalog, p).trim_end_matches('.').to_string(),
        None => "—".into(),
    }
}

/// `GET /privacy/me/access[?mine=1]`: the latest log entries about the customer (their own
/// visits here only with `mine`), break-glass overrides first.
pub async fn access(
    State(state): State<AppState>,
    me: SignedIn,
    query: Result<axum::extract::Query<AccessQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let show_own = query.ok().and_then(|q| q.0.mine).is_some_and(|m| m == "1");
    let history = match state.vault.own_access_history(&me.session).await {
        Ok(h) => h,
        Err(e) => return error_page(&state, e),
    };
    let catalog = state.vault.catalog();
    let own = candor_log::actor::session(&me.session.id);
    let by_customer = |e: &Value| e["actor"]["role"] == CUSTOMER_ROLE;
    let own_hidden = if show_own { 0 } else { history.entries.iter().filter(|(_, e)| by_customer(e)).count() };
    let rows = history
        .entries
        .iter()
        .rev()
        .filter(|(_, e)| show_own || !by_customer(e))
        .map(|(_, e)| {
            let fields: Vec<String> = e["fields"]
                .as_array()
                .map(|fs| fs.iter().filter_map(Value::as_str).map(|f| item_label(catalog, f)).collect())
                .unwrap_or_default();
            let decision = e["decision"].as_str().unwrap_or_default();
            AccessRow {
                when: minute(e["time"].as_str().unwrap_or_default()),
                who: who(
                    catalog,
                    e["actor"]["role"].as_str().unwrap_or_default(),
                    e["actor"]["token"].as_str().unwrap_or_default(),
                    &own,
                ),
                what: action_plain(e["action"].as_str().unwrap_or_default()),
                purpose: purpose_text(catalog, e["purpose"].as_str()),
                fields: if fields.is_empty() { "—".into() } else { fields.join(", ") },
                break_glass: decision == "break_glass" || e["action"] == candor_log::Action::BreakGlassOpen.as_str(),
                refused: decision == "denied",
            }
        })
        .collect();
    let overrides = history
        .overrides
        .iter()
        .rev()
        .map(|o| OverrideRow {
            when: minute(&super::rfc3339(o.opened_at)),
            until: minute(&super::rfc3339(o.expires_at)),
            who: who(catalog, &o.role, "", &own),
            purpose: purpose_text(catalog, Some(&o.purpose)),
            reason: o.reason.clone(),
        })
        .collect();
    let now = crate::vault::now_millis();
    let shares = history
        .shares
        .iter()
        .rev()
        .map(|s| ShareRow {
            recipient: format!("{} ({})", s.recipient_name, s.country),
            fields: s.fields.iter().map(|f| field_label(catalog, f)).collect::<Vec<_>>().join(", "),
            purpose: purpose_text(catalog, Some(&s.purpose)),
            when: minute(&super::rfc3339(s.created_at)),
            until: minute(&super::rfc3339(s.expires_at)),
            state: match s.revoked_at {
                Some(t) => format!("Stopped on {}", day(t)),
                None if s.expires_at <= now => "Ended".into(),
                None => "Active".into(),
            },
        })
        .collect();
    let witnessed = state.witnesses.as_ref().map(|w| {
        let cosigned = w.cosigned();
        let size = cosigned.as_ref().map_or(0, |c| c.size);
        Witnessed {
            names: cosigned.as_ref().map(|c| c.witnesses.join(", ")).unwrap_or_default(),
            count: cosigned.as_ref().map_or(0, |c| c.witnesses.len()),
            covered: history.entries.iter().filter(|(i, _)| *i < size).count(),
            listed: history.entries.len(),
        }
    });
    let page = AccessPage {
        chrome: state.chrome("access", Some(me.csrf)),
        rows,
        total: history.total,
        own_hidden,
        show_own,
        overrides,
        shares,
        witnessed,
    };
    render(StatusCode::OK, &page)
}

// ------------------------------------------------------------------ Download

#[derive(Template)]
#[template(path = "center_download.html")]
struct DownloadPage<'a> {
    chrome: Chrome,
    org: &'a str,
}

/// `GET /privacy/me/download`
pub async fn download_page(State(state): State<AppState>, me: SignedIn) -> Response {
    let page =
        DownloadPage { chrome: state.chrome("download", Some(me.csrf)), org: &state.vault.catalog().organisation.name };
    render(StatusCode::OK, &page)
}

/// `POST /privacy/me/download` (form: `format` = json | csv): the export, as a file.
pub async fn download(State(state): State<AppState>, me: SignedIn, form: FormData) -> Response {
    if let Some(r) = me.refuse_forged(&state, &form) {
        return r;
    }
    let format = form.as_ref().ok().and_then(|f| field(&f.0, "format"));
    if format == Some("proof") {
        return history_bundle(&state, &me).await;
    }
    let csv = format == Some("csv");
    match export_response(&state.vault, me.session.auth(), me.session.subject, csv, true).await {
        Ok(r) => r,
        Err(e) => error_page(&state, e),
    }
}

/// The customer's history proof bundle as a file (`candor verify history` checks it).
async fn history_bundle(state: &AppState, me: &SignedIn) -> Response {
    let witnesses = match crate::witnesses::witness_view(state).await {
        Ok(w) => w,
        Err(e) => return error_page(state, e),
    };
    match state.vault.own_history_bundle(&me.session, witnesses).await {
        Ok(bundle) => {
            let mut body = serde_json::to_vec_pretty(&bundle).expect("a bundle serialises");
            body.push(b'\n');
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CONTENT_DISPOSITION, "attachment; filename=\"history-proof.json\""),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => error_page(state, e),
    }
}

// ------------------------------------------------------------------ Correct

struct CorrectField {
    name: String,
    label: String,
    input: &'static str,
    autocomplete: Option<&'static str>,
    value: String,
    parts: Vec<(&'static str, &'static str, String)>,
    required: bool,
    invalid: bool,
}

#[derive(Template)]
#[template(path = "center_correct.html")]
struct CorrectPage {
    chrome: Chrome,
    fields: Vec<CorrectField>,
    others: Vec<String>,
    saved: Option<String>,
    error: Option<String>,
}

fn input_kind(t: FieldType, name: &str) -> (&'static str, Option<&'static str>) {
    match t {
        FieldType::Email => ("email", Some("email")),
        FieldType::Phone => ("tel", Some("tel")),
        FieldType::Date => ("date", if name.contains("birth") { Some("bday") } else { None }),
        _ => ("text", if name.contains("name") { Some("name") } else { None }),
    }
}

/// Renders the correction form with `values` (held, or as submitted after an error).
fn correct_page(
    state: &AppState,
    me: &SignedIn,
    status: StatusCode,
    values: &Map<String, Value>,
    saved: Option<String>,
    error: Option<(Option<String>, String)>,
) -> Response {
    let vault = &state.vault;
    let editable = vault.self_correctable(&me.session);
    let invalid_field = error.as_ref().and_then(|(f, _)| f.clone());
    let mut fields = Vec::new();
    let mut others = Vec::new();
    for decl in &vault.catalog().fields {
        let name = decl.name.as_str();
        if !editable.contains(&name) {
            if values.contains_key(name) {
                others.push(lowercase_first(&field_label(vault.catalog(), name)));
            }
            continue;
        }
        let (input, autocomplete) = input_kind(decl.field_type, name);
        let held = values.get(name).cloned().unwrap_or(Value::Null);
        let parts = if decl.field_type == FieldType::PostalAddress {
            ADDRESS_PARTS
                .iter()
                .map(|(k, l)| (*k, *l, held.get(*k).and_then(Value::as_str).unwrap_or_default().to_string()))
                .collect()
        } else {
            Vec::new()
        };
        fields.push(CorrectField {
            name: name.to_string(),
            label: field_label(vault.catalog(), name),
            input,
            autocomplete,
            value: if parts.is_empty() { value_text(&held) } else { String::new() },
            parts,
            required: decl.required,
            invalid: invalid_field.as_deref() == Some(name),
        });
    }
    let page = CorrectPage {
        chrome: state.chrome("correct", Some(me.csrf.clone())),
        fields,
        others,
        saved,
        error: error.map(|(_, m)| m),
    };
    render(status, &page)
}

/// `GET /privacy/me/correct`: the fields the customer may correct themself, filled in.
pub async fn correct_form(State(state): State<AppState>, me: SignedIn) -> Response {
    match state.vault.report_head(me.session.auth(), me.session.subject, Document::Report).await {
        Ok((head, _)) => {
            let values = head.fields.iter().map(|(n, v, _)| (n.to_string(), v.clone())).collect();
            correct_page(&state, &me, StatusCode::OK, &values, None, None)
        }
        Err(e) => error_page(&state, e),
    }
}

/// The submitted corrections as field values: text trimmed, empty = remove, an address from
/// its parts (all empty = remove). Only fields the customer may correct are read.
fn submitted_values(state: &AppState, me: &SignedIn, form: &[(String, String)]) -> Map<String, Value> {
    let mut out = Map::new();
    for name in state.vault.self_correctable(&me.session) {
        let Some(decl) = state.vault.catalog().field(name) else { continue };
        if decl.field_type == FieldType::PostalAddress {
            let mut parts = Map::new();
            let mut seen = false;
            for (k, _) in ADDRESS_PARTS {
                if let Some(v) = field(form, &format!("{name}.{k}")) {
                    seen = true;
                    if !v.trim().is_empty() {
                        parts.insert(k.to_string(), Value::String(v.trim().to_string()));
                    }
                }
            }
            if seen {
                out.insert(name.to_string(), if parts.is_empty() { Value::Null } else { Value::Object(parts) });
            }
        } else if let Some(v) = field(form, name) {
            let v = v.trim();
            out.insert(name.to_string(), if v.is_empty() { Value::Null } else { Value::String(v.to_string()) });
        }
    }
    out
}

/// `POST /privacy/me/correct`: writes what changed; errors name the field, in its label.
pub async fn correct(State(state): State<AppState>, me: SignedIn, form: FormData) -> Response {
    if let Some(r) = me.refuse_forged(&state, &form) {
        return r;
    }
    let form = form.map(|f| f.0).unwrap_or_default();
    let submitted = submitted_values(&state, &me, &form);
    match state.vault.rectify_own(&me.session, &submitted).await {
        Ok(c) => {
            let catalog = state.vault.catalog();
            let names: Vec<String> = c.updated.iter().chain(&c.removed).map(|n| field_label(catalog, n)).collect();
            let saved =
                if names.is_empty() { "Nothing changed.".to_string() } else { format!("Saved: {}.", names.join(", ")) };
            correct_page(&state, &me, StatusCode::OK, &submitted, Some(saved), None)
        }
        Err(VaultError::DuplicateValue(field)) => {
            // Said without confirming whose it is (the refusal is logged against this customer).
            let catalog = state.vault.catalog();
            let message = format!(
                "{}: this cannot be used for your account. If it is yours, write to {}.",
                field_label(catalog, &field),
                catalog.organisation.privacy_contact
            );
            correct_page(&state, &me, StatusCode::CONFLICT, &submitted, None, Some((Some(field), message)))
        }
        Err(e @ (VaultError::Write(_) | VaultError::InvalidInput { .. })) => {
            let api = ApiError::from(e);
            let message = match &api.field {
                Some(f) => format!("{}: {}", field_label(state.vault.catalog(), f), api.message),
                None => api.message.clone(),
            };
            correct_page(&state, &me, StatusCode::UNPROCESSABLE_ENTITY, &submitted, None, Some((api.field, message)))
        }
        Err(e) => error_page(&state, e),
    }
}

// ------------------------------------------------------------------ Delete

#[derive(Template)]
#[template(path = "center_delete.html")]
struct DeletePage<'a> {
    chrome: Chrome,
    org: &'a str,
    legal_hold: bool,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "center_erased.html")]
struct ErasedPage<'a> {
    chrome: Chrome,
    org: &'a str,
    erased_at: String,
    certificate_id: String,
    erased: String,
    /// Recipients that received the customer's data and are sent a notice to delete it.
    told: Vec<String>,
    /// Recipients the privacy notice declares that never received it.
    never_received: Vec<String>,
    /// Whether the certificate knows who received the data (not when re-issued from a copy
    /// of the data restored after the erasure).
    recipients_known: bool,
    certificate: String,
}

async fn delete_page(state: &AppState, me: &SignedIn, status: StatusCode, error: Option<String>) -> Response {
    let legal_hold = match state.vault.under_legal_hold(&me.session).await {
        Ok(h) => h,
        Err(e) => return error_page(state, e),
    };
    let page = DeletePage {
        chrome: state.chrome("delete", Some(me.csrf.clone())),
        org: &state.vault.catalog().organisation.name,
        legal_hold,
        error,
    };
    render(status, &page)
}

/// `GET /privacy/me/delete`: the consequences, and a confirmation.
pub async fn delete_form(State(state): State<AppState>, me: SignedIn) -> Response {
    delete_page(&state, &me, StatusCode::OK, None).await
}

/// `POST /privacy/me/delete` (form: `confirm=yes`): erases the account and shows the
/// certificate; the session ends with it.
pub async fn delete(State(state): State<AppState>, me: SignedIn, form: FormData) -> Response {
    if let Some(r) = me.refuse_forged(&state, &form) {
        return r;
    }
    if form.as_ref().ok().and_then(|f| field(&f.0, "confirm")) != Some("yes") {
        let error = "Tick the box to confirm that you want your account deleted.".to_string();
        return delete_page(&state, &me, StatusCode::UNPROCESSABLE_ENTITY, Some(error)).await;
    }
    let certificate = match state.vault.erase_subject(me.session.auth(), me.session.subject).await {
        Ok(c) => c,
        Err(VaultError::LegalHold) => {
            let error = "A legal hold is in place, so your data cannot be deleted yet.".to_string();
            return delete_page(&state, &me, StatusCode::CONFLICT, Some(error)).await;
        }
        Err(e) => return error_page(&state, e),
    };
    let body = &certificate;
    let erased = &body["erased"];
    let mut parts: Vec<String> = erased["fields"]
        .as_array()
        .map(|fs| {
            fs.iter().filter_map(|f| f["field"].as_str()).map(|f| field_label(state.vault.catalog(), f)).collect()
        })
        .unwrap_or_default();
    let events: u64 =
        erased["events"].as_array().map(|es| es.iter().filter_map(|e| e["count"].as_u64()).sum()).unwrap_or(0);
    if events > 0 {
        parts.push(format!("{events} activity record{}", if events == 1 { "" } else { "s" }));
    }
    if let Some(n) = erased["consent_entries"].as_u64().filter(|n| *n > 0) {
        parts.push(format!("{n} record{} of your choices", if n == 1 { "" } else { "s" }));
    }
    let names = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .map(|rs| rs.iter().filter_map(|r| r["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let told = names(&body["recipients_to_notify"]);
    let never_received = names(&body["recipients_not_told"]["recipients"]);
    let page = ErasedPage {
        chrome: state.chrome("", None),
        org: &state.vault.catalog().organisation.name,
        erased_at: minute(body["erased_at"].as_str().unwrap_or_default()),
        certificate_id: body["certificate_id"].as_str().unwrap_or_default().to_string(),
        erased: if parts.is_empty() { "Nothing was held.".into() } else { parts.join(", ") },
        told,
        never_received,
        recipients_known: body.get("recipients_not_told").is_some(),
        certificate: serde_json::to_string_pretty(&certificate).unwrap_or_default(),
    };
    let mut response = render(StatusCode::OK, &page);
    response.headers_mut().insert(header::SET_COOKIE, state.session_cookie(None));
    response
}

#[cfg(test)]
mod address_tests {
    #[test]
    fn the_correct_form_labels_every_address_part_in_the_cores_order() {
        let names: Vec<&str> = super::ADDRESS_PARTS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, candor_core::value::ADDRESS_KEYS);
    }
}
