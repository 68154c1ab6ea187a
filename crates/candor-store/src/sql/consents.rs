//! The consent ledger ([`ConsentStore`](crate::consents::ConsentStore)); the audience stream
//! stays with each backend (its own connection and snapshot, for as long as the reader reads).

use candor_core::{Ciphertext, PurposeId, SubjectId};

use super::{Exec, args, sql};
use crate::consents::{
    ConsentColumns, NewConsentRecord, NoticeText, Recorded, StoredConsent, StoredReceipt, channel_column,
};
use crate::{LogRecord, StoreError};

/// Records the ledger entries; an unknown customer's answer is rolled back (the runner keeps
/// only [`Recorded::All`]).
pub(crate) async fn record_consents(
    c: &impl Exec,
    records: Vec<NewConsentRecord>,
    notices: Vec<NoticeText>,
    log: Vec<LogRecord>,
) -> Result<Recorded, StoreError> {
    let notice = sql!(
        "INSERT INTO consent_notices (version, purpose, text, first_seen) VALUES ($1, $2, $3, $4)
         ON CONFLICT (version) DO NOTHING"
    );
    for n in &notices {
        c.execute(notice, args![&n.version, n.purpose.as_str(), &n.text, super::now_millis()]).await?;
    }
    let receipt = sql!(
        "INSERT INTO consent_receipts (id, subject_id, recorded_at, body, note)
         SELECT $1, id, $3, $4, $5 FROM subjects WHERE id = $2"
    );
    let put = sql!(
        "INSERT INTO consents (subject_id, purpose, channel, action, notice_version, method,
                               actor_kind, actor_token, given_at, recorded_at, receipt_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    );
    for r in &records {
        let sid = r.subject.to_string();
        let note = r.note.as_ref().map(Ciphertext::as_bytes);
        if c.execute(receipt, args![&r.receipt_id, &sid, r.recorded_at, &r.receipt, note]).await? != 1 {
            return Ok(Recorded::UnknownSubject(r.subject));
        }
        for e in &r.entries {
            let (channel, action) = (channel_column(e.channel), e.action.name());
            let (method, actor) = (r.method.name(), r.actor_kind.name());
            let args = args![
                &sid,
                e.purpose.as_str(),
                channel,
                action,
                &e.notice_version,
                method,
                actor,
                r.actor_token.as_ref(),
                r.given_at,
                r.recorded_at,
                &r.receipt_id
            ];
            c.execute(put, args).await?;
        }
    }
    c.log_all(log).await?;
    Ok(Recorded::All)
}

/// The subject's ledger entries (of one purpose, if given), in the order recorded.
pub(crate) async fn consent_rows(
    c: &impl Exec,
    subject: SubjectId,
    purpose: Option<PurposeId>,
) -> Result<Vec<StoredConsent>, StoreError> {
    let sql = sql!(
        postgres: "SELECT seq, purpose, channel, action, notice_version, method, actor_kind, actor_token,
                          given_at, recorded_at, receipt_id
                   FROM consents WHERE subject_id = $1 AND ($2::text IS NULL OR purpose = $2) ORDER BY seq",
        sqlite: "SELECT seq, purpose, channel, action, notice_version, method, actor_kind, actor_token,
                        given_at, recorded_at, receipt_id
                 FROM consents WHERE subject_id = ?1 AND (?2 IS NULL OR purpose = ?2) ORDER BY seq",
    );
    let purpose = purpose.as_ref().map(PurposeId::as_str);
    c.query(sql, args![&subject.to_string(), purpose], |r| {
        let (channel, action, method, actor_kind) =
            ConsentColumns { channel: &r.text(2)?, action: &r.text(3)?, method: &r.text(5)?, actor_kind: &r.text(6)? }
                .parse()?;
        Ok(StoredConsent {
            seq: r.int(0)?,
            purpose: PurposeId::new(r.text(1)?),
            channel,
            action,
            notice_version: r.text(4)?,
            method,
            actor_kind,
            actor_token: r.opt_text(7)?,
            given_at: r.int(8)?,
            recorded_at: r.int(9)?,
            receipt_id: r.text(10)?,
        })
    })
    .await
}

