//! Staff sign-in through the company's OpenID Connect provider, under `/console`, and the staff
//! session as a way to call the API.
//!
//! `GET /console/sign-in` sends the browser to the provider (a short-lived, SameSite=Lax flow
//! cookie holds the secret `state`, `nonce` and PKCE verifier are derived from);
//! `GET /console/callback` checks the answer, maps the person's groups to one catalog role and
//! starts a session (HttpOnly, SameSite=Strict, `__Host-` and Secure behind TLS; idle and
//! absolute timeouts); `POST /console/sign-out` ends it.
//!
//! A signed-in person calls the JSON API with the session cookie instead of a bearer token
//! ([`session_principal`], used by the `Principal` extractor, so every route, policy decision
//! and log entry is the same as for a token). Calls that change something must also carry the
//! session's anti-forgery token in `Candor-CSRF`; calls from another site are refused.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use candor_crypto::staff::StaffKey;
use candor_crypto::{csrf_token, generate_secret, secrets_match};
use candor_vault::StaffSession;
use zeroize::Zeroizing;

use super::AppState;
use super::error::ApiError;
use super::pages::render;
use crate::identity::oidc::{FLOW_MINUTES, RelyingParty, SignInError};
use crate::identity::{CLIENT_SECRET_ENV, NoRole, StaffConfig};
use crate::vault::{Principal, SignInProof, StaffSignIn, StaffTimes, VaultError, staff_principal};

const COOKIE: &str = "candor_staff";
const SECURE_COOKIE: &str = "__Host-candor_staff";
const FLOW_COOKIE: &str = "candor_staff_flow";
const SECURE_FLOW_COOKIE: &str = "__Host-candor_staff_flow";
/// The header carrying a staff session's anti-forgery token on API calls that change something.
pub const CSRF_HEADER: &str = "candor-csrf";

/// Staff sign-in of one server: the relying party, the pseudonym key and the session times.
pub struct Staff {
    rp: RelyingParty,
    key: StaffKey,
    times: StaffTimes,
}

impl Staff {
    /// `[staff.roles]` (provider group → role) and `[staff.clients]` (service → role) in effect.
    pub fn role_mapping(
        &self,
    ) -> (&std::collections::BTreeMap<String, String>, &std::collections::BTreeMap<String, String>) {
        let config = self.rp.config();
        (&config.roles, &config.clients)
    }

    /// From `[staff]`: the roles checked against the catalog, the pseudonym key and client
    /// secret loaded (environment, or owner-only files).
    pub fn load(config: &StaffConfig, catalog: &candor_core::catalog::Catalog) -> anyhow::Result<Self> {
        config.check_roles(catalog)?;
        let key = crate::identity::load_key(config)?;
        let secret = match std::env::var(CLIENT_SECRET_ENV) {
            Ok(s) => Some(Zeroizing::new(s)),
            Err(_) => match &config.client_secret_file {
                Some(path) => Some(candor_crypto::keyfile::read_secret_file(path)?),
                None => None,
            },
        };
        let times = StaffTimes { idle_minutes: config.idle_minutes, max_hours: config.max_hours };
        Ok(Self { rp: RelyingParty::new(config.clone(), secret)?, key, times })
    }
}

impl AppState {
    fn staff(&self) -> Option<&Arc<Staff>> {
        self.staff.as_ref()
    }

    /// Where the provider sends the browser back.
    fn staff_redirect(&self, staff: &Staff) -> String {
        match &staff.rp.config().redirect_url {
            Some(u) => u.clone(),
            None => format!("{}/console/callback", self.public_base()),
        }
    }

    fn staff_secure(&self, staff: &Staff) -> bool {
        self.staff_redirect(staff).starts_with("https://")
    }

