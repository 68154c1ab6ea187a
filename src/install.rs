//! An installation on disk: creating one (`candor init`) and opening one (config -> catalog,
//! keys, store -> a ready [`Vault`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use candor_core::catalog::{ADMIN_ROLE, Catalog, EXAMPLE_CATALOG};
use candor_crypto::kek::{KekProvider, KekUsage, LocalKeks, kek_usage};
use candor_crypto::keyfile::{self, INDEX_LABEL, KEK_LABEL, KeyError};
use candor_crypto::pkcs11::Pkcs11Keks;
use candor_crypto::{KeyRing, LOG_KEY_LABEL, LogSigner};
use candor_policy::{OperatorPolicies, PolicyEngine};
use candor_store::Store;
use candor_store::postgres::PgStore;
use candor_store::sqlite::SqliteStore;
use zeroize::Zeroizing;

use crate::config::{self, Config, Database, Pkcs11Settings};
use crate::vault::Vault;
use crate::vault::audit::LogContext;

/// Environment variables that, when set, replace the key files.
pub const KEK_ENV: &str = "CANDOR_KEK";
pub const INDEX_KEY_ENV: &str = "CANDOR_INDEX_KEY";
pub const LOG_KEY_ENV: &str = "CANDOR_LOG_KEY";

/// Reads and validates the catalog the config points at.
pub fn load_catalog(config: &Config) -> Result<Catalog> {
    let path = &config.catalog_path;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the catalog {}", path.display()))?;
    Catalog::from_toml_str(&text, &path.display().to_string()).map_err(|errors| {
        let n = errors.errors.len();
        anyhow::anyhow!(
            "{errors}\nthe catalog has {n} problem{}; fix {} and try again",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        )
    })
}

