//! Registered messages on SQLite.

use async_trait::async_trait;
use candor_core::{Ciphertext, SubjectId};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, db_err, parse_subject};
use crate::messages::{ErasedMessage, MessageStore, StoredMessage};
use crate::{LogRecord, StoreError};

const COLUMNS: &str = "id, subject_id, purpose, channel, subject_line, body_sha256, code_hash, sent_at";

fn hash32(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt("a message hash is not 32 bytes".into()))
}

/// A row as read: id, subject, purpose, channel, subject line, body hash, code hash, sent at.
type Raw = (String, String, String, String, Vec<u8>, Vec<u8>, Vec<u8>, i64);

fn message(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

fn stored((id, subject, purpose, channel, line, body, code, sent_at): Raw) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        id,
        subject: parse_subject(&subject)?,
        purpose,
        channel,
        subject_line: Ciphertext::from_bytes(line),
        body_sha256: hash32(body)?,
        code_hash: hash32(code)?,
        sent_at,
    })
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn register_message(&self, m: StoredMessage, log: LogRecord) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO messages ({COLUMNS}) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
             WHERE EXISTS (SELECT 1 FROM subjects WHERE id = ?2)"
        );
        let params = vec![
            Value::Text(m.id),
            Value::Text(m.subject.to_string()),
            Value::Text(m.purpose),
            Value::Text(m.channel),
            Value::Blob(m.subject_line.into_bytes()),
            Value::Blob(m.body_sha256.to_vec()),
            Value::Blob(m.code_hash.to_vec()),
            Value::Integer(m.sent_at),
        ];
        self.insert_logged(sql, params, log).await
    }

    async fn message_by_code(&self, code_hash: &[u8; 32]) -> Result<Option<StoredMessage>, StoreError> {
        let code_hash = *code_hash;
        self.read(move |c| {
            let row = c
                .prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE code_hash = ?1"))
                .and_then(|mut s| s.query_row(params![&code_hash[..]], message).optional())
                .map_err(db_err)?;
            row.map(stored).transpose()
        })
        .await
    }

    async fn erased_message_by_code(&self, code_hash: &[u8; 32]) -> Result<Option<ErasedMessage>, StoreError> {
        let code_hash = *code_hash;
        self.read(move |c| {
            c.prepare_cached("SELECT channel, sent_at FROM erased_messages WHERE code_hash = ?1")
                .and_then(|mut s| {
                    s.query_row(params![&code_hash[..]], |r| {
                        Ok(ErasedMessage { channel: r.get(0)?, sent_at: r.get(1)? })
                    })
                    .optional()
                })
                .map_err(db_err)
        })
        .await
    }

    async fn messages_of(&self, subject: SubjectId, limit: u32) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM messages WHERE subject_id = ?1 ORDER BY sent_at DESC, id LIMIT ?2"
                ))
                .map_err(db_err)?;
            let rows = stmt.query_map(params![subject.to_string(), limit], message).map_err(db_err)?;
            rows.map(|r| stored(r.map_err(db_err)?)).collect()
        })
        .await
    }
}