    fn staff_cookie(&self, staff: &Staff, flow: bool, value: Option<&str>) -> HeaderValue {
        let secure = self.staff_secure(staff);
        let name = match (flow, secure) {
            (false, false) => COOKIE,
            (false, true) => SECURE_COOKIE,
            (true, false) => FLOW_COOKIE,
            (true, true) => SECURE_FLOW_COOKIE,
        };
        // The flow cookie must come back on the provider's redirect (a cross-site navigation),
        // so it is Lax; the session cookie is Strict.
        let (same_site, lifetime) =
            if flow { ("Lax", FLOW_MINUTES * 60) } else { ("Strict", staff.times.max() / 1000) };
        let (value, max_age) = match value {
            Some(v) => (v, lifetime),
            None => ("", 0),
        };
        let cookie = format!(
            "{name}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age}{}",
            if secure { "; Secure" } else { "" }
        );
        HeaderValue::from_str(&cookie).expect("cookie text is ASCII")
    }

    fn staff_cookie_value(&self, staff: &Staff, headers: &HeaderMap, flow: bool) -> Option<Zeroizing<String>> {
        let secure = self.staff_secure(staff);
        let name = match (flow, secure) {
            (false, false) => COOKIE,
            (false, true) => SECURE_COOKIE,
            (true, false) => FLOW_COOKIE,
            (true, true) => SECURE_FLOW_COOKIE,
        };
        super::sign_in::cookie_value(headers, name)
    }
}

/// The person a request's staff session cookie belongs to, as the API's caller; `None` when
/// staff sign-in is off or the request carries no staff session cookie. Refused: a request with
/// both a bearer token and the cookie (which would count is ambiguous), one from another site,
/// and one that changes something without the session's `Candor-CSRF` token.
pub async fn session_principal(parts: &Parts, state: &AppState) -> Result<Option<Principal>, ApiError> {
    let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    session_principal_with(parts, state, sent).await
}

/// [`session_principal`] with the anti-forgery token the request `sent` (the API's
/// `Candor-CSRF` header, or a console form's `csrf` field).
pub async fn session_principal_with(
    parts: &Parts,
    state: &AppState,
    sent: Option<&str>,
) -> Result<Option<Principal>, ApiError> {
    let Some(staff) = state.staff() else { return Ok(None) };
    let Some(secret) = state.staff_cookie_value(staff, &parts.headers, false) else { return Ok(None) };
    if parts.headers.contains_key(header::AUTHORIZATION) {
        return Err(ApiError::bad_request(
            "invalid_authorization",
            "send either a bearer token or the staff session cookie, not both",
        )
        .with_field("Authorization"));
    }
    let fetch_site = parts.headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "a staff session is accepted only on requests from this site",
        ));
    }
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !sent.is_some_and(|t| secrets_match(t, &csrf_token(&secret))) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_token_required",
            "a call that changes something with a staff session must carry the session's token in the \
             Candor-CSRF header (shown on /console), or a console form its csrf field",
        )
        .with_field("Candor-CSRF"));
    }
    let session = state.vault.staff_session(&secret, staff.times).await?;
    if let Some(policy) = &staff.rp.config().require_mfa {
        let route = parts.extensions.get::<axum::extract::MatchedPath>().map(|p| p.as_str()).unwrap_or("");
        if let Some(power) = crate::identity::Power::of_route(parts.method.as_str(), route) {
            let proof = SignInProof::of_secret(&secret);
            let now = crate::clock::now_millis().div_euclid(1000);
            if !policy.allows(power, proof.multi_factor, proof.auth_time, now) {
                tracing::warn!(pseudonym = %session.pseudonym, power = power.name(), "a staff session lacked the sign-in this power needs");
                // `/v1/subjects/{id}…` and `/console/customers/{id}…`: the id is the third segment.
                let subject = (route.starts_with("/v1/subjects/{id}") || route.starts_with("/console/customers/{id}"))
                    .then(|| parts.uri.path().split('/').nth(3).and_then(candor_core::SubjectId::parse))
                    .flatten();
                let who = staff_principal(&session.pseudonym, &session.role);
                state.vault.log_reauthentication_required(&who, power.name(), subject).await?;
                return Err(reauthentication_required(power, policy.max_age_minutes));
            }
        }
    }
    Ok(Some(staff_principal(&session.pseudonym, &session.role)))
}

