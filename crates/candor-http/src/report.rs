//! The access report (`/report`) and the portable export (`/export?format=json|csv`), streamed:
//! the head is built in memory (fields, consents, access history), events follow page by page,
//! so memory stays bounded whatever the number of events.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use candor_core::SubjectId;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::SubjectPath;
use super::subjects::SubjectIdParam;
use crate::vault::receipt::{self, EXPORT_MANIFEST};
use crate::vault::{Authorized, Document, EventView, Vault, VaultError, event_json, head_json};

/// Bytes per chunk of a streamed body.
const CHUNK: usize = 64 * 1024;

type Chunk = Result<Bytes, std::io::Error>;

fn stream_failed(e: VaultError) -> std::io::Error {
    tracing::error!(error = %e, "report or export stream failed");
    std::io::Error::other("the stream failed")
}

/// The JSON document: the head object with `"events": [...]` streamed as its last member.
fn json_body(vault: Vault, head: Map, mut events: mpsc::Receiver<Result<Vec<EventView>, VaultError>>) -> Body {
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    tokio::spawn(async move {
        let mut out = serde_json::to_vec(&Value::Object(head)).expect("JSON serialises");
        out.pop(); // the closing brace: events follow
        out.extend_from_slice(b",\"events\":[");
        let mut first = true;
        while let Some(page) = events.recv().await {
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(stream_failed(e))).await;
                    return;
                }
            };
            for e in &page {
                if !first {
                    out.push(b',');
                }
                first = false;
                serde_json::to_writer(&mut out, &event_json(&vault, e)).expect("JSON serialises");
            }
            if out.len() >= CHUNK && tx.send(Ok(Bytes::from(std::mem::take(&mut out)))).await.is_err() {
                return;
            }
        }
        out.extend_from_slice(b"]}");
        let _ = tx.send(Ok(Bytes::from(out))).await;
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }))
}

type Map = serde_json::Map<String, Value>;

/// A `Write` that hands full chunks to the response body.
struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = Bytes::from(std::mem::take(&mut self.buf));
            self.tx.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::other("the client went away"))?;
        }
        Ok(())
    }
}

/// Counts and hashes what goes into one file of the zip.
struct Tally<'w, W: Write> {
    inner: &'w mut W,
    hash: candor_crypto::Sha256,
    bytes: u64,
}

impl<W: Write> Write for Tally<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hash.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A time as a zip entry's last-modified date and time (UTC; the zip format holds no zone and
/// only even seconds, from 1980 to 2107).
fn zip_time(at: jiff::Timestamp) -> anyhow::Result<zip::DateTime> {
    let t = at.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let part = |n: i8| u8::try_from(n).unwrap_or_default();
    let year = u16::try_from(t.year()).unwrap_or_default();
    zip::DateTime::from_date_and_time(
        year,
        part(t.month()),
        part(t.day()),
        part(t.hour()),
        part(t.minute()),
        part(t.second()),
    )
    .map_err(|_| anyhow::anyhow!("the export time {at} cannot be written in a zip file"))
}

/// A CSV file whose every cell is safe to open in a spreadsheet: a cell that would start a
/// formula (`=`, `+`, `-`, `@`, tab, carriage return) is written with a `'` in front
/// ([`candor_core::spreadsheet::csv_cell`]). The only way rows reach an export's CSV files.
struct SafeCsv<W: Write>(csv::Writer<W>);

impl<W: Write> SafeCsv<W> {
    fn row<T: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = T>) -> csv::Result<()> {
        for cell in cells {
            self.0.write_field(candor_core::spreadsheet::csv_cell(cell.as_ref()).as_bytes())?;
        }
        // An empty record ends the one the fields above were written to.
        self.0.write_record(None::<&[u8]>)
    }
}

