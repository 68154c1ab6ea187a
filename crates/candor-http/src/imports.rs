//! `POST /v1/imports` and `GET /v1/imports/{id}`: the CRM import for apps.
//!
//! The body is the file (CSV with a header, or JSON Lines). It is consumed as a stream into a
//! spool (`candor_vault::import::Spool`: an unnamed temporary file sealed under a key that exists
//! only in this server's memory), so memory does not grow with the body and no plaintext reaches
//! the disk. Then the same vault operation as `candor import subjects` reads it twice (check,
//! then store in batches), so the same policy decisions as single creates apply: the token's role
//! under the declared purpose must be allowed to create customers (write every required field,
//! use the unique field to recognise existing customers), and consent columns need
//! `record_consent`.
//!
//! The answer is the minimisation report, with the outcome unless `dry_run`. With
//! `Prefer: respond-async` the import runs in the background instead: `202` with
//! `Location: /v1/imports/{id}`, and `GET /v1/imports/{id}` (same token, role and purpose only)
//! answers its state, progress and, once done, the report or the error. Background imports live
//! in this server's memory ([`Jobs`]): at most [`MAX_RUNNING`] at a time, kept [`KEPT_HOURS`]
//! hours after they end, and gone after a restart (what was committed stays; sending the same
//! file again with the default `on_duplicate=skip` continues without doubling anyone).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::vault::import::{Format, ImportOptions, OnDuplicate, Progress, Quiet, Report, Spool, SpooledSource};
use crate::vault::{Authorized, Millis, Vault};

/// The largest body accepted (about 6 million rows of a typical CRM export). The body is spooled
/// to a temporary file, so this bounds disk, not memory.
pub const MAX_IMPORT_BYTES: u64 = 1 << 30;
/// Background imports running at once on one server (`429 too_many_imports` beyond).
pub const MAX_RUNNING: usize = 2;
/// How long a background import's state and report are kept after it ends.
pub const KEPT_HOURS: i64 = 24;
/// Background imports kept at most (the oldest ended ones are forgotten first).
const MAX_KEPT: usize = 100;
/// The longest `Prefer: wait` honoured on `GET /v1/imports/{id}` (and a second less than the
/// request timeout, if that is shorter).
const MAX_WAIT: Duration = Duration::from_secs(20);

/// How to read the body and what to do with existing customers.
#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// `csv` or `jsonl`; by default taken from the Content-Type (`text/csv`, `application/x-ndjson`).
    format: Option<Format>,
    /// Columns to fields: `E-mail=email,Land=shipping_address.country,Newsletter=consent:marketing/email`;
    /// `Column=` leaves a column out. Other headers are matched to fields by name.
    map: Option<String>,
    /// What to do with a row of an existing customer (found through a unique field).
    on_duplicate: Option<OnDuplicate>,
    /// Answer the report only; store nothing.
    dry_run: Option<bool>,
    /// ISO 3166-1 region of phone numbers written without their country code (e.g. `DE`).
    default_region: Option<String>,
    /// What consent columns' grants were given through, unless a `<column> source` column says.
    consent_source: Option<String>,
    /// The notice version consents were given on (`current`: the one in force), unless a
    /// `<column> notice` column says.
    consent_notice: Option<String>,
}

fn format_of(headers: &HeaderMap) -> Option<Format> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.as_str() {
        "text/csv" => Some(Format::Csv),
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" | "application/jsonlines" => {
            Some(Format::Jsonl)
        }
        _ => None,
    }
}

/// The preferences of RFC 7240 named `name` (`respond-async`, `wait=10`), case-insensitively,
/// over every `Prefer` header: the value of the first, `Some("")` when it has none.
fn preference(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.split(';').next().unwrap_or_default().trim())
        .find_map(|p| {
            let (key, value) = p.split_once('=').unwrap_or((p, ""));
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().trim_matches('"').to_string())
        })
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "an import over the API is at most {MAX_IMPORT_BYTES} bytes; import bigger files with `candor import \
             subjects`, or in parts"
        ),
    )
}

/// Consumes the body into a spool, never holding more than a chunk of it in memory.
async fn spool_body(headers: &HeaderMap, body: Body) -> Result<SpooledSource, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_IMPORT_BYTES) {
        return Err(too_large());
    }
    let mut spool = Spool::new()?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("invalid_body", "the request body could not be read"))?;
        if spool.len() + chunk.len() as u64 > MAX_IMPORT_BYTES {
            return Err(too_large());
        }
        spool.write(&chunk)?;
    }
    Ok(spool.finish()?)
}

