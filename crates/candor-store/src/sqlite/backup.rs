//! The SQL of `candor backup` and `candor restore` on SQLite: file-level operations on an
//! installation's two files (the data store and the key store), kept here so that no SQL is
//! written outside this crate. The binary's `backup` module decides what to copy where, in
//! which order, and what to tell the operator; this module only reads and writes the files.

use std::path::Path;
use std::time::Duration;

use candor_core::{StoredDek, SubjectId, WrappedDek};
use rusqlite::{Connection, OpenFlags, params};

use super::SqliteStore;
use crate::StoreError;
use crate::keys::PairReport;

fn failed(what: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Internal(format!("{what}: {e}"))
}

/// One read snapshot of the database at `source` written to `to` (which must exist, empty and
/// owner-only: the caller creates it). In WAL mode this neither blocks a running server's
/// writes nor restarts when they happen; it waits up to `busy` for a momentary lock.
pub fn vacuum_into(source: &Path, to: &Path, busy: Duration) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(failed("cannot open it"))?;
    conn.busy_timeout(busy).map_err(failed("cannot open it"))?;
    conn.execute("VACUUM main INTO ?1", params![to.to_string_lossy()]).map_err(failed("VACUUM INTO"))?;
    Ok(())
}

/// Which of the two stores a schema of a [`Pair`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The data store (`main`).
    Data,
    /// The key store (attached as `keys`).
    Keys,
}

impl Part {
    fn schema(self) -> &'static str {
        match self {
            Part::Data => "main",
            Part::Keys => "keys",
        }
    }
}

/// A data store and its key store opened together (a backup's copies, or a backup to restore).
pub struct Pair(Connection);

