//! `candor log verify`: recompute the log from its entries and check it against signed
//! checkpoints, trusting nothing the server says about hashes. Works on an installation's
//! database (`--config`) or on a running server (`--url`).
//!
//! Every entry present is checked, not only those up to the newest kept checkpoint: with the
//! installation's log key (`--config`) a checkpoint of the current log is signed (unless the
//! newest kept one covers it; the completeness map it commits is the one this check rebuilt,
//! so the log is read once); without
//! it, entries no signed checkpoint covers are a failure unless `--allow-unsigned-tail`. Besides
//! each entry against its recorded leaf hash, every stored hash of the tree (the C2SP hash tiles
//! of levels 0, 8, 16, …, which inclusion and consistency proofs are built from) is recomputed
//! from the entries and compared, from the database and from a server alike; a server's entries
//! are read through the C2SP entry bundles (`/log/tile/entries/…`).
//!
//! With the installation's log key (`--config`), the completeness map is rebuilt from the
//! entries too and every checkpoint's `candor-map/v1` root is compared with it: each map update
//! is exactly the entries appended between the checkpoints (issue 25, `docs/proofs.md`). From a
//! server (`--url`) the map's keys cannot be computed (they need the map secret), so map roots
//! are reported as not checked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use candor_crypto::LogSigner;
use candor_log::Hash;
use candor_log::map::Map;
use candor_log::merkle::{empty_root, leaf_hash};
use candor_log::note::{Checkpoint, VerifierKey};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::install;
use crate::vault::audit::LogContext;
use crate::vault::transparency::MAX_ENTRIES_PER_REQUEST;

/// Hashes and entries per C2SP tile.
const TILE_WIDTH: u64 = 256;
/// Entries read at a time (whole tiles).
const BATCH: u64 = 4 * TILE_WIDTH;

/// Where the entries come from.
pub enum Source {
    Config(std::path::PathBuf),
    Url { url: String, token: Option<String> },
}

/// What to check besides the log itself.
pub struct Options {
    /// A checkpoint saved earlier: the log must still extend it.
    pub saved: Option<String>,
    /// The verifier key to trust instead of the installation's or server's own.
    pub pinned_key: Option<String>,
    /// Entries after the newest signed checkpoint pass (checked against their recorded hashes
    /// only) instead of failing.
    pub allow_unsigned_tail: bool,
}

/// What verification needs from a source.
// Awaited in place by the verifier (never spawned), so its futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait LogReader {
    /// Entries `[start, end)` that exist, as (index, bytes, the leaf hash the log recorded).
    async fn batch(&mut self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>, Hash)>>;
    /// The stored hashes of tree level `level` (8, 16, …: the levels hash tiles hold) nodes
    /// `[start, end)` that exist, or `None` when the source does not serve that level.
    async fn nodes(&mut self, level: u32, start: u64, end: u64) -> Result<Option<Vec<Hash>>>;
    /// The newest checkpoint the source has, or signs now.
    async fn checkpoint(&mut self) -> Result<Option<String>>;
    /// The checkpoint the log verified against: kept if this check signed it.
    async fn keep(&mut self, _note: &str, _size: u64) -> Result<bool> {
        Ok(false)
    }
    /// The completeness map rebuilt from the first `size` entries, for a source that signs
    /// checkpoints (so it need not read and rebuild them again).
    async fn seed_map(&mut self, _map: &Map, _size: u64) {}
}

/// An installation's database: its entries, stored nodes and kept checkpoints.
pub struct DbReader {
    store: Arc<dyn candor_store::Store>,
    /// The batch after the last one asked for, being read while the caller hashes that one
    /// (reading and hashing take about as long each, and run on different threads).
    ahead: Option<(u64, u64, tokio::task::JoinHandle<Result<Batch>>)>,
}

type Batch = Vec<(u64, Vec<u8>, Hash)>;

impl DbReader {
    pub fn new(store: Arc<dyn candor_store::Store>) -> Self {
        Self { store, ahead: None }
    }