/// The anti-forgery token console forms carry for the request's staff session, if it has one.
pub fn console_csrf(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let staff = state.staff()?;
    state.staff_cookie_value(staff, headers, false).map(|secret| csrf_token(&secret))
}

/// The service a bearer token names when it is an access token (JWT) from the company's
/// identity provider for Candor's API (`[staff.oidc] api_audience`); `None` when it is not a
/// JWT or the installation accepts none (then it is taken for a Candor token). A JWT that fails
/// a check is refused here (401, the reason in the message and the server log, never the token).
pub async fn machine_principal(token: &str, state: &AppState) -> Result<Option<Principal>, ApiError> {
    use crate::identity::machine::{TokenError, looks_like_jwt};
    let Some(staff) = state.staff() else { return Ok(None) };
    if staff.rp.config().api_audience.is_none() || !looks_like_jwt(token) {
        return Ok(None);
    }
    let now = crate::clock::now_millis().div_euclid(1000);
    match staff.rp.verify_access_token(token, now).await {
        Ok(client) => Ok(Some(crate::vault::client_principal(&client.client_id, &client.role))),
        Err(e) => {
            tracing::warn!(error = %e, "an access token from the identity provider was refused");
            let (status, code) = match e {
                TokenError::Provider(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                TokenError::Expired => (StatusCode::UNAUTHORIZED, "token_expired"),
                TokenError::Invalid(_) | TokenError::NoRole(..) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            };
            Err(ApiError::new(status, code, e.to_string()))
        }
    }
}

/// Where a person signs in again, with the provider asked for a fresh (multi-factor) sign-in.
pub const REAUTH_PATH: &str = "/console/sign-in?reauth=1";

fn reauthentication_required(power: crate::identity::Power, minutes: u32) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "reauthentication_required",
        format!(
            "`{}` needs a multi-factor sign-in within the last {minutes} minutes; sign in again at {REAUTH_PATH} \
             (the identity provider asks for your second factor) and retry",
            power.name()
        ),
    )
}

#[derive(Template)]
#[template(path = "console.html")]
struct ConsolePage {
    brand: String,
    heading: String,
    paragraphs: Vec<String>,
    session: Option<SessionView>,
    /// The signed-in person as the console's menu needs them.
    person: Option<super::console::Person>,
    link: Option<(String, &'static str)>,
    refresh: Option<&'static str>,
}

impl ConsolePage {
    fn who(&self) -> Option<&super::console::Person> {
        self.person.as_ref()
    }
}

struct SessionView {
    role: String,
    pseudonym: String,
    csrf: String,
    idle_minutes: u32,
    ends_at: String,
}

fn page(state: &AppState, status: StatusCode, heading: &str, paragraphs: Vec<String>) -> ConsolePageBuilder {
    ConsolePageBuilder {
        status,
        page: ConsolePage {
            brand: state.vault.catalog().organisation.name.clone(),
            heading: heading.to_string(),
            paragraphs,
            session: None,
            person: None,
            link: None,
            refresh: None,
        },
    }
}

struct ConsolePageBuilder {
    status: StatusCode,
    page: ConsolePage,
}

impl ConsolePageBuilder {
    fn link(mut self, href: impl Into<String>, text: &'static str) -> Self {
        self.page.link = Some((href.into(), text));
        self
    }
    fn send(self) -> Response {
        render(self.status, &self.page)
    }
}

fn not_configured(state: &AppState) -> Response {
    page(
        state,
        StatusCode::NOT_FOUND,
        "Staff sign-in is not set up",
        vec!["This installation has no [staff.oidc] section in candor.toml; staff use API tokens.".into()],
    )
    .send()
}

/// `GET /console`: who is signed in (role, pseudonym, when the session ends, the API's
/// anti-forgery token), or the way to sign in.
pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(staff) = state.staff().cloned() else { return not_configured(&state) };
    let Some(secret) = state.staff_cookie_value(&staff, &headers, false) else {
        return page(
            &state,
            StatusCode::OK,
            "Staff sign-in",
            vec![
                "Sign in with your company account. What you do here is logged under a pseudonym and your role.".into(),
            ],
        )
        .link("/console/sign-in", "Sign in with the company's identity provider")
        .send();
    };
    match state.vault.staff_session(&secret, staff.times).await {
        Ok(session) => {
            let ends_at = crate::clock::utc_second(session.created_at + staff.times.max());
            let mut p = page(&state, StatusCode::OK, "Signed in", vec![]);
            p.page.person = Some(super::console::person_for(&state, &session.role, csrf_token(&secret)));
            p.page.session = Some(SessionView {
                role: session.role,
                pseudonym: session.pseudonym,
                csrf: csrf_token(&secret),
                idle_minutes: staff.times.idle_minutes,
                ends_at,
            });
            p.send()
        }
        Err(e) => {
            let mut response = session_ended(&state, e);
            response.headers_mut().insert(header::SET_COOKIE, state.staff_cookie(&staff, false, None));
            response
        }
    }
}