impl Pair {
    /// Opens `data` with `keys` attached.
    pub fn open(data: &Path, keys: &Path, read_only: bool) -> Result<Self, StoreError> {
        let flags = if read_only { OpenFlags::SQLITE_OPEN_READ_ONLY } else { OpenFlags::SQLITE_OPEN_READ_WRITE };
        let conn = Connection::open_with_flags(data, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(failed(&format!("cannot open {}", data.display())))?;
        conn.execute("ATTACH DATABASE ?1 AS keys", params![keys.to_string_lossy()])
            .map_err(failed(&format!("cannot open {}", keys.display())))?;
        Ok(Self(conn))
    }

    /// While `private`, both files keep their rollback journal in memory (no journal file keeps
    /// the bytes of rows deleted meanwhile) and overwrite deleted rows; afterwards the journal
    /// is a file again, as SQLite's default.
    pub fn private_journal(&self, private: bool) -> Result<(), StoreError> {
        for part in [Part::Data, Part::Keys] {
            let schema = Some(part.schema());
            if private {
                self.0.pragma_update(schema, "journal_mode", "MEMORY").map_err(failed("the copy"))?;
                self.0.pragma_update(schema, "secure_delete", "ON").map_err(failed("the copy"))?;
            } else {
                self.0.pragma_update(schema, "journal_mode", "DELETE").map_err(failed("the copy"))?;
            }
        }
        Ok(())
    }

    /// SQLite's own check of one file's structure: `["ok"]`, or the problems it found.
    pub fn quick_check(&self, part: Part) -> Result<Vec<String>, StoreError> {
        self.0
            .prepare(&format!("PRAGMA {}.quick_check", part.schema()))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Removes the live keys whose customer is not in the data store (created after the data
    /// was copied, or left unused by a crash). Returns how many.
    pub fn trim_unused_keys(&self) -> Result<u64, StoreError> {
        let removed = self
            .0
            .execute(
                "DELETE FROM keys.subject_keys WHERE destroyed_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM main.subjects s WHERE s.id = subject_keys.subject_id)",
                [],
            )
            .map_err(failed("trimming the key store copy"))?;
        Ok(removed as u64)
    }

    /// Whether the two files make a pair, and what they hold.
    pub fn report(&self) -> Result<PairReport, StoreError> {
        SqliteStore::pair_report(&self.0)
    }

    /// One live data key per KEK version the report names, to open with an installation's KEKs.
    pub fn kek_samples(&self, report: &PairReport) -> Result<Vec<(SubjectId, StoredDek)>, StoreError> {
        let mut out = Vec::new();
        for version in &report.kek_versions {
            let row: (String, i64, Vec<u8>) = self
                .0
                .query_row(
                    "SELECT subject_id, dek_version, wrapped_dek FROM keys.subject_keys
                     WHERE destroyed_at IS NULL AND kek_version = ?1 LIMIT 1",
                    params![version],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(failed("reading the key store copy"))?;
            let subject = SubjectId::parse(&row.0)
                .ok_or_else(|| StoreError::Corrupt("a subject id in the key store is not a UUID".into()))?;
            let dek =
                StoredDek { kek_version: *version, dek_version: row.1 as u32, wrapped: WrappedDek::from_bytes(row.2) };
            out.push((subject, dek));
        }
        Ok(out)
    }
}

/// Whether a process holds the SQLite file at `path` open (a server keeps a lock on it while it
/// runs).
pub fn in_use(path: &Path) -> Result<bool, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(failed(&format!("cannot open {}", path.display())))?;
    conn.busy_timeout(Duration::ZERO).map_err(failed("busy timeout"))?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(failed("locking mode"))?;
    Ok(conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;").is_err())
}

/// The installation a store file belongs to (the key store's id, which the data store records
/// too), if it says.
pub fn installation_of(path: &Path, part: Part) -> Result<Option<String>, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(failed(&format!("cannot open {}", path.display())))?;
    let sql = match part {
        Part::Data => "SELECT value FROM meta WHERE key = 'key_store_id'",
        Part::Keys => "SELECT value FROM key_store_meta WHERE key = 'id'",
    };
    Ok(conn.query_row(sql, [], |r| r.get(0)).ok())
}

/// A customer whose key a key store has destroyed (an erasure): id, when, KEK version.
pub type DestroyedKey = (String, i64, Option<i64>);

/// The customers whose key the key store at `path` has destroyed.
pub fn destroyed_keys(path: &Path) -> Result<Vec<DestroyedKey>, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(failed(&format!("cannot open {}", path.display())))?;
    let mut stmt = conn
        .prepare("SELECT subject_id, destroyed_at, kek_version FROM subject_keys WHERE destroyed_at IS NOT NULL")
        .map_err(failed("reading the current key store"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(failed("reading the current key store"))?;
    rows.collect::<Result<_, _>>().map_err(failed("reading the current key store"))
}

/// Destroys, in the key store at `keys` (a staged file, not yet in place), the keys `erasures`
/// name, in one transaction, with the journal in memory and deleted bytes overwritten. Returns
/// how many it destroyed.
pub fn apply_erasures(keys: &Path, erasures: &[DestroyedKey]) -> Result<u64, StoreError> {
    let mut conn = Connection::open_with_flags(keys, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(failed(&format!("cannot open {}", keys.display())))?;
    conn.pragma_update(None, "journal_mode", "MEMORY").map_err(failed("journal mode"))?;
    conn.pragma_update(None, "secure_delete", "ON").map_err(failed("secure delete"))?;
    let tx = conn.transaction().map_err(failed("erasures"))?;
    let mut destroyed = 0;
    {
        let mut stmt = tx
            .prepare(
                "UPDATE subject_keys SET wrapped_dek = NULL, destroyed_at = ?2, kek_version = COALESCE(kek_version, ?3)
                 WHERE subject_id = ?1 AND destroyed_at IS NULL",
            )
            .map_err(failed("erasures"))?;
        for (id, at, kek) in erasures {
            destroyed += stmt.execute(params![id, at, kek]).map_err(failed("erasures"))? as u64;
        }
    }
    tx.commit().map_err(failed("erasures"))?;
    conn.pragma_update(None, "journal_mode", "DELETE").map_err(failed("journal mode"))?;
    Ok(destroyed)
}
