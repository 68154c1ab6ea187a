//! The consent audience stream on SQLite (the rest of the ledger is in [`crate::sql::consents`]).

use candor_core::PurposeId;
use candor_core::catalog::Channel;
use rusqlite::params;
use tokio::sync::mpsc;

use super::{SqliteStore, db_err, open_connection, parse_subject};
use crate::StoreError;
use crate::consents::{AUDIENCE_BATCH, AUDIENCE_BUFFER, AudienceRow, channel_column, parse_action};

/// The stream behind [`ConsentStore::consent_audience`](crate::consents::ConsentStore::consent_audience).
impl SqliteStore {
    pub(super) fn audience(
        &self,
        purpose: &PurposeId,
        channel: Option<Channel>,
    ) -> mpsc::Receiver<Result<Vec<AudienceRow>, StoreError>> {
        let (tx, rx) = mpsc::channel(AUDIENCE_BUFFER);
        let (path, keys_path) = (self.path.clone(), self.keys_path.clone());
        let purpose = purpose.as_str().to_string();
        tokio::task::spawn_blocking(move || {
            let stream = || -> Result<(), StoreError> {
                // Its own connection: a long stream must not hold one of the pooled readers.
                let mut conn = open_connection(&path, &keys_path)?;
                let snapshot = conn.transaction().map_err(db_err)?;
                let mut stmt = snapshot
                    .prepare(
                        "SELECT subject_id, action, notice_version FROM consents
                         WHERE purpose = ?1 AND channel = ?2 ORDER BY subject_id, given_at, seq",
                    )
                    .map_err(db_err)?;
                let mut rows = stmt.query(params![purpose, channel_column(channel)]).map_err(db_err)?;
                let mut batch = Vec::with_capacity(AUDIENCE_BATCH);
                while let Some(r) = rows.next().map_err(db_err)? {
                    let text =
                        |i| r.get_ref(i).map_err(db_err)?.as_str().map_err(|e| StoreError::Corrupt(e.to_string()));
                    batch.push(AudienceRow {
                        subject: parse_subject(text(0)?)?,
                        action: parse_action(text(1)?)?,
                        notice_version: text(2)?.to_string(),
                    });
                    if batch.len() == AUDIENCE_BATCH
                        && tx
                            .blocking_send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(AUDIENCE_BATCH))))
                            .is_err()
                    {
                        return Ok(()); // the reader went away
                    }
                }
                if !batch.is_empty() {
                    let _ = tx.blocking_send(Ok(batch));
                }
                Ok(())
            };
            if let Err(e) = stream() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        rx
    }
}