/// Writes one CSV file into the zip, dated `at`, and returns its manifest entry (rows, bytes
/// and SHA-256 of the bytes as written, quotes included).
fn csv_file<W: Write + std::io::Seek>(
    zip: &mut zip::ZipWriter<W>,
    name: &str,
    at: zip::DateTime,
    header: &[&str],
    mut rows: impl FnMut(&mut SafeCsv<&mut Tally<'_, zip::ZipWriter<W>>>) -> anyhow::Result<u64>,
) -> anyhow::Result<Value> {
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(at);
    zip.start_file(name, options)?;
    let mut tally = Tally { inner: zip, hash: candor_crypto::Sha256::default(), bytes: 0 };
    let count = {
        let mut w = SafeCsv(csv::Writer::from_writer(&mut tally));
        w.row(header)?;
        let n = rows(&mut w)?;
        w.0.flush()?;
        n
    };
    let sha: String = candor_crypto::hex(&tally.hash.finish());
    Ok(json!({"name": name, "rows": count, "bytes": tally.bytes, "sha256": sha}))
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The columns of `consents.csv`: the history's keys, the catalog's names with words beside them.
const CONSENT_COLUMNS: [&str; 9] =
    ["purpose", "why", "channel", "channel_label", "action", "given_at", "method", "notice_version", "receipt_id"];

/// The zip of CSV files (fields, events, consents) and the signed manifest, written on a
/// blocking thread into the response as it goes. Every file is dated with the export's time.
fn zip_body(
    vault: Vault,
    subject: SubjectId,
    head: Map,
    mut events: mpsc::Receiver<Result<Vec<EventView>, VaultError>>,
) -> Body {
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    let failed = tx.clone();
    tokio::task::spawn_blocking(move || {
        let run = || -> anyhow::Result<()> {
            let mut zip = zip::ZipWriter::new_stream(ChannelWriter { tx, buf: Vec::with_capacity(CHUNK) });
            // Every file is dated when the export was made (the time its documents state).
            let made = head["generated_at"].as_str().and_then(|t| t.parse().ok()).unwrap_or_else(crate::clock::now);
            let at = zip_time(made)?;
            let mut files = Vec::new();
            let empty = Vec::new();
            let fields = head.get("fields").and_then(Value::as_array).unwrap_or(&empty);
            files.push(csv_file(
                &mut zip,
                "fields.csv",
                at,
                &["field", "label", "value", "category", "category_label", "why", "kept", "delete_after"],
                |w| {
                    for f in fields {
                        let why: Vec<&str> = f["purposes"]
                            .as_array()
                            .map(|ps| {
                                ps.iter().filter_map(|p| p["why"].as_str()).map(|w| w.trim_end_matches('.')).collect()
                            })
                            .unwrap_or_default();
                        w.row([
                            cell(&f["field"]),
                            cell(&f["label"]),
                            cell(&f["value"]),
                            cell(&f["category"]),
                            cell(&f["category_label"]),
                            why.join("; "),
                            cell(&f["kept"]),
                            cell(&f["delete_after"]),
                        ])?;
                    }
                    Ok(fields.len() as u64)
                },
            )?);
            files.push(csv_file(
                &mut zip,
                "events.csv",
                at,
                &["id", "type", "label", "recorded_at", "occurred_at", "data", "delete_after"],
                |w| {
                    let mut n = 0;
                    while let Some(page) = events.blocking_recv() {
                        for e in page? {
                            let row = event_json(&vault, &e);
                            w.row([
                                cell(&row["id"]),
                                cell(&row["type"]),
                                cell(&row["label"]),
                                cell(&row["recorded_at"]),
                                cell(&row["occurred_at"]),
                                cell(&row["data"]),
                                cell(&row["delete_after"]),
                            ])?;
                            n += 1;
                        }
                    }
                    Ok(n)
                },
            )?);
            let history = head["consents"]["history"].as_array().unwrap_or(&empty);
            files.push(csv_file(&mut zip, "consents.csv", at, &CONSENT_COLUMNS, |w| {
                for c in history {
                    w.row(CONSENT_COLUMNS.map(|k| cell(&c[k])))?;
                }
                Ok(history.len() as u64)
            })?);
            let manifest = receipt::sign(
                vault.log_context(),
                EXPORT_MANIFEST,
                json!({
                    "manifest_version": "candor-export-manifest/1",
                    "subject_id": subject.to_string(),
                    "generated_at": head["generated_at"],
                    "controller": head["controller"],
                    "files": files,
                }),
            );
            let options = zip::write::SimpleFileOptions::default().last_modified_time(at);
            zip.start_file("manifest.json", options)?;
            zip.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
            let mut writer = zip.finish()?;
            writer.flush()?;
            Ok(())
        };
        if let Err(e) = run() {
            tracing::error!(error = %e, "export stream failed");
            let _ = failed.blocking_send(Err(std::io::Error::other("the export failed")));
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }))
}

/// Everything held about the customer, and why: each field's value with its purposes and legal
/// basis, where it is stored, until when it is kept and who receives it; every event; consent
/// state and history; the latest access-log entries. Streamed JSON.
#[utoipa::path(get, path = "/v1/subjects/{id}/report", tag = "rights",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    responses(
        (status = 200, description = "The access report (JSON, streamed)", body = Object),
        (status = 403, description = "`purpose_not_allowed`, `policy_forbids`", body = ErrorBody), (status = 404, description = "`subject_not_found`", body = ErrorBody), (status = 410, description = "`subject_erased`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn report(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
) -> Result<Response, ApiError> {
    let (head, events) = state.vault.report_head(&auth, id, Document::Report).await?;
    let head = head_json(&state.vault, &head, Document::Report);
    let events = events.stream(&state.vault);
    let body = json_body(state.vault.clone(), head, events);
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

/// The access report of customer `id` as a JSON file to save (the staff console's download of
/// what `GET /v1/subjects/{id}/report` answers, logged the same).
pub async fn report_download(vault: &Vault, auth: &Authorized, id: SubjectId) -> Result<Response, VaultError> {
    let (head, events) = vault.report_head(auth, id, Document::Report).await?;
    let head = head_json(vault, &head, Document::Report);
    let events = events.stream(vault);
    let body = json_body(vault.clone(), head, events);
    let disposition = format!("attachment; filename=\"access-report-{id}.json\"");
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("ASCII")),
        ],
        body,
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `json` (default) or `csv` (a zip of CSV files with a signed manifest).
    #[param(value_type = Option<ExportFormat>, inline)]
    pub format: Option<String>,
}

/// The forms of an export.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ExportFormat {
    Json,
    Csv,
}

