//! Break-glass overrides on PostgreSQL.

use async_trait::async_trait;
use candor_core::{Ciphertext, SubjectId};

use super::{PgStore, append_log_tx, pg_err, subject_of};
use crate::overrides::{BreakGlass, OverrideStore};
use crate::{LogRecord, Millis, StoreError};

const COLUMNS: &str = "id, subject_id, token_id, role, purpose, reason, opened_at, expires_at";

#[async_trait]
impl OverrideStore for PgStore {
    async fn open_break_glass(&self, b: BreakGlass, log: LogRecord) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO break_glass ({COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7, $8
             WHERE EXISTS (SELECT 1 FROM subjects WHERE id = $2)"
        );
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &b.id,
            &b.subject.to_string(),
            &b.token_id,
            &b.role,
            &b.purpose,
            &b.reason.as_bytes(),
            &b.opened_at,
            &b.expires_at,
        ];
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        if tx.execute(sql.as_str(), &params).await.map_err(pg_err)? == 0 {
            return Ok(false);
        }
        // Counted where erasure does not reach (the override's row goes with the customer).
        tx.execute(
            "INSERT INTO counters (name, value) VALUES ('break_glass_opened', 1)
             ON CONFLICT (name) DO UPDATE SET value = counters.value + 1",
            &[],
        )
        .await
        .map_err(pg_err)?;
        append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(true)
    }

    async fn active_break_glass(
        &self,
        token_id: &str,
        subject: SubjectId,
        purpose: &str,
        now: Millis,
    ) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT id FROM break_glass WHERE token_id = $1 AND subject_id = $2 AND purpose = $3
                 AND opened_at <= $4 AND expires_at > $4 ORDER BY expires_at DESC LIMIT 1",
            )
            .await
            .map_err(pg_err)?;
        let row =
            client.query_opt(&statement, &[&token_id, &subject.to_string(), &purpose, &now]).await.map_err(pg_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn break_glass_for(&self, subject: SubjectId) -> Result<Vec<BreakGlass>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                format!("SELECT {COLUMNS} FROM break_glass WHERE subject_id = $1 ORDER BY opened_at, id").as_str(),
                &[&subject.to_string()],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(BreakGlass {
                    id: r.get(0),
                    subject: subject_of(r.get(1))?,
                    token_id: r.get(2),
                    role: r.get(3),
                    purpose: r.get(4),
                    reason: Ciphertext::from_bytes(r.get(5)),
                    opened_at: r.get(6),
                    expires_at: r.get(7),
                })
            })
            .collect()
    }

    async fn break_glass_counts(&self, now: Millis) -> Result<(u64, u64), StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT (SELECT COALESCE(MAX(value), 0) FROM counters WHERE name = 'break_glass_opened'),
                        (SELECT COUNT(*) FROM break_glass WHERE opened_at <= $1 AND expires_at > $1)",
                &[&now],
            )
            .await
            .map_err(pg_err)?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }
}
