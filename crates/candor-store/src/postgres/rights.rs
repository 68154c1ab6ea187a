//! Customer rights on PostgreSQL: the key store is the `candor_keys` schema, so erasure is one
//! transaction (key destroyed and data deleted together).

use async_trait::async_trait;
use candor_core::{Ciphertext, FieldName, SubjectId};
use tokio_postgres::Transaction;

use super::{PgStore, append_log_tx, pg_err};
use crate::rights::{Erasure, Inventory, RightsStore, Toggle};
use crate::{LogRecord, Millis, StoreError};

/// Locks the subject's row; `false` if there is none.
async fn lock_subject(tx: &Transaction<'_>, sid: &str) -> Result<bool, StoreError> {
    Ok(tx.query_opt("SELECT 1 FROM subjects WHERE id = $1 FOR UPDATE", &[&sid]).await.map_err(pg_err)?.is_some())
}

impl PgStore {
    /// Runs `sql` (one statement on the subject's row set) in a transaction that also appends
    /// `log` when it changed a row.
    async fn toggle(
        &self,
        id: SubjectId,
        log: LogRecord,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Toggle, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        if !lock_subject(&tx, &id.to_string()).await? {
            return Ok(Toggle::NotFound);
        }
        if tx.execute(sql, args).await.map_err(pg_err)? == 0 {
            return Ok(Toggle::Unchanged);
        }
        append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(Toggle::Changed)
    }
}

#[async_trait]
impl RightsStore for PgStore {
    async fn inventory(&self, id: SubjectId) -> Result<Option<Inventory>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.build_transaction().read_only(true).start().await.map_err(pg_err)?;
        let sid = id.to_string();
        if tx.query_opt("SELECT 1 FROM subjects WHERE id = $1", &[&sid]).await.map_err(pg_err)?.is_none() {
            return Ok(None);
        }
        let mut inv = Inventory::default();
        for r in tx
            .query("SELECT field FROM field_values WHERE subject_id = $1 ORDER BY field", &[&sid])
            .await
            .map_err(pg_err)?
        {
            inv.fields.push(FieldName::new(r.get::<_, String>(0)));
        }
        for r in tx
            .query(
                "SELECT event_type, COUNT(*) FROM events WHERE subject_id = $1 GROUP BY event_type ORDER BY event_type",
                &[&sid],
            )
            .await
            .map_err(pg_err)?
        {
            inv.events.push((FieldName::new(r.get::<_, String>(0)), r.get::<_, i64>(1) as u64));
        }
        inv.consents = tx
            .query_one("SELECT COUNT(*) FROM consents WHERE subject_id = $1", &[&sid])
            .await
            .map_err(pg_err)?
            .get::<_, i64>(0) as u64;
        tx.commit().await.map_err(pg_err)?;
        Ok(Some(inv))
    }

    async fn erase_subject(
        &self,
        id: SubjectId,
        now: Millis,
        certificate: String,
        log: LogRecord,
    ) -> Result<Erasure, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let sid = id.to_string();
        if !lock_subject(&tx, &sid).await? {
            let kept = tx
                .query_opt("SELECT erased_at, certificate FROM erasures WHERE subject_id = $1", &[&sid])
                .await
                .map_err(pg_err)?;
            let destroyed = tx
                .query_opt("SELECT destroyed_at FROM candor_keys.subject_keys WHERE subject_id = $1", &[&sid])
                .await
                .map_err(pg_err)?
                .and_then(|r| r.get::<_, Option<i64>>(0));
            return Ok(match (kept, destroyed) {
                (Some(r), _) => Erasure::AlreadyErased { erased_at: r.get(0), certificate: Some(r.get(1)) },
                (None, Some(at)) => Erasure::AlreadyErased { erased_at: at, certificate: None },
                (None, None) => Erasure::NotFound,
            });
        }
        if tx.query_opt("SELECT 1 FROM legal_holds WHERE subject_id = $1", &[&sid]).await.map_err(pg_err)?.is_some() {
            return Ok(Erasure::Held);
        }
        tx.execute(
            "UPDATE candor_keys.subject_keys
             SET kek_version = NULL, dek_version = NULL, wrapped_dek = NULL, destroyed_at = $2
             WHERE subject_id = $1 AND destroyed_at IS NULL",
            &[&sid, &now],
        )
        .await
        .map_err(pg_err)?;
        tx.execute("DELETE FROM subjects WHERE id = $1", &[&sid]).await.map_err(pg_err)?;
        tx.execute(
            "INSERT INTO erasures (subject_id, erased_at, certificate) VALUES ($1, $2, $3)
             ON CONFLICT (subject_id) DO UPDATE SET erased_at = excluded.erased_at, certificate = excluded.certificate",
            &[&sid, &now, &certificate],
        )
        .await
        .map_err(pg_err)?;
        append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(Erasure::Erased)
    }

    async fn place_hold(
        &self,
        id: SubjectId,
        note: Ciphertext,
        now: Millis,
        log: LogRecord,
    ) -> Result<Toggle, StoreError> {
        let sid = id.to_string();
        self.toggle(
            id,
            log,
            "INSERT INTO legal_holds (subject_id, placed_at, note) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&sid, &now, &note.as_bytes()],
        )
        .await
    }

    async fn lift_hold(&self, id: SubjectId, log: LogRecord) -> Result<Toggle, StoreError> {
        let sid = id.to_string();
        self.toggle(id, log, "DELETE FROM legal_holds WHERE subject_id = $1", &[&sid]).await
    }

    async fn hold(&self, id: SubjectId) -> Result<Option<(Millis, Ciphertext)>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT placed_at, note FROM legal_holds WHERE subject_id = $1", &[&id.to_string()])
            .await
            .map_err(pg_err)?;
        Ok(row.map(|r| (r.get(0), Ciphertext::from_bytes(r.get(1)))))
    }

    async fn restrict(
        &self,
        id: SubjectId,
        note: Option<Ciphertext>,
        now: Millis,
        log: LogRecord,
    ) -> Result<Toggle, StoreError> {
        let sid = id.to_string();
        let note = note.as_ref().map(Ciphertext::as_bytes);
        self.toggle(
            id,
            log,
            "INSERT INTO restrictions (subject_id, since, note) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&sid, &now, &note],
        )
        .await
    }

    async fn lift_restriction(&self, id: SubjectId, log: LogRecord) -> Result<Toggle, StoreError> {
        let sid = id.to_string();
        self.toggle(id, log, "DELETE FROM restrictions WHERE subject_id = $1", &[&sid]).await
    }
}
