//! Customer rights on SQLite: the key store is the attached `keys` file.

use async_trait::async_trait;
use candor_core::{Ciphertext, FieldName, SubjectId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, append_log_tx, db_err};
use crate::rights::{Erasure, Inventory, RightsStore, Toggle};
use crate::{LogRecord, Millis, StoreError};

fn subject_exists(c: &Connection, sid: &str) -> Result<bool, StoreError> {
    c.query_row("SELECT EXISTS (SELECT 1 FROM subjects WHERE id = ?1)", params![sid], |r| r.get(0)).map_err(db_err)
}

/// Runs `change` (which returns whether it changed anything) in a transaction that also
/// appends `log` when it did.
fn toggle(
    c: &mut Connection,
    sid: &str,
    log: &LogRecord,
    change: impl FnOnce(&Connection) -> Result<bool, StoreError>,
) -> Result<Toggle, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
    if !subject_exists(&tx, sid)? {
        return Ok(Toggle::NotFound);
    }
    if !change(&tx)? {
        return Ok(Toggle::Unchanged);
    }
    append_log_tx(&tx, std::slice::from_ref(log))?;
    tx.commit().map_err(db_err)?;
    Ok(Toggle::Changed)
}

#[async_trait]
impl RightsStore for SqliteStore {
    async fn inventory(&self, id: SubjectId) -> Result<Option<Inventory>, StoreError> {
        self.read(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            let sid = id.to_string();
            if !subject_exists(&tx, &sid)? {
                return Ok(None);
            }
            let mut inv = Inventory::default();
            let mut stmt =
                tx.prepare_cached("SELECT field FROM field_values WHERE subject_id = ?1 ORDER BY field").map_err(db_err)?;
            for f in stmt.query_map(params![sid], |r| r.get::<_, String>(0)).map_err(db_err)? {
                inv.fields.push(FieldName::new(f.map_err(db_err)?));
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT event_type, COUNT(*) FROM events WHERE subject_id = ?1 GROUP BY event_type ORDER BY event_type",
                )
                .map_err(db_err)?;
            for row in stmt.query_map(params![sid], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(db_err)? {
                let (t, n) = row.map_err(db_err)?;
                inv.events.push((FieldName::new(t), n as u64));
            }
            inv.consents = tx
                .query_row("SELECT COUNT(*) FROM consents WHERE subject_id = ?1", params![sid], |r| r.get::<_, i64>(0))
                .map_err(db_err)? as u64;
            Ok(Some(inv))
        })
        .await
    }

    async fn erase_subject(
        &self,
        id: SubjectId,
        now: Millis,
        certificate: String,
        log: LogRecord,
    ) -> Result<Erasure, StoreError> {
        self.write(move |c| {
            let sid = id.to_string();
            let kept: Option<(i64, String)> = c
                .query_row("SELECT erased_at, certificate FROM erasures WHERE subject_id = ?1", params![sid], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(db_err)?;
            let destroyed: Option<i64> = c
                .query_row("SELECT destroyed_at FROM keys.subject_keys WHERE subject_id = ?1", params![sid], |r| r.get(0))
                .optional()
                .map_err(db_err)?
                .flatten();
            if !subject_exists(c, &sid)? {
                return Ok(match (kept, destroyed) {
                    (Some((at, cert)), _) => Erasure::AlreadyErased { erased_at: at, certificate: Some(cert) },
                    (None, Some(at)) => Erasure::AlreadyErased { erased_at: at, certificate: None },
                    (None, None) => Erasure::NotFound,
                });
            }
            let held: bool = c
                .query_row("SELECT EXISTS (SELECT 1 FROM legal_holds WHERE subject_id = ?1)", params![sid], |r| r.get(0))
                .map_err(db_err)?;
            if held {
                return Ok(Erasure::Held);
            }
            // 1. Destroy the key, durably, before touching the data. The row stays as a
            //    tombstone without key bytes; secure_delete overwrites them in the file and the
            //    checkpoint moves the change out of the WAL.
            c.execute(
                "UPDATE keys.subject_keys SET kek_version = NULL, dek_version = NULL, wrapped_dek = NULL, destroyed_at = ?2
                 WHERE subject_id = ?1 AND destroyed_at IS NULL",
                params![sid, now],
            )
            .map_err(db_err)?;
            c.query_row("PRAGMA keys.wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(db_err)?;
            // 2. Delete the data (values, index entries, events, consents, hold and restriction
            //    rows go with the subject), keep the certificate, log the erasure.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
            tx.execute("DELETE FROM subjects WHERE id = ?1", params![sid]).map_err(db_err)?;
            tx.execute(
                "INSERT OR REPLACE INTO erasures (subject_id, erased_at, certificate) VALUES (?1, ?2, ?3)",
                params![sid, now, certificate],
            )
            .map_err(db_err)?;
            append_log_tx(&tx, std::slice::from_ref(&log))?;
            tx.commit().map_err(db_err)?;
            Ok(Erasure::Erased)
        })
        .await
    }

    async fn place_hold(
        &self,
        id: SubjectId,
        note: Ciphertext,
        now: Millis,
        log: LogRecord,
    ) -> Result<Toggle, StoreError> {
        self.write(move |c| {
            let sid = id.to_string();
            toggle(c, &sid, &log, |tx| {
                let n = tx
                    .execute(
                        "INSERT INTO legal_holds (subject_id, placed_at, note) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                        params![sid, now, note.as_bytes()],
                    )
                    .map_err(db_err)?;
                Ok(n == 1)
            })
        })
        .await
    }

    async fn lift_hold(&self, id: SubjectId, log: LogRecord) -> Result<Toggle, StoreError> {
        self.write(move |c| {
            let sid = id.to_string();
            toggle(c, &sid, &log, |tx| {
                Ok(tx.execute("DELETE FROM legal_holds WHERE subject_id = ?1", params![sid]).map_err(db_err)? == 1)
            })
        })
        .await
    }

    async fn hold(&self, id: SubjectId) -> Result<Option<(Millis, Ciphertext)>, StoreError> {
        self.read(move |c| {
            c.query_row("SELECT placed_at, note FROM legal_holds WHERE subject_id = ?1", params![id.to_string()], |r| {
                Ok((r.get(0)?, Ciphertext::from_bytes(r.get(1)?)))
            })
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn restrict(
        &self,
        id: SubjectId,
        note: Option<Ciphertext>,
        now: Millis,
        log: LogRecord,
    ) -> Result<Toggle, StoreError> {
        self.write(move |c| {
            let sid = id.to_string();
            toggle(c, &sid, &log, |tx| {
                let n = tx
                    .execute(
                        "INSERT INTO restrictions (subject_id, since, note) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                        params![sid, now, note.as_ref().map(Ciphertext::as_bytes)],
                    )
                    .map_err(db_err)?;
                Ok(n == 1)
            })
        })
        .await
    }

    async fn lift_restriction(&self, id: SubjectId, log: LogRecord) -> Result<Toggle, StoreError> {
        self.write(move |c| {
            let sid = id.to_string();
            toggle(c, &sid, &log, |tx| {
                Ok(tx.execute("DELETE FROM restrictions WHERE subject_id = ?1", params![sid]).map_err(db_err)? == 1)
            })
        })
        .await
    }
}
