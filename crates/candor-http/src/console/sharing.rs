//! `GET /console/sharing`: consent and sharing at a glance, for roles that answer privacy
//! requests (a `customer_requests` purpose) — customers per consent slot and choice (counts
//! only), the recipients with their agreements, every grant with its customers count, and the
//! notices to recipients not yet confirmed, with their delivery state.
//!
//! Each part is the API call it mirrors under that purpose (`GET /v1/consents/counts`,
//! `GET /v1/recipients`, `GET /v1/grants`, `GET /v1/notices`), logged the same; its forms are
//! `DELETE /v1/grants/{id}` (stopping a grant, for roles with `erase = true`) and
//! `POST /v1/notices/{id}/retry`.

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use super::requests::requests_person;
use super::{Person, RecordQuery, brand, refused};
use crate::AppState;
use crate::grants::grant_state;
use crate::pages::render;
use crate::sign_in::field;

struct ShownSlot {
    purpose: String,
    channel: String,
    granted: u64,
    withdrawn: u64,
    renewal_needed: u64,
}

struct ShownRecipient {
    name: String,
    country: String,
    role: &'static str,
    purposes: String,
    fields: String,
    agreement: String,
    expires: String,
    in_force: bool,
}

struct ShownGrant {
    id: String,
    recipient: String,
    purpose: String,
    fields: String,
    expires: String,
    customers: u64,
    reads: String,
    state: &'static str,
}

struct ShownNotice {
    id: String,
    recipient: String,
    kind: String,
    subject: String,
    created: String,
    attempts: u32,
    /// Where it stands, in words.
    state: String,
    undelivered: bool,
}

#[derive(Template)]
#[template(path = "console_sharing.html")]
struct SharingPage {
    brand: String,
    person: Person,
    purpose: String,
    slots: Vec<ShownSlot>,
    recipients: Vec<ShownRecipient>,
    grants: Vec<ShownGrant>,
    may_stop: bool,
    notices: Vec<ShownNotice>,
    done: Option<String>,
}

impl SharingPage {
    fn who(&self) -> Option<&Person> {
        Some(&self.person)
    }
}

/// `GET /console/sharing`.
pub async fn sharing(
    State(state): State<AppState>,
    query: Result<Query<RecordQuery>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Response {
    let done = query.ok().and_then(|Query(q)| q.done).filter(|d| matches!(d.as_str(), "stopped" | "retried"));
    let (auth, person) = match requests_person(&state, &parts, None).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let vault = &state.vault;
    let tallies = match vault.consent_tallies(&auth).await {
        Ok(t) => t,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let summaries = match vault.grant_summaries(&auth).await {
        Ok(g) => g,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let notices = match vault.unconfirmed_notices(&auth).await {
        Ok(n) => n,
        Err(e) => return refused(&state, Some(person), e.into(), None),
    };
    let now = vault.now_millis();
    let today = crate::clock::utc_second(now)[..10].to_string();
    let page = SharingPage {
        brand: brand(&state),
        purpose: auth.purpose.to_string(),
        slots: tallies
            .into_iter()
            .map(|t| ShownSlot {
                purpose: t.purpose,
                channel: t.channel.unwrap_or_else(|| "—".into()),
                granted: t.granted,
                withdrawn: t.withdrawn,
                renewal_needed: t.renewal_needed,
            })
            .collect(),
        recipients: vault
            .catalog()
            .recipients
            .iter()
            .map(|r| ShownRecipient {
                name: r.name.clone(),
                country: r.country.clone(),
                role: r.role.name(),
                purposes: r.purposes.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
                fields: r.fields.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", "),
                agreement: r.agreement.clone(),
                expires: r.agreement_expires.clone().unwrap_or_else(|| "no end date".into()),
                in_force: r.agreement_in_force(&today),
            })
            .collect(),
        grants: summaries
            .into_iter()
            .map(|s| ShownGrant {
                state: grant_state(&s.grant, now),
                reads: match s.grant.max_reads {
                    Some(m) => format!("{} of {m}", s.grant.reads),
                    None => s.grant.reads.to_string(),
                },
                customers: s.customers,
                id: s.grant.id,
                recipient: s.grant.recipient,
                purpose: s.grant.purpose,
                fields: s.grant.fields.join(", "),
                expires: crate::clock::utc_second(s.grant.expires_at),
            })
            .collect(),
        may_stop: vault.may_stop_grants(&auth),
        notices: notices
            .into_iter()
            .map(|n| ShownNotice {
                undelivered: n.delivered_at.is_none(),
                state: match (n.delivered_at, &n.last_error) {
                    (Some(at), _) => format!("delivered {}, not yet confirmed", crate::clock::utc_second(at)),
                    (None, Some(e)) => {
                        format!(
                            "not delivered (last try: {e}); next try {}",
                            crate::clock::utc_second(n.next_attempt_at)
                        )
                    }
                    (None, None) => {
                        format!("not delivered yet; next try {}", crate::clock::utc_second(n.next_attempt_at))
                    }
                },
                id: n.id,
                recipient: n.recipient,
                kind: n.kind,
                subject: n.subject,
                created: crate::clock::utc_second(n.created_at),
                attempts: n.attempts,
            })
            .collect(),
        done,
        person,
    };
    render(StatusCode::OK, &page)
}

/// `POST /console/sharing/grants/{id}/stop` (form: `csrf`): `DELETE /v1/grants/{id}` under the
/// role's requests purpose.
pub async fn stop_grant(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let (auth, person) = match requests_person(&state, &parts, field(&form, "csrf")).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    match state.vault.stop_grant(&auth, &id).await {
        Ok(_) => Redirect::to("/console/sharing?done=stopped").into_response(),
        Err(e) => refused(&state, Some(person), e.into(), Some("/console/sharing".into())),
    }
}

/// `POST /console/sharing/notices/{id}/retry` (form: `csrf`): `POST /v1/notices/{id}/retry`.
pub async fn retry_notice(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    parts: Parts,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let (auth, person) = match requests_person(&state, &parts, field(&form, "csrf")).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    match state.vault.retry_notice(&auth, &id).await {
        Ok(_) => Redirect::to("/console/sharing?done=retried").into_response(),
        Err(e) => refused(&state, Some(person), e.into(), Some("/console/sharing".into())),
    }
}
