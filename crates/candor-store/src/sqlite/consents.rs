//! The consent ledger on SQLite.

use async_trait::async_trait;
use candor_core::catalog::Channel;
use candor_core::{Ciphertext, PurposeId, SubjectId};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::mpsc;

use super::query_row_cached;
use super::{SqliteStore, append_log_tx, db_err, open_connection, parse_subject};
use crate::consents::{
    AUDIENCE_BATCH, AUDIENCE_BUFFER, AudienceRow, ConsentColumns, ConsentStore, NewConsentRecord, NoticeText, Recorded,
    StoredConsent, StoredReceipt, channel_column, parse_action,
};
use crate::{LogRecord, StoreError};

#[async_trait]
impl ConsentStore for SqliteStore {
    async fn record_consents(
        &self,
        records: Vec<NewConsentRecord>,
        notices: Vec<NoticeText>,
        log: Vec<LogRecord>,
    ) -> Result<Recorded, StoreError> {
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            for n in &notices {
                tx.prepare_cached(
                    "INSERT INTO consent_notices (version, purpose, text, first_seen) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (version) DO NOTHING",
                )
                .and_then(|mut s| s.execute(params![n.version, n.purpose.as_str(), n.text, super::now_millis()]))
                .map_err(db_err)?;
            }
            for r in &records {
                let sid = r.subject.to_string();
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO consent_receipts (id, subject_id, recorded_at, body, note)
                         SELECT ?1, id, ?3, ?4, ?5 FROM subjects WHERE id = ?2",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            r.receipt_id,
                            sid,
                            r.recorded_at,
                            r.receipt,
                            r.note.as_ref().map(Ciphertext::as_bytes)
                        ])
                    })
                    .map_err(db_err)?;
                if inserted != 1 {
                    // Dropping the transaction rolls back what this call wrote so far.
                    return Ok(Recorded::UnknownSubject(r.subject));
                }
                let mut put = tx
                    .prepare_cached(
                        "INSERT INTO consents (subject_id, purpose, channel, action, notice_version, method,
                             actor_kind, actor_token, given_at, recorded_at, receipt_id)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )
                    .map_err(db_err)?;
                for e in &r.entries {
                    put.execute(params![
                        sid,
                        e.purpose.as_str(),
                        channel_column(e.channel),
                        e.action.name(),
                        e.notice_version,
                        r.method.name(),
                        r.actor_kind.name(),
                        r.actor_token,
                        r.given_at,
                        r.recorded_at,
                        r.receipt_id,
                    ])
                    .map_err(db_err)?;
                }
            }
            append_log_tx(&tx, &log)?;
            tx.commit().map_err(db_err)?;
            Ok(Recorded::All)
        })
        .await
    }

    async fn consent_history(
        &self,
        subject: SubjectId,
        purpose: Option<&PurposeId>,
    ) -> Result<Vec<StoredConsent>, StoreError> {
        let purpose = purpose.cloned();
        self.read(move |c| consent_rows(c, subject, purpose.as_ref())).await
    }

    async fn consent_receipt(&self, subject: SubjectId, receipt_id: &str) -> Result<Option<StoredReceipt>, StoreError> {
        let receipt_id = receipt_id.to_string();
        self.read(move |c| {
            query_row_cached(
                c,
                "SELECT body, note FROM consent_receipts WHERE id = ?1 AND subject_id = ?2",
                params![receipt_id, subject.to_string()],
                |r| {
                    Ok(StoredReceipt {
                        body: r.get(0)?,
                        note: r.get::<_, Option<Vec<u8>>>(1)?.map(Ciphertext::from_bytes),
                    })
                },
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn notice_text(&self, version: &str) -> Result<Option<String>, StoreError> {
        let version = version.to_string();
        self.read(move |c| {
            query_row_cached(c, "SELECT text FROM consent_notices WHERE version = ?1", params![version], |r| r.get(0))
                .optional()
                .map_err(db_err)
        })
        .await
    }

    fn consent_audience(
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

/// The subject's ledger entries (of one purpose, if given), in the order recorded, read through
/// `c` (a connection, or a transaction other reads share).
pub(super) fn consent_rows(
    c: &Connection,
    subject: SubjectId,
    purpose: Option<&PurposeId>,
) -> Result<Vec<StoredConsent>, StoreError> {
    let purpose = purpose.map(PurposeId::as_str);
    let mut stmt = c
        .prepare_cached(
            "SELECT seq, purpose, channel, action, notice_version, method, actor_kind, actor_token,
                    given_at, recorded_at, receipt_id
             FROM consents WHERE subject_id = ?1 AND (?2 IS NULL OR purpose = ?2) ORDER BY seq",
        )
        .map_err(db_err)?;
    let mut rows = stmt.query(params![subject.to_string(), purpose]).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        let text = |i| r.get::<_, String>(i).map_err(db_err);
        let (channel, action, method, actor_kind) =
            ConsentColumns { channel: &text(2)?, action: &text(3)?, method: &text(5)?, actor_kind: &text(6)? }
                .parse()?;
        out.push(StoredConsent {
            seq: r.get(0).map_err(db_err)?,
            purpose: PurposeId::new(text(1)?),
            channel,
            action,
            notice_version: text(4)?,
            method,
            actor_kind,
            actor_token: r.get(7).map_err(db_err)?,
            given_at: r.get(8).map_err(db_err)?,
            recorded_at: r.get(9).map_err(db_err)?,
            receipt_id: text(10)?,
        });
    }
    Ok(out)
}
