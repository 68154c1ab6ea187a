//! `GET /console/incidents`: incidents for auditors (the admin and roles with `audit = true`) —
//! a breach assessment run from a form (time window, token, staff pseudonym, recipient, field or
//! category; counts per category and, from a field holding the country, per country), recording
//! the breach with its Art. 33 summary for the authority and Art. 34 notice for customers, and
//! every breach with its 72-hour clock.
//!
//! The same vault operations as `candor breach assess | record | update` (the CLI stays the
//! tool for address ranges and leaked keys), with the person as the actor: country counts log
//! `breach.country`, recording logs `breach.record`, the clock's steps `breach.authority_notified`
//! and `breach.close`. Refused (and logged) for roles that do not audit.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use candor_core::value;
use candor_vault::BreachClock;
use candor_vault::breach_assessment::{BreachImpact, Filters};
use serde::Deserialize;

use super::log::bound;
use super::{Person, auditor, brand, person, refused};
use crate::AppState;
use crate::error::ApiError;
use crate::pages::render;
use crate::sign_in::field;

/// The assessment's form, as sent (GET to assess, or in the POST that records).
#[derive(Deserialize, Default, Clone)]
pub struct AssessForm {
    since: Option<String>,
    until: Option<String>,
    token: Option<String>,
    pseudonym: Option<String>,
    recipient: Option<String>,
    field: Option<String>,
    category: Option<String>,
    countries_from: Option<String>,
    assess: Option<String>,
    done: Option<String>,
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

/// A time in the log's own format (`2026-11-22T10:00:00.000Z`).
fn log_time(ms: i64) -> Option<String> {
    Some(jiff::Timestamp::from_millisecond(ms).ok()?.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

impl AssessForm {
    fn from_pairs(form: &[(String, String)]) -> Self {
        let get = |name: &str| field(form, name).map(str::to_string);
        AssessForm {
            since: get("since"),
            until: get("until"),
            token: get("token"),
            pseudonym: get("pseudonym"),
            recipient: get("recipient"),
            field: get("field"),
            category: get("category"),
            countries_from: get("countries_from"),
            assess: None,
            done: None,
        }
    }

    /// The vault's filters, or the error naming the field that is not one.
    fn filters(&self) -> Result<Filters, ApiError> {
        let since = bound("since", self.since.as_deref(), false)?.and_then(log_time);
        let until = bound("until", self.until.as_deref(), true)?.and_then(log_time);
        let token = match (given(&self.token), given(&self.pseudonym)) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("invalid_query", "give a token id or a staff pseudonym, not both")
                    .with_field("pseudonym"));
            }
            (Some(t), None) => Some(t),
            (None, Some(p)) if p.starts_with("stf_") => Some(candor_log::actor::staff(&p)),
            (None, Some(_)) => {
                return Err(ApiError::bad_request("invalid_query", "a staff pseudonym starts with stf_")
                    .with_field("pseudonym"));
            }
            (None, None) => None,
        };
        Ok(Filters {
            from: since,
            to: until,
            token,
            recipient: given(&self.recipient),
            field: given(&self.field),
            category: given(&self.category),
            ..Filters::default()
        })
    }
}

/// A breach in the list, with where it stands against its 72-hour clock.
struct ShownBreach {
    id: String,
    detected: String,
    due: String,
    customers: u64,
    categories: String,
    clock: String,
    overdue: bool,
    open: bool,
    notified: bool,
}

#[derive(Template)]
#[template(path = "console_incidents.html")]
struct IncidentsPage {
    brand: String,
    person: Person,
    form: AssessForm,
    recipients: Vec<String>,
    fields: Vec<String>,
    categories: Vec<&'static str>,
    country_fields: Vec<String>,
    impact: Option<BreachImpact>,
    breaches: Vec<ShownBreach>,
    now: String,
}

impl IncidentsPage {
    fn who(&self) -> Option<&Person> {
        Some(&self.person)
    }
    fn chosen(&self, value: &Option<String>, option: &str) -> bool {
        value.as_deref() == Some(option)
    }
}

#[derive(Template)]
#[template(path = "console_breach.html")]
struct RecordedPage {
    brand: String,
    person: Person,
    id: String,
    due: String,
    customers: usize,
    authority_summary: String,
    customer_notice: String,
    /// `subject_id,code` lines: each customer's notice code, for the mailer.
    codes: String,
}

impl RecordedPage {
    fn who(&self) -> Option<&Person> {
        Some(&self.person)
    }
}

fn clock_text(clock: BreachClock) -> (String, bool) {
    let time = crate::clock::utc_second;
    match clock {
        BreachClock::Closed(at) => (format!("closed {}", time(at)), false),
        BreachClock::Notified { at, late } => {
            (format!("authority notified {}{}", time(at), if late { " (late)" } else { "" }), false)
        }
        BreachClock::Overdue => ("OVERDUE: the authority has not been told".into(), true),
        BreachClock::Open { left_ms } => {
            (format!("{:.1} hours left to tell the authority", left_ms as f64 / 3.6e6), false)
        }
    }
}

