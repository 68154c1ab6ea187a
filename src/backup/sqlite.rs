//! Backup and restore of an installation on SQLite: two files, the data store and the key store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use candor_core::{StoredDek, SubjectId, WrappedDek};
use candor_store::keys::PairReport;
use candor_store::sqlite::SqliteStore;
use rusqlite::{Connection, OpenFlags, params};

use super::{Copied, DATA_STORE, KEY_STORE, Manifest, Restored};

/// Where the two stores go in a backup.
const DATA_FILE: &str = "data/candor.db";
const KEYS_FILE: &str = "keys/keystore.db";

/// How long a copy waits for a lock the server holds for a moment (a checkpoint, a commit).
const BUSY: Duration = Duration::from_secs(60);

fn sql_err(what: &str) -> impl Fn(rusqlite::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{what}: {e}")
}

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

    let conn = open_pair(&data_copy, &keys_copy, false)?;
    // Nothing reads the copies until the manifest exists, so their rollback journal stays in
    // memory: no journal file keeps the bytes of the keys removed below.
    for schema in ["main", "keys"] {
        conn.pragma_update(Some(schema), "journal_mode", "MEMORY").map_err(sql_err("the copy"))?;
        conn.pragma_update(Some(schema), "secure_delete", "ON").map_err(sql_err("the copy"))?;
    }
    integrity(&conn, "main", DATA_FILE)?;
    integrity(&conn, "keys", KEYS_FILE)?;
    // Keys whose customer is not in the data copy (created while the backup ran, or left unused
    // by a crash) are of no use to it.
    let left_out = conn
        .execute(
            "DELETE FROM keys.subject_keys WHERE destroyed_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM main.subjects s WHERE s.id = subject_keys.subject_id)",
            [],
        )
        .map_err(sql_err("trimming the key store copy"))? as u64;
    let report = SqliteStore::pair_report(&conn)?;
    if let Some(problem) = report.problem(DATA_FILE, KEYS_FILE) {
        bail!(
            "the installation's stores are not a usable pair, so no backup of them would restore: {problem}. Stop \
             the server and keep a plain copy of both files to investigate"
        );
    }
    for schema in ["main", "keys"] {
        conn.pragma_update(Some(schema), "journal_mode", "DELETE").map_err(sql_err("the copy"))?;
    }
    drop(conn);
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
    let conn = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sql_err("cannot open it"))?;
    conn.busy_timeout(BUSY).map_err(sql_err("cannot open it"))?;
    conn.execute("VACUUM main INTO ?1", params![to.to_string_lossy()]).map_err(sql_err("VACUUM INTO"))?;
    drop(conn);
    super::sync_file(to)
}

/// A connection with `data` as `main` and `keys` attached as `keys`.
fn open_pair(data: &Path, keys: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only { OpenFlags::SQLITE_OPEN_READ_ONLY } else { OpenFlags::SQLITE_OPEN_READ_WRITE };
    let conn = Connection::open_with_flags(data, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sql_err(&format!("cannot open {}", data.display())))?;
    conn.execute("ATTACH DATABASE ?1 AS keys", params![keys.to_string_lossy()])
        .map_err(sql_err(&format!("cannot open {}", keys.display())))?;
    Ok(conn)
}