pub(crate) async fn consent_receipt(
    c: &impl Exec,
    subject: SubjectId,
    receipt_id: String,
) -> Result<Option<StoredReceipt>, StoreError> {
    let sql = sql!("SELECT body, note FROM consent_receipts WHERE id = $1 AND subject_id = $2");
    c.query_opt(sql, args![&receipt_id, &subject.to_string()], |r| {
        Ok(StoredReceipt { body: r.text(0)?, note: r.opt_blob(1)?.map(Ciphertext::from_bytes) })
    })
    .await
}

pub(crate) async fn notice_text(c: &impl Exec, version: String) -> Result<Option<String>, StoreError> {
    c.query_opt(sql!("SELECT text FROM consent_notices WHERE version = $1"), args![&version], |r| r.text(0)).await
}

pub(crate) async fn consent_counts(c: &impl Exec) -> Result<Vec<crate::consents::SlotCount>, StoreError> {
    // Each customer's latest entry per slot (by time given, then order recorded), counted.
    let sql = sql!(
        "SELECT c.purpose, c.channel, c.action, c.notice_version, COUNT(*) FROM consents c \
         WHERE NOT EXISTS (SELECT 1 FROM consents d WHERE d.purpose = c.purpose AND d.channel = c.channel \
         AND d.subject_id = c.subject_id AND (d.given_at > c.given_at OR (d.given_at = c.given_at AND d.seq > c.seq))) \
         GROUP BY c.purpose, c.channel, c.action, c.notice_version \
         ORDER BY c.purpose, c.channel, c.action, c.notice_version"
    );
    c.query(sql, &[], |r| {
        Ok(crate::consents::SlotCount {
            purpose: r.text(0)?,
            channel: r.text(1)?,
            action: r.text(2)?,
            notice_version: r.text(3)?,
            customers: r.count(4)?,
        })
    })
    .await
}

/// [`ConsentStore`](crate::consents::ConsentStore) for a store with the runners of
/// [`crate::sql`] and an inherent `audience` (the backend's stream).
macro_rules! impl_consent_store {
    ($store:ty) => {
        const _: () = {
            use candor_core::catalog::Channel;
            use candor_core::{PurposeId, SubjectId};
            use tokio::sync::mpsc;
            use $crate::consents::{
                AudienceRow, ConsentStore, NewConsentRecord, NoticeText, Recorded, StoredConsent, StoredReceipt,
            };
            use $crate::sql::consents as op;
            use $crate::{LogRecord, StoreError};

            #[async_trait::async_trait]
            impl ConsentStore for $store {
                async fn consent_counts(&self) -> Result<Vec<$crate::consents::SlotCount>, StoreError> {
                    self.run_read(move |c| Box::pin(op::consent_counts(c))).await
                }

                async fn record_consents(
                    &self,
                    records: Vec<NewConsentRecord>,
                    notices: Vec<NoticeText>,
                    log: Vec<LogRecord>,
                ) -> Result<Recorded, StoreError> {
                    let keep = |r: &Recorded| *r == Recorded::All;
                    self.run_batched_keeping(move |c| Box::pin(op::record_consents(c, records, notices, log)), keep)
                        .await
                }

                async fn consent_history(
                    &self,
                    subject: SubjectId,
                    purpose: Option<&PurposeId>,
                ) -> Result<Vec<StoredConsent>, StoreError> {
                    let purpose = purpose.cloned();
                    self.run_read(move |c| Box::pin(op::consent_rows(c, subject, purpose))).await
                }

                async fn consent_receipt(
                    &self,
                    subject: SubjectId,
                    receipt_id: &str,
                ) -> Result<Option<StoredReceipt>, StoreError> {
                    let receipt_id = receipt_id.to_string();
                    self.run_read(move |c| Box::pin(op::consent_receipt(c, subject, receipt_id))).await
                }

                async fn notice_text(&self, version: &str) -> Result<Option<String>, StoreError> {
                    let version = version.to_string();
                    self.run_read(move |c| Box::pin(op::notice_text(c, version))).await
                }

                fn consent_audience(
                    &self,
                    purpose: &PurposeId,
                    channel: Option<Channel>,
                ) -> mpsc::Receiver<Result<Vec<AudienceRow>, StoreError>> {
                    self.audience(purpose, channel)
                }
            }
        };
    };
}
pub(crate) use impl_consent_store;
