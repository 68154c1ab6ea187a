//! Customer rights on PostgreSQL: how an erasure is committed (the key store is the
//! `candor_keys` schema, so one transaction destroys the key and deletes the data together) and
//! the unfinished erasures. The rest is in [`crate::sql::rights`].

use candor_core::SubjectId;

use super::{Pg, PgStore, pg_err};
use crate::rights::{Certify, Erasure, ErasureRequest, PendingErasure};
use crate::sql::rights as op;
use crate::sql::{Exec, args, sql};
use crate::{LogRecord, Millis, StoreError};

impl PgStore {
    /// Begins and/or finishes an erasure in one transaction. Finishing locks the subject's row,
    /// then the intent's, so servers completing the same erasure at once take turns and the
    /// second finds nothing left to do.
    pub(super) async fn erase(
        &self,
        id: SubjectId,
        begin: Option<(Millis, ErasureRequest)>,
        complete: Option<(Certify, LogRecord)>,
    ) -> Result<Erasure, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let (c, sid) = (Pg::Tx(&tx), id.to_string());
        if let Some((now, request)) = begin
            && let Some(done) = op::begin_erasure(&c, &sid, now, &request).await?
        {
            return Ok(done);
        }
        let erased = match complete {
            None => Erasure::Erased,
            Some((certify, log)) => {
                op::lock_subject(&c, &sid).await?;
                match op::finish_key(&c, &sid).await? {
                    Ok(erased_at) => op::finish_data(&c, &sid, erased_at, certify, log).await?,
                    Err(answer) => return Ok(answer),
                }
            }
        };
        tx.commit().await.map_err(pg_err)?;
        Ok(erased)
    }

    /// Erasures begun and not finished: recorded intents, and keys destroyed with the data still
    /// there and no intent recorded.
    pub(super) async fn pending(&self) -> Result<Vec<PendingErasure>, StoreError> {
        self.run_read(|c| {
            Box::pin(async move {
                let sql = sql!(
                    "SELECT subject_id, requested_at, certificate_id, token_id, role, purpose FROM pending_erasures
                     UNION ALL
                     SELECT k.subject_id, k.destroyed_at, NULL, NULL, NULL, NULL FROM candor_keys.subject_keys k
                     WHERE k.destroyed_at IS NOT NULL
                       AND EXISTS (SELECT 1 FROM subjects s WHERE s.id = k.subject_id)
                       AND NOT EXISTS (SELECT 1 FROM pending_erasures p WHERE p.subject_id = k.subject_id)
                     ORDER BY 2, 1"
                );
                c.query(sql, args![], |r| {
                    let request = match r.opt_text(2)? {
                        Some(certificate_id) => Some(ErasureRequest {
                            certificate_id,
                            token_id: r.text(3)?,
                            role: r.text(4)?,
                            purpose: r.text(5)?,
                        }),
                        None => None,
                    };
                    Ok(PendingErasure { subject: r.subject(0)?, requested_at: r.int(1)?, request })
                })
                .await
            })
        })
        .await
    }
}
