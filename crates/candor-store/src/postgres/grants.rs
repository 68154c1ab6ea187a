//! Grants on PostgreSQL.

use async_trait::async_trait;
use candor_core::SubjectId;
use tokio_postgres::Row;

use super::{PgStore, append_log_tx, pg_err, subject_of};
use crate::grants::{Grant, GrantStore};
use crate::{LogRecord, Millis, StoreError};

const COLUMNS: &str =
    "id, recipient, purpose, fields, credential_hash, created_by, created_at, expires_at, max_reads, reads, revoked_at";

fn grant(r: &Row) -> Result<Grant, StoreError> {
    let fields: String = r.get(3);
    let hash: Vec<u8> = r.get(4);
    Ok(Grant {
        id: r.get(0),
        recipient: r.get(1),
        purpose: r.get(2),
        fields: crate::grants::split_names(&fields),
        credential_hash: hash.try_into().map_err(|_| StoreError::Corrupt("grant credential hash".into()))?,
        created_by: r.get(5),
        created_at: r.get(6),
        expires_at: r.get(7),
        max_reads: r.get::<_, Option<i64>>(8).map(|n| n as u64),
        reads: r.get::<_, i64>(9) as u64,
        revoked_at: r.get(10),
    })
}

#[async_trait]
impl GrantStore for PgStore {
    async fn create_grant(&self, g: Grant, subjects: Vec<SubjectId>, log: LogRecord) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute(
            format!("INSERT INTO grants ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, NULL)").as_str(),
            &[
                &g.id,
                &g.recipient,
                &g.purpose,
                &g.fields.join(","),
                &&g.credential_hash[..],
                &g.created_by,
                &g.created_at,
                &g.expires_at,
                &g.max_reads.map(|n| n as i64),
            ],
        )
        .await
        .map_err(pg_err)?;
        let ids: Vec<String> = subjects.iter().map(ToString::to_string).collect();
        let held = tx
            .execute(
                "INSERT INTO grant_subjects (grant_id, subject_id)
                 SELECT $1, s.id FROM subjects s WHERE s.id = ANY($2) ON CONFLICT DO NOTHING",
                &[&g.id, &ids],
            )
            .await
            .map_err(pg_err)?;
        append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(held)
    }

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(format!("SELECT {COLUMNS} FROM grants WHERE id = $1").as_str(), &[&id])
            .await
            .map_err(pg_err)?;
        row.as_ref().map(grant).transpose()
    }

    async fn grant_subjects(
        &self,
        id: &str,
        after: Option<SubjectId>,
        limit: u32,
    ) -> Result<Vec<SubjectId>, StoreError> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT subject_id FROM grant_subjects WHERE grant_id = $1 AND subject_id > $2
                 ORDER BY subject_id LIMIT $3",
                &[&id, &after, &i64::from(limit)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(|r| subject_of(r.get(0))).collect()
    }

    async fn count_grant_read(&self, id: &str, now: Millis, log: LogRecord) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let counted = tx
            .execute(
                "UPDATE grants SET reads = reads + 1 WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2
                 AND (max_reads IS NULL OR reads < max_reads)",
                &[&id, &now],
            )
            .await
            .map_err(pg_err)?;
        if counted == 0 {
            return Ok(false);
        }
        append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(true)
    }

    async fn revoke_grant(&self, id: &str, now: Millis, log: LogRecord) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let revoked = tx
            .execute("UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", &[&id, &now])
            .await
            .map_err(pg_err)?;
        if revoked == 0 {
            return Ok(false);
        }
        append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(true)
    }

    async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(format!("SELECT {COLUMNS} FROM grants ORDER BY created_at DESC, id").as_str(), &[])
            .await
            .map_err(pg_err)?;
        rows.iter().map(grant).collect()
    }

    async fn grants_of(&self, subject: SubjectId) -> Result<Vec<Grant>, StoreError> {
        let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("g.{c}")).collect();
        let rows = self
            .client()
            .await?
            .query(
                format!(
                    "SELECT {} FROM grants g JOIN grant_subjects s ON s.grant_id = g.id
                     WHERE s.subject_id = $1 ORDER BY g.created_at, g.id",
                    columns.join(", ")
                )
                .as_str(),
                &[&subject.to_string()],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(grant).collect()
    }
}