/// Builds the policy engine: the catalog's rules plus the operator's policy file, if the
/// config names one (validated against Candor's schema; errors say file:line:column).
pub fn load_policy(config: &Config, catalog: &Catalog) -> Result<PolicyEngine> {
    let Some(path) = &config.policy.file else {
        return PolicyEngine::new(catalog, None).map_err(|e| anyhow::anyhow!("{e}"));
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the policy file {}", path.display()))?;
    let name = path.display().to_string();
    PolicyEngine::new(catalog, Some(OperatorPolicies { source_name: &name, text: &text })).map_err(|errors| {
        let n = errors.errors.len();
        anyhow::anyhow!(
            "{errors}\nthe policy file has {n} problem{}; fix {} and try again",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        )
    })
}

/// The HSM user PIN, when the key-encryption keys are in a PKCS#11 token and the PIN is not in
/// the PIN file.
pub const HSM_PIN_ENV: &str = "CANDOR_HSM_PIN";

/// Loads the key ring: KEKs from the environment (if set) or the owner-only key file, or from
/// the HSM (plus any older versions still in the key file while moving to it); the blind-index
/// key from the environment or its file.
pub fn load_keys(config: &Config) -> Result<KeyRing> {
    let index = key_text(INDEX_KEY_ENV, &config.keys.index_key_file, INDEX_LABEL)?;
    let Some(hsm) = &config.keys.pkcs11 else {
        let kek = key_text(KEK_ENV, &config.keys.kek_file, KEK_LABEL)?;
        return Ok(KeyRing::with_providers(vec![Arc::new(LocalKeks::new(&kek, &kek_origin(config)))], index)?);
    };
    let mut providers: Vec<Arc<dyn KekProvider>> = Vec::new();
    if std::env::var_os(KEK_ENV).is_some() || config.keys.kek_file.exists() {
        match key_text(KEK_ENV, &config.keys.kek_file, KEK_LABEL) {
            Ok(kek) => providers.push(Arc::new(LocalKeks::new(&kek, &kek_origin(config)))),
            // Every file version retired: the HSM alone holds the KEKs.
            Err(e) if matches!(e.downcast_ref::<KeyError>(), Some(KeyError::Empty { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    let token = open_hsm(hsm)?;
    if token.versions().is_empty() && providers.is_empty() {
        bail!(
            "PKCS#11 token `{}` holds no key-encryption key yet: run `candor keys rotate` to generate the first \
             one inside it",
            hsm.token_label
        );
    }
    providers.push(Arc::new(token));
    Ok(KeyRing::with_providers(providers, index)?)
}

/// Data keys the primary KEK has wrapped: those stored under it, plus tombstones of erased
/// customers whose version was not kept (older installations), counted against it to be safe.
pub async fn primary_wraps(store: &dyn Store, primary: u32) -> Result<u64> {
    Ok(store.kek_wraps().await?.iter().filter(|(v, _)| *v == primary || *v == 0).map(|(_, n)| n).sum())
}

/// Gives the ring its primary KEK's use so far (data keys stored under it) and its limit, so it
/// stops wrapping before the nonce budget runs out; says so loudly when that is near.
pub async fn with_wrap_budget(ring: KeyRing, store: &dyn Store, limit: u64) -> Result<KeyRing> {
    let primary = ring.primary_kek_version();
    let used = primary_wraps(store, primary).await?;
    match kek_usage(used, limit) {
        KekUsage::Fine => {}
        KekUsage::RotateSoon => tracing::warn!(
            kek_version = primary,
            used,
            limit,
            "the primary key-encryption key has used half its wrapping budget: plan `candor keys rotate`"
        ),
        KekUsage::Exhausted => tracing::error!(
            kek_version = primary,
            used,
            limit,
            "the primary key-encryption key has used its wrapping budget: new customers are refused until \
             `candor keys rotate` and a restart"
        ),
    }
    Ok(ring.with_wrap_budget(used, limit))
}

/// Where file KEKs come from, for messages.
fn kek_origin(config: &Config) -> String {
    if std::env::var_os(KEK_ENV).is_some() { KEK_ENV.to_string() } else { config.keys.kek_file.display().to_string() }
}

/// Opens the PKCS#11 token with the PIN from `CANDOR_HSM_PIN` or the owner-only PIN file.
pub fn open_hsm(settings: &Pkcs11Settings) -> Result<Pkcs11Keks> {
    let pin = match std::env::var(HSM_PIN_ENV) {
        Ok(pin) => Zeroizing::new(pin),
        Err(_) => keyfile::read_secret_file(&settings.pin_file).with_context(|| {
            format!("cannot read the HSM PIN (set {HSM_PIN_ENV} or write it to {})", settings.pin_file.display())
        })?,
    };
    Ok(Pkcs11Keks::open(&settings.module, &settings.token_label, &pin)?)
}

fn key_text(var: &str, file: &Path, label: &'static str) -> Result<Vec<keyfile::KeyMaterial>> {
    match std::env::var(var) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            Ok(keyfile::parse_keys(&text, label, var)?)
        }
        Err(_) => Ok(keyfile::read_key_file(file, label)?),
    }
}

/// Loads the log's signing key. An installation created before the log existed gets one
/// generated (owner-only) on first start.
pub fn load_log_signer(config: &Config) -> Result<LogSigner> {
    let file = &config.log.signing_key_file;
    if std::env::var(LOG_KEY_ENV).is_err() && !file.exists() {
        keyfile::create_key_file(file, LOG_KEY_LABEL, LOG_KEY_COMMENT)?;
        tracing::warn!(path = %file.display(), "generated a log signing key for this installation");
    }
    Ok(LogSigner::new(&key_text(LOG_KEY_ENV, file, LOG_KEY_LABEL)?)?)
}

const LOG_KEY_COMMENT: &str = "Candor log signing key (Ed25519 seed): signs the tamper-evident log's checkpoints.\nKeep it secret; publish only the verifier key (GET /v1/log/key).";

pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    match &config.database {
        Database::Sqlite(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let store = SqliteStore::open(path.clone(), config.keys.key_store.clone())
                .await
                .with_context(|| format!("cannot open the database {}", path.display()))?;
            Ok(Arc::new(store))
        }
        Database::Postgres(url) => {
            let store = PgStore::connect(url).await.context("cannot open the PostgreSQL database")?;
            Ok(Arc::new(store))
        }
    }
}

/// Opens an installation: config, catalog, keys and store, checked in that order. Erasures a
/// crash interrupted are completed before anything else is done with the store.
pub async fn open(config_path: &Path) -> Result<(Config, Vault)> {
    let (config, vault, catalog_hash) = assemble(config_path).await?;
    complete_erasures(&vault).await?;
    vault.note_catalog(&catalog_hash).await?;
    vault.publish_notice().await?;
    Ok((config, vault))
}

/// `candor migrate`: applies the migrations, then completes the erasures a crash interrupted
/// (opening the whole installation only when there are some). Returns how many it completed.
pub async fn migrate(config_path: &Path) -> Result<usize> {
    let config = Config::load(config_path)?;
    let store = open_store(&config).await?;
    if store.pending_erasures().await?.is_empty() {
        return Ok(0);
    }
    drop(store);
    let (_, vault, _) = assemble(config_path).await?;
    complete_erasures(&vault).await
}

async fn complete_erasures(vault: &Vault) -> Result<usize> {
    let completed = vault.complete_pending_erasures().await.context("cannot complete interrupted erasures")?;
    if completed > 0 {
        tracing::warn!(completed, "completed erasures interrupted by a crash");
    }
    Ok(completed)
}

/// The vault of an installation, and its catalog's hash (not yet noted).
async fn assemble(config_path: &Path) -> Result<(Config, Vault, String)> {
    let config = Config::load(config_path)?;
    let catalog = load_catalog(&config)?;
    let policy = load_policy(&config, &catalog)?;
    let catalog_hash = candor_crypto::sha256_hex(&std::fs::read(&config.catalog_path)?);
    let keys = load_keys(&config)?;
    let signer = load_log_signer(&config)?;
    let store = open_store(&config).await?;
    let keys = with_wrap_budget(keys, store.as_ref(), config.keys.kek_wrap_limit)
        .await?
        .with_dek_cache(Duration::from_secs(config.keys.dek_cache_seconds), config.keys.dek_cache_entries);
    let log = Arc::new(LogContext::new(&config.log.origin, signer));
    let vault = Vault::new(Arc::new(catalog), Arc::new(policy), Arc::new(keys), store, log)
        .with_break_glass_minutes(config.policy.break_glass_minutes)
        .with_erasures_per_hour(config.policy.erasures_per_hour)
        .with_restrictions_per_hour(config.policy.restrictions_per_hour)
        .with_sign_in(config.sign_in.settings.clone())
        .with_max_grant_days(config.max_grant_days);
    Ok((config, vault, catalog_hash))
}

pub struct Initialised {
    pub config_path: PathBuf,
    pub admin_token: Zeroizing<String>,
}

/// Creates a working installation in `dir`: config, example catalog, keys (owner-only),
/// database and an admin token. Refuses to touch an existing installation.
pub async fn init(dir: &Path, database: Option<&str>) -> Result<Initialised> {
    let config_path = dir.join(config::DEFAULT_CONFIG);
    if config_path.exists() {
        bail!(
            "{} already exists: this directory holds an installation. Refusing to overwrite it (its keys protect its data)",
            config_path.display()
        );
    }
    // Everything init creates is the owner's only: the directory (when init makes it), the key
    // and data directories (0700), and every file (0600; SQLite's -wal and -shm follow the
    // database file's mode). The config may hold a database password.
    create_private_dir(dir)?;
    let keys_dir = dir.join("keys");
    create_private_dir(&keys_dir)?;
    if database.is_none() {
        create_private_dir(&dir.join("data"))?;
    }
    keyfile::create_key_file(
        &keys_dir.join("kek.key"),
        KEK_LABEL,
        "Candor key-encryption keys. Losing this file makes all data unreadable; back it up\nseparately from the database, and keep it readable only by the Candor user.",
    )?;
    keyfile::create_key_file(
        &keys_dir.join("index.key"),
        INDEX_LABEL,
        "Candor blind-index key (exact-match lookups). Keep it secret and readable only by the owner.",
    )?;
    keyfile::create_key_file(&keys_dir.join("log.key"), LOG_KEY_LABEL, LOG_KEY_COMMENT)?;
    write_new(&dir.join("catalog.toml"), EXAMPLE_CATALOG)?;
    let origin = format!("candor.invalid/{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    write_new(&config_path, &config::initial_config_text(&origin, database.unwrap_or("data/candor.db")))?;
    let (_, vault) = open(&config_path).await?;
    let admin_token = vault.create_token(ADMIN_ROLE, "created by candor init", None).await?;
    Ok(Initialised { config_path, admin_token })
}

pub(crate) fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Creates `path` (and missing parents) with mode 0700; an existing directory is left as it is.
pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// What a server of this installation needs beyond its vault, from its config (reads the
/// recipients' webhook secrets).
pub fn http_settings(config: &Config) -> Result<candor_http::Settings> {
    Ok(candor_http::Settings {
        max_body_bytes: config.max_body_bytes,
        branding: config.branding.clone(),
        sign_in: config.sign_in.clone(),
        webhook_secrets: crate::outbox::load_secrets(&config.webhooks)?,
        trusted_proxies: config.trusted_proxies.clone(),
        record_callers: config.log.caller_address_days > 0,
        limits: config.limits,
        staff: config.staff.clone(),
        witnesses: config.log.witnesses.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn init_creates_a_working_installation_and_refuses_to_run_twice() {
        let dir = tempfile::tempdir().unwrap();
        let done = init(dir.path(), None).await.unwrap();
        assert!(done.admin_token.starts_with("cnd_"));
        let (config, vault) = open(&done.config_path).await.unwrap();
        assert_eq!(vault.authenticate(&done.admin_token).await.unwrap().role, ADMIN_ROLE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            for file in [
                config.keys.kek_file.clone(),
                config.keys.key_store.clone(),
                done.config_path.clone(),
                dir.path().join("catalog.toml"),
                dir.path().join("data/candor.db"),
            ] {
                assert_eq!(mode(&file), 0o600, "{} is owner-only", file.display());
            }
            for wal in ["data/candor.db-wal", "data/candor.db-shm"] {
                let path = dir.path().join(wal);
                if path.exists() {
                    assert_eq!(mode(&path), 0o600, "{wal} follows the database file's mode");
                }
            }
            for d in ["keys", "data"] {
                assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}/ is owner-only");
            }
        }
        let again = init(dir.path(), None).await.err().unwrap().to_string();
        assert!(again.contains("Refusing to overwrite"), "{again}");
    }

    #[tokio::test]
    async fn an_invalid_catalog_stops_the_installation_from_opening_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let done = init(dir.path(), None).await.unwrap();
        let catalog = dir.path().join("catalog.toml");
        let text =
            std::fs::read_to_string(&catalog).unwrap().replace("legal_basis = \"contract\"", "legal_basis = \"whim\"");
        std::fs::write(&catalog, text).unwrap();
        let e = open(&done.config_path).await.err().unwrap().to_string();
        assert!(e.contains("catalog.toml:21:1") || e.contains("catalog.toml:2"), "{e}");
        assert!(e.contains("legal_basis `whim` is not known"), "{e}");
    }
}
