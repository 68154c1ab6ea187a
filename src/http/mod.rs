//! The HTTP JSON API (axum). Handlers are thin: extract, call one vault operation, map the
//! result. Cross-cutting concerns live in extractors ([`extract`]) and one error type
//! ([`error::ApiError`]).

mod branding;
mod center;
pub mod client;
mod consents;
pub mod error;
pub mod extract;
mod grants;
mod limit;
mod log;
mod messages;
mod meta;
mod notices;
mod overrides;
mod pages;
mod privacy;
mod report;
mod requests;
mod rights;
mod sign_in;
mod subjects;
mod tokens;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use self::error::ApiError;
use crate::vault::Vault;

/// A time in milliseconds as RFC 3339, as the API shows times.
pub(crate) fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

#[derive(Clone)]
pub struct AppState {
    pub vault: Vault,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    pub branding: Arc<branding::Branding>,
    pub sign_in: Arc<crate::config::SignInConfig>,
    limiter: Arc<limit::SignInLimiter>,
    /// This server's own address (`http://127.0.0.1:8750`), known once it listens.
    bound: Arc<OnceLock<String>>,
    /// Recipients' webhook secrets (`[sharing] webhook_secrets`).
    pub webhook_secrets: Arc<std::collections::HashMap<String, zeroize::Zeroizing<String>>>,
    webhooks: crate::config::WebhookSettings,
    /// `[server] trusted_proxies`: whose `X-Forwarded-For` is believed.
    trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Whether staff and recipient addresses are recorded beside the log (`[log] caller_address_days` > 0).
    record_callers: bool,
}

impl AppState {
    /// The state of a server of this installation (reads the branding's logo, if any).
    pub fn new(vault: Vault, config: &crate::config::Config) -> anyhow::Result<Self> {
        let branding = Arc::new(branding::Branding::load(&config.branding)?);
        Ok(AppState {
            vault,
            max_body_bytes: config.max_body_bytes,
            branding,
            sign_in: Arc::new(config.sign_in.clone()),
            limiter: Arc::new(limit::SignInLimiter::new(config.sign_in.attempts_per_minute)),
            bound: Arc::new(OnceLock::new()),
            webhook_secrets: Arc::new(crate::outbox::load_secrets(&config.webhooks)?),
            webhooks: config.webhooks.clone(),
            trusted_proxies: Arc::new(config.trusted_proxies.clone()),
            record_callers: config.log.caller_address_days > 0,
        })
    }

    /// The address to record for a staff or recipient request from `client`, if addresses are
    /// recorded at all.
    pub fn caller_origin(&self, client: client::ClientIp) -> Option<std::net::IpAddr> {
        self.record_callers.then_some(client.0).filter(|a| !a.is_unspecified())
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
        .route("/privacy/me/messages", get(messages::own_messages))
        .route("/privacy/check", get(messages::check_page))
        .route("/v1/messages", post(messages::register))
        .route("/v1/recipients", get(grants::recipients))
        .route("/v1/grants", post(grants::create))
        .route("/v1/grants/{id}", get(grants::get).delete(grants::revoke))
        .route("/v1/grants/{id}/records", get(grants::records))
        .route("/v1/notices", get(notices::unconfirmed))
        .route("/v1/notices/{id}/confirm", post(notices::confirm))
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
        .route("/v1/requests/{id}", axum::routing::patch(requests::close_request))
        .route("/metrics", get(requests::metrics))
        .route("/v1/tokens", get(tokens::list))
        .route("/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/v1/subjects/{id}/events", get(subjects::list_events).post(subjects::append_event))
        .route("/v1/subjects/{id}/access-log", get(log::access_log))
        .route("/v1/subjects/{id}/consents", get(consents::get_consents).post(consents::post_consents))
        .route("/v1/subjects/{id}/consents/history", get(consents::get_history))
        .route("/v1/subjects/{id}/consents/receipts/{receipt_id}", get(consents::get_receipt))
        .route("/v1/consents/audience", get(consents::audience))
        .route("/v1/log/checkpoint", get(log::checkpoint))
        .route("/v1/log/key", get(log::key))
        .route("/v1/log/entries", get(log::entries))
        .route("/v1/log/proofs/inclusion", get(log::inclusion))
        .route("/v1/log/proofs/consistency", get(log::consistency))
        .route("/log/checkpoint", get(log::tiles_checkpoint))
        .route("/log/tile/{*path}", get(log::tile))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(log_and_harden))
        .layer(middleware::from_fn_with_state(state.clone(), client::remember_client))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .with_state(state)
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

/// Binds `addr`, prints the address actually bound (port 0 picks a free one) and serves until
/// Ctrl-C or SIGTERM.
pub async fn serve(state: AppState, addr: SocketAddr, on_ready: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    serve_on(state, bind(addr).await?, on_ready).await
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

/// Serves on a bound listener; see [`serve`].
pub async fn serve_on(state: AppState, listener: TcpListener, on_ready: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let _ = state.bound.set(format!("http://{local}"));
    crate::outbox::spawn_dispatcher(
        state.vault.clone(),
        state.webhooks.clone(),
        (*state.webhook_secrets).clone(),
        state.public_base(),
    );
    on_ready(local);
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
