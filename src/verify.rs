//! `candor log verify`: recompute the log from its entries and check it against signed
//! checkpoints, trusting nothing the server says about hashes. Works on an installation's
//! database (`--config`) or on a running server (`--url`).

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use candor_log::Hash;
use candor_log::merkle::{RootBuilder, leaf_hash};
use candor_log::note::{Checkpoint, VerifierKey};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::install;

const BATCH: u64 = 1000;

/// Where the entries come from.
pub enum Source {
    Config(std::path::PathBuf),
    Url { url: String, token: Option<String> },
}

/// What verification needs from a source.
pub(crate) trait LogReader {
    /// Entries `[start, end)` as (index, bytes, the leaf hash the log recorded).
    async fn batch(&mut self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>, Hash)>>;
}

pub(crate) struct DbReader(pub std::sync::Arc<dyn candor_store::Store>);

impl LogReader for DbReader {
    async fn batch(&mut self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>, Hash)>> {
        let entries = self.0.log_entries(start, end).await?;
        let leaves = self.0.log_nodes(0, start, end).await?;
        Ok(entries
            .into_iter()
            .zip(leaves.into_iter().chain(std::iter::repeat([0u8; 32])))
            .map(|((i, e), h)| (i, e, h))
            .collect())
    }
}

struct HttpReader {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl HttpReader {
    async fn get(&self, path: &str, auth: bool) -> Result<reqwest::Response> {
        let mut r = self.client.get(format!("{}{}", self.url, path));
        if auth && let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.with_context(|| format!("cannot reach {}", self.url))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!("GET {path} answered {status}: {body}");
        }
        Ok(resp)
    }
}

impl LogReader for HttpReader {
    async fn batch(&mut self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>, Hash)>> {
        let v: serde_json::Value =
            self.get(&format!("/v1/log/entries?start={start}&end={end}"), true).await?.json().await?;
        let mut out = Vec::new();
        for e in v["entries"].as_array().ok_or_else(|| anyhow!("malformed entries response"))? {
            let index = e["index"].as_u64().ok_or_else(|| anyhow!("malformed entry index"))?;
            let data = STANDARD.decode(e["data"].as_str().unwrap_or_default()).context("malformed entry data")?;
            let leaf: Hash = STANDARD
                .decode(e["leaf_hash"].as_str().unwrap_or_default())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| anyhow!("malformed leaf hash"))?;
            out.push((index, data, leaf));
        }
        Ok(out)
    }
}

/// Outcome of a successful verification, for printing.
pub struct Report {
    pub entries: u64,
    pub root: Hash,
    pub checkpoint_size: u64,
    pub saved_size: Option<u64>,
    pub seconds: f64,
}

/// Recomputes roots over `[0, size)`, checking each entry against its recorded leaf hash and
/// remembering the roots at `marks`.
pub(crate) async fn recompute(
    reader: &mut impl LogReader,
    size: u64,
    marks: &[u64],
) -> Result<(Hash, Vec<(u64, Hash)>)> {
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template("verifying {bar:40} {pos}/{len} entries ({per_sec})").expect("template"),
    );
    let mut builder = RootBuilder::new();
    let mut roots = Vec::new();
    if marks.contains(&0) {
        roots.push((0, builder.root()));
    }
    let mut next = 0u64;
    while next < size {
        let end = (next + BATCH).min(size);
        for (index, bytes, recorded) in reader.batch(next, end).await? {
            if index != builder.size() {
                bar.abandon();
                bail!("log verification FAILED at index {}: entry {} is missing", builder.size(), builder.size());
            }
            let h = leaf_hash(&bytes);
            if h != recorded {
                bar.abandon();
                bail!(
                    "log verification FAILED at index {index}: entry {index} does not match its recorded hash (the entry was altered)"
                );
            }
            builder.push(h);
            if marks.contains(&builder.size()) {
                roots.push((builder.size(), builder.root()));
            }
        }
        if builder.size() != end {
            bar.abandon();
            bail!("log verification FAILED at index {}: entry {} is missing", builder.size(), builder.size());
        }
        next = end;
        bar.set_position(next);
    }
    bar.finish_and_clear();
    Ok((builder.root(), roots))
}

fn root_at(roots: &[(u64, Hash)], size: u64) -> Option<Hash> {
    roots.iter().find(|(s, _)| *s == size).map(|(_, r)| *r)
}

fn b64(h: &Hash) -> String {
    STANDARD.encode(h)
}