/// SQLite's own check of a file's structure.
fn integrity(conn: &Connection, schema: &str, name: &str) -> Result<()> {
    let result: Vec<String> = conn
        .prepare(&format!("PRAGMA {schema}.quick_check"))
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| anyhow::anyhow!("{name} is damaged: {e}"))?;
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
        let conn = open_pair(&data_copy, &keys_copy, true)?;
        integrity(&conn, "main", data_name)?;
        integrity(&conn, "keys", keys_name)?;
        let report = SqliteStore::pair_report(&conn)?;
        super::check_report(&report, manifest, data_name, keys_name)?;
        super::check_kek(ring, &kek_samples(&conn, &report)?)?;
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
            if in_use(path)? {
                bail!(
                    "{} is open in another process (a running server or command): stop it first. Nothing was changed",
                    path.display()
                );
            }
        }
        if present(&target.data) {
            check_same_installation(&target.data, "SELECT value FROM meta WHERE key = 'key_store_id'", manifest)?;
        }
        if present(&target.keys) {
            check_same_installation(&target.keys, "SELECT value FROM key_store_meta WHERE key = 'id'", manifest)?;
            erasures = destroyed_keys(&target.keys)?;
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

/// One live data key per KEK version in the backup, to open with the installation's KEKs.
fn kek_samples(conn: &Connection, report: &PairReport) -> Result<Vec<(SubjectId, StoredDek)>> {
    let mut out = Vec::new();
    for version in &report.kek_versions {
        let row: (String, i64, Vec<u8>) = conn
            .query_row(
                "SELECT subject_id, dek_version, wrapped_dek FROM keys.subject_keys
                 WHERE destroyed_at IS NULL AND kek_version = ?1 LIMIT 1",
                params![version],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(sql_err("reading the key store copy"))?;
        let subject = SubjectId::parse(&row.0).context("a subject id in the key store is not a UUID")?;
        let dek =
            StoredDek { kek_version: *version, dek_version: row.1 as u32, wrapped: WrappedDek::from_bytes(row.2) };
        out.push((subject, dek));
    }
    Ok(out)
}

/// Whether a process holds the SQLite file open (a server keeps a lock on it while it runs).
fn in_use(path: &Path) -> Result<bool> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sql_err(&format!("cannot open {}", path.display())))?;
    conn.busy_timeout(Duration::ZERO).map_err(sql_err("busy timeout"))?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(sql_err("locking mode"))?;
    Ok(conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;").is_err())
}

/// Refuses to replace another installation's file.
fn check_same_installation(path: &Path, sql: &str, manifest: &Manifest) -> Result<()> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sql_err(&format!("cannot open {}", path.display())))?;
    let id: Option<String> = conn.query_row(sql, [], |r| r.get(0)).ok();
    match id {
        Some(id) if id != manifest.installation_id => bail!(
            "{} belongs to installation {id}, not to installation {} this backup is of: restore into that \
             installation's place, or move this file away yourself. Nothing was changed",
            path.display(),
            manifest.installation_id
        ),
        _ => Ok(()),
    }
}

/// Customers whose key the key store at `path` has destroyed: (id, when, KEK version).
fn destroyed_keys(path: &Path) -> Result<Vec<(String, i64, Option<i64>)>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sql_err(&format!("cannot open {}", path.display())))?;
    let mut stmt = conn
        .prepare("SELECT subject_id, destroyed_at, kek_version FROM subject_keys WHERE destroyed_at IS NOT NULL")
        .map_err(sql_err("reading the current key store"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sql_err("reading the current key store"))?;
    rows.collect::<Result<_, _>>().map_err(sql_err("reading the current key store"))
}

/// Destroys, in the staged key store, the keys the replaced key store had destroyed (erasures made
/// after the backup). Returns how many it destroyed.
fn apply_erasures(keys: &Path, erasures: &[(String, i64, Option<i64>)]) -> Result<u64> {
    if erasures.is_empty() {
        return Ok(0);
    }
    let mut conn = Connection::open_with_flags(keys, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(sql_err(&format!("cannot open {}", keys.display())))?;
    // The staged file is not in place yet; its journal stays in memory so no journal file keeps
    // the destroyed keys' bytes, and secure_delete overwrites them in the file.
    conn.pragma_update(None, "journal_mode", "MEMORY").map_err(sql_err("journal mode"))?;
    conn.pragma_update(None, "secure_delete", "ON").map_err(sql_err("secure delete"))?;
    let tx = conn.transaction().map_err(sql_err("erasures"))?;
    let mut destroyed = 0;
    {
        let mut stmt = tx
            .prepare(
                "UPDATE subject_keys SET wrapped_dek = NULL, destroyed_at = ?2, kek_version = COALESCE(kek_version, ?3)
                 WHERE subject_id = ?1 AND destroyed_at IS NULL",
            )
            .map_err(sql_err("erasures"))?;
        for (id, at, kek) in erasures {
            destroyed += stmt.execute(params![id, at, kek]).map_err(sql_err("erasures"))? as u64;
        }
    }
    tx.commit().map_err(sql_err("erasures"))?;
    conn.pragma_update(None, "journal_mode", "DELETE").map_err(sql_err("journal mode"))?;
    drop(conn);
    super::sync_file(keys)?;
    Ok(destroyed)
}
