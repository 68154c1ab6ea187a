//! `candor backup --to DIR` and `candor restore --from DIR`: a running installation copied
//! online and consistently, and put back only when the copy is whole and its two stores belong
//! together.
//!
//! **Order.** A customer's data key is committed to the key store before their data, and
//! destroyed there before their data is deleted. So the backup copies the data store first and
//! the key store second: every customer in the data copy has their key in the key copy — live,
//! or destroyed if they were erased in between (the restored installation's start-up pass then
//! completes that erasure). Keys of customers created between the two copies have no data in
//! the backup and are left out of its key store. On SQLite each copy is one read snapshot
//! (`VACUUM INTO`; writers are not blocked and nothing restarts under load); on PostgreSQL,
//! where a key and its data commit together, `pg_dump` dumps both schemas from one exported
//! snapshot.
//!
//! **Manifest.** `manifest.json`, written last (a directory without one is an unfinished
//! backup), names every file with its size and SHA-256, the log's size, root and a checkpoint
//! signed with the installation's log key, the installation id both stores carry, the KEK
//! versions the keys need, the Candor version and the time. It says what the backup holds and
//! what must be kept apart from it: the key-encryption keys (key file or HSM), the blind-index
//! key and the log key are **not** copied — a backup next to its KEK would undo the encryption.
//!
//! **Restore** checks the manifest, every checksum, the stores' integrity, that they are one
//! pair of the installation the config describes (installation id, log origin and key, KEK
//! versions that open a sample of the keys), refuses to replace a live installation without
//! `--replace` (and while a process has it open), moves the replaced files aside rather than
//! deleting them, re-applies the erasures the replaced key store records, opens the installation
//! (its start-up pass completes erasures) and finishes with `candor log verify` against the
//! backup's signed checkpoint. Everything written is owner-only (0600 files, 0700 directories).

use std::io::{BufRead, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use candor_log::note::{Checkpoint, sign_checkpoint};
use candor_store::keys::PairReport;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Database};
use crate::install;
use crate::vault::audit::LogContext;

mod postgres;
mod sqlite;

/// The manifest's format name.
pub const FORMAT: &str = "candor-backup/1";
pub const MANIFEST: &str = "manifest.json";

/// Roles of the files in a backup.
const DATA_STORE: &str = "data_store";
const KEY_STORE: &str = "key_store";
const POSTGRES_DUMP: &str = "postgres_dump";
const INSTALLATION_FILE: &str = "installation_file";

/// Debug builds only: with this variable set, a backup stops after copying the data store and
/// before copying the key store (on PostgreSQL: after taking its snapshot, before `pg_dump`)
/// until a line arrives on its standard input, so a test can write, erase or kill at that point
/// instead of guessing when it is there.
const HOLD_VAR: &str = "CANDOR_TEST_BACKUP_HOLD";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub candor_version: String,
    /// When the backup was taken (UTC, RFC 3339).
    pub created_at: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The id written into both the data store and the key store.
    pub installation_id: String,
    /// PostgreSQL: the schema Candor's tables were dumped from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub log: LogState,
    pub customers: Customers,
    /// KEK versions the backup's data keys are wrapped under.
    pub kek_versions: Vec<u32>,
    pub files: Vec<FileEntry>,
    pub contains: String,
    pub keep_separately: Vec<String>,
}

