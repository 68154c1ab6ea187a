//! Signing in to the privacy center without a password: the operator's backend asks for a
//! one-time link (`POST /v1/subjects/{id}/privacy-center-links`) and sends it to the customer;
//! opening it shows a "Continue" page whose form (a POST, so link scanners and prefetching mail
//! clients cannot use the link up) starts a session; opening a used, expired or unknown link says
//! so at once (`410`), from a look-up that changes nothing. The session lives in an HttpOnly,
//! SameSite=Strict cookie (Secure, with the `__Host-` prefix, behind TLS); every form carries
//! an anti-forgery token derived from it.

use std::time::Instant;

use askama::Template;
use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use candor_crypto::{SIGN_IN_PREFIX, csrf_token, secrets_match};
use serde::Serialize;
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::client::ClientIp;
use super::error::{ApiError, ErrorBody};
use super::extract::SubjectPath;
use super::pages::{Chrome, error_page, message, render, too_many};
use super::subjects::SubjectIdParam;
use super::{AppState, rfc3339};
use crate::vault::{Authorized, CustomerSession, SESSION_MAX_HOURS};

/// Cookie names: with TLS, the `__Host-` prefix makes browsers insist on Secure, Path=/ and no
/// Domain, so no other host can set or overwrite it.
const COOKIE: &str = "candor_session";
const SECURE_COOKIE: &str = "__Host-candor_session";

#[derive(Serialize, ToSchema)]
pub struct SignInLinkResponse {
    /// The link to send the customer (public_url or this server's address, then `path`).
    pub url: String,
    pub path: String,
    /// After this the link no longer works (it also works only once).
    pub expires_at: String,
}

/// Make a one-time sign-in link to the privacy center for this customer, to send them (by
/// e-mail, or as a redirect from your signed-in account page). Valid for `link_minutes`
/// (default 15) and once. Under a purpose declared customer_requests = true. Logged.
#[utoipa::path(post, path = "/v1/subjects/{id}/privacy-center-links", tag = "rights",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    responses(
        (status = 201, body = SignInLinkResponse),
        (status = 403, description = "`link_sender_not_allowed`, `purpose_not_allowed`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 409, description = "`privacy_center_unavailable`: no customer_requests purpose in the catalog", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_link(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
) -> Result<(StatusCode, Json<SignInLinkResponse>), ApiError> {
    let issued = state.vault.create_sign_in_link(&auth, id).await?;
    let path = format!("/privacy/sign-in/{}", issued.secret.as_str());
    Ok((
        StatusCode::CREATED,
        Json(SignInLinkResponse {
            url: format!("{}{path}", state.public_base()),
            path,
            expires_at: rfc3339(issued.expires_at),
        }),
    ))
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    chrome: Chrome,
    org: &'a str,
    link: &'a str,
    idle_minutes: u32,
}