/// Import customers from a CRM export, with a minimisation report.
///
/// The body is the file, streamed (never held whole in memory). Before anything is stored the
/// whole file is checked; the answer is the report: columns not imported (undeclared, not
/// writable, consent columns without evidence), invalid values per field (line numbers, never
/// values), duplicates in the file and existing customers (through the blind index), what was
/// planned and what was stored. Each row is stored as `POST /v1/subjects` (or `PATCH` with
/// `on_duplicate=update`) would, with its log entry; consent columns become consent records with
/// their evidence (method `import`). With `Prefer: respond-async` the import runs in the
/// background: `202` and its state at `Location` (`GET /v1/imports/{id}`).
#[utoipa::path(post, path = "/v1/imports", tag = "imports",
    params(
        ("Candor-Purpose" = String, Header, description = "The purpose the data was collected for (customers are created under it)"),
        ("Prefer" = Option<String>, Header, description = "`respond-async`: run in the background and answer `202` at once"),
        ImportParams),
    // Any text is a file (its problems are what the report lists), so the schema is left open.
    request_body(content = serde_json::Value, description = "The file: CSV with a header line, or JSON Lines (any text; its problems are what the report lists)", content_type = "text/csv"),
    responses(
        (status = 200, description = "The report (with `outcome` unless `dry_run`)", body = Report),
        (status = 202, description = "Started in the background (`Prefer: respond-async`); poll `Location`", body = ImportJob,
            headers(("Location" = String, description = "`/v1/imports/{id}`"))),
        (status = 403, description = "`purpose_not_allowed`, `consent_required` (a consent-based purpose), `field_not_allowed` (the role may not write a required field, or look up the unique one), `consent_recording_not_allowed` (consent columns without the `record_consent` power), `policy_forbids`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: import bigger files with `candor import subjects`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send text/csv or application/x-ndjson, or give `format`", body = ErrorBody),
        (status = 422, description = "`invalid_value`: the file (no header, a header of data, not CSV/JSON Lines), the `map`, `default_region` or a consent column's slot", body = ErrorBody),
        (status = 429, description = "`too_many_imports`: this server already runs as many background imports as it takes", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn import(
    State(state): State<AppState>,
    auth: Authorized,
    headers: HeaderMap,
    query: Result<Query<ImportParams>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            "the query string is malformed; accepted: format, map, on_duplicate, dry_run, default_region, \
             consent_source, consent_notice",
        )
    })?;
    // Who may import at all, before the body is read.
    state.vault.may_import(&auth).await?;
    let Some(format) = params.format.or_else(|| format_of(&headers)) else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the file as text/csv or application/x-ndjson (JSON Lines), or say which with ?format=csv|jsonl",
        ));
    };
    let background = preference(&headers, "respond-async").is_some();
    // A background import's place is taken before the body is read, so nobody uploads in vain.
    let permit = if background { Some(state.imports.reserve()?) } else { None };
    let source = spool_body(&headers, body).await?;
    let run = ImportRun {
        vault: state.vault.clone(),
        auth,
        source,
        format,
        dry_run: params.dry_run.unwrap_or(false),
        options: ImportOptions {
            map: params.map,
            on_duplicate: params.on_duplicate.unwrap_or_default(),
            default_region: params.default_region,
            consent_source: params.consent_source,
            consent_notice: params.consent_notice,
            resume_after: 0,
        },
    };
    let Some(permit) = permit else {
        return Ok(Json(run.run(&Quiet).await?).into_response());
    };
    let job = state.imports.start(run, permit, state.vault.now_millis());
    let view = job.view();
    let location = format!("/v1/imports/{}", job.id);
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_str(&location).expect("a uuid is a header value"));
    h.insert("preference-applied", HeaderValue::from_static("respond-async"));
    Ok(response)
}

