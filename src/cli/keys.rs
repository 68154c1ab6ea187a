//! `candor keys`: key-encryption-key rotation (the blind-index key's is in [`super::keys_index`]).
//!
//! * `status` — each KEK version, how many live data keys need it, which one is primary;
//! * `rotate` — adds a new KEK version to the key file, or generates it inside the HSM when
//!   `[keys] provider = "pkcs11"`; it becomes primary when servers restart;
//! * `rewrap` — wraps every data key still under an older KEK again under the primary one, online
//!   (each replacement is conditional, so a concurrent erasure wins), at a chosen rate, with a
//!   progress bar; interrupted, it simply resumes where the key store says it is;
//! * `retire VERSION` — removes an old KEK from the key file (or destroys it in the HSM), refused
//!   while any data key needs it.
//!
//! Values are never re-encrypted: a data key keeps its bytes and version; only its wrapping
//! changes. Each step is written to the tamper-evident log.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candor_crypto::KeyRing;
use candor_crypto::kek::{KekProvider, KekUsage, kek_usage, stop_point};
use candor_crypto::keyfile::{self, KEK_LABEL};
use candor_store::Store;

use super::progress::{Pace, log, progress_bar, resumable};
use crate::config::Config;
use crate::install::{self, KEK_ENV};

const PAGE: u32 = 500;

fn refuse_env() -> Result<()> {
    if std::env::var_os(KEK_ENV).is_some() {
        bail!(
            "{KEK_ENV} is set: the keys come from the environment, so add or remove the version there \
             (same text format, one key per line or separated by `;`)"
        );
    }
    Ok(())
}

/// Prints each KEK version with the data keys that need it ([`status_lines`]).
pub async fn status(config_path: &Path) -> Result<()> {
    for line in status_lines(config_path).await? {
        println!("{line}");
    }
    Ok(())
}

/// Each KEK version with the data keys that need it and where it is kept, the primary's
/// wrapping budget, and the blind-index key versions: what `candor keys status` prints and the
/// staff console's accountability page shows.
pub async fn status_lines(config_path: &Path) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let config = Config::load(config_path)?;
    let ring = install::load_keys(&config)?;
    let store = install::open_store(&config).await?;
    let counts = store.dek_counts().await?;
    let primary = ring.primary_kek_version();
    let mut versions = ring.kek_versions();
    for (v, _) in &counts {
        if !versions.contains(v) {
            versions.push(*v);
        }
    }
    versions.sort_unstable();
    for v in versions {
        let n = counts.iter().find(|(k, _)| *k == v).map_or(0, |(_, n)| *n);
        let state = match (v == primary, ring.kek_versions().contains(&v)) {
            (true, _) => "primary",
            (false, true) if n > 0 => "decrypt-only (run `candor keys rewrap`)",
            (false, true) => "unused (can be retired)",
            (false, false) => "MISSING from the key file and the HSM: these customers' data cannot be read",
        };
        match ring.provider_of(v) {
            Some(place) => lines.push(format!("kek v{v}: {n} data key(s); {state}; in {place}")),
            None => lines.push(format!("kek v{v}: {n} data key(s); {state}")),
        }
        if v == primary {
            let used = install::primary_wraps(store.as_ref(), v).await?;
            let limit = config.keys.kek_wrap_limit;
            let advice = match kek_usage(used, limit) {
                KekUsage::Fine => "",
                KekUsage::RotateSoon => " — plan a rotation",
                KekUsage::Exhausted => " — EXHAUSTED: new customers are refused; rotate now",
            };
            lines.push(format!(
                "  wrapping budget: {used} of {limit} data keys ({:.1}%; it stops at {}){advice}",
                100.0 * used as f64 / limit as f64,
                stop_point(limit)
            ));
        }
    }
    lines.extend(super::keys_index::status_lines(&ring, store.as_ref()).await?);
    Ok(lines)
}

/// Adds the next KEK version: to the key file, or generated inside the HSM when the config's
/// provider is `pkcs11`.
pub async fn rotate(config_path: &Path) -> Result<()> {
    let config = Config::load(config_path)?;
    let (version, place) = match &config.keys.pkcs11 {
        None => {
            refuse_env()?;
            let version = keyfile::add_key_version(&config.keys.kek_file, KEK_LABEL)
                .with_context(|| format!("cannot add a key to {}", config.keys.kek_file.display()))?;
            (version, config.keys.kek_file.display().to_string())
        }
        Some(settings) => {
            let token = install::open_hsm(settings)?;
            // The next version after every one in use: in the token, still in the key file
            // (moving to the HSM), or named by a stored data key.
            let mut highest = token.versions().last().copied().unwrap_or(0);
            if let Ok(ring) = install::load_keys(&config) {
                highest = highest.max(ring.primary_kek_version());
            }
            let store = install::open_store(&config).await?;
            highest = highest.max(store.dek_counts().await?.iter().map(|(v, _)| *v).max().unwrap_or(0));
            let version = highest + 1;
            token.generate(version)?;
            (version, token.name())
        }
    };
    let store = install::open_store(&config).await?;
    log(
        store.as_ref(),
        candor_log::Action::KeysRotate,
        format!("kek v{version} added to {place}; primary once servers restart"),
    )
    .await?;
    println!("kek v{version} added to {place} and is now primary.");
    println!("Restart the servers (new data keys are then wrapped with it), then run `candor keys rewrap`.");
    Ok(())
}