/// The log in the backup.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LogState {
    pub origin: String,
    pub size: u64,
    /// Root hash (base64, as in checkpoints).
    pub root: String,
    /// A checkpoint of exactly this log, signed with the installation's log key.
    pub checkpoint: String,
    pub verifier_key: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Customers {
    pub customers: u64,
    pub live_keys: u64,
    pub destroyed_keys: u64,
    /// Customers erased while the backup ran (data copied, key destroyed before the key store
    /// was copied): the restored installation's start-up pass erases them again.
    pub erasures_to_complete: u64,
    /// Keys of customers created while the backup ran (or left unused by a crash), whose data is
    /// not in the backup: left out of its key store.
    pub keys_left_out: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FileEntry {
    /// Relative to the backup directory, `/`-separated.
    pub path: String,
    pub role: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What a backend's copy produced.
struct Copied {
    /// (path relative to the backup, role)
    files: Vec<(String, &'static str)>,
    report: PairReport,
    keys_left_out: u64,
    schema: Option<String>,
}

/// `candor backup --to DIR`.
pub async fn backup(config_path: &Path, to: &Path) -> Result<()> {
    let started = Instant::now();
    let config = Config::load(config_path)?;
    let log = LogContext::new(&config.log.origin, install::load_log_signer(&config)?);
    new_backup_dir(to)?;
    let copied = match &config.database {
        Database::Sqlite(path) => {
            let (data, keys, to) = (path.clone(), config.keys.key_store.clone(), to.to_path_buf());
            tokio::task::spawn_blocking(move || sqlite::copy_stores(&data, &keys, &to)).await??
        }
        Database::Postgres(url) => postgres::dump(url, to).await?,
    };
    let mut files = copied.files;
    files.extend(copy_installation_files(config_path, &config, to)?);
    let report = &copied.report;
    let root = STANDARD.encode(report.log_root);
    // The manifest's checkpoint names the log copied; the completeness map is committed by the
    // checkpoints the log itself keeps (checked again by the verification after a restore).
    let checkpoint =
        Checkpoint { origin: log.origin.clone(), size: report.log_size, root: report.log_root, map_root: None };
    let mut entries = Vec::with_capacity(files.len());
    for (path, role) in files {
        let (bytes, sha256) = hash_file(&to.join(&path))?;
        entries.push(FileEntry { path, role: role.to_string(), bytes, sha256 });
    }
    let manifest = Manifest {
        format: FORMAT.to_string(),
        candor_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: crate::clock::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        backend: if copied.schema.is_some() { "postgres" } else { "sqlite" }.to_string(),
        installation_id: report.data_installation.clone().unwrap_or_default(),
        schema: copied.schema,
        log: LogState {
            origin: log.origin.clone(),
            size: report.log_size,
            root: root.clone(),
            checkpoint: sign_checkpoint(&checkpoint, &log.key, |m| log.signer.sign(m)),
            verifier_key: log.key.to_text(),
        },
        customers: Customers {
            customers: report.customers,
            live_keys: report.live_keys,
            destroyed_keys: report.destroyed_keys,
            erasures_to_complete: report.erasures_to_complete,
            keys_left_out: copied.keys_left_out,
        },
        kek_versions: report.kek_versions.clone(),
        files: entries,
        contains: CONTAINS.to_string(),
        keep_separately: keep_separately(&config),
    };
    let mut text = serde_json::to_string_pretty(&manifest)?;
    text.push('\n');
    install::write_new(&to.join(MANIFEST), &text)?;
    sync_file(&to.join(MANIFEST))?;
    sync_tree(to)?;
    let total: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    println!(
        "backup written to {} in {:.1} s: {} customers, log of {} entries (root {root}), {:.1} MiB",
        to.display(),
        started.elapsed().as_secs_f64(),
        report.customers,
        report.log_size,
        total as f64 / (1024.0 * 1024.0)
    );
    if report.erasures_to_complete > 0 {
        println!(
            "{} customer(s) were erased while it ran: a restore erases them again at start-up",
            report.erasures_to_complete
        );
    }
    println!(
        "It holds the data and the wrapped data keys, not the keys that open them: keep {} and {} apart from it \
         (see {MANIFEST})",
        kek_place(&config),
        config.keys.index_key_file.display()
    );
    Ok(())
}

const CONTAINS: &str = "The installation's data store (customers' values, each sealed with the customer's own data \
key; the tamper-evident log; consents, tokens as hashes, certificates) and its key store (each customer's data key, \
wrapped by a key-encryption key), copied online in that order so that every customer in the data has their key; \
plus the config, the catalog and the policy file. Nothing here is readable without the key-encryption keys, which \
are not in this backup.";

fn kek_place(config: &Config) -> String {
    match &config.keys.pkcs11 {
        Some(hsm) => format!("the HSM token `{}`", hsm.token_label),
        None => config.keys.kek_file.display().to_string(),
    }
}

fn keep_separately(config: &Config) -> Vec<String> {
    vec![
        format!(
            "{}: the key-encryption keys. Without them this backup cannot be read; with them it can, so never \
             store them next to it (keep them in their own backup, or in the HSM)",
            kek_place(config)
        ),
        format!("{}: the blind-index key, needed for lookups by e-mail or phone", config.keys.index_key_file.display()),
        format!(
            "{}: the log signing key; a restore checks the log's checkpoints against it",
            config.log.signing_key_file.display()
        ),
        format!("{}: recipients' webhook secrets, if you use them", config.webhooks.secrets_file.display()),
        "Customers erased after this backup was taken are readable again if it is restored with the key-encryption \
         keys: keep backups short-lived. `candor restore --replace` over the installation re-applies the erasures \
         its current key store records."
            .to_string(),
    ]
}

/// `candor restore --from DIR [--replace]`.
pub async fn restore(config_path: &Path, from: &Path, replace: bool) -> Result<()> {
    let started = Instant::now();
    let config = Config::load(config_path)?;
    let manifest = read_manifest(from)?;
    check_files(from, &manifest)?;
    check_identity(&config, &manifest)?;
    let ring = install::load_keys(&config)?;
    let missing: Vec<u32> =
        manifest.kek_versions.iter().copied().filter(|v| !ring.kek_versions().contains(v)).collect();
    if !missing.is_empty() {
        bail!(
            "the backup's data keys need key-encryption key version(s) {missing:?}, which {} does not hold: put back \
             the key file you kept apart from the backup (nothing was changed)",
            kek_place(&config)
        );
    }
    let outcome = match (&config.database, manifest.backend.as_str()) {
        (Database::Sqlite(path), "sqlite") => {
            let target = sqlite::Target { data: path.clone(), keys: config.keys.key_store.clone() };
            let (from, manifest) = (from.to_path_buf(), manifest.clone());
            tokio::task::spawn_blocking(move || sqlite::restore(&target, &from, &manifest, &ring, replace)).await??
        }
        (Database::Postgres(url), "postgres") => postgres::restore(url, from, &manifest, &ring).await?,
        (Database::Sqlite(_), other) => bail!(
            "this is a backup of a {other} installation, but the config's database is SQLite: point `database` at \
             a new, empty PostgreSQL database (nothing was changed)"
        ),
        (Database::Postgres(_), other) => bail!(
            "this is a backup of a {other} installation, but the config's database is PostgreSQL: restore it into \
             an installation on SQLite (nothing was changed)"
        ),
    };
    // The start-up pass completes the erasures the backup's key store (or the replaced one)
    // records for customers whose data it still holds.
    let (_, vault) = install::open(config_path).await.context("the restored installation does not open")?;
    drop(vault);
    let report = crate::verify::run(
        crate::verify::Source::Config(config_path.to_path_buf()),
        crate::verify::Options {
            saved: Some(manifest.log.checkpoint.clone()),
            pinned_key: None,
            allow_unsigned_tail: false,
        },
    )
    .await
    .context("the restored log does not verify")?;
    println!(
        "restored {} customers from the backup of {} in {:.1} s; log verified: {} of {} entries checked, extending \
         the backup's signed checkpoint (size {})",
        manifest.customers.customers,
        manifest.created_at,
        started.elapsed().as_secs_f64(),
        report.checked,
        report.present,
        manifest.log.size
    );
    let erased = manifest.customers.erasures_to_complete + outcome.erasures_reapplied;
    if erased > 0 {
        println!(
            "erased again at start-up: {} customer(s) erased while the backup ran, {} erased since (from the \
             replaced key store)",
            manifest.customers.erasures_to_complete, outcome.erasures_reapplied
        );
    }
    for moved in &outcome.moved_aside {
        println!("the replaced file is kept as {} (delete it once you are satisfied)", moved.display());
    }
    Ok(())
}

/// What a backend's restore did.
struct Restored {
    /// Erasures the replaced key store recorded that the backup did not have yet.
    erasures_reapplied: u64,
    moved_aside: Vec<PathBuf>,
}

/// The manifest, or why there is none to trust.
fn read_manifest(from: &Path) -> Result<Manifest> {
    if !from.is_dir() {
        bail!("{} is not a directory: give the directory `candor backup --to` wrote", from.display());
    }
    let path = from.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} has no {MANIFEST}: it is not a Candor backup, or the backup did not finish (the manifest is written \
             last); nothing was changed",
            from.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged: it is not a backup manifest (nothing was changed)", path.display()))?;
    if manifest.format != FORMAT {
        bail!(
            "{} is a `{}` manifest; this Candor reads `{FORMAT}` (nothing was changed)",
            path.display(),
            manifest.format
        );
    }
    Ok(manifest)
}

/// Every file the manifest names, whole and unchanged; the ones the backend needs present.
fn check_files(from: &Path, manifest: &Manifest) -> Result<()> {
    let mut problems = Vec::new();
    for f in &manifest.files {
        let relative = Path::new(&f.path);
        if f.path.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            problems.push(format!("{}: not a path inside the backup", f.path));
            continue;
        }
        match hash_file(&from.join(relative)) {
            Ok((bytes, _)) if bytes != f.bytes => problems
                .push(format!("{}: {bytes} bytes, the manifest says {} (truncated or replaced)", f.path, f.bytes)),
            Ok((_, sha)) if sha != f.sha256 => {
                problems.push(format!("{}: its SHA-256 differs from the manifest's (damaged or replaced)", f.path))
            }
            Ok(_) => {}
            Err(_) => problems.push(format!("{}: missing or unreadable", f.path)),
        }
    }
    let needed: &[&str] = if manifest.backend == "postgres" { &[POSTGRES_DUMP] } else { &[DATA_STORE, KEY_STORE] };
    for role in needed {
        if !manifest.files.iter().any(|f| f.role == *role) {
            problems.push(format!("the manifest names no {role} file"));
        }
    }
    if !problems.is_empty() {
        bail!("the backup in {} is damaged; nothing was changed:\n  {}", from.display(), problems.join("\n  "));
    }
    Ok(())
}

/// The backup is of the installation the config describes: same log (origin and signing key).
fn check_identity(config: &Config, manifest: &Manifest) -> Result<()> {
    if config.log.origin != manifest.log.origin {
        bail!(
            "the backup's log is `{}`, but this config's [log] origin is `{}`: restore with the backup's config \
             (installation/ in the backup) so its checkpoints still verify (nothing was changed)",
            manifest.log.origin,
            config.log.origin
        );
    }
    let file = &config.log.signing_key_file;
    if std::env::var_os(install::LOG_KEY_ENV).is_none() && !file.exists() {
        bail!(
            "there is no log signing key at {}: put back the installation's log key (kept apart from the backup); \
             a new one could not vouch for the log's checkpoints (nothing was changed)",
            file.display()
        );
    }
    let log = LogContext::new(&config.log.origin, install::load_log_signer(config)?);
    if log.key.to_text() != manifest.log.verifier_key {
        bail!(
            "{} is not the key that signed this backup's log (it signs as {}, the backup's log as {}): put back the \
             installation's own log key (nothing was changed)",
            file.display(),
            log.key.to_text(),
            manifest.log.verifier_key
        );
    }
    log.key
        .open(&manifest.log.checkpoint)
        .map_err(|e| anyhow::anyhow!("the manifest's checkpoint does not verify ({e}): the manifest was altered"))?;
    Ok(())
}

/// The pair of stores in the backup is the one the manifest describes.
fn check_report(report: &PairReport, manifest: &Manifest, data: &str, keys: &str) -> Result<()> {
    if let Some(problem) = report.problem(data, keys) {
        bail!("the backup's stores are not a usable pair: {problem} (nothing was changed)");
    }
    let mut differences = Vec::new();
    if report.data_installation.as_deref() != Some(manifest.installation_id.as_str()) {
        differences.push(format!(
            "the stores are of installation {}, the manifest says {}",
            report.data_installation.as_deref().unwrap_or("?"),
            manifest.installation_id
        ));
    }
    if report.log_size != manifest.log.size || STANDARD.encode(report.log_root) != manifest.log.root {
        differences.push(format!(
            "the data store's log has {} entries with root {}, the manifest says {} with root {}",
            report.log_size,
            STANDARD.encode(report.log_root),
            manifest.log.size,
            manifest.log.root
        ));
    }
    if report.customers != manifest.customers.customers || report.live_keys != manifest.customers.live_keys {
        differences.push(format!(
            "{} customers and {} live keys, the manifest says {} and {}",
            report.customers, report.live_keys, manifest.customers.customers, manifest.customers.live_keys
        ));
    }
    if !differences.is_empty() {
        bail!(
            "the backup's stores are not the ones its manifest describes (nothing was changed): {}",
            differences.join("; ")
        );
    }
    Ok(())
}

/// Opens one data key per KEK version with the installation's keys: the key file (or HSM) is
/// the one that wrapped them, not only a file with the same version numbers.
fn check_kek(
    ring: &candor_crypto::KeyRing,
    samples: &[(candor_core::SubjectId, candor_core::StoredDek)],
) -> Result<()> {
    if let Some(version) = candor_vault::maintenance::kek_that_does_not_open(ring, samples) {
        bail!(
            "the installation's key-encryption key version {version} does not open the backup's data keys: it is not \
             the key that wrapped them. Put back the key file kept apart from this backup"
        );
    }
    Ok(())
}

/// Creates the backup directory (0700), refusing one that holds anything.
fn new_backup_dir(to: &Path) -> Result<()> {
    if to.exists() {
        let mut entries = std::fs::read_dir(to).with_context(|| format!("cannot read {}", to.display()))?;
        if entries.next().is_some() {
            bail!("{} is not empty: give a new directory for each backup", to.display());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))?;
        }
        return Ok(());
    }
    install::create_private_dir(to)
}

