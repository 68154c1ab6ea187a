//! Backup and restore of an installation on SQLite: two files, the data store and the key store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use candor_store::sqlite::backup::{self as files, Pair, Part};

use super::{Copied, DATA_STORE, KEY_STORE, Manifest, Restored};

/// Where the two stores go in a backup.
const DATA_FILE: &str = "data/candor.db";
const KEYS_FILE: &str = "keys/keystore.db";

/// How long a copy waits for a lock the server holds for a moment (a checkpoint, a commit).
const BUSY: Duration = Duration::from_secs(60);

/// Copies the data store, then the key store, each as one consistent snapshot, and checks the
/// copies make a pair: every customer in the data copy has a key in the key copy.
pub(super) fn copy_stores(data: &Path, keys: &Path, to: &Path) -> Result<Copied> {
    for (path, what) in [(data, "database"), (keys, "key store")] {
        if !path.is_file() {
            bail!("there is no {what} at {}: is --config this installation's config?", path.display());
        }
    }
    crate::install::create_private_dir(&to.join("data"))?;
    crate::install::create_private_dir(&to.join("keys"))?;
    let (data_copy, keys_copy) = (to.join(DATA_FILE), to.join(KEYS_FILE));
    // The data first: every customer in it had their key committed before their data, so the
    // key store copied afterwards holds it (destroyed, if they were erased in between).
    vacuum_into(data, &data_copy).context("copying the database")?;
    println!("copied the database {}", data.display());
    super::hold("the database is copied; the key store is next");
    vacuum_into(keys, &keys_copy).context("copying the key store")?;
    println!("copied the key store {}", keys.display());

    let pair = Pair::open(&data_copy, &keys_copy, false)?;
    // Nothing reads the copies until the manifest exists, so their rollback journal stays in
    // memory: no journal file keeps the bytes of the keys removed below.
    pair.private_journal(true)?;
    integrity(&pair, Part::Data, DATA_FILE)?;
    integrity(&pair, Part::Keys, KEYS_FILE)?;
    // Keys whose customer is not in the data copy (created while the backup ran, or left unused
    // by a crash) are of no use to it.
    let left_out = pair.trim_unused_keys()?;
    let report = pair.report()?;
    if let Some(problem) = report.problem(DATA_FILE, KEYS_FILE) {
        bail!(
            "the installation's stores are not a usable pair, so no backup of them would restore: {problem}. Stop \
             the server and keep a plain copy of both files to investigate"
        );
    }
    pair.private_journal(false)?;
    drop(pair);
    Ok(Copied {
        files: vec![(DATA_FILE.into(), DATA_STORE), (KEYS_FILE.into(), KEY_STORE)],
        report,
        keys_left_out: left_out,
        schema: None,
    })
}

/// One read snapshot of `source` written to the new owner-only file `to`. In WAL mode this
/// neither blocks the server's writes nor restarts when they happen.
fn vacuum_into(source: &Path, to: &Path) -> Result<()> {
    drop(super::create_private_file(to)?);
    files::vacuum_into(source, to, BUSY)?;
    super::sync_file(to)
}

/// SQLite's own check of a file's structure.
fn integrity(pair: &Pair, part: Part, name: &str) -> Result<()> {
    let result = pair.quick_check(part).map_err(|e| anyhow::anyhow!("{name} is damaged: {e}"))?;
    if result != ["ok"] {
        bail!("{name} is damaged: {}", result.join("; "));
    }
    Ok(())
}

/// Where the restored stores go.
pub(super) struct Target {
    pub data: PathBuf,
    pub keys: PathBuf,
}

