//! Candor's HTTP side (axum): the JSON API, the privacy center, the staff console, staff sign-in
//! through the company's identity provider ([`identity`]), readiness ([`readiness`]) and the
//! witness client ([`witnesses`]). Handlers are thin: extract, call one vault operation, map the
//! result. Cross-cutting concerns live in extractors ([`extract`]) and one error type
//! ([`error::ApiError`]). This crate does not depend on `candor-store`: every read and write
//! goes through [`candor_vault::Vault`], so a handler that reaches the store does not compile.
#![forbid(unsafe_code)]

mod branding;
mod center;
pub mod client;
pub mod conn;
mod consents;
mod console;
pub mod error;
pub mod extract;
mod grants;
mod health;
mod idempotency;
pub mod identity;
mod imports;
mod limit;
mod log;
mod messages;
mod meta;
mod notices;
mod overrides;
mod pages;
mod privacy;
pub mod readiness;
mod report;
mod requests;
mod rights;
pub mod settings;
mod sign_in;
pub mod staff;
mod subjects;
mod tokens;
pub mod witnesses;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, RawPathParams, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

use self::error::ApiError;
pub use self::settings::{FindingLevel, InstallationHealth, InstallationReport, Settings};
use crate::vault::Vault;
use candor_vault as vault;
use candor_vault::clock;

pub(crate) use crate::clock::rfc3339;

/// What every handler shares. axum clones the state for each request (and each middleware
/// layer that takes it), so it is one reference-counted handle: a profile of audited reads
/// showed ~4% of the server's CPU cloning and dropping two dozen `Arc`s per request.
#[derive(Clone)]
pub struct AppState(Arc<AppStateParts>);

impl std::ops::Deref for AppState {
    type Target = AppStateParts;
    fn deref(&self) -> &AppStateParts {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Clone)]
pub struct AppStateParts {
    pub vault: Vault,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    pub branding: Arc<branding::Branding>,
    pub sign_in: Arc<crate::settings::SignInConfig>,
    limiter: Arc<limit::SignInLimiter>,
    /// Message-code checks count apart from sign-in attempts.
    message_limiter: Arc<limit::SignInLimiter>,
    /// This server's own address (`http://127.0.0.1:8750`), known once it listens.
    bound: Arc<OnceLock<String>>,
    /// Recipients' webhook secrets (`[sharing] webhook_secrets`).
    pub webhook_secrets: Arc<std::collections::HashMap<String, zeroize::Zeroizing<String>>>,
    /// `[server] trusted_proxies`: whose `X-Forwarded-For` is believed.
    trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Whether staff and recipient addresses are recorded beside the log (`[log] caller_address_days` > 0).
    record_callers: bool,
    /// `[server]` connection and time limits.
    limits: crate::settings::ServerLimits,
    /// Whether the database answers and the storage takes writes.
    health: Arc<crate::readiness::Health>,
    /// Staff sign-in through the company's identity provider (`[staff]`), if set up.
    staff: Option<Arc<staff::Staff>>,
    /// The log's witnesses (`[[log.witnesses]]`), if any.
    pub witnesses: Option<Arc<crate::witnesses::Witnesses>>,
    /// The installation's own checks (`candor doctor`, key status), when the binary gives them.
    installation: Option<Arc<dyn crate::settings::InstallationReport>>,
    /// Background imports started on this server (`POST /v1/imports` with `Prefer: respond-async`).
    imports: Arc<imports::Jobs>,
}

impl AppState {
    /// The state of a server of this installation (reads the branding's logo, if any).
    pub fn new(vault: Vault, settings: Settings) -> anyhow::Result<Self> {
        let branding = Arc::new(branding::Branding::load(&settings.branding)?);
        let staff = match &settings.staff {
            Some(s) => Some(Arc::new(staff::Staff::load(s, vault.catalog())?)),
            None => None,
        };
        Ok(AppState(Arc::new(AppStateParts {
            vault,
            max_body_bytes: settings.max_body_bytes,
            branding,
            limiter: Arc::new(limit::SignInLimiter::new(settings.sign_in.attempts_per_minute)),
            message_limiter: Arc::new(limit::SignInLimiter::new(settings.sign_in.attempts_per_minute)),
            sign_in: Arc::new(settings.sign_in),
            bound: Arc::new(OnceLock::new()),
            webhook_secrets: Arc::new(settings.webhook_secrets),
            trusted_proxies: Arc::new(settings.trusted_proxies),
            record_callers: settings.record_callers,
            limits: settings.limits,
            health: crate::readiness::Health::new(),
            staff,
            witnesses: crate::witnesses::Witnesses::new(&settings.witnesses),
            installation: None,
            imports: Arc::default(),
        })))
    }