/// Creates `path` empty, owner-only (0600); it must not exist.
fn create_private_file(path: &Path) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).with_context(|| format!("cannot create {}", path.display()))
}

/// Copies `from` to the new owner-only file `to`, durably.
fn copy_private(from: &Path, to: &Path) -> Result<()> {
    let mut source = std::fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut target = create_private_file(to)?;
    std::io::copy(&mut source, &mut target).with_context(|| format!("cannot write {}", to.display()))?;
    target.sync_all()?;
    Ok(())
}

/// The config, the catalog and the policy file (and the logo), under `installation/`.
fn copy_installation_files(config_path: &Path, config: &Config, to: &Path) -> Result<Vec<(String, &'static str)>> {
    let dir = to.join("installation");
    install::create_private_dir(&dir)?;
    let mut sources = vec![config_path.to_path_buf()];
    if config.catalog_path != config_path {
        sources.push(config.catalog_path.clone());
    }
    sources.extend(config.policy.file.clone());
    sources.extend(config.branding.logo.clone());
    let mut out = Vec::new();
    for source in sources {
        let name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let mut relative = format!("installation/{name}");
        let mut n = 1;
        while out.iter().any(|(p, _)| *p == relative) {
            n += 1;
            relative = format!("installation/{n}-{name}");
        }
        copy_private(&source, &to.join(&relative))?;
        out.push((relative, INSTALLATION_FILE));
    }
    Ok(out)
}