fn looks_like_link(secret: &str) -> bool {
    secret.len() == SIGN_IN_PREFIX.len() + 43
        && secret.starts_with(SIGN_IN_PREFIX)
        && secret[SIGN_IN_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /privacy/sign-in/{link}`: the "Continue" page, for a link that can still be used. Does
/// not use the link up (only the page's POST does), so a mail scanner fetching it spends nothing.
/// A used, expired or unknown link answers `410` at once, with the same page as its POST would.
/// A look-up that finds no usable link counts as a sign-in attempt (a live link's costs nothing),
/// and none is made once the client address is over the limit.
pub async fn continue_page(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(secret): Path<String>,
) -> Response {
    let chrome = || state.chrome("", None);
    if let Err(wait) = state.limiter.check(ip, Instant::now()) {
        return too_many(chrome(), "Too many attempts", wait, "open your sign-in link again");
    }
    let usable = if looks_like_link(&secret) {
        match state.vault.sign_in_link_usable(&secret).await {
            Ok(usable) => usable,
            Err(e) => return error_page(&state, e),
        }
    } else {
        false
    };
    if !usable {
        if let Err(wait) = state.limiter.attempt(ip, Instant::now()) {
            return too_many(chrome(), "Too many attempts", wait, "open your sign-in link again");
        }
        return error_page(&state, crate::vault::VaultError::SignInLinkInvalid);
    }
    let page = SignInPage {
        chrome: chrome(),
        org: &state.vault.catalog().organisation.name,
        link: &secret,
        idle_minutes: state.sign_in.settings.idle_minutes,
    };
    render(StatusCode::OK, &page)
}

/// Whether a sign-in POST came from another site (login CSRF: signing a visitor in to someone
/// else's session). Browsers say so in `Sec-Fetch-Site`; an `Origin` naming another host says
/// the same (`Origin: null`, which the pages' `no-referrer` policy makes browsers send, proves
/// nothing either way).
fn cross_site(headers: &axum::http::HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return true;
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).filter(|o| *o != "null");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        (Some(_), None) => true,
        _ => false,
    }
}

/// `POST /privacy/sign-in` (form: `link`): uses the link, starts a session, and goes to "My data".
/// Refused from another site.
pub async fn sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: axum::http::HeaderMap,
    form: Result<axum::Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    if cross_site(&headers) {
        return crate::pages::message(
            state.chrome("", None),
            StatusCode::FORBIDDEN,
            "Sign in from our own page",
            vec![
                "This sign-in came from another website, so it was not accepted. Open your sign-in link \
                  and press Continue on our page."
                    .to_string(),
            ],
            None,
        );
    }
    if let Err(wait) = state.limiter.attempt(ip, Instant::now()) {
        return too_many(state.chrome("", None), "Too many attempts", wait, "use your sign-in link again");
    }
    let link = form.ok().and_then(|f| field(&f.0, "link").map(|l| Zeroizing::new(l.to_string())));
    let Some(link) = link.filter(|l| looks_like_link(l)) else {
        return error_page(&state, crate::vault::VaultError::SignInLinkInvalid);
    };
    match state.vault.sign_in(&link).await {
        Ok((secret, _session)) => {
            let mut response = Redirect::to("/privacy/me").into_response();
            response.headers_mut().insert(header::SET_COOKIE, state.session_cookie(Some(&secret)));
            response
        }
        Err(e) => error_page(&state, e),
    }
}

/// `POST /privacy/sign-out` (form: `csrf`).
pub async fn sign_out(
    State(state): State<AppState>,
    signed_in: SignedIn,
    form: Result<axum::Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Some(r) = signed_in.refuse_forged(&state, &form) {
        return r;
    }
    if let Err(e) = state.vault.sign_out(&signed_in.session).await {
        return error_page(&state, e);
    }
    let mut response = message(
        state.chrome("", None),
        StatusCode::OK,
        "You are signed out",
        vec!["To come back, ask for a new sign-in link.".into()],
        Some(("/privacy", "Read the privacy notice")),
    );
    response.headers_mut().insert(header::SET_COOKIE, state.session_cookie(None));
    response
}

/// The first value of `name` in a submitted form.
pub fn field<'f>(form: &'f [(String, String)], name: &str) -> Option<&'f str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

impl AppState {
    fn cookie_name(&self) -> &'static str {
        if self.sign_in.secure() { SECURE_COOKIE } else { COOKIE }
    }

    /// `Set-Cookie` that starts a session (`Some(secret)`) or ends it (`None`).
    pub fn session_cookie(&self, secret: Option<&str>) -> HeaderValue {
        let secure = if self.sign_in.secure() { "; Secure" } else { "" };
        let (value, max_age) = match secret {
            Some(s) => (s, SESSION_MAX_HOURS * 3600),
            None => ("", 0),
        };
        let cookie =
            format!("{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}", self.cookie_name());
        HeaderValue::from_str(&cookie).expect("cookie text is ASCII")
    }

    /// The session secret the request's cookie carries.
    fn session_secret(&self, headers: &HeaderMap) -> Option<Zeroizing<String>> {
        cookie_value(headers, self.cookie_name())
    }
}

/// The value of the (non-empty) cookie `name` among the request's `Cookie` headers: the one
/// place cookies are read, for customers' and staff sessions alike.
pub(super) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<Zeroizing<String>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| Zeroizing::new(v.to_string()))
}

/// A signed-in customer, from the session cookie. Pages that need one do not compile without it;
/// without a live session the request is answered with a "not signed in" page.
pub struct SignedIn {
    pub session: CustomerSession,
    pub csrf: String,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let secret = state
            .session_secret(&parts.headers)
            .ok_or_else(|| error_page(state, crate::vault::VaultError::NotSignedIn))?;
        match state.vault.customer_session(&secret).await {
            Ok(session) => Ok(SignedIn { session, csrf: csrf_token(&secret) }),
            Err(e) => {
                let mut response = error_page(state, e);
                response.headers_mut().insert(header::SET_COOKIE, state.session_cookie(None));
                Err(response)
            }
        }
    }
}

impl SignedIn {
    /// The refusal of a form that is unreadable or lacks this session's anti-forgery token.
    pub fn refuse_forged(
        &self,
        state: &AppState,
        form: &Result<axum::Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
    ) -> Option<Response> {
        let token = form.as_ref().ok().and_then(|f| field(&f.0, "csrf"));
        if token.is_some_and(|t| secrets_match(t, &self.csrf)) {
            return None;
        }
        Some(message(
            state.chrome("", Some(self.csrf.clone())),
            StatusCode::FORBIDDEN,
            "This form could not be accepted",
            vec!["It was not sent from this page as we showed it (it may be old). Please go back, reload the page and try again.".into()],
            Some(("/privacy/me", "Back to my data")),
        ))
    }
}