    /// The same state, with the installation's own checks shown to auditors in the console.
    pub fn with_installation_report(mut self, report: Arc<dyn crate::settings::InstallationReport>) -> Self {
        Arc::make_mut(&mut self.0).installation = Some(report);
        self
    }

    /// The address to record for a staff or recipient request from `client`, if addresses are
    /// recorded at all.
    pub fn caller_origin(&self, client: client::ClientIp) -> Option<std::net::IpAddr> {
        self.record_callers.then_some(client.0).filter(|a| !a.is_unspecified())
    }

    /// Records that this server listens on `local` and returns where customers reach it
    /// ([`AppState::public_base`]).
    pub fn listening_on(&self, local: SocketAddr) -> String {
        let _ = self.bound.set(format!("http://{local}"));
        self.public_base()
    }

    /// Where customers reach the privacy center: `[privacy_center] public_url`, or this
    /// server's own address.
    pub fn public_base(&self) -> String {
        match &self.sign_in.public_url {
            Some(u) => u.clone(),
            None => self.bound.get().cloned().unwrap_or_default(),
        }
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(meta::openapi))
        .route("/v1/catalog", get(meta::catalog))
        .route("/v1/notice", get(privacy::notice))
        .route("/privacy", get(privacy::page))
        .route("/privacy/sign-in/{link}", get(sign_in::continue_page))
        .route("/privacy/sign-in", post(sign_in::sign_in))
        .route("/privacy/sign-out", post(sign_in::sign_out))
        .route("/privacy/me", get(center::my_data))
        .route("/privacy/me/choices", get(center::choices).post(center::save_choices))
        .route("/privacy/me/access", get(center::access))
        .route("/privacy/me/download", get(center::download_page).post(center::download))
        .route("/privacy/me/correct", get(center::correct_form).post(center::correct))
        .route("/privacy/me/delete", get(center::delete_form).post(center::delete))
        .route("/privacy/me/requests", get(center::own_requests))
        .route("/privacy/me/messages", get(messages::own_messages))
        .route("/privacy/check", get(messages::check_page))
        .route("/console", get(staff::home))
        .route("/console/sign-in", get(staff::start))
        .route("/console/callback", get(staff::callback))
        .route("/console/sign-out", post(staff::sign_out))
        .route("/console/customers", get(console::find_form))
        .route("/console/customers/find", post(console::find))
        .route("/console/customers/{id}", get(console::record))
        .route("/console/customers/{id}/correct", post(console::correct))
        .route("/console/customers/{id}/break-glass", post(console::break_glass))
        .route("/console/customers/{id}/events", post(console::append_event))
        .route("/console/customers/{id}/erase", post(console::erase))
        .route("/console/requests", get(console::requests))
        .route("/console/log", get(console::log))
        .route("/console/accountability", get(console::accountability))
        .route("/console/incidents", get(console::incidents))
        .route("/console/incidents/record", post(console::record_breach))
        .route("/console/incidents/{id}/update", post(console::update_breach))
        .route("/console/sharing", get(console::sharing))
        .route("/console/sharing/grants/{id}/stop", post(console::stop_grant))
        .route("/console/sharing/notices/{id}/retry", post(console::retry_notice))
        .route("/console/requests/{id}", get(console::request_page))
        .route("/console/requests/{id}/update", post(console::update_request))
        .route("/console/requests/{id}/report", get(console::report))
        .route("/console/requests/{id}/export", get(console::export))
        .route("/console/requests/{id}/restrict", post(console::restrict))
        .route("/console/requests/{id}/close", post(console::close_request))
        .route("/v1/messages", post(messages::register))
        .route("/v1/recipients", get(grants::recipients))
        .route("/v1/grants", get(grants::list).post(grants::create))
        .route("/v1/grants/{id}", get(grants::get).delete(grants::revoke))
        .route("/v1/grants/{id}/records", get(grants::records))
        .route("/v1/notices", get(notices::unconfirmed))
        .route("/v1/notices/{id}/confirm", post(notices::confirm))
        .route("/v1/notices/{id}/retry", post(notices::retry))
        .route("/v1/messages/verify", get(messages::verify))
        .route("/v1/subjects/{id}/privacy-center-links", post(sign_in::create_link))
        .route("/assets/candor.css", get(privacy::stylesheet))
        .route("/assets/brand.css", get(branding::stylesheet))
        .route("/assets/logo", get(branding::logo))
        .route("/v1/subjects", get(subjects::lookup_subjects).post(subjects::create_subject))
        .route(
            "/v1/subjects/{id}",
            get(subjects::get_subject).patch(subjects::correct_subject).delete(rights::erase_subject),
        )
        .route("/v1/subjects/{id}/hold", get(rights::get_hold).post(rights::place_hold).delete(rights::lift_hold))
        .route("/v1/subjects/{id}/break-glass", post(overrides::open))
        .route("/v1/subjects/{id}/restriction", post(rights::restrict).delete(rights::lift_restriction))
        .route("/v1/subjects/{id}/report", get(report::report))
        .route("/v1/subjects/{id}/export", get(report::export))
        .route("/v1/requests", get(requests::list_requests).post(requests::open_request))
        .route("/v1/requests/{id}", get(requests::get_request).patch(requests::change_request))
        .route("/metrics", get(requests::metrics))
        .route("/v1/tokens", get(tokens::list))
        .route("/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/v1/subjects/{id}/events", get(subjects::list_events).post(subjects::append_event))
        .route("/v1/subjects/{id}/access-log", get(log::access_log))
        .route("/v1/subjects/{id}/history-proof", get(log::history_proof))
        .route("/v1/subjects/{id}/consents", get(consents::get_consents).post(consents::post_consents))
        .route("/v1/subjects/{id}/consents/history", get(consents::get_history))
        .route("/v1/subjects/{id}/consents/receipts/{receipt_id}", get(consents::get_receipt))
        .route("/v1/consents/audience", get(consents::audience))
        .route("/v1/consents/counts", get(consents::counts))
        .route("/v1/imports", post(imports::import))
        .route("/v1/imports/{id}", get(imports::import_status))
        .route("/v1/log/checkpoint", get(log::checkpoint))
        .route("/v1/log/checkpoint/cosigned", get(log::cosigned_checkpoint))
        .route("/v1/log/witnesses", get(log::witnesses))
        .route("/v1/log/key", get(log::key))
        .route("/v1/log/entries", get(log::entries))
        .route("/v1/log/proofs/inclusion", get(log::inclusion))
        .route("/v1/log/proofs/consistency", get(log::consistency))
        .route("/log/checkpoint", get(log::tiles_checkpoint))
        .route("/log/tile/{*path}", get(log::tile))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(max_body_bytes, idempotency::guard))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            health::Deadlines {
                health: state.health.clone(),
                database: state.limits.database_timeout,
                request: state.limits.request_timeout,
            },
            health::deadlines,
        ))
        .layer(middleware::from_fn(api_guard))
        .layer(middleware::from_fn(log_and_harden))
        .layer(middleware::from_fn_with_state(state.clone(), client::remember_client))
        .with_state(state)
}