/// Rewraps every data key not under the primary KEK, at most `per_second` a second (0: no limit).
pub async fn rewrap(config_path: &Path, per_second: u32) -> Result<()> {
    let config = Config::load(config_path)?;
    let store = install::open_store(&config).await?;
    let ring =
        install::with_wrap_budget(install::load_keys(&config)?, store.as_ref(), config.keys.kek_wrap_limit).await?;
    let primary = ring.primary_kek_version();
    let total: u64 = store.dek_counts().await?.iter().filter(|(v, _)| *v != primary).map(|(_, n)| n).sum();
    let bar = progress_bar(total, "data keys rewrapped");
    let started = Instant::now();
    let (done, skipped) = rewrap_all(store.as_ref(), &ring, per_second, |n| bar.inc(n)).await?;
    bar.finish_and_clear();
    log(
        store.as_ref(),
        candor_log::Action::KeysRewrap,
        format!("{done} data keys rewrapped under kek v{primary}; {skipped} changed meanwhile"),
    )
    .await?;
    println!(
        "{done} data key(s) rewrapped under kek v{primary} in {:.1} s; {skipped} erased or rewrapped meanwhile.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Removes KEK `version` from the key file, or destroys it inside the HSM, once no data key
/// needs it.
pub async fn retire(config_path: &Path, version: u32) -> Result<()> {
    let config = Config::load(config_path)?;
    let ring = install::load_keys(&config)?;
    let Some(place) = ring.provider_of(version) else {
        bail!("kek v{version} is in neither the key file nor the HSM");
    };
    let token = match &config.keys.pkcs11 {
        Some(settings) => Some(install::open_hsm(settings)?).filter(|t| t.versions().contains(&version)),
        None => None,
    };
    if token.is_none() {
        refuse_env()?;
    }
    if version == ring.primary_kek_version() {
        bail!("kek v{version} is the primary key: rotate to a new one first");
    }
    let store = install::open_store(&config).await?;
    let needing = store.dek_counts().await?.iter().find(|(v, _)| *v == version).map_or(0, |(_, n)| *n);
    if needing > 0 {
        bail!(
            "{needing} data key(s) still need kek v{version}: run `candor keys rewrap` first (after restarting the servers)"
        );
    }
    match token {
        Some(token) => {
            token.destroy(version)?;
            log(store.as_ref(), candor_log::Action::KeysRetire, format!("kek v{version} destroyed in {place}")).await?;
            println!("kek v{version} retired: destroyed in {place}.");
        }
        None => {
            keyfile::remove_key_version(&config.keys.kek_file, KEK_LABEL, version)?;
            log(store.as_ref(), candor_log::Action::KeysRetire, format!("kek v{version} removed from the key file"))
                .await?;
            println!("kek v{version} retired: removed from {}.", config.keys.kek_file.display());
            println!("Copies of the key file in backups still hold it; destroy them when your backup policy allows.");
        }
    }
    Ok(())
}

/// Rewraps every live data key not under `ring`'s primary KEK, in batches (one transaction
/// each), at most `per_second` a second (0: no limit). Returns (rewrapped, changed meanwhile).
pub async fn rewrap_all(
    store: &dyn Store,
    ring: &KeyRing,
    per_second: u32,
    mut progress: impl FnMut(u64),
) -> Result<(u64, u64)> {
    let primary = ring.primary_kek_version();
    let pace = Pace::new(per_second, PAGE as usize);
    let (mut done, mut skipped) = (0u64, 0u64);
    let mut after = None;
    loop {
        let page = store.deks_not_under(primary, after, PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        for chunk in page.chunks(pace.batch()) {
            let mut changes = Vec::with_capacity(chunk.len());
            for (subject, old) in chunk {
                let new = ring
                    .rewrap(*subject, old)
                    .with_context(|| format!("the data key of customer {subject} could not be rewrapped"))?
                    .expect("listed keys are not under the primary KEK");
                changes.push((*subject, old.clone(), new));
            }
            let n = changes.len() as u64;
            // Those not replaced were erased or rewrapped by someone else meanwhile.
            let replaced = resumable(store.replace_deks(changes).await, "rewrap")?;
            (done, skipped) = (done + replaced, skipped + n - replaced);
            progress(n);
            pace.wait(done + skipped).await;
        }
    }
    Ok((done, skipped))
}