/// Checks the backup's stores, then puts them in place of the target's (moved aside), with the
/// erasures the replaced key store recorded applied to the restored one.
pub(super) fn restore(
    target: &Target,
    from: &Path,
    manifest: &Manifest,
    ring: &candor_crypto::KeyRing,
    replace: bool,
) -> Result<Restored> {
    let file = |role: &str| -> Result<PathBuf> {
        let entry = manifest.files.iter().find(|f| f.role == role).context("the manifest names no store")?;
        Ok(from.join(&entry.path))
    };
    let (data_copy, keys_copy) = (file(DATA_STORE)?, file(KEY_STORE)?);
    let (data_name, keys_name) = (DATA_FILE, KEYS_FILE);
    {
        let pair = Pair::open(&data_copy, &keys_copy, true)?;
        integrity(&pair, Part::Data, data_name)?;
        integrity(&pair, Part::Keys, keys_name)?;
        let report = pair.report()?;
        super::check_report(&report, manifest, data_name, keys_name)?;
        super::check_kek(ring, &pair.kek_samples(&report)?)?;
    }

    // What is there now.
    let present = |p: &Path| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false);
    let live: Vec<&Path> =
        [&target.data, &target.keys].into_iter().map(PathBuf::as_path).filter(|p| present(p)).collect();
    let mut erasures = Vec::new();
    if !live.is_empty() {
        let names: Vec<String> = live.iter().map(|p| p.display().to_string()).collect();
        if !replace {
            bail!(
                "{} already hold{} an installation, which a restore replaces: stop every server and command using \
                 it, then run again with --replace (the current files are moved aside, not deleted, and the erasures \
                 the current key store records are kept). Nothing was changed",
                names.join(" and "),
                if names.len() == 1 { "s" } else { "" }
            );
        }
        for path in &live {
            if files::in_use(path)? {
                bail!(
                    "{} is open in another process (a running server or command): stop it first. Nothing was changed",
                    path.display()
                );
            }
        }
        if present(&target.data) {
            check_same_installation(&target.data, Part::Data, manifest)?;
        }
        if present(&target.keys) {
            check_same_installation(&target.keys, Part::Keys, manifest)?;
            erasures = files::destroyed_keys(&target.keys)?;
        }
    }

    // Staged next to the targets, then renamed into place.
    let staged = |p: &Path| PathBuf::from(format!("{}.restoring", p.display()));
    let (data_staged, keys_staged) = (staged(&target.data), staged(&target.keys));
    for (copy, to) in [(&data_copy, &data_staged), (&keys_copy, &keys_staged)] {
        if let Some(parent) = to.parent() {
            crate::install::create_private_dir(parent)?;
        }
        let _ = std::fs::remove_file(to); // left by an interrupted restore
        super::copy_private(copy, to)?;
    }
    let reapplied = apply_erasures(&keys_staged, &erasures)?;
    let stamp = crate::clock::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    let mut moved_aside = Vec::new();
    for (staged, path) in [(&data_staged, &target.data), (&keys_staged, &target.keys)] {
        for suffix in ["", "-wal", "-shm"] {
            let old = PathBuf::from(format!("{}{suffix}", path.display()));
            if old.exists() {
                let aside = PathBuf::from(format!("{}.before-restore-{stamp}{suffix}", path.display()));
                std::fs::rename(&old, &aside).with_context(|| format!("cannot move {} aside", old.display()))?;
                if suffix.is_empty() {
                    moved_aside.push(aside);
                }
            }
        }
        std::fs::rename(staged, path).with_context(|| format!("cannot put {} in place", path.display()))?;
        if let Some(parent) = path.parent() {
            super::sync_dir(parent)?;
        }
    }
    Ok(Restored { erasures_reapplied: reapplied, moved_aside })
}

/// Refuses to replace another installation's file.
fn check_same_installation(path: &Path, part: Part, manifest: &Manifest) -> Result<()> {
    match files::installation_of(path, part)? {
        Some(id) if id != manifest.installation_id => bail!(
            "{} belongs to installation {id}, not to installation {} this backup is of: restore into that \
             installation's place, or move this file away yourself. Nothing was changed",
            path.display(),
            manifest.installation_id
        ),
        _ => Ok(()),
    }
}

/// Destroys, in the staged key store, the keys the replaced key store had destroyed (erasures made
/// after the backup). Returns how many it destroyed.
fn apply_erasures(keys: &Path, erasures: &[files::DestroyedKey]) -> Result<u64> {
    if erasures.is_empty() {
        return Ok(0);
    }
    // The staged file is not in place yet; its journal stays in memory so no journal file keeps
    // the destroyed keys' bytes, and secure_delete overwrites them in the file.
    let destroyed = files::apply_erasures(keys, erasures)?;
    super::sync_file(keys)?;
    Ok(destroyed)
}