/// Whether `path` belongs to the JSON API (everything but the privacy center's pages and
/// their assets), whose every answer, errors included, is JSON.
fn is_api_path(path: &str) -> bool {
    !(path == "/privacy"
        || path.starts_with("/privacy/")
        || path.starts_with("/assets/")
        || path == "/console"
        || path.starts_with("/console/"))
}

/// For the API's routes: refuses requests whose meaning would be ambiguous (two
/// `Authorization` headers; a path segment that is not UTF-8 once percent-decoded, which
/// axum's `Path` would refuse in plain text), and makes sure every error answer is the JSON
/// error body. Extractors and handlers answer JSON themselves; an error that still arrives
/// here in another form (a rejection of axum's or tower's) gets the JSON body for its status,
/// keeping its other headers, and a warning names the route so it can be fixed at its source.
async fn api_guard(path_params: Result<RawPathParams, RawPathParamsRejection>, req: Request, next: Next) -> Response {
    use axum::response::IntoResponse;
    if !is_api_path(req.uri().path()) {
        return next.run(req).await;
    }
    if let Err(e) = extract::single_authorization(req.headers()) {
        return e.into_response();
    }
    if let Err(RawPathParamsRejection::InvalidUtf8InPathParam(e)) = path_params {
        // axum names the parameter only in its message: "Invalid UTF-8 in `id`". The name comes
        // from the route template, never from the request.
        let text = e.body_text();
        let name = text.split('`').nth(1).unwrap_or("id").to_string();
        let code = if name == "id" || name.ends_with("_id") { "invalid_id" } else { "invalid_path" };
        return ApiError::bad_request(
            code,
            format!("the `{name}` in the path is not valid UTF-8 once percent-decoded"),
        )
        .with_field(name)
        .into_response();
    }
    let route = req.extensions().get::<MatchedPath>().map_or("<unmatched>", |p| p.as_str()).to_string();
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    tracing::warn!(route = %route, status = status.as_u16(), "an error answer was not JSON; answered the JSON error body instead");
    let (mut parts, _) = response.into_parts();
    let json = error_for_status(status).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    for (name, value) in json.headers() {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, json.into_body())
}

