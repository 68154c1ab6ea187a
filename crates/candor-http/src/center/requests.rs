//! `GET /privacy/me/requests`: the customer's privacy requests as the privacy team recorded them,
//! with their deadlines and how each was answered. A refusal shows its reason in plain words and
//! the customer's right to complain (GDPR Art. 12(4)); a request waiting for proof of identity
//! says so, and that its clock is stopped meanwhile.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use candor_core::rights::{REFUSAL_REMEDIES, refusal_reason};

use crate::AppState;
use crate::pages::{Chrome, day, error_page, render};
use crate::sign_in::SignedIn;

/// One request as the customer reads it.
struct OwnRequest {
    what: &'static str,
    received: String,
    /// Where it stands, in a sentence.
    status: String,
    /// Why it was refused, and what the customer can do about it.
    refusal: Option<String>,
    waiting: bool,
}

#[derive(Template)]
#[template(path = "center_requests.html")]
struct RequestsPage {
    chrome: Chrome,
    requests: Vec<OwnRequest>,
    remedies: &'static str,
}

/// What a request kind asks for, in the customer's words.
fn kind_plain(kind: &str) -> &'static str {
    match kind {
        "access" => "A copy of everything we hold about you",
        "export" => "Your data in a portable form",
        "correction" => "A correction of your data",
        "erasure" => "Deleting your data",
        "restriction" => "Stopping the use of your data",
        "objection" => "An objection to a use of your data",
        _ => "A request about your data",
    }
}

fn own_request(r: candor_vault::Request) -> OwnRequest {
    let waiting = r.status == "open" && r.waiting_since.is_some();
    let status = match r.status.as_str() {
        "open" if waiting => {
            "Waiting for you to confirm who you are; the time we have to answer stops until you do".into()
        }
        "open" => format!("Being handled; we answer by {}", day(r.due_at)),
        "completed" => format!("Answered on {}", r.closed_at.map(day).unwrap_or_default()),
        "rejected" => format!("Refused on {}", r.closed_at.map(day).unwrap_or_default()),
        _ => r.status.clone(),
    };
    let refusal = (r.status == "rejected")
        .then(|| r.reason.as_deref().and_then(refusal_reason).unwrap_or("The reason was not recorded.").to_string());
    OwnRequest { what: kind_plain(&r.kind), received: day(r.received_at), status, refusal, waiting }
}

/// `GET /privacy/me/requests`; logged (`request.list`, by the customer).
pub async fn own_requests(State(state): State<AppState>, me: SignedIn) -> Response {
    match state.vault.own_requests(&me.session).await {
        Ok(list) => render(
            StatusCode::OK,
            &RequestsPage {
                chrome: state.chrome("requests", Some(me.csrf)),
                requests: list.into_iter().map(own_request).collect(),
                remedies: REFUSAL_REMEDIES,
            },
        ),
        Err(e) => error_page(&state, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(status: &str, reason: Option<&str>, waiting_since: Option<i64>) -> candor_vault::Request {
        candor_vault::Request {
            id: "r".into(),
            subject_id: "s".into(),
            kind: "erasure".into(),
            status: status.into(),
            received_at: 0,
            due_at: 31 * 86_400_000,
            created_by: "t".into(),
            closed_at: Some(86_400_000),
            closed_by: None,
            assignee: None,
            waiting_since,
            paused_ms: 0,
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn a_refusal_says_why_in_plain_words_and_a_paused_request_says_it_waits() {
        let refused = own_request(request("rejected", Some("legal_claims"), None));
        assert!(refused.refusal.as_deref().is_some_and(|r| r.contains("legal claims")));
        assert!(refused.status.starts_with("Refused on 1970-01-02"));
        let waiting = own_request(request("open", None, Some(5)));
        assert!(waiting.waiting && waiting.status.contains("confirm who you are") && waiting.refusal.is_none());
        let open = own_request(request("open", None, None));
        assert_eq!(open.status, "Being handled; we answer by 1970-02-01");
    }
}
