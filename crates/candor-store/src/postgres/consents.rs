//! The consent ledger on PostgreSQL.

use async_trait::async_trait;
use candor_core::catalog::Channel;
use candor_core::{Ciphertext, PurposeId, SubjectId};
use futures_util::{StreamExt, pin_mut};
use tokio::sync::mpsc;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::ToSql;

use super::{PgStore, now, pg_err, pool_err, subject_of};
use crate::consents::{
    AUDIENCE_BATCH, AUDIENCE_BUFFER, AudienceRow, ConsentColumns, ConsentStore, NewConsentRecord, NoticeText, Recorded,
    StoredConsent, StoredReceipt, channel_column, parse_action,
};
use crate::{LogRecord, StoreError};

#[async_trait]
impl ConsentStore for PgStore {
    async fn record_consents(
        &self,
        records: Vec<NewConsentRecord>,
        notices: Vec<NoticeText>,
        log: Vec<LogRecord>,
    ) -> Result<Recorded, StoreError> {
        self.changes
            .run_keeping(
                move |tx, log_sink| {
                    Box::pin(async move {
                        for n in &notices {
                            tx.execute(
                            "INSERT INTO consent_notices (version, purpose, text, first_seen) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (version) DO NOTHING",
                            &[&n.version, &n.purpose.as_str(), &n.text, &now()],
                        )
                        .await
                        .map_err(pg_err)?;
                        }
                        let put = tx
                            .prepare(
                                "INSERT INTO consents (subject_id, purpose, channel, action, notice_version, method,
                                 actor_kind, actor_token, given_at, recorded_at, receipt_id)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                            )
                            .await
                            .map_err(pg_err)?;
                        for r in &records {
                            let sid = r.subject.to_string();
                            let inserted = tx
                                .execute(
                                    "INSERT INTO consent_receipts (id, subject_id, recorded_at, body, note)
                                 SELECT $1, id, $3, $4, $5 FROM subjects WHERE id = $2",
                                    &[
                                        &r.receipt_id,
                                        &sid,
                                        &r.recorded_at,
                                        &r.receipt,
                                        &r.note.as_ref().map(Ciphertext::as_bytes),
                                    ],
                                )
                                .await
                                .map_err(pg_err)?;
                            if inserted != 1 {
                                // Dropping the transaction rolls it back.
                                return Ok(Recorded::UnknownSubject(r.subject));
                            }
                            for e in &r.entries {
                                let args: [&(dyn ToSql + Sync); 11] = [
                                    &sid,
                                    &e.purpose.as_str(),
                                    &channel_column(e.channel),
                                    &e.action.name(),
                                    &e.notice_version,
                                    &r.method.name(),
                                    &r.actor_kind.name(),
                                    &r.actor_token,
                                    &r.given_at,
                                    &r.recorded_at,
                                    &r.receipt_id,
                                ];
                                tx.execute(&put, &args).await.map_err(pg_err)?;
                            }
                        }
                        for record in log {
                            log_sink.push(record);
                        }
                        Ok(Recorded::All)
                    })
                },
                |r| *r == Recorded::All,
            )
            .await
    }

    async fn consent_history(
        &self,
        subject: SubjectId,
        purpose: Option<&PurposeId>,
    ) -> Result<Vec<StoredConsent>, StoreError> {
        let purpose = purpose.map(|p| p.as_str().to_string());
        // Prepared once per connection: one round trip per read.
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT seq, purpose, channel, action, notice_version, method, actor_kind, actor_token,
                        given_at, recorded_at, receipt_id
                 FROM consents WHERE subject_id = $1 AND ($2::text IS NULL OR purpose = $2) ORDER BY seq",
            )
            .await
            .map_err(pg_err)?;
        let rows = client.query(&statement, &[&subject.to_string(), &purpose]).await.map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let (channel, action, method, actor_kind) =
                    ConsentColumns { channel: r.get(2), action: r.get(3), method: r.get(5), actor_kind: r.get(6) }
                        .parse()?;
                Ok(StoredConsent {
                    seq: r.get(0),
                    purpose: PurposeId::new(r.get::<_, String>(1)),
                    channel,
                    action,
                    notice_version: r.get(4),
                    method,
                    actor_kind,
                    actor_token: r.get(7),
                    given_at: r.get(8),
                    recorded_at: r.get(9),
                    receipt_id: r.get(10),
                })
            })
            .collect()
    }

    async fn consent_receipt(&self, subject: SubjectId, receipt_id: &str) -> Result<Option<StoredReceipt>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT body, note FROM consent_receipts WHERE id = $1 AND subject_id = $2",
                &[&receipt_id, &subject.to_string()],
            )
            .await
            .map_err(pg_err)?;
        Ok(row.map(|r| StoredReceipt {
            body: r.get(0),
            note: r.get::<_, Option<Vec<u8>>>(1).map(Ciphertext::from_bytes),
        }))
    }

    async fn notice_text(&self, version: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT text FROM consent_notices WHERE version = $1", &[&version])
            .await
            .map_err(pg_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn consent_audience(
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
                        subject: subject_of(row.get(0))?,
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
