//! Key rotation's reads and writes ([`KeyRingStore`](crate::keys::KeyRingStore)). The key store
//! is `keys.subject_keys` on SQLite (an attached file) and `candor_keys.subject_keys` on
//! PostgreSQL (a schema); preparing and checking it at start stays with each backend.

use candor_core::{FieldName, StoredDek, SubjectId, WrappedDek};

use super::{Arg, Exec, Sql, args, sql};
use crate::StoreError;
use crate::keys::IndexReplacement;

/// Data keys per KEK version (only the live ones if `live`), oldest version first.
pub(crate) async fn count_by_kek(c: &impl Exec, live: bool) -> Result<Vec<(u32, u64)>, StoreError> {
    let sql: Sql<'_> = if live {
        sql!(
            postgres: "SELECT COALESCE(kek_version, 0) AS v, COUNT(*) FROM candor_keys.subject_keys
                       WHERE destroyed_at IS NULL GROUP BY v ORDER BY v",
            sqlite: "SELECT COALESCE(kek_version, 0) AS v, COUNT(*) FROM keys.subject_keys
                     WHERE destroyed_at IS NULL GROUP BY v ORDER BY v",
        )
    } else {
        sql!(
            postgres: "SELECT COALESCE(kek_version, 0) AS v, COUNT(*) FROM candor_keys.subject_keys GROUP BY v ORDER BY v",
            sqlite: "SELECT COALESCE(kek_version, 0) AS v, COUNT(*) FROM keys.subject_keys GROUP BY v ORDER BY v",
        )
    };
    c.query(sql, &[], |r| Ok((r.int(0)? as u32, r.count(1)?))).await
}

pub(crate) async fn deks_not_under(
    c: &impl Exec,
    kek_version: u32,
    after: String,
    limit: u32,
) -> Result<Vec<(SubjectId, StoredDek)>, StoreError> {
    let sql = sql!(
        postgres: "SELECT subject_id, kek_version, dek_version, wrapped_dek FROM candor_keys.subject_keys
                   WHERE destroyed_at IS NULL AND kek_version <> $1 AND subject_id > $2 ORDER BY subject_id LIMIT $3",
        sqlite: "SELECT subject_id, kek_version, dek_version, wrapped_dek FROM keys.subject_keys
                 WHERE destroyed_at IS NULL AND kek_version <> ?1 AND subject_id > ?2 ORDER BY subject_id LIMIT ?3",
    );
    c.query(sql, args![kek_version, &after, limit], |r| {
        let stored = StoredDek {
            kek_version: r.int(1)? as u32,
            dek_version: r.int(2)? as u32,
            wrapped: WrappedDek::from_bytes(r.blob(3)?),
        };
        Ok((r.subject(0)?, stored))
    })
    .await
}

pub(crate) async fn replace_deks(
    c: &impl Exec,
    changes: Vec<(SubjectId, StoredDek, StoredDek)>,
) -> Result<u64, StoreError> {
    let sql = sql!(
        postgres: "UPDATE candor_keys.subject_keys SET kek_version = $2, dek_version = $3, wrapped_dek = $4
                   WHERE subject_id = $1 AND destroyed_at IS NULL AND kek_version = $5 AND wrapped_dek = $6",
        sqlite: "UPDATE keys.subject_keys SET kek_version = ?2, dek_version = ?3, wrapped_dek = ?4
                 WHERE subject_id = ?1 AND destroyed_at IS NULL AND kek_version = ?5 AND wrapped_dek = ?6",
    );
    let mut replaced = 0;
    for (subject, old, new) in &changes {
        let (id, new_wrapped, old_wrapped) = (subject.to_string(), new.wrapped.as_bytes(), old.wrapped.as_bytes());
        let args = args![&id, new.kek_version, new.dek_version, new_wrapped, old.kek_version, old_wrapped];
        replaced += c.execute(sql, args).await?;
    }
    Ok(replaced)
}

pub(crate) async fn index_counts(c: &impl Exec) -> Result<Vec<(u32, u64)>, StoreError> {
    let sql = sql!("SELECT key_version, COUNT(*) FROM blind_index GROUP BY key_version ORDER BY key_version");
    c.query(sql, &[], |r| Ok((r.int(0)? as u32, r.count(1)?))).await
}

pub(crate) async fn index_rows_under(
    c: &impl Exec,
    key_version: u32,
    after: (String, String),
    limit: u32,
) -> Result<Vec<(SubjectId, FieldName)>, StoreError> {
    // SQLite keys the rows by the customer's internal number and pages in its order (a cursor
    // whose customer has been erased since starts again from the first row still under the key).
    let sql = sql!(
        postgres: "SELECT subject_id, field FROM blind_index
                   WHERE key_version = $1 AND (subject_id, field) > ($2, $3)
                   ORDER BY subject_id, field LIMIT $4",
        sqlite: "SELECT s.id, b.field FROM blind_index b JOIN subjects s ON s.no = b.subject_no
                 WHERE b.key_version = ?1
                   AND (b.subject_no, b.field) > (COALESCE((SELECT no FROM subjects WHERE id = ?2), -1), ?3)
                 ORDER BY b.subject_no, b.field LIMIT ?4",
    );
    c.query(sql, args![key_version, &after.0, &after.1, limit], |r| Ok((r.subject(0)?, FieldName::new(r.text(1)?))))
        .await
}