/// A background import's state.
///
/// Only the caller who started it (the same token, role and purpose) may read it; to anyone
/// else it does not exist. `Prefer: wait=N` waits up to N seconds (at most 20) for it to end.
#[utoipa::path(get, path = "/v1/imports/{id}", tag = "imports",
    params(
        ("id" = String, Path, description = "The import's id (from `Location`)"),
        ("Candor-Purpose" = String, Header, description = "The purpose the import runs under"),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: answer once the import has ended, or after N seconds (at most 20)")),
    responses(
        (status = 200, description = "State and progress; the report once `done`, the error once `failed`", body = ImportJob),
        (status = 403, description = "`purpose_not_allowed`", body = ErrorBody),
        (status = 404, description = "`import_not_found`: no such import for this token and purpose (never started, started by someone else, or ended more than 24 hours ago or before a restart)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn import_status(
    State(state): State<AppState>,
    auth: Authorized,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ImportJob>, ApiError> {
    let job = state.imports.find(&id, &auth, state.vault.now_millis())?;
    let wait = preference(&headers, "wait").and_then(|w| w.parse::<u64>().ok()).map(Duration::from_secs);
    if let Some(wait) = wait {
        let mut ended = job.ended.subscribe();
        // Answered before the request deadline cuts the wait short.
        let longest = MAX_WAIT.min(state.limits.request_timeout.saturating_sub(Duration::from_secs(1)));
        let _ = tokio::time::timeout(wait.min(longest), ended.wait_for(|e| *e)).await;
    }
    Ok(Json(job.view()))
}

/// One import as asked: the vault's two passes over the spooled body.
struct ImportRun {
    vault: Vault,
    auth: Authorized,
    source: SpooledSource,
    format: Format,
    dry_run: bool,
    options: ImportOptions,
}

impl ImportRun {
    async fn run(&self, progress: &dyn Progress) -> Result<Report, ApiError> {
        let checked = self
            .vault
            .check_import(&self.auth, &self.source, self.format, "request body", &self.options, progress)
            .await?;
        if self.dry_run {
            let mut report = checked.report;
            report.dry_run = true;
            return Ok(report);
        }
        Ok(self.vault.run_import(&self.auth, &self.source, checked, progress).await?)
    }
}

/// Where a background import is.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Reading the file and writing the report (nothing stored yet).
    Checking,
    /// Storing what the report plans, batch by batch.
    Importing,
    /// Ended: `report` holds the report and its outcome.
    Done,
    /// Ended with an error (`error`); batches committed before it stay stored.
    Failed,
}

/// An error that ended a background import: what the synchronous request would have answered.
#[derive(Serialize, Clone, ToSchema)]
pub struct JobError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A background import: its state, progress and, once ended, its report or error. Holds no
/// personal value (the report holds names, counts, line numbers and customer ids).
#[derive(Serialize, ToSchema)]
pub struct ImportJob {
    pub id: String,
    pub state: JobState,
    pub purpose: String,
    pub role: String,
    pub dry_run: bool,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// When its state and report are forgotten (24 hours after it ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_until: Option<String>,
    /// Rows read by the check so far.
    pub rows_checked: u64,
    /// Rows of the file, once the check has read them all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Rows read again and stored (or left as planned) so far.
    pub rows_imported: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

/// The background imports of this server (in memory: gone after a restart).
pub struct Jobs {
    running: Arc<tokio::sync::Semaphore>,
    jobs: Mutex<HashMap<uuid::Uuid, Arc<Job>>>,
}

impl Default for Jobs {
    fn default() -> Self {
        Self { running: Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING)), jobs: Mutex::default() }
    }
}

/// Who started a job: only they may read it.
#[derive(PartialEq, Eq)]
struct Owner {
    token_id: String,
    role: String,
    purpose: String,
}

impl Owner {
    fn of(auth: &Authorized) -> Self {
        Owner {
            token_id: auth.principal.token_id.clone(),
            role: auth.principal.role.clone(),
            purpose: auth.purpose.to_string(),
        }
    }
}

const CHECKING: u8 = 0;
const IMPORTING: u8 = 1;

/// One background import.
pub struct Job {
    id: uuid::Uuid,
    owner: Owner,
    dry_run: bool,
    started_at: Millis,
    phase: AtomicU8,
    rows_checked: AtomicU64,
    rows: AtomicU64,
    rows_imported: AtomicU64,
    /// Once ended: when, and the report or the error.
    result: Mutex<Option<(Millis, Result<Report, JobError>)>>,
    ended: tokio::sync::watch::Sender<bool>,
}

const UNKNOWN: u64 = u64::MAX;

impl Progress for Job {
    fn start(&self, phase: &'static str, total: Option<u64>) {
        if phase == "importing" {
            self.phase.store(IMPORTING, Ordering::Relaxed);
        }
        if let Some(n) = total {
            self.rows.store(n, Ordering::Relaxed);
        }
    }

    fn advance(&self, rows: u64) {
        let counter =
            if self.phase.load(Ordering::Relaxed) == IMPORTING { &self.rows_imported } else { &self.rows_checked };
        counter.fetch_add(rows, Ordering::Relaxed);
    }
}

impl Job {
    fn ended_at(&self) -> Option<Millis> {
        self.result.lock().expect("job lock").as_ref().map(|(at, _)| *at)
    }

    fn view(&self) -> ImportJob {
        let result = self.result.lock().expect("job lock").clone();
        let rows = self.rows.load(Ordering::Relaxed);
        let (state, ended_at, report, error) = match result {
            None if self.phase.load(Ordering::Relaxed) == IMPORTING => (JobState::Importing, None, None, None),
            None => (JobState::Checking, None, None, None),
            Some((at, Ok(report))) => (JobState::Done, Some(at), Some(report), None),
            Some((at, Err(e))) => (JobState::Failed, Some(at), None, Some(e)),
        };
        ImportJob {
            id: self.id.to_string(),
            state,
            purpose: self.owner.purpose.clone(),
            role: self.owner.role.clone(),
            dry_run: self.dry_run,
            started_at: crate::rfc3339(self.started_at),
            ended_at: ended_at.map(crate::rfc3339),
            kept_until: ended_at.map(|at| crate::rfc3339(at + KEPT_HOURS * 3_600_000)),
            rows_checked: self.rows_checked.load(Ordering::Relaxed),
            rows: (rows != UNKNOWN).then_some(rows),
            rows_imported: self.rows_imported.load(Ordering::Relaxed),
            report,
            error,
        }
    }
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "import_not_found",
        "no import with this id for this token and purpose (imports are kept 24 hours after they end, and not \
         across a restart of the server)",
    )
    .with_field("id")
}

