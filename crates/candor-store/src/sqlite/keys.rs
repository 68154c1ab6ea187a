//! Key rotation's view of the SQLite key store (`keys.subject_keys`).

use async_trait::async_trait;
use candor_core::{StoredDek, SubjectId, WrappedDek};
use rusqlite::params;

use super::{SqliteStore, db_err, parse_subject};
use crate::StoreError;
use crate::keys::KeyRingStore;

impl SqliteStore {
    /// Data keys per KEK version (those `filter` keeps), oldest version first.
    async fn count_by_kek(&self, filter: &'static str) -> Result<Vec<(u32, u64)>, StoreError> {
        self.read(move |c| {
            let sql = format!(
                "SELECT COALESCE(kek_version, 0) AS v, COUNT(*) FROM keys.subject_keys {filter} GROUP BY v ORDER BY v"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(db_err)?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u64))).map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
        .await
    }
}

#[async_trait]
impl KeyRingStore for SqliteStore {
    async fn dek_counts(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        self.count_by_kek("WHERE destroyed_at IS NULL").await
    }

    async fn kek_wraps(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        self.count_by_kek("").await
    }

    async fn deks_not_under(
        &self,
        kek_version: u32,
        after: Option<SubjectId>,
        limit: u32,
    ) -> Result<Vec<(SubjectId, StoredDek)>, StoreError> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT subject_id, kek_version, dek_version, wrapped_dek FROM keys.subject_keys
                     WHERE destroyed_at IS NULL AND kek_version <> ?1 AND subject_id > ?2 ORDER BY subject_id LIMIT ?3",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![kek_version, after, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, Vec<u8>>(3)?))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, kek, dek, wrapped) = row.map_err(db_err)?;
                let stored = StoredDek {
                    kek_version: kek as u32,
                    dek_version: dek as u32,
                    wrapped: WrappedDek::from_bytes(wrapped),
                };
                out.push((parse_subject(&id)?, stored));
            }
            Ok(out)
        })
        .await
    }

    async fn replace_deks(&self, changes: Vec<(SubjectId, StoredDek, StoredDek)>) -> Result<u64, StoreError> {
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let mut replaced = 0;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE keys.subject_keys SET kek_version = ?2, dek_version = ?3, wrapped_dek = ?4
                         WHERE subject_id = ?1 AND destroyed_at IS NULL AND kek_version = ?5 AND wrapped_dek = ?6",
                    )
                    .map_err(db_err)?;
                for (subject, old, new) in &changes {
                    replaced += stmt
                        .execute(params![
                            subject.to_string(),
                            new.kek_version,
                            new.dek_version,
                            new.wrapped.as_bytes(),
                            old.kek_version,
                            old.wrapped.as_bytes()
                        ])
                        .map_err(db_err)? as u64;
                }
            }
            tx.commit().map_err(db_err)?;
            Ok(replaced)
        })
        .await
    }
}