/// `GET /console/incidents` (`?assess=1` with the form's fields runs the assessment).
pub async fn incidents(
    State(state): State<AppState>,
    query: Result<Query<AssessForm>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Response {
    let (principal, person) = match auditor(&state, &parts, None).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let form = query.map(|Query(q)| q).unwrap_or_default();
    let back = Some("/console/incidents".to_string());
    let impact = if form.assess.as_deref() == Some("1") {
        let filters = match form.filters() {
            Ok(f) => f,
            Err(e) => return refused(&state, Some(person), e, back),
        };
        match state.vault.assess_breach(&principal, &filters, given(&form.countries_from).as_deref()).await {
            Ok(i) => Some(i),
            Err(e) => return refused(&state, Some(person), e.into(), back),
        }
    } else {
        None
    };
    let breaches = match state.vault.breaches().await {
        Ok(list) => list
            .into_iter()
            .map(|b| {
                let (clock, overdue) = clock_text(state.vault.breach_clock(&b));
                ShownBreach {
                    detected: crate::clock::utc_second(b.detected_at),
                    due: crate::clock::utc_second(b.detected_at + candor_vault::AUTHORITY_DEADLINE_MS),
                    customers: b.customers,
                    categories: b.categories.join(", "),
                    clock,
                    overdue,
                    open: b.closed_at.is_none(),
                    notified: b.authority_notified_at.is_some(),
                    id: b.id,
                }
            })
            .collect(),
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let catalog = state.vault.catalog();
    let mut fields: Vec<String> = catalog.fields.iter().map(|f| f.name.to_string()).collect();
    fields.extend(catalog.events.iter().map(|e| e.name.to_string()));
    let page = IncidentsPage {
        brand: brand(&state),
        recipients: catalog.recipients.iter().map(|r| r.id.clone()).collect(),
        fields,
        categories: candor_core::catalog::Category::ALL.iter().map(|(n, _)| *n).collect(),
        country_fields: catalog
            .fields
            .iter()
            .filter(|f| value::holds_country(f.field_type))
            .map(|f| f.name.to_string())
            .collect(),
        impact,
        breaches,
        now: crate::clock::utc_second(state.vault.now_millis()),
        form,
        person,
    };
    render(StatusCode::OK, &page)
}

/// `POST /console/incidents/record` (form: `csrf`, the assessment's fields, `detected_at`,
/// `nature`, `consequences`, `measures`): runs the assessment again and records the breach with
/// the customers it finds, as `candor breach record` does.
pub async fn record(
    State(state): State<AppState>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let pairs = form.map(|f| f.0).unwrap_or_default();
    let back = Some("/console/incidents".to_string());
    let (principal, person) = match auditor(&state, &parts, field(&pairs, "csrf")).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let form = AssessForm::from_pairs(&pairs);
    let filters = match form.filters() {
        Ok(f) => f,
        Err(e) => return refused(&state, Some(person), e, back),
    };
    let detected_at = match field(&pairs, "detected_at").map(str::trim).filter(|t| !t.is_empty()) {
        None => state.vault.now_millis(),
        Some(t) => match bound("detected_at", Some(t), false) {
            Ok(Some(ms)) => ms,
            Ok(None) => state.vault.now_millis(),
            Err(e) => return refused(&state, Some(person), e, back),
        },
    };
    let impact = match state.vault.assess_breach(&principal, &filters, given(&form.countries_from).as_deref()).await {
        Ok(i) => i,
        Err(e) => return refused(&state, Some(person), e.into(), back),
    };
    let text = |name: &str| field(&pairs, name).unwrap_or("").to_string();
    let input = candor_vault::BreachInput {
        detected_at,
        nature: text("nature"),
        consequences: text("consequences"),
        measures: text("measures"),
        categories: impact.by_category.keys().map(|c| c.to_string()).collect(),
        records: impact.accesses,
        countries: impact
            .by_country
            .clone()
            .map(|m: BTreeMap<String, u64>| m.into_iter().collect())
            .unwrap_or_default(),
        subjects: impact.customers.clone(),
    };
    match state.vault.record_breach_as(&principal, input).await {
        Ok(recorded) => {
            let codes = recorded.codes.iter().map(|(id, code)| format!("{id},{code}")).collect::<Vec<_>>().join("\n");
            let page = RecordedPage {
                brand: brand(&state),
                id: recorded.breach.id.clone(),
                due: crate::clock::utc_second(recorded.breach.detected_at + candor_vault::AUTHORITY_DEADLINE_MS),
                customers: recorded.codes.len(),
                authority_summary: recorded.authority_summary,
                customer_notice: recorded.customer_notice,
                codes: format!("subject_id,code\n{codes}"),
                person,
            };
            render(StatusCode::OK, &page)
        }
        Err(e) => refused(&state, Some(person), e.into(), back),
    }
}

/// `POST /console/incidents/{id}/update` (form: `csrf`, `step` = `notified` | `closed`): the
/// authority was told, or the breach is closed (`candor breach update`).
pub async fn update(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let pairs = form.map(|f| f.0).unwrap_or_default();
    let (principal, person) = match person(&state, &parts, field(&pairs, "csrf")).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let back = Some("/console/incidents".to_string());
    let closed = match field(&pairs, "step") {
        Some("notified") => false,
        Some("closed") => true,
        _ => {
            let e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", "step must be notified or closed")
                .with_field("step");
            return refused(&state, Some(person), e, back);
        }
    };
    match state.vault.update_breach_as(&principal, &id, closed).await {
        Ok(true) => Redirect::to("/console/incidents?done=updated").into_response(),
        Ok(false) => {
            let e = ApiError::new(StatusCode::NOT_FOUND, "breach_not_found", "no breach with this id").with_field("id");
            refused(&state, Some(person), e, back)
        }
        Err(e) => refused(&state, Some(person), e.into(), back),
    }
}
