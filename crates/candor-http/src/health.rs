//! Readiness and time limits: `GET /readyz` for load balancers, and the middleware that answers
//! a request with a JSON `503` when the database does not answer or the request takes too long,
//! saying whether a change it asked for may have been made.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, StorageFullCause, WriteOutcome};
use crate::readiness::Health;

/// `{"ready": true}`, or `{"ready": false, "reason", "message"}`.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `database_unavailable` or `storage_full`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
}

/// Whether this server can serve requests now: `200` when the database answers and takes
/// writes, `503` otherwise (a load balancer should send traffic elsewhere). Public: it says
/// nothing about any customer. `/healthz` answers whether the process is alive.
#[utoipa::path(get, path = "/readyz", tag = "meta",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: the database does not answer, or the storage is full", body = Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.health.not_ready() {
        None => Json(Readiness { ready: true, reason: None, message: None }).into_response(),
        Some(why) => {
            let message = match why {
                crate::readiness::NotReady::DatabaseUnavailable => "the database does not answer",
                crate::readiness::NotReady::StorageFull => {
                    "the storage is full: nothing can be recorded, so requests are refused with 507"
                }
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Readiness { ready: false, reason: Some(why.code()), message: Some(message) }),
            )
                .into_response()
        }
    }
}

/// What the time-limit middleware needs.
#[derive(Clone)]
pub struct Deadlines {
    pub health: Arc<Health>,
    /// A request that has waited this long while the database does not answer gets `503`.
    pub database: Duration,
    /// No request waits longer than this.
    pub request: Duration,
}

/// Answers `503 database_unavailable` once a request has waited `database` and the database is
/// not answering (at once if it already was not, or as soon as the watchdog finds it), and
/// `503 timeout` after `request` whatever the cause. Also hands a full disk seen by the request
/// to [`Health`], which logs it once.
pub async fn deadlines(State(d): State<Deadlines>, req: Request, next: Next) -> Response {
    let write = if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        WriteOutcome::NoneRequested
    } else {
        WriteOutcome::Unknown
    };
    let has_key = req.headers().contains_key(super::idempotency::HEADER);
    let run = next.run(req);
    tokio::pin!(run);
    let response = tokio::select! {
        r = &mut run => r,
        () = tokio::time::sleep(d.database) => {
            let mut responsive = d.health.responsive();
            let rest = tokio::time::sleep(d.request.saturating_sub(d.database));
            tokio::select! {
                r = &mut run => r,
                _ = responsive.wait_for(|ok| !*ok) => {
                    cut_short("database_unavailable", format!("the database did not answer within {} seconds", d.database.as_secs()), write, has_key)
                }
                () = rest => cut_short("timeout", format!("the request was not answered within {} seconds", d.request.as_secs()), write, has_key),
            }
        }
    };
    if let Some(StorageFullCause(cause)) = response.extensions().get::<StorageFullCause>() {
        d.health.storage_full(cause);
    }
    response
}

fn cut_short(code: &'static str, what: String, write: WriteOutcome, has_key: bool) -> Response {
    let advice = match (write, has_key) {
        (WriteOutcome::NoneRequested, _) => "; nothing was changed: retry shortly",
        (WriteOutcome::Unknown, true) => {
            "; the change may or may not have been made: retry with the same Idempotency-Key, which returns the \
             first answer if it was made and makes it once otherwise"
        }
        (WriteOutcome::Unknown, false) => {
            "; the change may or may not have been made: read before retrying, or send writes with an \
             Idempotency-Key so a retry is safe"
        }
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, format!("{what}{advice}"))
        .with_write_outcome(write)
        .into_response()
}