/// Size and SHA-256 (hex) of a file, read in pieces.
fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hash = candor_crypto::Sha256::default();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((bytes, candor_crypto::hex(&hash.finish())))
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)?.sync_all().with_context(|| format!("cannot sync {}", path.display()))
}

/// Makes every file and directory under `dir` durable (directories too, so the names are).
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            sync_file(&path)?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all().with_context(|| format!("cannot sync {}", dir.display()))?;
    Ok(())
}

/// The test hook (see [`HOLD_VAR`]); nothing in a release build.
fn hold(step: &str) {
    if !cfg!(debug_assertions) || std::env::var_os(HOLD_VAR).is_none() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "backup: holding: {step}");
    let _ = out.flush();
    drop(out);
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_hashed_in_pieces_as_a_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let expected: String = candor_crypto::sha256_hex(&bytes);
        assert_eq!(hash_file(&path).unwrap(), (bytes.len() as u64, expected));
    }

    #[test]
    fn a_manifest_naming_a_path_outside_the_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let entry =
            |path: &str| FileEntry { path: path.into(), role: DATA_STORE.into(), bytes: 0, sha256: String::new() };
        let manifest = Manifest {
            format: FORMAT.into(),
            candor_version: String::new(),
            created_at: String::new(),
            backend: "sqlite".into(),
            installation_id: String::new(),
            schema: None,
            log: LogState {
                origin: String::new(),
                size: 0,
                root: String::new(),
                checkpoint: String::new(),
                verifier_key: String::new(),
            },
            customers: Customers::default(),
            kek_versions: vec![],
            files: vec![entry("../etc/passwd"), entry("/etc/passwd")],
            contains: String::new(),
            keep_separately: vec![],
        };
        let e = check_files(dir.path(), &manifest).unwrap_err().to_string();
        assert!(e.contains("../etc/passwd: not a path inside the backup"), "{e}");
        assert!(e.contains("/etc/passwd: not a path inside the backup"), "{e}");
        assert!(e.contains("the manifest names no key_store file"), "{e}");
    }
}
