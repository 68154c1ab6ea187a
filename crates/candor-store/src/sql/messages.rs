//! Registered messages ([`MessageStore`](crate::messages::MessageStore)).

use candor_core::{Ciphertext, SubjectId};

use super::{Exec, Row, args, change_logged, sql};
use crate::messages::{ErasedMessage, StoredMessage};
use crate::{LogRecord, StoreError};

macro_rules! columns {
    () => {
        "id, subject_id, purpose, channel, subject_line, body_sha256, code_hash, sent_at"
    };
}

fn hash32(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt("a message hash is not 32 bytes".into()))
}

fn stored(r: &dyn Row) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        id: r.text(0)?,
        subject: r.subject(1)?,
        purpose: r.text(2)?,
        channel: r.text(3)?,
        subject_line: Ciphertext::from_bytes(r.blob(4)?),
        body_sha256: hash32(r.blob(5)?)?,
        code_hash: hash32(r.blob(6)?)?,
        sent_at: r.int(7)?,
    })
}

pub(crate) async fn register_message(c: &impl Exec, m: StoredMessage, log: LogRecord) -> Result<bool, StoreError> {
    let sql = sql!(concat!(
        "INSERT INTO messages (",
        columns!(),
        ") SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM subjects WHERE id = $2)"
    ));
    let subject = m.subject.to_string();
    let line = m.subject_line.as_bytes();
    let args = args![&m.id, &subject, &m.purpose, &m.channel, line, &m.body_sha256, &m.code_hash, m.sent_at];
    change_logged(c, sql, args, Some(log)).await
}

pub(crate) async fn message_by_code(c: &impl Exec, code_hash: [u8; 32]) -> Result<Option<StoredMessage>, StoreError> {
    c.query_opt(sql!(concat!("SELECT ", columns!(), " FROM messages WHERE code_hash = $1")), args![&code_hash], stored)
        .await
}

pub(crate) async fn erased_message_by_code(
    c: &impl Exec,
    code_hash: [u8; 32],
) -> Result<Option<ErasedMessage>, StoreError> {
    let sql = sql!("SELECT channel, sent_at FROM erased_messages WHERE code_hash = $1");
    c.query_opt(sql, args![&code_hash], |r| Ok(ErasedMessage { channel: r.text(0)?, sent_at: r.int(1)? })).await
}

pub(crate) async fn messages_of(
    c: &impl Exec,
    subject: SubjectId,
    limit: u32,
) -> Result<Vec<StoredMessage>, StoreError> {
    let sql =
        sql!(concat!("SELECT ", columns!(), " FROM messages WHERE subject_id = $1 ORDER BY sent_at DESC, id LIMIT $2"));
    c.query(sql, args![&subject.to_string(), limit], stored).await
}

/// [`MessageStore`](crate::messages::MessageStore) for a store with the runners of
/// [`crate::sql`].
macro_rules! impl_message_store {
    ($store:ty) => {
        const _: () = {
            use candor_core::SubjectId;
            use $crate::messages::{ErasedMessage, MessageStore, StoredMessage};
            use $crate::sql::messages as op;
            use $crate::{LogRecord, StoreError};

            #[async_trait::async_trait]
            impl MessageStore for $store {
                async fn register_message(&self, m: StoredMessage, log: LogRecord) -> Result<bool, StoreError> {
                    self.run_tx(move |c| Box::pin(op::register_message(c, m, log))).await
                }

                async fn message_by_code(&self, code_hash: &[u8; 32]) -> Result<Option<StoredMessage>, StoreError> {
                    let code_hash = *code_hash;
                    self.run_read(move |c| Box::pin(op::message_by_code(c, code_hash))).await
                }

                async fn erased_message_by_code(
                    &self,
                    code_hash: &[u8; 32],
                ) -> Result<Option<ErasedMessage>, StoreError> {
                    let code_hash = *code_hash;
                    self.run_read(move |c| Box::pin(op::erased_message_by_code(c, code_hash))).await
                }

                async fn messages_of(&self, subject: SubjectId, limit: u32) -> Result<Vec<StoredMessage>, StoreError> {
                    self.run_read(move |c| Box::pin(op::messages_of(c, subject, limit))).await
                }
            }
        };
    };
}
pub(crate) use impl_message_store;
