//! Routes of the tamper-evident log: checkpoints, the verifier key, entries, proofs, a
//! customer's access log, and the C2SP tlog-tiles read paths for standard verifiers.
//!
//! Checkpoints, the key, proofs and hash tiles are public: they are hashes and signatures.
//! Entries (ids, roles, purposes, field names) need a token.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use candor_log::Hash;
use candor_log::entry::LogEntry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::SubjectPath;
use super::subjects::SubjectIdParam;
use crate::vault::transparency::MAX_ENTRIES_PER_REQUEST;
use crate::vault::{Authorized, Principal};

/// Hashes per tile (C2SP tlog-tiles: tile height 8).
const TILE_WIDTH: u64 = 256;

fn b64(h: &Hash) -> String {
    STANDARD.encode(h)
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn query<T>(q: Result<Query<T>, QueryRejection>, expected: &str) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|_| ApiError::bad_request("invalid_query", format!("expected query parameters {expected}")))
}

/// The current signed tree head (C2SP tlog-checkpoint in a signed note), signed anew if the
/// log grew since the last one.
#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "log",
    responses((status = 200, description = "Signed checkpoint note", content_type = "text/plain", body = String)))]
pub async fn checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.vault.checkpoint_if_grown().await?;
    Ok(text(state.vault.latest_checkpoint().await?))
}

#[derive(Serialize, ToSchema)]
pub struct KeyResponse {
    /// The log's origin (first line of every checkpoint) and the key's name.
    pub origin: String,
    /// Verifier key in the signed-note form `<name>+<key id>+<base64(0x01 || Ed25519 key)>`.
    pub verifier_key: String,
    pub algorithm: &'static str,
    /// The raw Ed25519 public key, base64.
    pub public_key: String,
}

/// The public key that signs checkpoints.
#[utoipa::path(get, path = "/v1/log/key", tag = "log", responses((status = 200, body = KeyResponse)))]
pub async fn key(State(state): State<AppState>) -> Json<KeyResponse> {
    let k = state.vault.verifier_key();
    Json(KeyResponse {
        origin: k.name.clone(),
        verifier_key: k.to_text(),
        algorithm: "ed25519",
        public_key: STANDARD.encode(k.public_key),
    })
}

/// The latest checkpoint cosigned by at least `[log] witnesses_required` of the log's witnesses
/// (C2SP tlog-cosignature lines after the log's signature). A verifier checks it with the log
/// key and the witness keys it trusts (`candor log check-witnesses`).
#[utoipa::path(get, path = "/v1/log/checkpoint/cosigned", tag = "log",
    responses((status = 200, description = "Signed checkpoint note with witness cosignatures", content_type = "text/plain", body = String),
        (status = 404, description = "No witnesses are configured (`no_witnesses`), or none has cosigned enough yet (`not_cosigned`)", body = ErrorBody)))]
pub async fn cosigned_checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(w) = &state.witnesses else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_witnesses",
            "this installation has no witnesses configured ([[log.witnesses]])",
        ));
    };
    match w.cosigned() {
        Some(c) => Ok(text(c.note)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_cosigned",
            format!("no checkpoint has been cosigned by {} witness(es) yet: see GET /v1/log/witnesses", w.required()),
        )),
    }
}

#[derive(Serialize, ToSchema)]
pub struct WitnessesResponse {
    /// Cosignatures a checkpoint needs before it is served as cosigned.
    pub required: usize,
    /// Size of the latest checkpoint cosigned by enough witnesses (absent: none yet).
    pub cosigned_size: Option<u64>,
    /// The witnesses whose cosignatures that checkpoint carries.
    pub cosigned_by: Vec<String>,
    pub witnesses: Vec<crate::witnesses::WitnessStatus>,
}

