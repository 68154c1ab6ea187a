//! `candor witness serve`: a C2SP `tlog-witness` (`POST /add-checkpoint`, and the monitoring
//! path `GET /<hex SHA-256 of the origin>/checkpoint`) with Ed25519 v1 cosignatures.
//!
//! A witness directory holds `witness.toml` (name, address, the logs it cosigns), `witness.key`
//! (owner-only, `candor-witness-key v1 <base64 seed>`) and `witness-state.json` (per origin: the
//! latest cosigned size, root and note). The state is checked and replaced under one lock and
//! written durably (temporary file, fsync, rename, fsync of the directory) before the answer,
//! so a cosignature is never given for a size the witness could forget. A lock file keeps a
//! second process from serving the same directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use candor_crypto::LogSigner;
use candor_crypto::keyfile::{create_key_file, read_key_file};
use candor_log::Hash;
use candor_log::note::VerifierKey;
use candor_log::witness::{AddCheckpoint, CosignerKey, Refusal, SIZE_CONTENT_TYPE, check_add_checkpoint, cosign};
use serde::{Deserialize, Serialize};

/// Label of witness key lines.
pub const WITNESS_KEY_LABEL: &str = "candor-witness-key";
/// The witness's config file in its directory.
pub const CONFIG_FILE: &str = "witness.toml";
/// Largest request body (63 proof lines and a checkpoint with signatures fit in far less).
const MAX_BODY: usize = 64 * 1024;

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    listen: Option<String>,
    key_file: Option<String>,
    state_file: Option<String>,
    #[serde(default)]
    logs: Vec<String>,
}

/// A witness's settings.
pub struct WitnessConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub key_file: PathBuf,
    pub state_file: PathBuf,
    /// The logs it cosigns: their verifier keys (key name = origin).
    pub logs: Vec<VerifierKey>,
}

impl WitnessConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let raw: RawConfig =
            toml::from_str(&text).with_context(|| format!("{}: not a witness config", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &str| if Path::new(p).is_absolute() { PathBuf::from(p) } else { dir.join(p) };
        if raw.name.is_empty() || raw.name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control()) {
            bail!(
                "{}: name `{}` must be one word without spaces or `+`, such as witness.example/w1",
                path.display(),
                raw.name
            );
        }
        let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:8760");
        let listen = listen.parse().with_context(|| {
            format!("{}: listen `{listen}` is not an address such as 127.0.0.1:8760", path.display())
        })?;
        let mut logs = Vec::new();
        for (i, text) in raw.logs.iter().enumerate() {
            let key = VerifierKey::parse(text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: logs[{i}] is not a log verifier key (name+id+key, from GET /v1/log/key): {e}",
                    path.display()
                )
            })?;
            logs.push(key);
        }
        Ok(Self {
            name: raw.name,
            listen,
            key_file: resolve(raw.key_file.as_deref().unwrap_or("witness.key")),
            state_file: resolve(raw.state_file.as_deref().unwrap_or("witness-state.json")),
            logs,
        })
    }
}

/// `candor witness init`: a new witness directory; returns its verifier key text.
pub fn init(dir: &Path, name: &str, listen: Option<SocketAddr>, logs: &[String]) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config = dir.join(CONFIG_FILE);
    if config.exists() {
        bail!("{} exists already: this directory holds a witness", config.display());
    }
    for (i, l) in logs.iter().enumerate() {
        VerifierKey::parse(l).map_err(|e| anyhow::anyhow!("--log #{}: not a log verifier key: {e}", i + 1))?;
    }
    let raw = RawConfig {
        name: name.to_string(),
        listen: Some(listen.map_or_else(|| "127.0.0.1:8760".to_string(), |a| a.to_string())),
        key_file: Some("witness.key".into()),
        state_file: Some("witness-state.json".into()),
        logs: logs.to_vec(),
    };
    let text = format!(
        "# A C2SP tlog-witness (`candor witness serve --config {}`).\n\
         # `logs` are the verifier keys of the logs it cosigns (GET /v1/log/key of each Candor);\n\
         # the key name is the log's origin.\n{}",
        config.display(),
        toml::to_string(&raw)?
    );
    let cfg_probe: RawConfig = toml::from_str(&text)?;
    debug_assert_eq!(cfg_probe.name, name);
    create_key_file(&dir.join("witness.key"), WITNESS_KEY_LABEL, &format!("Ed25519 cosigning key of witness {name}"))?;
    std::fs::write(&config, text).with_context(|| format!("cannot write {}", config.display()))?;
    let loaded = WitnessConfig::load(&config)?;
    Ok(load_key(&loaded)?.1.to_text())
}