    async fn read(store: &dyn candor_store::Store, start: u64, end: u64) -> Result<Batch> {
        let entries = store.log_entries(start, end).await?;
        let leaves = store.log_nodes(0, start, end).await?;
        Ok(entries
            .into_iter()
            .zip(leaves.into_iter().chain(std::iter::repeat([0u8; 32])))
            .map(|((i, e), h)| (i, e, h))
            .collect())
    }
}

impl LogReader for DbReader {
    async fn batch(&mut self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>, Hash)>> {
        let batch = match self.ahead.take() {
            Some((s, e, read)) if (s, e) == (start, end) => read.await.context("reading the log")??,
            _ => Self::read(self.store.as_ref(), start, end).await?,
        };
        // The next batch of the same length is read meanwhile.
        let (next, next_end) = (end, end + (end - start));
        let store = self.store.clone();
        self.ahead =
            Some((next, next_end, tokio::spawn(async move { Self::read(store.as_ref(), next, next_end).await })));
        Ok(batch)
    }

    async fn nodes(&mut self, level: u32, start: u64, end: u64) -> Result<Option<Vec<Hash>>> {
        Ok(Some(self.store.log_nodes(level, start, end).await?))
    }

    async fn checkpoint(&mut self) -> Result<Option<String>> {
        Ok(self.store.latest_checkpoint().await?.map(|(_, n)| n))
    }
}

/// The database with the installation's log key: checkpoints of the current log are signed
/// on demand, and the one the log verified against is kept.
struct SigningDbReader {
    db: DbReader,
    signer: Option<LogContext>,
    signed: Vec<String>,
    /// The first checkpoint asked for is the newest kept one when it covers the whole log (a
    /// stopped server signed it); later ones are signed with the map the check rebuilt, so
    /// the log is read once, not twice.
    asked: bool,
}

impl LogReader for SigningDbReader {
    async fn batch(&mut self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>, Hash)>> {
        self.db.batch(start, end).await
    }

    async fn nodes(&mut self, level: u32, start: u64, end: u64) -> Result<Option<Vec<Hash>>> {
        self.db.nodes(level, start, end).await
    }