impl Jobs {
    /// A place for one more background import, or `429 too_many_imports`.
    fn reserve(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.running.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_imports",
                format!(
                    "this server already runs {MAX_RUNNING} background imports, the most it takes at once; retry once \
                     one has ended"
                ),
            )
        })
    }

    /// Forgets imports that ended more than [`KEPT_HOURS`] ago, and the oldest ended ones
    /// beyond [`MAX_KEPT`].
    fn prune(jobs: &mut HashMap<uuid::Uuid, Arc<Job>>, now: Millis) {
        jobs.retain(|_, j| j.ended_at().is_none_or(|at| now - at < KEPT_HOURS * 3_600_000));
        if jobs.len() > MAX_KEPT {
            let mut ended: Vec<(Millis, uuid::Uuid)> =
                jobs.values().filter_map(|j| j.ended_at().map(|at| (at, j.id))).collect();
            ended.sort_unstable();
            for (_, id) in ended.into_iter().take(jobs.len() - MAX_KEPT) {
                jobs.remove(&id);
            }
        }
    }

    /// Starts `run` in the background; the permit is given back when it ends.
    fn start(&self, run: ImportRun, permit: tokio::sync::OwnedSemaphorePermit, now: Millis) -> Arc<Job> {
        let job = Arc::new(Job {
            id: uuid::Uuid::new_v4(),
            owner: Owner::of(&run.auth),
            dry_run: run.dry_run,
            started_at: now,
            phase: AtomicU8::new(CHECKING),
            rows_checked: AtomicU64::new(0),
            rows: AtomicU64::new(UNKNOWN),
            rows_imported: AtomicU64::new(0),
            result: Mutex::new(None),
            ended: tokio::sync::watch::channel(false).0,
        });
        {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            Self::prune(&mut jobs, now);
            jobs.insert(job.id, job.clone());
        }
        let (worker, watcher) = (job.clone(), job.clone());
        let vault = run.vault.clone();
        let task = tokio::spawn(async move { run.run(&*worker).await });
        tokio::spawn(async move {
            let result = match task.await {
                Ok(result) => result,
                // A bug, not the file: the same answer a request would get.
                Err(_) => Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )),
            };
            let result = result.map_err(|e| {
                if e.status.is_server_error() {
                    tracing::error!(code = e.code, message = %e.message, "background import failed");
                }
                JobError { status: e.status.as_u16(), code: e.code, message: e.message, field: e.field }
            });
            if let Ok(report) = &result {
                watcher.rows.store(report.rows, Ordering::Relaxed);
            }
            *watcher.result.lock().expect("job lock") = Some((vault.now_millis(), result));
            drop(permit);
            watcher.ended.send_replace(true);
        });
        job
    }

    /// The caller's import `id`: unknown ids and other callers' imports are not found alike.
    fn find(&self, id: &str, auth: &Authorized, now: Millis) -> Result<Arc<Job>, ApiError> {
        let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
        let mut jobs = self.jobs.lock().expect("jobs lock");
        Self::prune(&mut jobs, now);
        jobs.get(&id).filter(|j| j.owner == Owner::of(auth)).cloned().ok_or_else(not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferences_are_found_in_any_prefer_header_whatever_their_case() {
        let mut h = HeaderMap::new();
        assert_eq!(preference(&h, "respond-async"), None);
        h.append("prefer", HeaderValue::from_static("handling=lenient, Respond-Async"));
        h.append("prefer", HeaderValue::from_static("wait=10; foo"));
        assert_eq!(preference(&h, "respond-async").as_deref(), Some(""));
        assert_eq!(preference(&h, "wait").as_deref(), Some("10"));
        assert_eq!(preference(&h, "return"), None);
    }
}
