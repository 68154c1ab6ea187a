//! Key rotation's view of the PostgreSQL key store (`candor_keys.subject_keys`).

use async_trait::async_trait;
use candor_core::{FieldName, StoredDek, SubjectId, WrappedDek};

use super::{PgStore, pg_err, subject_of};
use crate::StoreError;
use crate::keys::{IndexReplacement, KeyRingStore};

impl PgStore {
    /// Data keys per KEK version (those `filter` keeps), oldest version first.
    async fn count_by_kek(&self, filter: &str) -> Result<Vec<(u32, u64)>, StoreError> {
        let sql = format!(
            "SELECT COALESCE(kek_version, 0) AS v, COUNT(*) FROM candor_keys.subject_keys {filter} GROUP BY v ORDER BY v"
        );
        let rows = self.client().await?.query(&sql, &[]).await.map_err(pg_err)?;
        Ok(rows.iter().map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, i64>(1) as u64)).collect())
    }
}

#[async_trait]
impl KeyRingStore for PgStore {
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
        let rows = self
            .client()
            .await?
            .query(
                "SELECT subject_id, kek_version, dek_version, wrapped_dek FROM candor_keys.subject_keys
                 WHERE destroyed_at IS NULL AND kek_version <> $1 AND subject_id > $2 ORDER BY subject_id LIMIT $3",
                &[&(kek_version as i32), &after, &i64::from(limit)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let stored = StoredDek {
                    kek_version: r.get::<_, i32>(1) as u32,
                    dek_version: r.get::<_, i32>(2) as u32,
                    wrapped: WrappedDek::from_bytes(r.get(3)),
                };
                Ok((subject_of(r.get(0))?, stored))
            })
            .collect()
    }

    async fn replace_deks(&self, changes: Vec<(SubjectId, StoredDek, StoredDek)>) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let stmt = tx
            .prepare(
                "UPDATE candor_keys.subject_keys SET kek_version = $2, dek_version = $3, wrapped_dek = $4
                 WHERE subject_id = $1 AND destroyed_at IS NULL AND kek_version = $5 AND wrapped_dek = $6",
            )
            .await
            .map_err(pg_err)?;
        let mut replaced = 0;
        for (subject, old, new) in &changes {
            replaced += tx
                .execute(
                    &stmt,
                    &[
                        &subject.to_string(),
                        &(new.kek_version as i32),
                        &(new.dek_version as i32),
                        &new.wrapped.as_bytes(),
                        &(old.kek_version as i32),
                        &old.wrapped.as_bytes(),
                    ],
                )
                .await
                .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(replaced)
    }

    async fn index_counts(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query("SELECT key_version, COUNT(*) FROM blind_index GROUP BY key_version ORDER BY key_version", &[])
            .await
            .map_err(pg_err)?;
        Ok(rows.iter().map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, i64>(1) as u64)).collect())
    }

    async fn index_rows_under(
        &self,
        key_version: u32,
        after: Option<(SubjectId, FieldName)>,
        limit: u32,
    ) -> Result<Vec<(SubjectId, FieldName)>, StoreError> {
        let (after_subject, after_field) = after.map(|(s, f)| (s.to_string(), f.to_string())).unwrap_or_default();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT subject_id, field FROM blind_index
                 WHERE key_version = $1 AND (subject_id, field) > ($2, $3)
                 ORDER BY subject_id, field LIMIT $4",
                &[&(key_version as i32), &after_subject, &after_field, &i64::from(limit)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(|r| Ok((subject_of(r.get(0))?, FieldName::new(r.get::<_, String>(1))))).collect()
    }

    async fn replace_index_rows(&self, changes: Vec<IndexReplacement>) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let delete = tx
            .prepare(
                "DELETE FROM blind_index
                 WHERE field = $1 AND token = ANY($2) AND subject_id = $3 AND key_version = $4",
            )
            .await
            .map_err(pg_err)?;
        let insert = tx
            .prepare(
                "INSERT INTO blind_index (field, token, subject_id, key_version) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(pg_err)?;
        let mut replaced = 0;
        for ch in &changes {
            let (field, subject) = (ch.field.as_str(), ch.subject.to_string());
            let current: Vec<&[u8]> = ch.current.iter().map(|t| t.as_bytes()).collect();
            let gone =
                tx.execute(&delete, &[&field, &current, &subject, &(ch.key_version as i32)]).await.map_err(pg_err)?;
            if gone > 0 {
                tx.execute(&insert, &[&field, &ch.new.as_bytes(), &subject, &(ch.new.key_version() as i32)])
                    .await
                    .map_err(pg_err)?;
                replaced += 1;
            }
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(replaced)
    }
}
