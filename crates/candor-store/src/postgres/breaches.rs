//! Breach records on PostgreSQL.

use async_trait::async_trait;
use candor_core::SubjectId;
use tokio_postgres::Row;

use super::{PgStore, append_log_tx, pg_err};
use crate::breaches::{Breach, BreachStore};
use crate::grants::split_names;
use crate::{LogRecord, Millis, StoreError};

const COLUMNS: &str = "id, detected_at, recorded_at, nature, categories, customers, consequences, measures, \
                       authority_notified_at, closed_at";

fn breach(r: &Row) -> Breach {
    Breach {
        id: r.get(0),
        detected_at: r.get(1),
        recorded_at: r.get(2),
        nature: r.get(3),
        categories: split_names(&r.get::<_, String>(4)),
        customers: r.get::<_, i64>(5) as u64,
        consequences: r.get(6),
        measures: r.get(7),
        authority_notified_at: r.get(8),
        closed_at: r.get(9),
    }
}

#[async_trait]
impl BreachStore for PgStore {
    async fn record_breach(&self, b: Breach, subjects: Vec<SubjectId>, log: LogRecord) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute(
            format!("INSERT INTO breaches ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)").as_str(),
            &[
                &b.id,
                &b.detected_at,
                &b.recorded_at,
                &b.nature,
                &b.categories.join(","),
                &(b.customers as i64),
                &b.consequences,
                &b.measures,
            ],
        )
        .await
        .map_err(pg_err)?;
        let ids: Vec<String> = subjects.iter().map(ToString::to_string).collect();
        tx.execute(
            "INSERT INTO breach_subjects (breach_id, subject_id)
             SELECT $1, s.id FROM subjects s WHERE s.id = ANY($2) ON CONFLICT DO NOTHING",
            &[&b.id, &ids],
        )
        .await
        .map_err(pg_err)?;
        append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(())
    }

    async fn breaches(&self) -> Result<Vec<Breach>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(format!("SELECT {COLUMNS} FROM breaches ORDER BY detected_at DESC, id").as_str(), &[])
            .await
            .map_err(pg_err)?;
        Ok(rows.iter().map(breach).collect())
    }

    async fn breaches_of(&self, subject: SubjectId) -> Result<Vec<Breach>, StoreError> {
        let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("b.{}", c.trim())).collect();
        let rows = self
            .client()
            .await?
            .query(
                format!(
                    "SELECT {} FROM breaches b JOIN breach_subjects s ON s.breach_id = b.id
                     WHERE s.subject_id = $1 ORDER BY b.detected_at DESC, b.id",
                    columns.join(", ")
                )
                .as_str(),
                &[&subject.to_string()],
            )
            .await
            .map_err(pg_err)?;
        Ok(rows.iter().map(breach).collect())
    }

    async fn update_breach(&self, id: &str, closed: bool, at: Millis, log: LogRecord) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let sql = if closed {
            "UPDATE breaches SET closed_at = COALESCE(closed_at, $2) WHERE id = $1"
        } else {
            "UPDATE breaches SET authority_notified_at = COALESCE(authority_notified_at, $2) WHERE id = $1"
        };
        if tx.execute(sql, &[&id, &at]).await.map_err(pg_err)? == 0 {
            return Ok(false);
        }
        append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(true)
    }
}