fn load_key(config: &WitnessConfig) -> Result<(LogSigner, CosignerKey)> {
    let signer = LogSigner::new(&read_key_file(&config.key_file, WITNESS_KEY_LABEL)?)?;
    let key = CosignerKey::new(&config.name, signer.public_key());
    Ok((signer, key))
}

/// The verifier key of the witness whose config is at `path`.
pub fn verifier_key(path: &Path) -> Result<String> {
    Ok(load_key(&WitnessConfig::load(path)?)?.1.to_text())
}

/// What the witness remembers of one log.
#[derive(Serialize, Deserialize, Clone)]
struct LogState {
    size: u64,
    root: String,
    /// The checkpoint as cosigned: the log's signature(s) it verified and its own cosignature.
    note: String,
}

#[derive(Serialize, Deserialize, Default)]
struct StateFile {
    logs: BTreeMap<String, LogState>,
}

struct Witness {
    name: String,
    signer: LogSigner,
    key: CosignerKey,
    logs: Vec<VerifierKey>,
    state_file: PathBuf,
    /// Held from reading an origin's state to having durably replaced it (tlog-witness: the
    /// check and the update are atomic).
    state: tokio::sync::Mutex<StateFile>,
}

fn read_state(path: &Path) -> Result<StateFile> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("{} is not a witness state file", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_state(path: &Path, state: &StateFile) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

pub use candor_log::witness::origin_hash;

fn plain(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return plain(StatusCode::BAD_REQUEST, "the request body is not UTF-8 text\n".into());
    };
    let request = match AddCheckpoint::parse(text) {
        Ok(r) => r,
        Err(e) => return refusal(None, &e),
    };
    let origin = candor_log::witness::note_origin(&request.note).unwrap_or("").to_string();
    let mut state = w.state.lock().await;
    let held = state.logs.get(&origin).and_then(|s| {
        let root: Hash = STANDARD.decode(&s.root).ok()?.try_into().ok()?;
        Some((s.size, root))
    });
    let checkpoint = match check_add_checkpoint(&request, &w.logs, held) {
        Ok(cp) => cp,
        Err(e) => return refusal(Some(&origin), &e),
    };
    let timestamp = (crate::clock::now_millis() / 1000).max(1) as u64;
    let line = match cosign(&request.note, &w.key, timestamp, |m| w.signer.sign(m)) {
        Ok(l) => l,
        Err(e) => return refusal(Some(&origin), &Refusal::BadRequest(note_problem(&e))),
    };
    // The checkpoint as submitted (with the log's signature this witness verified) and its own
    // cosignature: what the monitoring path serves.
    let kept = format!("{}{line}", request.note);
    let previous = state
        .logs
        .insert(origin.clone(), LogState { size: checkpoint.size, root: STANDARD.encode(checkpoint.root), note: kept });
    if let Err(e) = write_state(&w.state_file, &state) {
        // Not recorded durably: no cosignature, and the memory goes back to what is on disk.
        match previous {
            Some(p) => state.logs.insert(origin.clone(), p),
            None => state.logs.remove(&origin),
        };
        tracing::error!(error = %e, file = %w.state_file.display(), "could not record the witness state");
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the witness could not record its state\n".into());
    }
    drop(state);
    tracing::info!(origin = %origin, size = checkpoint.size, old = request.old_size, "cosigned");
    plain(StatusCode::OK, line)
}