pub(crate) async fn replace_index_rows(c: &impl Exec, changes: Vec<IndexReplacement>) -> Result<u64, StoreError> {
    let insert = sql!(
        postgres: "INSERT INTO blind_index (field, token, subject_id, key_version) VALUES ($1, $2, $3, $4)
                   ON CONFLICT DO NOTHING",
        sqlite: "INSERT INTO blind_index (field, token, subject_no, key_version)
                 SELECT ?1, ?2, no, ?4 FROM subjects WHERE id = ?3
                 ON CONFLICT DO NOTHING",
    );
    let mut replaced = 0;
    for ch in &changes {
        let (field, subject) = (ch.field.as_str(), ch.subject.to_string());
        let gone = if c.postgres() {
            // One statement for all the current tokens.
            let delete = sql!(
                postgres: "DELETE FROM blind_index
                           WHERE field = $1 AND token = ANY($2) AND subject_id = $3 AND key_version = $4",
                sqlite: "",
            );
            let current: Vec<&[u8]> = ch.current.iter().map(|t| t.as_bytes()).collect();
            let args = [Arg::Text(field), Arg::Blobs(&current), Arg::Text(&subject), Arg::from(ch.key_version)];
            c.execute(delete, &args).await?
        } else {
            let delete = sql!(
                postgres: "",
                sqlite: "DELETE FROM blind_index WHERE field = ?1 AND token = ?2
                         AND subject_no = (SELECT no FROM subjects WHERE id = ?3) AND key_version = ?4",
            );
            let mut gone = 0;
            for token in &ch.current {
                gone += c.execute(delete, args![field, token.as_bytes(), &subject, ch.key_version]).await?;
            }
            gone
        };
        if gone > 0 {
            c.execute(insert, args![field, ch.new.as_bytes(), &subject, ch.new.key_version()]).await?;
            replaced += 1;
        }
    }
    Ok(replaced)
}

/// [`KeyRingStore`](crate::keys::KeyRingStore) for a store with the runners of [`crate::sql`].
macro_rules! impl_key_ring_store {
    ($store:ty) => {
        const _: () = {
            use candor_core::{FieldName, StoredDek, SubjectId};
            use $crate::StoreError;
            use $crate::keys::{IndexReplacement, KeyRingStore};
            use $crate::sql::keys as op;

            #[async_trait::async_trait]
            impl KeyRingStore for $store {
                async fn dek_counts(&self) -> Result<Vec<(u32, u64)>, StoreError> {
                    self.run_read(move |c| Box::pin(op::count_by_kek(c, true))).await
                }

                async fn kek_wraps(&self) -> Result<Vec<(u32, u64)>, StoreError> {
                    self.run_read(move |c| Box::pin(op::count_by_kek(c, false))).await
                }

                async fn deks_not_under(
                    &self,
                    kek_version: u32,
                    after: Option<SubjectId>,
                    limit: u32,
                ) -> Result<Vec<(SubjectId, StoredDek)>, StoreError> {
                    let after = after.map(|a| a.to_string()).unwrap_or_default();
                    self.run_read(move |c| Box::pin(op::deks_not_under(c, kek_version, after, limit))).await
                }

                async fn replace_deks(
                    &self,
                    changes: Vec<(SubjectId, StoredDek, StoredDek)>,
                ) -> Result<u64, StoreError> {
                    self.run_tx(move |c| Box::pin(op::replace_deks(c, changes))).await
                }

                async fn index_counts(&self) -> Result<Vec<(u32, u64)>, StoreError> {
                    self.run_read(move |c| Box::pin(op::index_counts(c))).await
                }

                async fn index_rows_under(
                    &self,
                    key_version: u32,
                    after: Option<(SubjectId, FieldName)>,
                    limit: u32,
                ) -> Result<Vec<(SubjectId, FieldName)>, StoreError> {
                    let after = after.map(|(s, f)| (s.to_string(), f.to_string())).unwrap_or_default();
                    self.run_read(move |c| Box::pin(op::index_rows_under(c, key_version, after, limit))).await
                }

                async fn replace_index_rows(&self, changes: Vec<IndexReplacement>) -> Result<u64, StoreError> {
                    self.run_tx(move |c| Box::pin(op::replace_index_rows(c, changes))).await
                }
            }
        };
    };
}
pub(crate) use impl_key_ring_store;
