//! Customer rights on SQLite: how an erasure is committed (the key store is the attached `keys`
//! file) and the unfinished erasures. The rest is in [`crate::sql::rights`].

use candor_core::SubjectId;
use rusqlite::TransactionBehavior;

use super::{Lite, SqliteStore, db_err, parse_subject};
use crate::rights::{Certify, Erasure, ErasureRequest, PendingErasure};
use crate::sql::rights as op;
use crate::sql::{Exec, args, finish, sql};
use crate::{LogRecord, Millis, StoreError};

impl SqliteStore {
    /// Begins and/or finishes an erasure, alone on the writer's connection. The two files are
    /// committed one after the other (a transaction over attached WAL databases is not atomic
    /// across them): the intent and the destroyed key first, each durable on its own, then the
    /// data in one transaction.
    pub(super) async fn erase(
        &self,
        id: SubjectId,
        begin: Option<(Millis, ErasureRequest)>,
        complete: Option<(Certify, LogRecord)>,
    ) -> Result<Erasure, StoreError> {
        let import_keys = self.import_keys.clone();
        self.write_alone(move |c| {
            // Not while an import writes a batch's keys: the truncation of the key store's WAL
            // below would find it busy.
            let _import_keys = import_keys.lock().unwrap_or_else(|p| p.into_inner());
            let sid = id.to_string();
            if let Some((now, request)) = begin
                && let Some(done) = finish(op::begin_erasure(&Lite(c), &sid, now, &request))?
            {
                return Ok(done);
            }
            let Some((certify, log)) = complete else {
                return Ok(Erasure::Erased);
            };
            let erased_at = match finish(op::finish_key(&Lite(c), &sid))? {
                Ok(at) => at,
                Err(answer) => return Ok(answer),
            };
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
            let erased = finish(op::finish_data(&Lite(&tx), &sid, erased_at, certify, log))?;
            super::tiles::tile_new_entries(&tx)?;
            tx.commit().map_err(db_err)?;
            Ok(erased)
        })
        .await
    }

    /// Erasures begun and not finished: recorded intents, and keys destroyed with the data still
    /// there and no intent recorded.
    pub(super) async fn pending(&self) -> Result<Vec<PendingErasure>, StoreError> {
        self.run_snapshot(|c| {
            Box::pin(async move {
                let intents = sql!(
                    "SELECT subject_id, requested_at, certificate_id, token_id, role, purpose
                     FROM pending_erasures ORDER BY requested_at, subject_id"
                );
                let mut out = c
                    .query(intents, args![], |r| {
                        let request = ErasureRequest {
                            certificate_id: r.text(2)?,
                            token_id: r.text(3)?,
                            role: r.text(4)?,
                            purpose: r.text(5)?,
                        };
                        Ok(PendingErasure { subject: r.subject(0)?, requested_at: r.int(1)?, request: Some(request) })
                    })
                    .await?;
                let orphans = sql!(
                    "SELECT k.subject_id, k.destroyed_at FROM keys.subject_keys k
                     WHERE k.destroyed_at IS NOT NULL
                       AND EXISTS (SELECT 1 FROM subjects s WHERE s.id = k.subject_id)
                       AND NOT EXISTS (SELECT 1 FROM pending_erasures p WHERE p.subject_id = k.subject_id)
                     ORDER BY k.destroyed_at, k.subject_id"
                );
                let found = c.query(orphans, args![], |r| {
                    Ok(PendingErasure { subject: parse_subject(&r.text(0)?)?, requested_at: r.int(1)?, request: None })
                });
                out.extend(found.await?);
                out.sort_by_key(|p| p.requested_at);
                Ok(out)
            })
        })
        .await
    }
}