fn session_ended(state: &AppState, e: VaultError) -> Response {
    match e {
        VaultError::Unauthenticated(why) => page(
            state,
            StatusCode::UNAUTHORIZED,
            "Your session has ended",
            vec![format!("{}.", why.split(':').next().unwrap_or(why))],
        )
        .link("/console/sign-in", "Sign in again")
        .send(),
        other => ApiError::from(other).into_response(),
    }
}

#[derive(serde::Deserialize)]
pub struct Start {
    reauth: Option<String>,
}

/// `GET /console/sign-in`: starts a sign-in at the provider (`?reauth=1`: a fresh one, with a
/// second factor when `[staff.require_mfa]` names the `acr` that means it).
pub async fn start(State(state): State<AppState>, Query(query): Query<Start>) -> Response {
    let Some(staff) = state.staff().cloned() else { return not_configured(&state) };
    let secret = match generate_secret("") {
        Ok(s) => s,
        Err(e) => return ApiError::from(VaultError::from(e)).into_response(),
    };
    let flow = Zeroizing::new(format!("{}.{}", crate::clock::now_millis(), secret.as_str()));
    let reauth = query.reauth.is_some_and(|r| r == "1");
    match staff.rp.authorization_url(&flow, &state.staff_redirect(&staff), reauth).await {
        Ok(url) => {
            let mut response = Redirect::to(&url).into_response();
            response.headers_mut().insert(header::SET_COOKIE, state.staff_cookie(&staff, true, Some(&flow)));
            response
        }
        Err(e) => sign_in_failed(&state, &e),
    }
}

fn sign_in_failed(state: &AppState, e: &SignInError) -> Response {
    tracing::warn!(error = %e, "staff sign-in failed");
    let status = match e {
        SignInError::Provider(_) => StatusCode::BAD_GATEWAY,
        SignInError::Flow | SignInError::Refused(_) | SignInError::Invalid(_) => StatusCode::FORBIDDEN,
    };
    page(state, status, "Sign-in did not work", vec![e.to_string() + "."]).link("/console/sign-in", "Try again").send()
}

