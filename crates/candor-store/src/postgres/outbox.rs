//! The notice outbox on PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{PgStore, pg_err};
use crate::grants::split_names;
use crate::outbox::{Notice, OutboxStore};
use crate::{Millis, StoreError};

const COLUMNS: &str = "id, recipient, subject_id, kind, fields, created_at, attempts, next_attempt_at, delivered_at, confirmed_at, last_error";

fn notice(r: &Row) -> Notice {
    Notice {
        id: r.get(0),
        recipient: r.get(1),
        subject: r.get(2),
        kind: r.get(3),
        fields: split_names(&r.get::<_, String>(4)),
        created_at: r.get(5),
        attempts: r.get::<_, i32>(6) as u32,
        next_attempt_at: r.get(7),
        delivered_at: r.get(8),
        confirmed_at: r.get(9),
        last_error: r.get(10),
    }
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn due_notices(&self, now: Millis, limit: u32) -> Result<Vec<Notice>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                format!(
                    "SELECT {COLUMNS} FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1
                     ORDER BY created_at, id LIMIT $2"
                )
                .as_str(),
                &[&now, &i64::from(limit)],
            )
            .await
            .map_err(pg_err)?;
        Ok(rows.iter().map(notice).collect())
    }

    async fn notice_delivered(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE outbox SET delivered_at = $2, attempts = attempts + 1, last_error = NULL WHERE id = $1",
                &[&id, &now],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn notice_failed(&self, id: &str, next_attempt_at: Millis, error: &str) -> Result<(), StoreError> {
        let error: String = error.chars().take(200).collect();
        self.client()
            .await?
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE id = $1",
                &[&id, &next_attempt_at, &error],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn confirm_notice(&self, id: &str, now: Millis) -> Result<bool, StoreError> {
        let found = self
            .client()
            .await?
            .execute(
                "UPDATE outbox SET confirmed_at = COALESCE(confirmed_at, $2), delivered_at = COALESCE(delivered_at, $2)
                 WHERE id = $1",
                &[&id, &now],
            )
            .await
            .map_err(pg_err)?;
        Ok(found == 1)
    }

    async fn notice(&self, id: &str) -> Result<Option<Notice>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(format!("SELECT {COLUMNS} FROM outbox WHERE id = $1").as_str(), &[&id])
            .await
            .map_err(pg_err)?;
        Ok(row.as_ref().map(notice))
    }

    async fn unconfirmed_notices(&self, limit: u32) -> Result<Vec<Notice>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                format!("SELECT {COLUMNS} FROM outbox WHERE confirmed_at IS NULL ORDER BY created_at, id LIMIT $1")
                    .as_str(),
                &[&i64::from(limit)],
            )
            .await
            .map_err(pg_err)?;
        Ok(rows.iter().map(notice).collect())
    }

    async fn notice_counts(&self) -> Result<(u64, u64), StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE delivered_at IS NULL),
                        COUNT(*) FILTER (WHERE delivered_at IS NOT NULL AND confirmed_at IS NULL) FROM outbox",
                &[],
            )
            .await
            .map_err(pg_err)?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }
}