/// The customer's data in a portable form: JSON, or a zip of CSV files (fields, events,
/// consents) with `manifest.json` listing each file's rows and SHA-256, signed with the
/// installation's Ed25519 key (`candor receipt verify manifest.json`). Streamed.
#[utoipa::path(get, path = "/v1/subjects/{id}/export", tag = "rights",
    params(SubjectIdParam, ExportQuery, ("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    responses(
        (status = 200, description = "The export: JSON (`format=json`), or a zip of CSV files with a signed manifest (`format=csv`)",
         content((Object = "application/json"), (Vec<u8> = "application/zip"))),
        (status = 403, description = "`purpose_not_allowed`, `policy_forbids`", body = ErrorBody), (status = 404, description = "`subject_not_found`", body = ErrorBody), (status = 410, description = "`subject_erased`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let bad = || ApiError::bad_request("invalid_query", "format must be `json` or `csv`").with_field("format");
    let Query(query) = query.map_err(|_| bad())?;
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(bad()),
    };
    Ok(export_response(&state.vault, &auth, id, csv, false).await?)
}

/// The export of customer `id` as a streamed response: JSON, or a zip of CSV files. As a
/// download (`attachment`), JSON is also offered to save rather than to show.
pub async fn export_response(
    vault: &Vault,
    auth: &Authorized,
    id: SubjectId,
    csv: bool,
    attachment: bool,
) -> Result<Response, VaultError> {
    let (head, events) = vault.report_head(auth, id, Document::Export).await?;
    let head = head_json(vault, &head, Document::Export);
    let events = events.stream(vault);
    if csv {
        let body = zip_body(vault.clone(), id, head, events);
        let disposition = format!("attachment; filename=\"export-{id}.zip\"");
        return Ok((
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/zip")),
                (header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("ASCII")),
            ],
            body,
        )
            .into_response());
    }
    let body = json_body(vault.clone(), head, events);
    let mut response = ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
    if attachment {
        let disposition = format!("attachment; filename=\"export-{id}.json\"");
        response.headers_mut().insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("ASCII"));
    }
    Ok(response)
}
