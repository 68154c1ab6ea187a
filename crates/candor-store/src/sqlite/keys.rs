//! Key rotation's view of the SQLite key store (`keys.subject_keys`).

use async_trait::async_trait;
use candor_core::{FieldName, StoredDek, SubjectId, WrappedDek};
use rusqlite::params;

use super::{SqliteStore, db_err, parse_subject};
use crate::StoreError;
use crate::keys::{IndexReplacement, KeyRingStore};

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

    async fn index_counts(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT key_version, COUNT(*) FROM blind_index GROUP BY key_version ORDER BY key_version",
                )
                .map_err(db_err)?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u64))).map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
        .await
    }

    async fn index_rows_under(
        &self,
        key_version: u32,
        after: Option<(SubjectId, FieldName)>,
        limit: u32,
    ) -> Result<Vec<(SubjectId, FieldName)>, StoreError> {
        let (after_subject, after_field) = after.map(|(s, f)| (s.to_string(), f.to_string())).unwrap_or_default();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT subject_id, field FROM blind_index
                     WHERE key_version = ?1 AND (subject_id, field) > (?2, ?3)
                     ORDER BY subject_id, field LIMIT ?4",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![key_version, after_subject, after_field, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (subject, field) = row.map_err(db_err)?;
                out.push((parse_subject(&subject)?, FieldName::new(field)));
            }
            Ok(out)
        })
        .await
    }

    async fn replace_index_rows(&self, changes: Vec<IndexReplacement>) -> Result<u64, StoreError> {
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let mut replaced = 0;
            {
                let mut delete = tx
                    .prepare_cached(
                        "DELETE FROM blind_index
                         WHERE field = ?1 AND token = ?2 AND subject_id = ?3 AND key_version = ?4",
                    )
                    .map_err(db_err)?;
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO blind_index (field, token, subject_id, key_version) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT DO NOTHING",
                    )
                    .map_err(db_err)?;
                for ch in &changes {
                    let (field, subject) = (ch.field.as_str(), ch.subject.to_string());
                    let mut gone = 0;
                    for token in &ch.current {
                        gone += delete
                            .execute(params![field, token.as_bytes(), subject, ch.key_version])
                            .map_err(db_err)?;
                    }
                    if gone > 0 {
                        insert
                            .execute(params![field, ch.new.as_bytes(), subject, ch.new.key_version()])
                            .map_err(db_err)?;
                        replaced += 1;
                    }
                }
            }
            tx.commit().map_err(db_err)?;
            Ok(replaced)
        })
        .await
    }
}
