//! What every customer-facing page shares: the header and footer ([`Chrome`]), rendering, and
//! errors shown as pages (in plain words, with what to do next) rather than as JSON.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::vault::VaultError;

/// The signed-in menu: path, label, and the page key that marks it current.
const MENU: [(&str, &str, &str); 9] = [
    ("/privacy/me", "My data", "data"),
    ("/privacy/me/choices", "Choices", "choices"),
    ("/privacy/me/access", "Who accessed my data", "access"),
    ("/privacy/me/download", "Download my data", "download"),
    ("/privacy/me/correct", "Correct my data", "correct"),
    ("/privacy/me/delete", "Delete my account", "delete"),
    ("/privacy/me/requests", "My requests", "requests"),
    ("/privacy/me/messages", "Check a message", "messages"),
    ("/privacy", "Privacy notice", "notice"),
];

/// Header and footer of a page.
pub struct Chrome {
    pub brand: String,
    pub has_logo: bool,
    pub contact: String,
    /// The signed-in customer's anti-forgery token (`None`: not signed in).
    pub csrf: Option<String>,
    /// Key of the current page in the menu.
    pub active: &'static str,
}

impl Chrome {
    /// The menu of a signed-in customer: (path, label, current).
    pub fn menu(&self) -> Vec<(&'static str, &'static str, bool)> {
        MENU.iter().map(|(href, label, key)| (*href, *label, *key == self.active)).collect()
    }
}

impl AppState {
    pub fn chrome(&self, active: &'static str, csrf: Option<String>) -> Chrome {
        let org = &self.vault.catalog().organisation;
        Chrome {
            brand: self.branding.name.clone().unwrap_or_else(|| org.name.clone()),
            has_logo: self.branding.logo.is_some(),
            contact: org.privacy_contact.clone(),
            csrf,
            active,
        }
    }
}

/// Renders a page with `status`.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page template failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the page could not be rendered")
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub chrome: Chrome,
    pub heading: String,
    pub paragraphs: Vec<String>,
    pub link: Option<(&'static str, &'static str)>,
}

/// A page that says one thing: a heading, some paragraphs, maybe a link onwards.
pub fn message(
    chrome: Chrome,
    status: StatusCode,
    heading: &str,
    paragraphs: Vec<String>,
    link: Option<(&'static str, &'static str)>,
) -> Response {
    let page = MessagePage { chrome, heading: heading.to_string(), paragraphs, link };
    render(status, &page)
}

/// `429` as a page, with `Retry-After`: "please wait `wait` seconds, then `then`".
pub fn too_many(chrome: Chrome, heading: &str, wait: u64, then: &str) -> Response {
    let mut r = message(
        chrome,
        StatusCode::TOO_MANY_REQUESTS,
        heading,
        vec![format!("Please wait {wait} seconds, then {then}.")],
        None,
    );
    r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(wait));
    r
}

/// A date as the pages show it: `2026-11-22`.
pub fn day(ms: i64) -> String {
    let t = super::rfc3339(ms);
    t.get(..10).unwrap_or(&t).to_string()
}

/// An RFC 3339 time as the pages show it: `2026-11-22 14:03 UTC`.
pub fn minute(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => rfc3339.to_string(),
    }
}

/// A failure as a page. Messages come from [`ApiError`], which never carries a value.
pub fn error_page(state: &AppState, e: VaultError) -> Response {
    let ask = format!(
        "Ask {} for a new sign-in link (for example from your account page), or write to {}.",
        state.vault.catalog().organisation.name,
        state.vault.catalog().organisation.privacy_contact
    );
    match e {
        VaultError::NotSignedIn | VaultError::SessionExpired => message(
            state.chrome("", None),
            StatusCode::UNAUTHORIZED,
            "You are not signed in",
            vec![
                "Your session has ended (you signed out, or did not use the pages for a while), or you have not signed in yet."
                    .into(),
                ask,
            ],
            Some(("/privacy", "Read the privacy notice")),
        ),
        VaultError::SignInLinkInvalid => message(
            state.chrome("", None),
            StatusCode::GONE,
            "This sign-in link cannot be used",
            vec!["A sign-in link works once, for a few minutes. This one was already used, has expired, or is not complete.".into(), ask],
            None,
        ),
        VaultError::SubjectNotFound | VaultError::Store(candor_vault::StoreError::Erased { .. }) => message(
            state.chrome("", None),
            StatusCode::GONE,
            "This account no longer exists",
            vec!["There is no data about this account any more.".into()],
            Some(("/privacy", "Read the privacy notice")),
        ),
        other => {
            let api = ApiError::from(other);
            if api.status.is_server_error() {
                tracing::error!(code = api.code, message = %api.message, "page failed");
            }
            let message_text = if api.status.is_server_error() {
                "Something went wrong on our side. Please try again in a moment.".to_string()
            } else {
                api.message
            };
            message(state.chrome("", None), api.status, "That did not work", vec![message_text], Some(("/privacy/me", "Back to my data")))
        }
    }
}