/// Verifies the whole log and, given a checkpoint saved earlier, that the log still extends it.
pub async fn run(source: Source, saved: Option<String>, pinned_key: Option<String>) -> Result<Report> {
    let started = Instant::now();
    let pinned = pinned_key.as_deref().map(VerifierKey::parse).transpose().context("--key is not a verifier key")?;
    match source {
        Source::Config(path) => {
            let config = Config::load(&path)?;
            let key = match pinned.clone() {
                Some(k) => k,
                None => VerifierKey::new(&config.log.origin, install::load_log_signer(&config)?.public_key()),
            };
            let store = install::open_store(&config).await?;
            let note = match store.latest_checkpoint().await? {
                Some((_, note)) => note,
                None => {
                    bail!("the log has no signed checkpoint yet: start the server once (it signs one), then verify")
                }
            };
            let history: Vec<String> = store.checkpoints().await?.into_iter().map(|(_, n)| n).collect();
            check(&key, &note, DbReader(store), saved.as_deref(), &history, started).await
        }
        Source::Url { url, token } => {
            let reader =
                HttpReader { client: reqwest::Client::new(), url: url.trim_end_matches('/').to_string(), token };
            let served: serde_json::Value = reader.get("/v1/log/key", false).await?.json().await?;
            let served_key = VerifierKey::parse(served["verifier_key"].as_str().unwrap_or_default())
                .context("the server's verifier key is malformed")?;
            let key = match pinned.clone() {
                Some(k) if k != served_key => {
                    bail!("the server signs with key {}, not the pinned key {}", served_key.to_text(), k.to_text())
                }
                Some(k) => k,
                None => {
                    eprintln!(
                        "note: trusting the key the server publishes ({}); pin it with --key",
                        served_key.to_text()
                    );
                    served_key
                }
            };
            let note = reader.get("/v1/log/checkpoint", false).await?.text().await?;
            check(&key, &note, reader, saved.as_deref(), &[], started).await
        }
    }
}

async fn check(
    key: &VerifierKey,
    latest_note: &str,
    mut reader: impl LogReader,
    saved: Option<&str>,
    history: &[String],
    started: Instant,
) -> Result<Report> {
    let latest = key.open(latest_note).map_err(|e| anyhow!("the log's checkpoint does not verify: {e}"))?;
    let saved_cp: Option<Checkpoint> = saved
        .map(|text| key.open(text).map_err(|e| anyhow!("the saved checkpoint does not verify: {e}")))
        .transpose()?;
    if let Some(s) = &saved_cp {
        if s.origin != latest.origin {
            bail!("the saved checkpoint is for log `{}`, this log is `{}`", s.origin, latest.origin);
        }
        if s.size > latest.size {
            bail!(
                "log verification FAILED: the saved checkpoint covers {} entries but the log now has only {}: the log was truncated (first missing index: {})",
                s.size,
                latest.size,
                latest.size
            );
        }
    }
    // Older signed checkpoints kept by the installation: if history was rewritten, they narrow
    // down where.
    let mut kept = Vec::new();
    for note in history {
        let cp = key.open(note).map_err(|e| anyhow!("a kept checkpoint does not verify: {e}"))?;
        if cp.size <= latest.size {
            kept.push(cp);
        }
    }
    kept.sort_by_key(|c| c.size);
    let marks: Vec<u64> = std::iter::once(latest.size)
        .chain(saved_cp.as_ref().map(|s| s.size))
        .chain(kept.iter().map(|c| c.size))
        .collect();
    let (_, roots) = recompute(&mut reader, latest.size, &marks).await?;
    let recomputed = root_at(&roots, latest.size).expect("the latest size is marked");
    if recomputed != latest.root {
        let mut lo = 0;
        let mut hi = latest.size;
        for cp in &kept {
            if root_at(&roots, cp.size) == Some(cp.root) {
                lo = lo.max(cp.size);
            } else {
                hi = hi.min(cp.size);
                break;
            }
        }
        let place = if hi == lo + 1 {
            format!("first bad index: {lo}")
        } else {
            format!(
                "the first altered entry is at an index from {lo} to {} (earlier entries match a signed checkpoint)",
                hi - 1
            )
        };
        bail!(
            "log verification FAILED: the entries give root {} but the signed checkpoint of size {} says {}: the log was rewritten; {place}",
            b64(&recomputed),
            latest.size,
            b64(&latest.root)
        );
    }
    if let Some(s) = &saved_cp {
        let then = root_at(&roots, s.size).expect("the saved size is marked");
        if then != s.root {
            bail!(
                "log verification FAILED: the first {} entries no longer match the checkpoint you saved (history was rewritten before index {})",
                s.size,
                s.size
            );
        }
    }
    Ok(Report {
        entries: latest.size,
        root: latest.root,
        checkpoint_size: latest.size,
        saved_size: saved_cp.map(|s| s.size),
        seconds: started.elapsed().as_secs_f64(),
    })
}

pub fn print(report: &Report) {
    let rate = if report.seconds > 0.0 { report.entries as f64 / report.seconds } else { 0.0 };
    println!("log OK: {} entries recomputed from their bytes ({rate:.0} entries/s)", report.entries);
    println!("  root {} matches the signed checkpoint of size {}", b64(&report.root), report.checkpoint_size);
    if let Some(s) = report.saved_size {
        println!("  the log still extends your saved checkpoint of size {s}");
    }
}
