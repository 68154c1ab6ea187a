//! Breach records on SQLite.

use async_trait::async_trait;
use candor_core::SubjectId;
use rusqlite::{Row, params};

use super::execute_cached;
use super::{SqliteStore, append_log_tx, db_err};
use crate::breaches::{Breach, BreachStore};
use crate::grants::split_names;
use crate::{LogRecord, Millis, StoreError};

const COLUMNS: &str = "id, detected_at, recorded_at, nature, categories, customers, consequences, measures, \
                       authority_notified_at, closed_at";

fn breach(r: &Row<'_>) -> rusqlite::Result<Breach> {
    Ok(Breach {
        id: r.get(0)?,
        detected_at: r.get(1)?,
        recorded_at: r.get(2)?,
        nature: r.get(3)?,
        categories: split_names(&r.get::<_, String>(4)?),
        customers: r.get::<_, i64>(5)? as u64,
        consequences: r.get(6)?,
        measures: r.get(7)?,
        authority_notified_at: r.get(8)?,
        closed_at: r.get(9)?,
    })
}

#[async_trait]
impl BreachStore for SqliteStore {
    async fn record_breach(&self, b: Breach, subjects: Vec<SubjectId>, log: LogRecord) -> Result<(), StoreError> {
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            execute_cached(
                &tx,
                &format!("INSERT INTO breaches ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL)"),
                params![
                    b.id,
                    b.detected_at,
                    b.recorded_at,
                    b.nature,
                    b.categories.join(","),
                    b.customers as i64,
                    b.consequences,
                    b.measures
                ],
            )
            .map_err(db_err)?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO breach_subjects (breach_id, subject_id)
                         SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM subjects WHERE id = ?2)",
                    )
                    .map_err(db_err)?;
                for s in &subjects {
                    insert.execute(params![b.id, s.to_string()]).map_err(db_err)?;
                }
            }
            append_log_tx(&tx, std::slice::from_ref(&log))?;
            tx.commit().map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn breaches(&self) -> Result<Vec<Breach>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!("SELECT {COLUMNS} FROM breaches ORDER BY detected_at DESC, id"))
                .map_err(db_err)?;
            let rows = stmt.query_map([], breach).map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
        .await
    }

    async fn breaches_of(&self, subject: SubjectId) -> Result<Vec<Breach>, StoreError> {
        self.read(move |c| {
            let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("b.{}", c.trim())).collect();
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {} FROM breaches b JOIN breach_subjects s ON s.breach_id = b.id
                     WHERE s.subject_id = ?1 ORDER BY b.detected_at DESC, b.id",
                    columns.join(", ")
                ))
                .map_err(db_err)?;
            let rows = stmt.query_map(params![subject.to_string()], breach).map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
        .await
    }

    async fn update_breach(&self, id: &str, closed: bool, at: Millis, log: LogRecord) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let sql = if closed {
                "UPDATE breaches SET closed_at = COALESCE(closed_at, ?2) WHERE id = ?1"
            } else {
                "UPDATE breaches SET authority_notified_at = COALESCE(authority_notified_at, ?2) WHERE id = ?1"
            };
            if execute_cached(&tx, sql, params![id, at]).map_err(db_err)? == 0 {
                return Ok(false);
            }
            append_log_tx(&tx, std::slice::from_ref(&log))?;
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }
}
