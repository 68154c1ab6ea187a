//! `POST /v1/imports`: the CRM import for apps. The body is the file (CSV with a header, or JSON
//! Lines), streamed in and held in memory only (wiped afterwards; never written to disk); the
//! answer is the minimisation report, with the outcome unless `dry_run`. The same vault operation
//! as `candor import subjects`, so the same policy decisions as single creates: the token's role
//! under the declared purpose, which must be allowed to create customers (write every required
//! field, use the unique field to recognise existing customers), and `record_consent` for
//! consent columns. Bigger files than the body limit go through the CLI, which streams from disk.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::vault::Authorized;
use crate::vault::import::{BytesSource, Format, ImportOptions, OnDuplicate, Quiet, Report};

/// The largest body accepted (about 200,000 rows of a typical CRM export).
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;

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

/// Import customers from a CRM export, with a minimisation report.
///
/// The body is the file. Before anything is stored the whole file is checked; the answer is the
/// report: columns not imported (undeclared, not writable, consent columns without evidence),
/// invalid values per field (line numbers, never values), duplicates in the file and existing
/// customers (through the blind index), what was planned and what was stored. Each row is stored
/// as `POST /v1/subjects` (or `PATCH` with `on_duplicate=update`) would, with its log entry;
/// consent columns become consent records with their evidence (method `import`).
#[utoipa::path(post, path = "/v1/imports", tag = "imports",
    params(("Candor-Purpose" = String, Header, description = "The purpose the data was collected for (customers are created under it)"), ImportParams),
    // Any text is a file (its problems are what the report lists), so the schema is left open.
    request_body(content = serde_json::Value, description = "The file: CSV with a header line, or JSON Lines (any text; its problems are what the report lists)", content_type = "text/csv"),
    responses(
        (status = 200, description = "The report (with `outcome` unless `dry_run`)", body = Report),
        (status = 403, description = "`purpose_not_allowed`, `consent_required` (a consent-based purpose), `field_not_allowed` (the role may not write a required field, or look up the unique one), `consent_recording_not_allowed` (consent columns without the `record_consent` power), `policy_forbids`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: import bigger files with `candor import subjects`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send text/csv or application/x-ndjson, or give `format`", body = ErrorBody),
        (status = 422, description = "`invalid_value`: the file (no header, a header of data, not CSV/JSON Lines), the `map`, `default_region` or a consent column's slot", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn import(
    State(state): State<AppState>,
    auth: Authorized,
    headers: HeaderMap,
    query: Result<Query<ImportParams>, QueryRejection>,
    body: Body,
) -> Result<Json<Report>, ApiError> {
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
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("invalid_body", "the request body could not be read"))?;
        if bytes.len() + chunk.len() > MAX_IMPORT_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "an import over the API is at most {MAX_IMPORT_BYTES} bytes; import bigger files with `candor \
                     import subjects`, or in parts"
                ),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let options = ImportOptions {
        map: params.map,
        on_duplicate: params.on_duplicate.unwrap_or_default(),
        default_region: params.default_region,
        consent_source: params.consent_source,
        consent_notice: params.consent_notice,
        resume_after: 0,
    };
    let source = BytesSource(bytes);
    let mut checked = state.vault.check_import(&auth, &source, format, "request body", &options, &Quiet).await?;
    if params.dry_run.unwrap_or(false) {
        checked.report.dry_run = true;
        return Ok(Json(checked.report));
    }
    Ok(Json(state.vault.run_import(&auth, &source, checked, &Quiet).await?))
}