    async fn checkpoint(&mut self) -> Result<Option<String>> {
        let Some(ctx) = &self.signer else { return self.db.checkpoint().await };
        // The newest kept checkpoint already covers the whole log: check against it, without
        // building the completeness map a second time to sign the same thing again.
        if !std::mem::replace(&mut self.asked, true)
            && let Some((size, kept)) = self.db.store.latest_checkpoint().await?
            && size == self.db.store.log_head().await?.0
        {
            return Ok(Some(kept));
        }
        match crate::vault::transparency::sign_head(self.db.store.as_ref(), ctx).await {
            Ok(signed) => {
                self.signed.push(signed.note.clone());
                Ok(Some(signed.note))
            }
            // A log with a hole cannot be signed (its map cannot be built): check it against
            // the checkpoints kept, which names the missing entry.
            Err(candor_store::StoreError::Corrupt(why)) => {
                eprintln!("note: no fresh checkpoint signed: {why}");
                self.signer = None;
                self.db.checkpoint().await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn keep(&mut self, note: &str, size: u64) -> Result<bool> {
        if !self.signed.iter().any(|n| n == note) {
            return Ok(false);
        }
        self.db.store.save_checkpoint(size, note, crate::vault::now_millis()).await?;
        Ok(true)
    }

    async fn seed_map(&mut self, map: &Map, size: u64) {
        if let Some(ctx) = &self.signer {
            ctx.map.seed(map.clone(), size).await;
        }
    }
}

struct HttpReader {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl HttpReader {
    async fn get(&self, path: &str, auth: bool) -> Result<reqwest::Response> {
        let resp = self.send(path, auth).await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!("GET {path} answered {status}: {body}");
        }
        Ok(resp)
    }

    async fn send(&self, path: &str, auth: bool) -> Result<reqwest::Response> {
        let mut r = self.client.get(format!("{}{}", self.url, path));
        if auth && let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r.send().await.with_context(|| format!("cannot reach {}", self.url))
    }

    /// A tile's bytes, or `None` when the server does not serve it.
    async fn tile(&self, path: &str, auth: bool) -> Result<Option<Vec<u8>>> {
        let resp = self.send(path, auth).await?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        Ok(Some(resp.bytes().await.with_context(|| format!("reading {path}"))?.to_vec()))
    }

    /// Entries `[start, end)` through the C2SP entry bundles and level-0 hash tiles, or `None`
    /// when a tile is not served (entries missing, or the range runs past the log).
    async fn read_tiles(&self, start: u64, end: u64) -> Result<Option<Vec<(u64, Vec<u8>, Hash)>>> {
        let mut out = Vec::new();
        let mut tile = start / TILE_WIDTH;
        while tile * TILE_WIDTH < end {
            let base = tile * TILE_WIDTH;
            let width = (end - base).min(TILE_WIDTH);
            let name = tile_name(tile, width);
            let Some(bundle) = self.tile(&format!("/log/tile/entries/{name}"), true).await? else {
                return Ok(None);
            };
            let Some(leaves) = self.tile(&format!("/log/tile/0/{name}"), false).await? else {
                return Ok(None);
            };
            let entries = parse_bundle(&bundle, width).map_err(|(i, why)| {
                anyhow!(
                    "log verification FAILED at index {}: the entry bundle /log/tile/entries/{name} is malformed: {why}",
                    base + i
                )
            })?;
            if leaves.len() as u64 != 32 * width {
                bail!(
                    "log verification FAILED at index {base}: the hash tile /log/tile/0/{name} holds {} bytes, not {}",
                    leaves.len(),
                    32 * width
                );
            }
            for (i, entry) in entries.into_iter().enumerate() {
                let index = base + i as u64;
                if index >= start {
                    let leaf: Hash = leaves[32 * i..32 * i + 32].try_into().expect("32 bytes");
                    out.push((index, entry, leaf));
                }
            }
            tile += 1;
        }
        Ok(Some(out))
    }

    /// Entries `[start, end)` that exist, through `/v1/log/entries`.
    async fn read_entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>, Hash)>> {
        let mut out = Vec::new();
        let mut from = start;
        while from < end {
            let to = (from + MAX_ENTRIES_PER_REQUEST).min(end);
            let v: serde_json::Value =
                self.get(&format!("/v1/log/entries?start={from}&end={to}"), true).await?.json().await?;
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
            from = to;
        }
        Ok(out)
    }
}

impl LogReader for HttpReader {
    async fn batch(&mut self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>, Hash)>> {
        match self.read_tiles(start, end).await? {
            Some(entries) => Ok(entries),
            // Past the end of the log, or entries missing: the JSON API says which exist.
            None => self.read_entries(start, end).await,
        }
    }

    async fn nodes(&mut self, level: u32, start: u64, end: u64) -> Result<Option<Vec<Hash>>> {
        // Hash tiles serve levels 0, 8, 16, …: tile level L holds tree level 8L.
        if !level.is_multiple_of(8) || level / 8 >= 8 {
            return Ok(None);
        }
        let mut out = Vec::new();
        let mut tile = start / TILE_WIDTH;
        while tile * TILE_WIDTH < end {
            let base = tile * TILE_WIDTH;
            let width = (end - base).min(TILE_WIDTH);
            let path = format!("/log/tile/{}/{}", level / 8, tile_name(tile, width));
            let hashes = self.get(&path, false).await?.bytes().await?;
            if hashes.len() as u64 != 32 * width {
                return Ok(Some(out));
            }
            for (i, h) in hashes.chunks_exact(32).enumerate() {
                if base + i as u64 >= start {
                    out.push(h.try_into().expect("32 bytes"));
                }
            }
            tile += 1;
        }
        Ok(Some(out))
    }

    async fn checkpoint(&mut self) -> Result<Option<String>> {
        Ok(Some(self.get("/v1/log/checkpoint", false).await?.text().await?))
    }
}

/// A tile's path below `/log/tile/<L>/` (C2SP tlog-tiles): index in 3-digit groups, all but the
/// last prefixed `x`, and `.p/<width>` for a partial tile.
fn tile_name(index: u64, width: u64) -> String {
    let mut groups = vec![format!("{:03}", index % 1000)];
    let mut rest = index / 1000;
    while rest > 0 {
        groups.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    groups.reverse();
    let mut name = groups.join("/");
    if width < TILE_WIDTH {
        name.push_str(&format!(".p/{width}"));
    }
    name
}

/// The entries of a C2SP entry bundle (each a 2-byte big-endian length and the bytes); the
/// error names the entry (within the tile) where the framing breaks.
fn parse_bundle(bundle: &[u8], width: u64) -> Result<Vec<Vec<u8>>, (u64, String)> {
    let mut entries = Vec::new();
    let mut rest = bundle;
    for i in 0..width {
        let Some((len, after)) = rest.split_first_chunk::<2>() else {
            return Err((i, format!("it ends before entry {i} of {width}")));
        };
        let len = u16::from_be_bytes(*len) as usize;
        if after.len() < len {
            return Err((i, format!("entry {i} declares {len} bytes but only {} follow", after.len())));
        }
        entries.push(after[..len].to_vec());
        rest = &after[len..];
    }
    if !rest.is_empty() {
        return Err((width, format!("{} bytes follow its {width} entries", rest.len())));
    }
    Ok(entries)
}

/// The tree recomputed from the entries, one leaf at a time (O(log n) memory, `candor-log`'s
/// `RootBuilder`), with the complete subtrees it finishes until they are compared with the stored
/// ones.
#[derive(Default)]
struct Tree {
    builder: candor_log::merkle::RootBuilder,
    /// Tile level (8, 16, …) -> first node index and the hashes of the nodes completed since the
    /// last comparison.
    pending: BTreeMap<u32, (u64, Vec<Hash>)>,
    nodes_checked: u64,
    /// The completeness map rebuilt from the same entries, when the map secret is at hand.
    map: Option<(Map, LogSigner)>,
    /// Its root at each size of `marks`.
    map_roots: BTreeMap<u64, Hash>,
}

impl Tree {
    fn push(&mut self, leaf: Hash, bytes: &[u8]) {
        let pending = &mut self.pending;
        self.builder.push_reporting(leaf, |level, index, hash| {
            // Only the levels tiles store (level 0 is the recorded leaf hash, checked above).
            if level > 0 && level.is_multiple_of(candor_log::tiles::HEIGHT) {
                pending.entry(level).or_insert((index, Vec::new())).1.push(hash);
            }
        });
        if let Some((map, signer)) = &mut self.map {
            crate::vault::completeness::add_entry(map, signer, self.builder.size() - 1, bytes);
        }
    }

    fn mark(&mut self, roots: &mut BTreeMap<u64, Hash>) {
        roots.insert(self.size(), self.root());
        if let Some((map, _)) = &self.map {
            self.map_roots.insert(self.size(), map.root());
        }
    }

    fn size(&self) -> u64 {
        self.builder.size()
    }

    fn root(&self) -> Hash {
        self.builder.root()
    }

    /// Compares the subtrees completed since the last call with the stored ones; fails naming
    /// the first (by the entries it covers) that differs or is missing.
    async fn compare_nodes(&mut self, reader: &mut impl LogReader) -> Result<()> {
        let mut first_bad: Option<(u64, anyhow::Error)> = None;
        for (level, (first, hashes)) in std::mem::take(&mut self.pending) {
            let end = first + hashes.len() as u64;
            let Some(stored) = reader.nodes(level, first, end).await? else { continue };
            self.nodes_checked += hashes.len() as u64;
            let bad = if stored.len() != hashes.len() {
                Some((first << level, nodes_missing(level, first, end, stored.len())))
            } else {
                hashes
                    .iter()
                    .zip(&stored)
                    .position(|(mine, theirs)| mine != theirs)
                    .map(|i| first + i as u64)
                    .map(|index| (index << level, node_altered(level, index)))
            };
            if let Some((at, e)) = bad
                && first_bad.as_ref().is_none_or(|(b, _)| at < *b)
            {
                first_bad = Some((at, e));
            }
        }
        match first_bad {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }
}

fn covered(level: u32, index: u64) -> (u64, u64) {
    (index << level, ((index + 1) << level) - 1)
}

fn node_altered(level: u32, index: u64) -> anyhow::Error {
    let (a, b) = covered(level, index);
    anyhow!(
        "log verification FAILED at index {a}: the stored hash of entries {a} to {b} (tree level {level}, node {index}) \
         does not match the hash recomputed from those entries, so inclusion and consistency proofs built from it no \
         longer verify against the signed checkpoints: the stored node was altered, or the log was rewritten \
         (entries with their recorded hashes); the first altered entry is at an index from {a} to {b}"
    )
}

fn nodes_missing(level: u32, first: u64, end: u64, found: usize) -> anyhow::Error {
    let (a, _) = covered(level, first);
    let (_, b) = covered(level, end - 1);
    anyhow!(
        "log verification FAILED at index {a}: {} of the stored hashes of tree level {level} over entries {a} to {b} \
         (nodes {first} to {}) are missing, so proofs through them cannot be built",
        (end - first) as usize - found,
        end - 1
    )
}

/// Reads entries from `tree.size()` on — up to `target` (all must be there), or to the end of the
/// log (`None`) — checking each against its recorded leaf hash and every completed subtree
/// against the stored one, and remembering the root at each size in `marks` (sorted).
async fn advance(
    tree: &mut Tree,
    reader: &mut impl LogReader,
    target: Option<u64>,
    marks: &[u64],
    roots: &mut BTreeMap<u64, Hash>,
    bar: &ProgressBar,
) -> Result<()> {
    if marks.first() == Some(&0) && tree.size() == 0 {
        tree.mark(roots);
        roots.insert(0, empty_root());
    }
    loop {
        let start = tree.size();
        if target.is_some_and(|t| start >= t) {
            return Ok(());
        }
        // Batches end on tile boundaries, so a server's tiles are each read once.
        let mut end = (start / BATCH + 1) * BATCH;
        if let Some(t) = target {
            end = end.min(t);
        }
        for (index, bytes, recorded) in reader.batch(start, end).await? {
            if index != tree.size() {
                bail!("log verification FAILED at index {}: entry {} is missing", tree.size(), tree.size());
            }
            if leaf_hash(&bytes) != recorded {
                bail!(
                    "log verification FAILED at index {index}: entry {index} does not match its recorded hash (the entry was altered)"
                );
            }
            tree.push(recorded, &bytes);
            if marks.binary_search(&tree.size()).is_ok() {
                tree.mark(roots);
            }
        }
        tree.compare_nodes(reader).await?;
        if tree.size() > bar.length().unwrap_or(0) {
            bar.set_length(tree.size());
        }
        bar.set_position(tree.size());
        if tree.size() != end {
            if target.is_some() {
                bail!("log verification FAILED at index {}: entry {} is missing", tree.size(), tree.size());
            }
            return Ok(());
        }
    }
}

/// Recomputes the root over `[0, size)` — each entry against its recorded hash, each stored
/// subtree hash against the entries — and the roots at `marks`.
pub async fn recompute(reader: &mut impl LogReader, size: u64, marks: &[u64]) -> Result<(Hash, Vec<(u64, Hash)>)> {
    let mut marks = marks.to_vec();
    marks.sort_unstable();
    marks.dedup();
    let mut tree = Tree::default();
    let mut roots = BTreeMap::new();
    advance(&mut tree, reader, Some(size), &marks, &mut roots, &ProgressBar::hidden()).await?;
    Ok((tree.root(), roots.into_iter().collect()))
}

fn b64(h: &Hash) -> String {
    STANDARD.encode(h)
}

/// Outcome of a successful verification, for printing.
pub struct Report {
    /// Entries checked against a signed checkpoint.
    pub checked: u64,
    /// Entries present (`checked` plus any unsigned tail allowed by `--allow-unsigned-tail`).
    pub present: u64,
    pub root: Hash,
    /// This check signed the checkpoint (with the installation's log key) and kept it.
    pub signed_now: bool,
    /// Earlier checkpoints kept by the installation that the entries also match.
    pub kept: usize,
    pub saved_size: Option<u64>,
    /// Stored subtree hashes compared with the recomputed ones.
    pub nodes_checked: u64,
    /// Checkpoints whose completeness map root was compared with the map rebuilt from the
    /// entries (`None`: the map could not be rebuilt here, no map secret).
    pub maps_checked: Option<usize>,
    /// Checkpoints checked that carry no map root (signed before the map was committed).
    pub without_map: usize,
    pub seconds: f64,
}

/// Verifies the whole log and, given a checkpoint saved earlier, that the log still extends it.
pub async fn run(source: Source, options: Options) -> Result<Report> {
    let started = Instant::now();
    let pinned =
        options.pinned_key.as_deref().map(VerifierKey::parse).transpose().context("--key is not a verifier key")?;
    match source {
        Source::Config(path) => {
            let config = Config::load(&path)?;
            let own = match log_key(&config) {
                Ok(k) => k,
                Err(e) if pinned.is_some() => {
                    eprintln!("note: cannot use the installation's log key ({e:#}); no fresh checkpoint is signed");
                    None
                }
                Err(e) => return Err(e),
            };
            let key = match (pinned, &own) {
                (Some(k), _) => k,
                (None, Some(ctx)) => ctx.key.clone(),
                (None, None) => bail!(
                    "no log key at {} to check signatures with: pass the log's verifier key with --key (GET /v1/log/key)",
                    config.log.signing_key_file.display()
                ),
            };
            // Sign only with the key the log is checked against.
            let signer = own.filter(|ctx| ctx.key == key);
            // The map secret comes with the log key: with it the map is rebuilt and checked.
            let map_signer = match &signer {
                Some(_) => Some(install::load_log_signer(&config)?),
                None => None,
            };
            let store = install::open_store(&config).await?;
            let history: Vec<String> = store.checkpoints().await?.into_iter().map(|(_, n)| n).collect();
            let reader = SigningDbReader { db: DbReader::new(store), signer, signed: Vec::new(), asked: false };
            verify_log(&key, reader, &options, &history, map_signer, started).await
        }
        Source::Url { url, token } => {
            let reader = HttpReader {
                client: reqwest::Client::builder().no_proxy().build()?,
                url: url.trim_end_matches('/').to_string(),
                token,
            };
            let served: serde_json::Value = reader.get("/v1/log/key", false).await?.json().await?;
            let served_key = VerifierKey::parse(served["verifier_key"].as_str().unwrap_or_default())
                .context("the server's verifier key is malformed")?;
            let key = match pinned {
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
            verify_log(&key, reader, &options, &[], None, started).await
        }
    }
}

/// The installation's log key, if this process can read it (never creates one).
fn log_key(config: &Config) -> Result<Option<LogContext>> {
    if std::env::var(install::LOG_KEY_ENV).is_err() && !config.log.signing_key_file.exists() {
        return Ok(None);
    }
    Ok(Some(LogContext::new(&config.log.origin, install::load_log_signer(config)?)))
}

async fn verify_log(
    key: &VerifierKey,
    mut reader: impl LogReader,
    options: &Options,
    history: &[String],
    map_signer: Option<LogSigner>,
    started: Instant,
) -> Result<Report> {
    let open = |what: &str, note: &str| key.open(note).map_err(|e| anyhow!("{what} does not verify: {e}"));
    let first = reader.checkpoint().await?.ok_or_else(|| {
        anyhow!("the log has no signed checkpoint yet: start the server once (it signs one), then verify")
    })?;
    let mut latest = open("the log's checkpoint", &first)?;
    let mut latest_note = first;
    let mut kept = Vec::new();
    for note in history {
        kept.push((open("a kept checkpoint", note)?, note));
    }
    kept.sort_by_key(|(c, _)| c.size);
    // The installation kept a checkpoint of more entries than are there now: check up to it
    // (the missing entries are then named).
    if let Some((k, note)) = kept.last()
        && k.size > latest.size
    {
        latest = k.clone();
        latest_note = (*note).clone();
    }
    let saved = options.saved.as_deref().map(|t| open("the saved checkpoint", t)).transpose()?;
    if let Some(s) = &saved {
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
    let mut marks: Vec<u64> = kept
        .iter()
        .map(|(c, _)| c.size)
        .chain(saved.as_ref().map(|s| s.size))
        .chain(std::iter::once(latest.size))
        .collect();
    marks.sort_unstable();
    marks.dedup();

    let bar = ProgressBar::new(latest.size);
    bar.set_style(
        ProgressStyle::with_template("verifying {bar:40} {pos}/{len} entries ({per_sec})").expect("template"),
    );
    let mut tree = Tree { map: map_signer.map(|s| (Map::new(), s)), ..Tree::default() };
    let mut roots = BTreeMap::new();
    let mut maps_checked = 0usize;
    let mut without_map = 0usize;
    let result = async {
        advance(&mut tree, &mut reader, Some(latest.size), &marks, &mut roots, &bar).await?;
        // Every signed checkpoint must match the entries; the first that does not (by size)
        // says where history was rewritten.
        let mut signed: Vec<&Checkpoint> =
            kept.iter().map(|(c, _)| c).filter(|c| c.size <= latest.size).chain(std::iter::once(&latest)).collect();
        signed.sort_by_key(|c| c.size);
        let mut lo = 0;
        for cp in signed {
            let recomputed = roots[&cp.size];
            if recomputed == cp.root {
                check_map(&tree, cp, &mut maps_checked, &mut without_map)?;
                lo = lo.max(cp.size);
                continue;
            }
            let hi = cp.size;
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
                cp.size,
                b64(&cp.root)
            );
        }
        if let Some(s) = &saved
            && roots[&s.size] != s.root
        {
            bail!(
                "log verification FAILED: the first {} entries no longer match the checkpoint you saved (history was rewritten before index {})",
                s.size,
                s.size
            );
        }
        // Entries after it: a newer checkpoint may cover them (the log grows while this runs);
        // what none covers is the unsigned tail.
        let mut checked = latest.size;
        loop {
            if reader.batch(tree.size(), tree.size() + 1).await?.is_empty() {
                break;
            }
            if let Some((map, _)) = &tree.map {
                reader.seed_map(map, tree.size()).await;
            }
            let newer = match reader.checkpoint().await? {
                Some(note) => Some((open("the log's checkpoint", &note)?, note)),
                None => None,
            }
            .filter(|(c, _)| c.size > tree.size());
            let Some((cp, note)) = newer else {
                let from = tree.size();
                advance(&mut tree, &mut reader, None, &[], &mut roots, &bar).await?;
                if !options.allow_unsigned_tail {
                    bail!(
                        "log verification FAILED at index {from}: entries {from} to {} ({} entries) come after the newest signed checkpoint (size {checked}) and no signature covers them, so they cannot be verified; have a checkpoint signed (`candor log checkpoint`, or GET /v1/log/checkpoint on the server) and verify again, or pass --allow-unsigned-tail to accept them unverified",
                        tree.size() - 1,
                        tree.size() - from
                    );
                }
                break;
            };
            if cp.origin != latest.origin {
                bail!("the log's checkpoint is for log `{}`, not `{}`", cp.origin, latest.origin);
            }
            advance(&mut tree, &mut reader, Some(cp.size), &[cp.size], &mut roots, &bar).await?;
            if roots[&cp.size] != cp.root {
                bail!(
                    "log verification FAILED: the entries give root {} but the signed checkpoint of size {} says {}: the log was rewritten; the first altered entry is at an index from {checked} to {} (earlier entries match a signed checkpoint)",
                    b64(&roots[&cp.size]),
                    cp.size,
                    b64(&cp.root),
                    cp.size - 1
                );
            }
            check_map(&tree, &cp, &mut maps_checked, &mut without_map)?;
            checked = cp.size;
            latest = cp;
            latest_note = note;
        }
        Ok(checked)
    }
    .await;
    match result {
        Ok(_) => bar.finish_and_clear(),
        Err(_) => bar.abandon(),
    }
    let checked = result?;
    let signed_now = reader.keep(&latest_note, latest.size).await?;
    let kept_matching = kept.iter().filter(|(c, _)| c.size <= latest.size && *c != latest).count();
    Ok(Report {
        checked,
        present: tree.size(),
        root: latest.root,
        signed_now,
        kept: kept_matching,
        saved_size: saved.map(|s| s.size),
        nodes_checked: tree.nodes_checked,
        maps_checked: tree.map.is_some().then_some(maps_checked),
        without_map,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Compares the map root a checkpoint commits to with the map rebuilt from its entries.
fn check_map(tree: &Tree, cp: &Checkpoint, checked: &mut usize, without: &mut usize) -> Result<()> {
    let Some(committed) = cp.map_root else {
        *without += 1;
        return Ok(());
    };
    let Some(rebuilt) = tree.map_roots.get(&cp.size) else { return Ok(()) };
    if *rebuilt != committed {
        bail!(
            "log verification FAILED: the completeness map committed in the signed checkpoint of size {} ({}) is not the \
             map of its {} entries ({}): the per-customer histories it proves are not the ones in the log (an entry was \
             added to, left out of or moved between customers' histories in the map); earlier checkpoints' maps match",
            cp.size,
            b64(&committed),
            cp.size,
            b64(rebuilt)
        );
    }
    *checked += 1;
    Ok(())
}

pub fn print(report: &Report) {
    let rate = if report.seconds > 0.0 { report.present as f64 / report.seconds } else { 0.0 };
    println!(
        "log OK: {} of {} entries checked against a signed checkpoint, each recomputed from its bytes, with {} stored subtree hashes ({rate:.0} entries/s)",
        report.checked, report.present, report.nodes_checked
    );
    let by = if report.signed_now { "signed now with the log key" } else { "signed by the log" };
    println!("  root {} matches the checkpoint of size {} ({by})", b64(&report.root), report.checked);
    if report.kept > 0 {
        println!("  and the {} earlier checkpoints the installation kept", report.kept);
    }
    if let Some(s) = report.saved_size {
        println!("  the log still extends your saved checkpoint of size {s}");
    }
    match report.maps_checked {
        Some(n) => println!(
            "  completeness map: rebuilt from the entries; the map root in {n} checkpoint(s) matches it{}",
            if report.without_map > 0 {
                format!(" ({} older checkpoint(s) carry no map root)", report.without_map)
            } else {
                String::new()
            }
        ),
        None => println!(
            "  completeness map: NOT checked (rebuilding it needs the installation's log key: run with --config on the installation)"
        ),
    }
    if report.present > report.checked {
        println!(
            "  NOT covered by a signed checkpoint: entries {} to {} ({} entries), checked against their recorded hashes only (--allow-unsigned-tail)",
            report.checked,
            report.present - 1,
            report.present - report.checked
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_names_follow_the_c2sp_encoding() {
        assert_eq!(tile_name(0, 256), "000");
        assert_eq!(tile_name(5, 17), "005.p/17");
        assert_eq!(tile_name(1_234_067, 256), "x001/x234/067");
        assert_eq!(tile_name(1002, 3), "x001/002.p/3");
    }

    #[test]
    fn bundles_are_read_by_their_two_byte_lengths_and_broken_framing_is_named() {
        let mut bundle = Vec::new();
        for e in [&b"ab"[..], b"", b"xyz"] {
            bundle.extend_from_slice(&(e.len() as u16).to_be_bytes());
            bundle.extend_from_slice(e);
        }
        assert_eq!(parse_bundle(&bundle, 3).unwrap(), vec![b"ab".to_vec(), Vec::new(), b"xyz".to_vec()]);
        assert_eq!(parse_bundle(&bundle, 4).unwrap_err().0, 3);
        assert_eq!(parse_bundle(&bundle, 2).unwrap_err().0, 2, "bytes left over");
        // A 70,000-byte entry written with its length cut to 16 bits.
        let mut broken = ((70_000u32 & 0xffff) as u16).to_be_bytes().to_vec();
        broken.extend(std::iter::repeat_n(b'x', 70_000));
        assert!(parse_bundle(&broken, 1).is_err());
    }

    #[test]
    fn the_tree_keeps_the_completed_subtrees_of_the_levels_tiles_store() {
        let mut tree = Tree::default();
        let leaves: Vec<Hash> = (0u32..600).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for l in &leaves {
            tree.push(*l, b"");
        }
        let mut builder = candor_log::merkle::RootBuilder::new();
        leaves.iter().for_each(|l| builder.push(*l));
        assert_eq!(tree.root(), builder.root());
        let subtree = |i: usize| candor_log::tiles::perfect_root(&leaves[256 * i..256 * (i + 1)]);
        assert_eq!(tree.pending[&8], (0, vec![subtree(0), subtree(1)]), "tree level 8: nodes 0 and 1");
        assert_eq!(tree.pending.keys().collect::<Vec<_>>(), vec![&8], "levels 1 to 7 are not stored, so not kept");
    }
}
