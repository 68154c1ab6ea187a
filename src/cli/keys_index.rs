//! `candor keys` for the blind-index key (exact-match lookups):
//!
//! * `rotate-index` — adds a new index-key version to the index key file; once servers restart
//!   it makes every new lookup row, and lookups search under every version held;
//! * `reindex` — recomputes every lookup row made under an older index key: the customer's
//!   lookup values are decrypted in memory (never written, printed or logged), indexed under
//!   the newest key, and each row is replaced only if it still holds the value just read (a
//!   concurrent correction or erasure wins). Online, rate-limited, with a progress bar;
//!   interrupted, it resumes from what the store says is left. Each batch is logged against
//!   its customers before their values are decrypted;
//! * `retire-index VERSION` — removes an old version from the file, refused while a row needs it.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candor_core::catalog::Catalog;
use candor_crypto::KeyRing;
use candor_crypto::keyfile::{self, INDEX_LABEL};
use candor_store::Store;

use super::progress::{Pace, log, progress_bar, resumable};
use crate::config::Config;
use crate::install::{self, INDEX_KEY_ENV};

/// Lookup rows read per round.
const PAGE: u32 = 500;

fn refuse_env() -> Result<()> {
    if std::env::var_os(INDEX_KEY_ENV).is_some() {
        bail!(
            "{INDEX_KEY_ENV} is set: the index keys come from the environment, so add or remove the version there \
             (same text format, one key per line or separated by `;`)"
        );
    }
    Ok(())
}

/// What `keys status` prints about the index keys: each version with its lookup rows.
pub async fn status_lines(ring: &KeyRing, store: &dyn Store) -> Result<Vec<String>> {
    let counts = store.index_counts().await?;
    let primary = ring.primary_index_version();
    let held = ring.index_versions();
    let mut versions: Vec<u32> = held.iter().copied().chain(counts.iter().map(|(v, _)| *v)).collect();
    versions.sort_unstable();
    versions.dedup();
    Ok(versions
        .into_iter()
        .map(|v| {
            let n = counts.iter().find(|(k, _)| *k == v).map_or(0, |(_, n)| *n);
            let state = match (v, v == primary, held.contains(&v)) {
                (0, ..) if !ring.needs_reindex(0) => {
                    "made before index-key versions were recorded, by the only index key held"
                }
                (0, ..) => "made before index-key versions were recorded (run `candor keys reindex`)",
                (_, true, _) => "primary",
                (_, false, true) if n > 0 => "lookups still use it (run `candor keys reindex`)",
                (_, false, true) => "unused (can be retired with `candor keys retire-index`)",
                (_, false, false) => "MISSING from the index key file: lookups cannot find these customers",
            };
            format!("index key v{v}: {n} lookup row(s); {state}")
        })
        .collect())
}

/// Adds the next index-key version to the index key file.
pub async fn rotate(config_path: &Path) -> Result<()> {
    let config = Config::load(config_path)?;
    refuse_env()?;
    let file = &config.keys.index_key_file;
    let version = keyfile::add_key_version(file, INDEX_LABEL)
        .with_context(|| format!("cannot add a key to {}", file.display()))?;
    let store = install::open_store(&config).await?;
    log(
        store.as_ref(),
        candor_log::Action::KeysRotateIndex,
        format!("index key v{version} added; primary once servers restart"),
    )
    .await?;
    println!("index key v{version} added to {} and is now primary.", file.display());
    println!(
        "Restart the servers (they then index new values with it and search under every version), then run \
         `candor keys reindex`."
    );
    Ok(())
}