/// The JSON error for an answer that only has a status.
fn error_for_status(status: StatusCode) -> ApiError {
    let (code, message) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
        StatusCode::UNAUTHORIZED => ("unauthenticated", "send the token in an `Authorization: Bearer <token>` header"),
        StatusCode::FORBIDDEN => ("forbidden", "the request is not allowed"),
        StatusCode::NOT_FOUND => ("not_found", "no such route; see /openapi.json"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "this route does not accept that method; see /openapi.json")
        }
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request was not answered in time"),
        StatusCode::LENGTH_REQUIRED => ("length_required", "send the body with a Content-Length"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is larger than the server accepts"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "send the body as JSON with `Content-Type: application/json`")
        }
        StatusCode::CONFLICT => ("conflict", "the request conflicts with stored data"),
        StatusCode::GONE => ("gone", "this no longer exists"),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid_body", "the request body does not have the expected shape"),
        StatusCode::TOO_MANY_REQUESTS => ("too_many_requests", "too many requests; retry later"),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "the service is unavailable; retry shortly"),
        s if s.is_server_error() => ("internal", "internal error; see the server log"),
        _ => ("request_refused", "the request was refused"),
    };
    ApiError::new(status, code, message)
}

/// A bug must not take the connection down silently: answer 500 in the usual error shape. The
/// panic payload is not echoed (it could describe a value).
fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    use axum::response::IntoResponse;
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log").into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method; see /openapi.json",
    )
}

/// Logs each request by its route template (never the concrete path or query, which can hold
/// ids and lookup values) and sets headers that keep responses out of caches.
async fn log_and_harden(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or("<unmatched>", |p| p.as_str()).to_string();
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Pages load nothing from anyone else, run no script, and cannot be framed.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    tracing::info!(
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Binds `addr`; when it is taken, the error says how to pick another address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                " (another program, perhaps another Candor, uses port {}): pass --listen {}:PORT for another port, or port 0 for any free one",
                addr.port(),
                addr.ip()
            )
        } else {
            String::new()
        };
        anyhow::anyhow!("cannot listen on {addr}: {e}{hint}")
    })
}

