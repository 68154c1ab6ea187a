//! The consent audience stream on PostgreSQL (the rest of the ledger is in
//! [`crate::sql::consents`]).

use candor_core::PurposeId;
use candor_core::catalog::Channel;
use futures_util::{StreamExt, pin_mut};
use tokio::sync::mpsc;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::ToSql;

use super::{PgStore, parse_subject, pg_err, pool_err};
use crate::StoreError;
use crate::consents::{AUDIENCE_BATCH, AUDIENCE_BUFFER, AudienceRow, channel_column, parse_action};

/// The stream behind [`ConsentStore::consent_audience`](crate::consents::ConsentStore::consent_audience).
impl PgStore {
    pub(super) fn audience(
        &self,
        purpose: &PurposeId,
        channel: Option<Channel>,
    ) -> mpsc::Receiver<Result<Vec<AudienceRow>, StoreError>> {
        let (tx, rx) = mpsc::channel(AUDIENCE_BUFFER);
        let pool = self.pool.clone();
        let purpose = purpose.as_str().to_string();
        tokio::spawn(async move {
            let stream = async {
                let mut client = pool.get().await.map_err(pool_err)?;
                // One snapshot for the whole stream.
                let snapshot = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await
                    .map_err(pg_err)?;
                let args: [&(dyn ToSql + Sync); 2] = [&purpose, &channel_column(channel)];
                let rows = snapshot
                    .query_raw(
                        "SELECT subject_id, action, notice_version FROM consents
                         WHERE purpose = $1 AND channel = $2 ORDER BY subject_id, given_at, seq",
                        args,
                    )
                    .await
                    .map_err(pg_err)?;
                pin_mut!(rows);
                let mut batch = Vec::with_capacity(AUDIENCE_BATCH);
                while let Some(row) = rows.next().await {
                    let row = row.map_err(pg_err)?;
                    batch.push(AudienceRow {
                        subject: parse_subject(row.get(0))?,
                        action: parse_action(row.get(1))?,
                        notice_version: row.get(2),
                    });
                    if batch.len() == AUDIENCE_BATCH
                        && tx.send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(AUDIENCE_BATCH)))).await.is_err()
                    {
                        return Ok(()); // the reader went away
                    }
                }
                if !batch.is_empty() {
                    let _ = tx.send(Ok(batch)).await;
                }
                Ok::<_, StoreError>(())
            };
            if let Err(e) = stream.await {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }
}
