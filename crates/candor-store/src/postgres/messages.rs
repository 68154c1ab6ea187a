//! Registered messages on PostgreSQL.

use async_trait::async_trait;
use candor_core::{Ciphertext, SubjectId};
use tokio_postgres::Row;

use super::{PgStore, pg_err, subject_of};
use crate::messages::{ErasedMessage, MessageStore, StoredMessage};
use crate::{LogRecord, StoreError};

const COLUMNS: &str = "id, subject_id, purpose, channel, subject_line, body_sha256, code_hash, sent_at";

fn hash32(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt("a message hash is not 32 bytes".into()))
}

fn stored(r: &Row) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        id: r.get(0),
        subject: subject_of(r.get(1))?,
        purpose: r.get(2),
        channel: r.get(3),
        subject_line: Ciphertext::from_bytes(r.get(4)),
        body_sha256: hash32(r.get(5))?,
        code_hash: hash32(r.get(6))?,
        sent_at: r.get(7),
    })
}

#[async_trait]
impl MessageStore for PgStore {
    async fn register_message(&self, m: StoredMessage, log: LogRecord) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO messages ({COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7, $8
             WHERE EXISTS (SELECT 1 FROM subjects WHERE id = $2)"
        );
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &m.id,
            &m.subject.to_string(),
            &m.purpose,
            &m.channel,
            &m.subject_line.as_bytes(),
            &&m.body_sha256[..],
            &&m.code_hash[..],
            &m.sent_at,
        ];
        self.insert_logged(&sql, &params, log).await
    }

    async fn message_by_code(&self, code_hash: &[u8; 32]) -> Result<Option<StoredMessage>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(format!("SELECT {COLUMNS} FROM messages WHERE code_hash = $1").as_str(), &[&&code_hash[..]])
            .await
            .map_err(pg_err)?;
        row.as_ref().map(stored).transpose()
    }

    async fn erased_message_by_code(&self, code_hash: &[u8; 32]) -> Result<Option<ErasedMessage>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT channel, sent_at FROM erased_messages WHERE code_hash = $1", &[&&code_hash[..]])
            .await
            .map_err(pg_err)?;
        Ok(row.map(|r| ErasedMessage { channel: r.get(0), sent_at: r.get(1) }))
    }

    async fn messages_of(&self, subject: SubjectId, limit: u32) -> Result<Vec<StoredMessage>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                format!("SELECT {COLUMNS} FROM messages WHERE subject_id = $1 ORDER BY sent_at DESC, id LIMIT $2")
                    .as_str(),
                &[&subject.to_string(), &i64::from(limit)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter().map(stored).collect()
    }
}