fn note_problem(e: &candor_log::note::NoteError) -> &'static str {
    match e {
        candor_log::note::NoteError::Malformed(why) => why,
        _ => "the checkpoint is malformed",
    }
}

fn refusal(origin: Option<&str>, e: &Refusal) -> Response {
    let status = StatusCode::from_u16(e.status()).expect("a valid status");
    match e {
        Refusal::Conflict { latest, .. } => {
            tracing::info!(
                origin = origin.unwrap_or(""),
                held = latest,
                "old size does not match: answered with the size held"
            );
            (status, [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)], format!("{latest}\n")).into_response()
        }
        Refusal::Inconsistent(_) => {
            // Kept in the witness's log: it may be evidence of a log misbehaving.
            tracing::warn!(origin = origin.unwrap_or(""), problem = %e, "refused an inconsistent checkpoint");
            plain(status, format!("{e}\n"))
        }
        _ => {
            tracing::info!(origin = origin.unwrap_or(""), status = status.as_u16(), problem = %e, "refused");
            plain(status, format!("{e}\n"))
        }
    }
}

async fn monitor_checkpoint(State(w): State<Arc<Witness>>, UrlPath(hash): UrlPath<String>) -> Response {
    let state = w.state.lock().await;
    match state.logs.iter().find(|(origin, _)| origin_hash(origin) == hash) {
        Some((_, s)) => plain(StatusCode::OK, s.note.clone()),
        None => plain(StatusCode::NOT_FOUND, "this witness has cosigned no checkpoint of that log\n".into()),
    }
}

async fn key(State(w): State<Arc<Witness>>) -> Response {
    plain(StatusCode::OK, format!("{}\n", w.key.to_text()))
}

fn router(w: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(monitor_checkpoint))
        .route("/key", get(key))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(w)
}

/// `candor witness serve`.
pub async fn serve(config_path: &Path, listen: Option<SocketAddr>) -> Result<()> {
    let config = WitnessConfig::load(config_path)?;
    let (signer, key) = load_key(&config)?;
    // One process per state file.
    let lock_path = config.state_file.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!("another witness process serves {} (locked: {})", config.state_file.display(), lock_path.display());
    }
    let state = read_state(&config.state_file)?;
    if config.logs.is_empty() {
        tracing::warn!("this witness knows no log yet: add their verifier keys to `logs` in {}", config_path.display());
    }
    let witness = Arc::new(Witness {
        name: config.name.clone(),
        signer,
        key: key.clone(),
        logs: config.logs,
        state_file: config.state_file,
        state: tokio::sync::Mutex::new(state),
    });
    let listener = tokio::net::TcpListener::bind(listen.unwrap_or(config.listen))
        .await
        .with_context(|| format!("cannot listen on {}", listen.unwrap_or(config.listen)))?;
    let local = listener.local_addr()?;
    tracing::info!(name = %witness.name, key = %key.to_text(), "witness starting");
    println!("witness key: {}", key.to_text());
    println!("listening on http://{local}");
    axum::serve(listener, router(witness)).with_graceful_shutdown(shutdown()).await?;
    drop(lock);
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_survives_a_rewrite_and_a_torn_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness-state.json");
        let mut s = StateFile::default();
        s.logs.insert("o".into(), LogState { size: 3, root: STANDARD.encode([1u8; 32]), note: "n".into() });
        write_state(&path, &s).unwrap();
        // A crash while writing the next state leaves only a torn temporary file.
        std::fs::write(path.with_extension("json.tmp"), b"{\"logs\":").unwrap();
        let back = read_state(&path).unwrap();
        assert_eq!(back.logs["o"].size, 3);
        assert!(read_state(&dir.path().join("absent.json")).unwrap().logs.is_empty());
    }
}
