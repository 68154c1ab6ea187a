//! The notice outbox on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, db_err};
use super::{execute_cached, query_row_cached};
use crate::grants::split_names;
use crate::outbox::{Notice, OutboxStore};
use crate::{Millis, StoreError};

const COLUMNS: &str = "id, recipient, subject_id, kind, fields, created_at, attempts, next_attempt_at, delivered_at, confirmed_at, last_error";

fn notice(r: &Row<'_>) -> rusqlite::Result<Notice> {
    Ok(Notice {
        id: r.get(0)?,
        recipient: r.get(1)?,
        subject: r.get(2)?,
        kind: r.get(3)?,
        fields: split_names(&r.get::<_, String>(4)?),
        created_at: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt_at: r.get(7)?,
        delivered_at: r.get(8)?,
        confirmed_at: r.get(9)?,
        last_error: r.get(10)?,
    })
}

impl SqliteStore {
    async fn notices_where(&self, condition: &'static str, args: Vec<i64>) -> Result<Vec<Notice>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM outbox WHERE {condition} ORDER BY created_at, id LIMIT ?1"
                ))
                .map_err(db_err)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), notice).map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
        .await
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn due_notices(&self, now: Millis, limit: u32) -> Result<Vec<Notice>, StoreError> {
        self.notices_where("delivered_at IS NULL AND next_attempt_at <= ?2", vec![i64::from(limit), now]).await
    }

    async fn notice_delivered(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            execute_cached(
                c,
                "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1",
                params![id, now],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn notice_failed(&self, id: &str, next_attempt_at: Millis, error: &str) -> Result<(), StoreError> {
        let (id, error) = (id.to_string(), error.chars().take(200).collect::<String>());
        self.write(move |c| {
            execute_cached(
                c,
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
                params![id, next_attempt_at, error],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn confirm_notice(&self, id: &str, now: Millis) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            let found = execute_cached(
                c,
                "UPDATE outbox SET confirmed_at = COALESCE(confirmed_at, ?2),
                     delivered_at = COALESCE(delivered_at, ?2) WHERE id = ?1",
                params![id, now],
            )
            .map_err(db_err)?;
            Ok(found == 1)
        })
        .await
    }

    async fn notice(&self, id: &str) -> Result<Option<Notice>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"))
                .and_then(|mut s| s.query_row(params![id], notice).optional())
                .map_err(db_err)
        })
        .await
    }

    async fn unconfirmed_notices(&self, limit: u32) -> Result<Vec<Notice>, StoreError> {
        self.notices_where("confirmed_at IS NULL", vec![i64::from(limit)]).await
    }

    async fn notice_counts(&self) -> Result<(u64, u64), StoreError> {
        self.read(move |c| {
            query_row_cached(c,
                "SELECT COALESCE(SUM(delivered_at IS NULL), 0), COALESCE(SUM(delivered_at IS NOT NULL AND confirmed_at IS NULL), 0)
                 FROM outbox",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(db_err)
        })
        .await
    }
}