#[derive(serde::Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /console/callback`: the provider's answer. On success a session starts (logged) and a
/// page from this site moves on to `/console` (so the SameSite=Strict cookie goes with it).
pub async fn callback(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<Callback>) -> Response {
    let Some(staff) = state.staff().cloned() else { return not_configured(&state) };
    let flow = state.staff_cookie_value(&staff, &headers, true);
    let result = async {
        let flow = flow.ok_or(SignInError::Flow)?;
        let issued: i64 = flow.split('.').next().and_then(|t| t.parse().ok()).ok_or(SignInError::Flow)?;
        let now = crate::clock::now_millis();
        if !(issued <= now && now - issued < FLOW_MINUTES * 60_000) {
            return Err(SignInError::Flow);
        }
        if let Some(error) = &query.error {
            let code: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
            return Err(SignInError::Refused(code));
        }
        let (Some(code), Some(returned_state)) = (&query.code, &query.state) else {
            return Err(SignInError::Invalid("the answer has no code or state".into()));
        };
        staff.rp.finish(&flow, code, returned_state, &state.staff_redirect(&staff)).await
    }
    .await;
    let clear_flow = state.staff_cookie(&staff, true, None);
    let mut response = match result {
        Err(e) => sign_in_failed(&state, &e),
        Ok(identity) => {
            let pseudonym = staff.key.pseudonym(&identity.issuer, &identity.subject);
            match staff.rp.config().role_for(&identity.groups) {
                Err(why) => {
                    tracing::warn!(pseudonym = %pseudonym, "staff sign-in refused: no single role for the person's groups");
                    no_role(&state, &pseudonym, why)
                }
                Ok(role) => {
                    let multi_factor = staff
                        .rp
                        .config()
                        .require_mfa
                        .as_ref()
                        .is_some_and(|m| m.multi_factor(&identity.amr, identity.acr.as_deref()));
                    let proof = SignInProof { multi_factor, auth_time: identity.auth_time };
                    let who =
                        StaffSignIn { pseudonym, issuer: identity.issuer, subject: identity.subject, role, proof };
                    match state.vault.start_staff_session(who, staff.times).await {
                        Ok((secret, _)) => {
                            let mut p = page(
                                &state,
                                StatusCode::OK,
                                "Signed in",
                                vec!["You are signed in. Continue to the console.".into()],
                            )
                            .link("/console", "Continue");
                            p.page.refresh = Some("/console");
                            let mut r = p.send();
                            r.headers_mut()
                                .append(header::SET_COOKIE, state.staff_cookie(&staff, false, Some(&secret)));
                            r
                        }
                        Err(e) => ApiError::from(e).into_response(),
                    }
                }
            }
        }
    };
    response.headers_mut().append(header::SET_COOKIE, clear_flow);
    response
}

fn no_role(state: &AppState, pseudonym: &str, why: NoRole) -> Response {
    let first = match why {
        NoRole::None => "Your company account is not in any group that has a role in Candor, so you cannot \
                         sign in here."
            .to_string(),
        NoRole::Several(roles) => format!(
            "Your company account's groups give you several Candor roles ({}); a session acts in exactly one, \
             so you cannot sign in until your groups map to one.",
            roles.join(", ")
        ),
    };
    page(state, StatusCode::FORBIDDEN, "No role for your account", vec![
        first,
        format!(
            "Ask your Candor administrator to map one of your groups in [staff.roles]; tell them this reference: {pseudonym}."
        ),
    ])
    .send()
}

/// `POST /console/sign-out` (form: `csrf`): ends the session (logged) and clears the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<axum::Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(staff) = state.staff().cloned() else { return not_configured(&state) };
    let Some(secret) = state.staff_cookie_value(&staff, &headers, false) else {
        return page(&state, StatusCode::OK, "You are signed out", vec![]).link("/console", "Staff console").send();
    };
    let token = form.as_ref().ok().and_then(|f| super::sign_in::field(&f.0, "csrf"));
    if !token.is_some_and(|t| secrets_match(t, &csrf_token(&secret))) {
        return page(
            &state,
            StatusCode::FORBIDDEN,
            "This form could not be accepted",
            vec!["It was not sent from the console as we showed it. Go back, reload the page and try again.".into()],
        )
        .link("/console", "Back to the console")
        .send();
    }
    let session: StaffSession = match state.vault.staff_session(&secret, staff.times).await {
        Ok(s) => s,
        Err(e) => return session_ended(&state, e),
    };
    if let Err(e) = state.vault.end_staff_session(&session).await {
        return ApiError::from(e).into_response();
    }
    let signed_out = "Your Candor session has ended. Your company account stays signed in at the identity provider";
    let mut response = match staff.rp.logout_url().await {
        Some(url) => page(
            &state,
            StatusCode::OK,
            "You are signed out",
            vec![format!("{signed_out} until you sign out there too.")],
        )
        .link(url, "Also sign out at the company's identity provider"),
        None => page(&state, StatusCode::OK, "You are signed out", vec![format!("{signed_out}.")])
            .link("/console", "Staff console"),
    }
    .send();
    response.headers_mut().insert(header::SET_COOKIE, state.staff_cookie(&staff, false, None));
    response
}