/// Serves on a bound listener until Ctrl-C or SIGTERM; `on_ready` gets the address actually
/// bound (port 0 picks a free one). Background jobs are the caller's (`crate::jobs`).
pub async fn serve_on(state: AppState, listener: TcpListener, on_ready: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let _ = state.bound.set(format!("http://{local}"));
    // Listening for Ctrl-C and SIGTERM starts before the server says it is ready: a signal
    // right after is a graceful stop too, never the default kill.
    let shutdown = shutdown_signal();
    on_ready(local);
    let vault = state.vault.clone();
    state.health.spawn_watchdog(vault.clone());
    let limits = conn::ConnectionLimits {
        max_connections: conn::connection_cap(state.limits.max_connections, conn::raise_open_file_limit()),
        header_timeout: state.limits.header_timeout,
    };
    // Requests in progress get as long to finish as any request may take.
    let drain = state.limits.request_timeout;
    conn::serve(listener, router(state), limits, shutdown, drain).await;
    // A normal stop (Ctrl-C, SIGTERM) leaves no entry unsigned: requests are done, so the
    // checkpoint covers everything they appended.
    match vault.checkpoint_if_grown().await {
        Ok(Some(size)) => tracing::info!(size, "signed a log checkpoint at shutdown"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not sign a log checkpoint at shutdown"),
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are registered when this is called (not when
/// the future is first polled), so no signal from then on takes the process down unhandled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (mut term, mut interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let interrupt = async {
                match interrupt.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            };
            tokio::select! { _ = term => {}, _ = interrupt => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Serves `app` on a free loopback port; returns its address.
    async fn serve_test(app: Router) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    async fn answer(url: &str) -> (u16, String, serde_json::Value) {
        let resp = reqwest::get(url).await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let body = resp.bytes().await.unwrap();
        (status, ct, serde_json::from_slice(&body).unwrap_or_default())
    }

    fn deadlines(health: &Arc<crate::readiness::Health>) -> health::Deadlines {
        health::Deadlines {
            health: health.clone(),
            database: Duration::from_millis(1),
            request: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn a_request_that_takes_too_long_is_answered_503_in_json_saying_what_may_have_changed() {
        let health = crate::readiness::Health::new();
        let app = Router::new()
            .route("/v1/never", get(std::future::pending::<()>).post(std::future::pending::<()>))
            .layer(middleware::from_fn_with_state(deadlines(&health), health::deadlines))
            .layer(middleware::from_fn(api_guard));
        let url = serve_test(app).await;
        let (status, ct, body) = answer(&format!("{url}/v1/never")).await;
        assert_eq!((status, ct.as_str()), (503, "application/json"));
        assert_eq!(body["error"]["code"], "timeout");
        assert_eq!(body["error"]["write_outcome"], "none_requested");
        let resp = reqwest::Client::new().post(format!("{url}/v1/never")).send().await.unwrap();
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            (body["error"]["code"].as_str(), body["error"]["write_outcome"].as_str()),
            (Some("timeout"), Some("unknown"))
        );
    }

    #[tokio::test]
    async fn a_request_waiting_on_a_database_that_does_not_answer_is_answered_503_database_unavailable() {
        let health = crate::readiness::Health::new();
        let mut d = deadlines(&health);
        // Far longer than the test may take: only the database's state can end the wait.
        d.request = Duration::from_secs(3600);
        let app = Router::new()
            .route("/v1/never", post(std::future::pending::<()>))
            .layer(middleware::from_fn_with_state(d, health::deadlines))
            .layer(middleware::from_fn(api_guard));
        let url = serve_test(app).await;
        let waiting = tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/never"))
                .header("idempotency-key", "k-1")
                .send()
                .await
                .unwrap()
        });
        health.mark_unresponsive_for_test();
        let resp = waiting.await.unwrap();
        assert_eq!(resp.status(), 503);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "database_unavailable");
        assert_eq!(body["error"]["write_outcome"], "unknown");
        assert!(body["error"]["message"].as_str().unwrap().contains("same Idempotency-Key"), "{body}");
    }

    #[tokio::test]
    async fn error_answers_of_the_api_are_json_and_pages_are_left_alone() {
        let plain = || async { (StatusCode::BAD_GATEWAY, [(header::WWW_AUTHENTICATE, "Bearer")], "upstream said no") };
        let app = Router::new()
            .route("/v1/plain", get(plain))
            .route("/privacy/plain", get(plain))
            .route("/v1/empty", get(|| async { StatusCode::CONFLICT }))
            .route("/v1/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
            .route("/v1/fine", get(|| async { "fine" }))
            .layer(middleware::from_fn(api_guard));
        let url = serve_test(app).await;
        let (status, ct, body) = answer(&format!("{url}/v1/plain")).await;
        assert_eq!((status, ct.as_str(), body["error"]["code"].as_str()), (502, "application/json", Some("internal")));
        assert!(!body.to_string().contains("upstream"), "the original body is dropped: {body}");
        let (status, _, body) = answer(&format!("{url}/v1/empty")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")));
        let (status, _, body) = answer(&format!("{url}/v1/teapot")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (418, Some("request_refused")));
        let (status, ct, _) = answer(&format!("{url}/privacy/plain")).await;
        assert_eq!((status, ct.as_str()), (502, "text/plain; charset=utf-8"));
        let (status, ct, _) = answer(&format!("{url}/v1/fine")).await;
        assert_eq!((status, ct.as_str()), (200, "text/plain; charset=utf-8"));
    }
}