/// The log's witnesses and what each did with the latest checkpoint: `fork` means a witness
/// refused it as inconsistent with a checkpoint it cosigned before.
#[utoipa::path(get, path = "/v1/log/witnesses", tag = "log", responses((status = 200, body = WitnessesResponse)))]
pub async fn witnesses(State(state): State<AppState>) -> Json<WitnessesResponse> {
    Json(match &state.witnesses {
        Some(w) => WitnessesResponse {
            required: w.required(),
            cosigned_size: w.cosigned().map(|c| c.size),
            cosigned_by: w.cosigned().map(|c| c.witnesses).unwrap_or_default(),
            witnesses: w.status(),
        },
        None => WitnessesResponse { required: 0, cosigned_size: None, cosigned_by: Vec::new(), witnesses: Vec::new() },
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EntriesParams {
    /// First index (inclusive), at most the log's size (which answers an empty list: nothing new).
    #[param(maximum = 18446744073709551615_u64)]
    pub start: u64,
    /// End index (exclusive): at least `start`, at most `start + 1000`. Past the end of the log,
    /// the list stops at its last entry.
    #[param(maximum = 18446744073709551615_u64)]
    pub end: u64,
}

#[derive(Serialize, ToSchema)]
pub struct EntryResponse {
    pub index: u64,
    /// The exact entry bytes that are hashed, base64.
    pub data: String,
    /// SHA-256(0x00 || data) as the log stores it, base64.
    pub leaf_hash: String,
    /// The entry, decoded for reading.
    #[schema(value_type = Object)]
    pub entry: Value,
}

#[derive(Serialize, ToSchema)]
pub struct EntriesResponse {
    /// At most 1000 entries, in index order from `start`.
    #[schema(max_items = 1000)]
    pub entries: Vec<EntryResponse>,
}

fn decode_entry(bytes: &[u8]) -> Value {
    LogEntry::from_bytes(bytes).and_then(|e| serde_json::to_value(e).ok()).unwrap_or(Value::Null)
}

/// Log entries `[start, end)`, for auditors (the admin token, or a role the catalog declares
/// `audit = true`): entries name every customer.
#[utoipa::path(get, path = "/v1/log/entries", tag = "log", params(EntriesParams),
    responses(
        (status = 200, body = EntriesResponse),
        (status = 400, description = "`out_of_range`: `start` is beyond the end of the log; `invalid_query`: `end` before `start` or more than 1000 past it, or parameters missing or not whole numbers", body = ErrorBody),
        (status = 403, description = "`audit_not_allowed`: the role may not read the whole log", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn entries(
    State(state): State<AppState>,
    caller: Principal,
    q: Result<Query<EntriesParams>, QueryRejection>,
) -> Result<Json<EntriesResponse>, ApiError> {
    let p = query(q, "start and end (whole numbers)")?;
    state.vault.require_audit(&caller).await?;
    if p.end < p.start || p.end - p.start > MAX_ENTRIES_PER_REQUEST {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("`end` must be at least `start` and at most {MAX_ENTRIES_PER_REQUEST} past it"),
        )
        .with_field("end"));
    }
    // One query answers both the entries and whether `start` is within the log: it also asks
    // for the entry before `start`, which exists unless `start` is past the end. `start` equal
    // to the log's size is the end: an empty list (nothing new yet), not an error.
    let from = p.start.saturating_sub(1);
    let mut entries = state.vault.log_entries(from, p.end).await?;
    if p.start > 0 {
        if entries.first().is_none_or(|e| e.index != from) {
            return Err(ApiError::bad_request(
                "out_of_range",
                format!("`start` {} is beyond the end of the log", p.start),
            )
            .with_field("start"));
        }
        entries.remove(0);
    }
    Ok(Json(EntriesResponse {
        entries: entries
            .into_iter()
            .map(|e| EntryResponse {
                index: e.index,
                data: STANDARD.encode(&e.bytes),
                leaf_hash: b64(&e.leaf_hash),
                entry: decode_entry(&e.bytes),
            })
            .collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InclusionParams {
    /// The entry's position: less than `tree_size`.
    #[param(maximum = 18446744073709551615_u64)]
    pub index: u64,
    /// A tree size the log has reached (at most its size now).
    #[param(maximum = 18446744073709551615_u64)]
    pub tree_size: u64,
}

#[derive(Serialize, ToSchema)]
pub struct InclusionResponse {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    /// Audit path, base64 hashes, leaf to root (RFC 9162 §2.1.3).
    pub proof: Vec<String>,
}

/// Inclusion proof of entry `index` in the tree of size `tree_size`.
#[utoipa::path(get, path = "/v1/log/proofs/inclusion", tag = "log", params(InclusionParams),
    responses((status = 200, body = InclusionResponse), (status = 400, description = "`out_of_range`: a position or tree size beyond the log; `invalid_query`: parameters missing or not whole numbers", body = ErrorBody)))]
pub async fn inclusion(
    State(state): State<AppState>,
    q: Result<Query<InclusionParams>, QueryRejection>,
) -> Result<Json<InclusionResponse>, ApiError> {
    let p = query(q, "index and tree_size (whole numbers)")?;
    let (leaf, proof) = state.vault.inclusion_proof(p.index, p.tree_size).await?;
    Ok(Json(InclusionResponse {
        index: p.index,
        tree_size: p.tree_size,
        leaf_hash: b64(&leaf),
        proof: proof.iter().map(b64).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    /// The earlier tree size: at most `to`.
    #[param(maximum = 18446744073709551615_u64)]
    pub from: u64,
    /// The later tree size: at most the log's size now.
    #[param(maximum = 18446744073709551615_u64)]
    pub to: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ConsistencyResponse {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    /// RFC 9162 §2.1.4 consistency proof, base64 hashes.
    pub proof: Vec<String>,
}

/// Consistency proof between tree sizes `from` and `to`.
#[utoipa::path(get, path = "/v1/log/proofs/consistency", tag = "log", params(ConsistencyParams),
    responses((status = 200, body = ConsistencyResponse), (status = 400, description = "`out_of_range`: a position or tree size beyond the log; `invalid_query`: parameters missing or not whole numbers", body = ErrorBody)))]
pub async fn consistency(
    State(state): State<AppState>,
    q: Result<Query<ConsistencyParams>, QueryRejection>,
) -> Result<Json<ConsistencyResponse>, ApiError> {
    let p = query(q, "from and to (whole numbers)")?;
    let (r1, r2, proof) = state.vault.consistency_proof(p.from, p.to).await?;
    Ok(Json(ConsistencyResponse {
        from: p.from,
        to: p.to,
        from_root: b64(&r1),
        to_root: b64(&r2),
        proof: proof.iter().map(b64).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct AccessLogEntry {
    pub index: u64,
    #[schema(value_type = Object)]
    pub entry: Value,
    pub data: String,
    /// Inclusion proof against `checkpoint`.
    pub inclusion_proof: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AccessLogResponse {
    /// The signed checkpoint the proofs lead to.
    pub checkpoint: String,
    pub tree_size: u64,
    pub root_hash: String,
    pub entries: Vec<AccessLogEntry>,
    /// More entries follow: ask again with `after` set to this index (`null` on the last page).
    pub next_after: Option<u64>,
}

/// The log entries that concern this customer — who, when, why, which fields — a page at a time
/// (oldest first), each with an inclusion proof against a signed checkpoint. Only for a caller
/// who may read the customer under the declared purpose, or under a customer_requests purpose.
#[utoipa::path(get, path = "/v1/subjects/{id}/access-log", tag = "log",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "Why the access log is read"), AccessLogParams),
    responses(
        (status = 200, body = AccessLogResponse),
        (status = 403, description = "`purpose_not_allowed`, `consent_required`, `restricted`, `policy_forbids`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn access_log(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
    q: Result<Query<AccessLogParams>, QueryRejection>,
) -> Result<Json<AccessLogResponse>, ApiError> {
    let p = query(q, "after (a log index) and limit (1 to 1000)")?;
    let limit = p.limit.unwrap_or(DEFAULT_ACCESS_LOG_PAGE);
    if !(1..=MAX_ENTRIES_PER_REQUEST).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("`limit` must be 1 to {MAX_ENTRIES_PER_REQUEST}"))
            .with_field("limit"));
    }
    let (cp, items, next) = state.vault.access_log(&auth, id, p.after, limit as usize).await?;
    Ok(Json(AccessLogResponse {
        checkpoint: cp.note,
        tree_size: cp.size,
        root_hash: b64(&cp.root),
        entries: items
            .into_iter()
            .map(|i| AccessLogEntry {
                index: i.index,
                entry: decode_entry(&i.bytes),
                data: STANDARD.encode(&i.bytes),
                inclusion_proof: i.proof.iter().map(b64).collect(),
            })
            .collect(),
        next_after: next,
    }))
}

/// Entries of a customer's access log per page unless `limit` says otherwise.
const DEFAULT_ACCESS_LOG_PAGE: u64 = 100;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccessLogParams {
    /// Continue after this log index (the previous page's `next_after`).
    #[param(maximum = 18446744073709551615_u64)]
    pub after: Option<u64>,
    /// Entries per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// C2SP tlog-tiles: the latest checkpoint (signed anew if the log grew), for standard verifiers
/// and witnesses. Public.
#[utoipa::path(get, path = "/log/checkpoint", tag = "log",
    responses((status = 200, description = "Signed checkpoint note", content_type = "text/plain", body = String)))]
pub async fn tiles_checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.vault.checkpoint_if_grown().await?;
    Ok(text(state.vault.latest_checkpoint().await?))
}

/// A parsed tile path: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`.
#[derive(Debug, PartialEq, Eq)]
struct TilePath {
    /// `None` for an entry bundle.
    level: Option<u32>,
    index: u64,
    width: u64,
}

fn parse_tile_path(path: &str) -> Option<TilePath> {
    let mut segments: Vec<&str> = path.split('/').collect();
    let first = segments.remove(0);
    // One digit, as C2SP writes levels (no sign, no leading zero).
    let level = match first.as_bytes() {
        b"entries" => None,
        [d @ b'0'..=b'7'] => Some(u32::from(d - b'0')),
        _ => return None,
    };
    let mut width = TILE_WIDTH;
    if segments.len() >= 2 && segments[segments.len() - 2].ends_with(".p") {
        let w = segments.pop()?;
        if w.starts_with('0') || !w.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        width = w.parse::<u64>().ok().filter(|w| (1..TILE_WIDTH).contains(w))?;
        let last = segments.pop()?;
        segments.push(last.strip_suffix(".p")?);
    }
    let (last, upper) = segments.split_last()?;
    let mut digits = String::new();
    for s in upper {
        let d = s.strip_prefix('x')?;
        if d.len() != 3 || !d.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.push_str(d);
    }
    if last.len() != 3 || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.push_str(last);
    Some(TilePath { level, index: digits.parse().ok()?, width })
}

/// C2SP tlog-tiles: hash tiles (`/log/tile/<L>/<N>[.p/<W>]`, public) and entry bundles
/// (`/log/tile/entries/<N>[.p/<W>]`, for auditors: the admin token or a role with `audit = true`).
/// `<N>` is the tile index in groups of three digits, all but the last prefixed with `x`
/// (`x001/234`); `.p/<W>` asks for a partial tile of `W` (1 to 255) hashes or entries.
#[utoipa::path(get, path = "/log/tile/{path}", tag = "log",
    params(("path" = String, Path, pattern = r"^(?:[0-7]|entries)/(?:x[0-9]{3}/)*[0-9]{3}(?:\.p/(?:[1-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5]))?$",
            description = "The tile's path after `/log/tile/` (it spans several segments: `0/000`, `1/x001/234.p/17`, `entries/000`)",
            example = "0/000")),
    responses(
        (status = 200, description = "A hash tile (32-byte hashes, concatenated) or an entry bundle (each entry as a 2-byte big-endian length and its bytes)",
         content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "An entry bundle without a valid token", body = ErrorBody),
        (status = 403, description = "`audit_not_allowed`: an entry bundle for a role that may not read the whole log", body = ErrorBody),
        (status = 404, description = "`not_found`: no such tile (yet): a full tile exists once the log has all its entries", body = ErrorBody),
        (status = 500, description = "`entry_too_large`: an entry too long to frame in a bundle (from before entries were capped); `internal`, `integrity_error`", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn tile(
    State(state): State<AppState>,
    Path(path): Path<String>,
    caller: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such tile");
    let t = parse_tile_path(&path).ok_or_else(not_found)?;
    let start = t.index.checked_mul(TILE_WIDTH).ok_or_else(not_found)?;
    let end = start.checked_add(t.width).ok_or_else(not_found)?;
    let body = match t.level {
        Some(level) => {
            let hashes = state.vault.log_node_range(8 * level, start, end).await?;
            if hashes.len() as u64 != t.width {
                return Err(not_found());
            }
            hashes.concat()
        }
        None => {
            state.vault.require_audit(&caller?).await?;
            let entries = state.vault.log_entry_bytes(start, end).await?;
            if entries.len() as u64 != t.width {
                return Err(not_found());
            }
            let mut out = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                // Each entry's length is 2 bytes: a longer entry (from before entries were
                // capped) cannot be framed, and a wrong length would corrupt the whole bundle.
                let Ok(len) = u16::try_from(e.len()) else {
                    return Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "entry_too_large",
                        format!(
                            "entry {} is longer than an entry bundle can hold (65535 bytes): read this range from /v1/log/entries",
                            start + i as u64
                        ),
                    ));
                };
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(e);
            }
            out
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], Body::from(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_follow_the_c2sp_encoding() {
        assert_eq!(parse_tile_path("0/000"), Some(TilePath { level: Some(0), index: 0, width: 256 }));
        assert_eq!(parse_tile_path("1/x001/x234/067"), Some(TilePath { level: Some(1), index: 1_234_067, width: 256 }));
        assert_eq!(parse_tile_path("0/005.p/17"), Some(TilePath { level: Some(0), index: 5, width: 17 }));
        assert_eq!(parse_tile_path("entries/x001/002.p/3"), Some(TilePath { level: None, index: 1002, width: 3 }));
        for bad in [
            "0/5",
            "0/0005",
            "0/005.p/256",
            "0/005.p/0",
            "9/000",
            "x/000",
            "0/x01/000",
            "0/005.p",
            "+0/000",
            "00/000",
            "0/005.p/+5",
        ] {
            assert_eq!(parse_tile_path(bad), None, "{bad}");
        }
    }
}

/// Customer `id`'s history proof bundle, for an app or staff acting on the customer's request:
/// every log entry naming them up to a checkpoint the witnesses cosigned, each with its
/// inclusion proof, and their completeness-map proof against that checkpoint (the format of
/// `docs/proofs.md`; `candor verify history` checks it offline). The same file the customer
/// downloads in the privacy center. Under a purpose declared customer_requests = true; logged
/// (`access_log.read`).
#[utoipa::path(get, path = "/v1/subjects/{id}/history-proof", tag = "log",
    params(SubjectIdParam, ("Candor-Purpose" = String, Header, description = "A purpose declared customer_requests = true")),
    responses(
        (status = 200, description = "The history proof bundle (JSON, docs/proofs.md)", body = Object),
        (status = 403, description = "`purpose_not_allowed`, `policy_forbids`", body = ErrorBody),
        (status = 404, description = "`subject_not_found`", body = ErrorBody),
        (status = 410, description = "`subject_erased`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn history_proof(
    State(state): State<AppState>,
    auth: Authorized,
    SubjectPath(id): SubjectPath,
) -> Result<Response, ApiError> {
    let witnesses = crate::witnesses::witness_view(&state).await?;
    let bundle = state.vault.history_bundle(&auth, id, witnesses).await?;
    Ok(Json(bundle).into_response())
}