/// Recomputes every lookup row not under the newest index key, at most `per_second` rows a
/// second (0: no limit).
pub async fn reindex(config_path: &Path, per_second: u32) -> Result<()> {
    let config = Config::load(config_path)?;
    let catalog = install::load_catalog(&config)?;
    let ring = install::load_keys(&config)?;
    let store = install::open_store(&config).await?;
    let primary = ring.primary_index_version();
    let total: u64 = store.index_counts().await?.iter().filter(|(v, _)| ring.needs_reindex(*v)).map(|(_, n)| n).sum();
    let bar = progress_bar(total, "lookup rows recomputed");
    let started = Instant::now();
    let outcome = reindex_all(store.as_ref(), &ring, &catalog, per_second, |n| bar.inc(n)).await?;
    bar.finish_and_clear();
    let Reindexed { done, changed, not_lookup } = outcome;
    log(
        store.as_ref(),
        candor_log::Action::KeysReindex,
        format!("{done} lookup rows recomputed under index key v{primary}; {changed} changed meanwhile"),
    )
    .await?;
    println!(
        "{done} lookup row(s) recomputed under index key v{primary} in {:.1} s; {changed} corrected or erased meanwhile.",
        started.elapsed().as_secs_f64()
    );
    if changed > 0 {
        println!("Run `candor keys reindex` again to pick up rows a server without the new key wrote meanwhile.");
    }
    if not_lookup > 0 {
        println!(
            "{not_lookup} row(s) belong to fields the catalog no longer declares as lookup fields; they were left as \
             they are (restore `lookup = true` and run reindex again, or keep the old index key)."
        );
    }
    Ok(())
}

/// How a reindex went.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reindexed {
    /// Rows now under the newest index key.
    pub done: u64,
    /// Rows whose value was corrected, removed or erased between reading and replacing.
    pub changed: u64,
    /// Rows of fields the catalog no longer declares as lookup fields (left alone).
    pub not_lookup: u64,
}

/// Recomputes every lookup row not under `ring`'s newest index key, in pages (one transaction
/// each), at most `per_second` rows a second (0: no limit).
pub async fn reindex_all(
    store: &dyn Store,
    ring: &KeyRing,
    catalog: &Catalog,
    per_second: u32,
    mut progress: impl FnMut(u64),
) -> Result<Reindexed> {
    let primary = ring.primary_index_version();
    let mut outcome = Reindexed::default();
    let pace = Pace::new(per_second, PAGE as usize);
    for (version, _) in store.index_counts().await? {
        if !ring.needs_reindex(version) {
            continue;
        }
        if version > primary {
            bail!(
                "lookup rows were made with index key v{version}, newer than this index key file's newest \
                 (v{primary}): is this the installation's current index key file?"
            );
        }
        if version != 0 && !ring.index_versions().contains(&version) {
            bail!(
                "lookup rows were made with index key v{version}, which the index key file no longer holds: \
                 restore that version from a backup to recompute them"
            );
        }
        let mut after = None;
        loop {
            let page = store.index_rows_under(version, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.clone());
            for chunk in page.chunks(pace.batch()) {
                let (changes, not_lookup) =
                    candor_vault::maintenance::recompute_index_rows(store, ring, catalog, version, chunk).await?;
                let replaced = resumable(store.replace_index_rows(changes).await, "reindex")?;
                outcome.done += replaced;
                outcome.not_lookup += not_lookup;
                outcome.changed += chunk.len() as u64 - replaced - not_lookup;
                progress(chunk.len() as u64);
                pace.wait(outcome.done + outcome.changed + outcome.not_lookup).await;
            }
        }
    }
    Ok(outcome)
}

/// Removes index-key `version` from the index key file once no lookup row needs it.
pub async fn retire(config_path: &Path, version: u32) -> Result<()> {
    let config = Config::load(config_path)?;
    refuse_env()?;
    let ring = install::load_keys(&config)?;
    if !ring.index_versions().contains(&version) {
        bail!("index key v{version} is not in {}", config.keys.index_key_file.display());
    }
    if version == ring.primary_index_version() {
        bail!("index key v{version} is the primary index key: rotate to a new one first (`candor keys rotate-index`)");
    }
    let store = install::open_store(&config).await?;
    let counts = store.index_counts().await?;
    let needing: u64 = counts.iter().filter(|(v, _)| *v == version || *v == 0).map(|(_, n)| n).sum();
    if needing > 0 {
        bail!(
            "{needing} lookup row(s) may still need index key v{version}: run `candor keys reindex` first \
             (after restarting the servers)"
        );
    }
    keyfile::remove_key_version(&config.keys.index_key_file, INDEX_LABEL, version)?;
    log(
        store.as_ref(),
        candor_log::Action::KeysRetireIndex,
        format!("index key v{version} removed from the index key file"),
    )
    .await?;
    println!("index key v{version} retired: removed from {}.", config.keys.index_key_file.display());
    println!("Copies of the index key file in backups still hold it; destroy them when your backup policy allows.");
    Ok(())
}
