//! Backup and restore of an installation on PostgreSQL: `pg_dump` of Candor's tables and the
//! `candor_keys` schema from one exported snapshot, and `pg_restore` into a new, empty database.
//!
//! A key and its data commit in one transaction on PostgreSQL, so one snapshot of both schemas
//! is a consistent pair. The connection settings reach `pg_dump`/`pg_restore` through the libpq
//! environment (never the command line, where other users could read a password).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use candor_store::postgres::PgStore;

use super::{Copied, Manifest, POSTGRES_DUMP, Restored};

const DUMP_FILE: &str = "database.pgdump";
const DATA_NAME: &str = "the dump's Candor tables";
const KEYS_NAME: &str = "the dump's candor_keys schema";

/// Runs a PostgreSQL client tool, saying what to install when it is missing.
fn run(tool: &str, args: &[&str], env: &[(&'static str, String)]) -> Result<String> {
    let out = Command::new(tool)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run {tool} ({e}): install the PostgreSQL client tools (the server's major version or newer; \
                 Debian: apt-get install postgresql-client)"
            )
        })?;
    if !out.status.success() {
        bail!("{tool} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `pg_dump` of both schemas from one snapshot, checked by listing what the dump holds.
pub(super) async fn dump(url: &str, to: &Path) -> Result<Copied> {
    let store = PgStore::connect(url).await.context("cannot open the PostgreSQL database")?;
    let snapshot = store.backup_snapshot().await?;
    if let Some(problem) = snapshot.report.problem(DATA_NAME, KEYS_NAME) {
        bail!(
            "the installation's data and key store are not a usable pair, so no backup of them would restore: {problem}"
        );
    }
    super::hold("the snapshot is taken; pg_dump is next");
    let file = to.join(DUMP_FILE);
    drop(super::create_private_file(&file)?); // pg_dump writes into it, keeping its mode
    let env = PgStore::libpq_env(url)?;
    let (id, schema) = (snapshot.id.clone(), snapshot.schema.clone());
    let file_arg = file.to_string_lossy().into_owned();
    let dump_env = env.clone();
    let dumped = tokio::task::spawn_blocking(move || {
        run(
            "pg_dump",
            &[
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                "--snapshot",
                &id,
                "--schema",
                &schema,
                "--schema",
                "candor_keys",
                "--file",
                &file_arg,
            ],
            &dump_env,
        )
    })
    .await?;
    let report = snapshot.report.clone();
    let schema = snapshot.schema.clone();
    snapshot.release().await?;
    dumped?;
    super::sync_file(&file)?;
    let listing =
        run("pg_restore", &["--list", &file.to_string_lossy()], &[]).context("the dump cannot be read back")?;
    for (schema, table) in
        [(schema.as_str(), "subjects"), (schema.as_str(), "log_entries"), ("candor_keys", "subject_keys")]
    {
        let wanted = format!("TABLE DATA {schema} {table} ");
        if !listing.lines().any(|l| l.contains(&wanted)) {
            bail!("the dump lacks the data of {schema}.{table}: pg_dump did not dump what it was asked to");
        }
    }
    println!("dumped the database (both schemas, one snapshot) with pg_dump");
    Ok(Copied { files: vec![(DUMP_FILE.into(), POSTGRES_DUMP)], report, keys_left_out: 0, schema: Some(schema) })
}

/// `pg_restore` into the (new, empty) database the config names, then the checks of the pair.
pub(super) async fn restore(
    url: &str,
    from: &Path,
    manifest: &Manifest,
    ring: &candor_crypto::KeyRing,
) -> Result<Restored> {
    let entry = manifest.files.iter().find(|f| f.role == POSTGRES_DUMP).context("the manifest names no dump")?;
    let (holds, schema) = PgStore::holds_an_installation(url)
        .await
        .context("cannot reach the PostgreSQL database named by the config")?;
    if holds {
        bail!(
            "the database the config names already holds a Candor installation. Restore into a new, empty database \
             (`createdb candor_restored`), point `database` (or CANDOR_DATABASE_URL) at it and run `candor restore` \
             again; nothing was changed"
        );
    }
    if manifest.schema.as_deref().is_some_and(|s| s != schema) {
        bail!(
            "the dump's tables are in schema `{}`, but this connection's current schema is `{schema}`: connect as a \
             user whose search_path starts with `{}` (nothing was changed)",
            manifest.schema.as_deref().unwrap_or_default(),
            manifest.schema.as_deref().unwrap_or_default()
        );
    }
    let env = PgStore::libpq_env(url)?;
    let database = env.iter().find(|(k, _)| *k == "PGDATABASE").map(|(_, v)| v.clone()).unwrap_or_default();
    let file = from.join(&entry.path).to_string_lossy().into_owned();
    // The target's own schema exists already (`public` in every new database): everything but
    // its CREATE SCHEMA is restored.
    let listing = run("pg_restore", &["--list", &file], &[]).context("the dump cannot be read")?;
    let mut list = tempfile::NamedTempFile::new()?;
    for line in listing.lines() {
        let own_schema =
            line.contains(&format!(" SCHEMA - {schema} ")) || line.contains(&format!(" COMMENT - SCHEMA {schema} "));
        if !own_schema {
            writeln!(list, "{line}")?;
        }
    }
    list.flush()?;
    let list_path = list.path().to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || {
        run(
            "pg_restore",
            &[
                "--exit-on-error",
                "--single-transaction",
                "--no-owner",
                "--no-privileges",
                "--use-list",
                &list_path,
                "--dbname",
                &database,
                &file,
            ],
            &env,
        )
    })
    .await?
    .context("pg_restore did not restore the dump (the database is left as it was: one transaction)")?;
    drop(list);
    let store = PgStore::connect(url).await.context("the restored database does not open")?;
    let report = store.pair_report().await?;
    super::check_report(&report, manifest, DATA_NAME, KEYS_NAME).map_err(|e| {
        anyhow::anyhow!("{e:#}; the restored database is not usable: drop it and restore into a new one")
    })?;
    super::check_kek(ring, &store.kek_samples().await?)
        .map_err(|e| anyhow::anyhow!("{e:#}; drop the restored database before trying again"))?;
    Ok(Restored { erasures_reapplied: 0, moved_aside: Vec::new() })
}
