//! Customer rights on PostgreSQL: the key store is the `candor_keys` schema, so erasure is one
//! transaction (key destroyed and data deleted together).

use async_trait::async_trait;
use candor_core::rights::{RetentionRule, RuleTarget};
use candor_core::{Ciphertext, FieldName, SubjectId};
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::{PgStore, append_log_tx, pg_err, subject_of};
use crate::rights::{
    Certify, Due, Erasure, ErasureRequest, Expired, Inventory, PendingErasure, Request, RetentionLog, RightsStore,
    Toggle, notified,
};
use crate::{LogRecord, Millis, StoreError};

/// The table and columns a retention rule reads.
fn rule_columns(rule: &RetentionRule) -> (&'static str, &'static str, &'static str) {
    match rule.target {
        RuleTarget::Event => ("events", "event_type", "recorded_at"),
        RuleTarget::Field => ("field_values", "field", "updated_at"),
    }
}

const REQUEST_COLUMNS: &str = "id, subject_id, kind, status, received_at, due_at, created_by, closed_at, closed_by";

fn request_row(r: &tokio_postgres::Row) -> Request {
    Request {
        id: r.get(0),
        subject_id: r.get(1),
        kind: r.get(2),
        status: r.get(3),
        received_at: r.get(4),
        due_at: r.get(5),
        created_by: r.get(6),
        closed_at: r.get(7),
        closed_by: r.get(8),
    }
}

/// Locks the subject's row; `false` if there is none.
async fn lock_subject(tx: &Transaction<'_>, sid: &str) -> Result<bool, StoreError> {
    Ok(tx.query_opt("SELECT 1 FROM subjects WHERE id = $1 FOR UPDATE", &[&sid]).await.map_err(pg_err)?.is_some())
}

/// The certificate kept by an earlier erasure, and when it was made.
async fn kept_certificate(tx: &Transaction<'_>, sid: &str) -> Result<Option<(Millis, String)>, StoreError> {
    let row = tx
        .query_opt("SELECT erased_at, certificate FROM erasures WHERE subject_id = $1", &[&sid])
        .await
        .map_err(pg_err)?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// When the customer's key was destroyed, if it was.
async fn destroyed_at(tx: &Transaction<'_>, sid: &str) -> Result<Option<Millis>, StoreError> {
    Ok(tx
        .query_opt("SELECT destroyed_at FROM candor_keys.subject_keys WHERE subject_id = $1", &[&sid])
        .await
        .map_err(pg_err)?
        .and_then(|r| r.get::<_, Option<i64>>(0)))
}

async fn destroy_key(tx: &Transaction<'_>, sid: &str, now: Millis) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE candor_keys.subject_keys
         SET wrapped_dek = NULL, destroyed_at = $2
         WHERE subject_id = $1 AND destroyed_at IS NULL",
        &[&sid, &now],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

/// The first step of an erasure in `tx`: `None` once the intent is recorded and the key
/// destroyed, or what to answer instead. Locks the subject's row.
async fn begin_erasure(
    tx: &Transaction<'_>,
    sid: &str,
    now: Millis,
    request: &ErasureRequest,
) -> Result<Option<Erasure>, StoreError> {
    if !lock_subject(tx, sid).await? {
        return Ok(Some(match (kept_certificate(tx, sid).await?, destroyed_at(tx, sid).await?) {
            (Some((at, cert)), _) => Erasure::AlreadyErased { erased_at: at, certificate: Some(cert) },
            (None, Some(at)) => Erasure::AlreadyErased { erased_at: at, certificate: None },
            (None, None) => Erasure::NotFound,
        }));
    }
    if tx.query_opt("SELECT 1 FROM legal_holds WHERE subject_id = $1", &[&sid]).await.map_err(pg_err)?.is_some() {
        return Ok(Some(Erasure::Held));
    }
    tx.execute(
        "INSERT INTO pending_erasures (subject_id, requested_at, certificate_id, token_id, role, purpose)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subject_id) DO NOTHING",
        &[&sid, &now, &request.certificate_id, &request.token_id, &request.role, &request.purpose],
    )
    .await
    .map_err(pg_err)?;
    destroy_key(tx, sid, now).await?;
    Ok(None)
}

/// The second step of an erasure in `tx` (see [`RightsStore::finish_erasure`]). Locks the
/// subject's row, then the intent's, so servers completing the same erasure at once take turns
/// and the second finds nothing left to do.
async fn finish_erasure(
    tx: &Transaction<'_>,
    sid: &str,
    certify: Certify,
    log: LogRecord,
) -> Result<Erasure, StoreError> {
    let exists = lock_subject(tx, sid).await?;
    let intent: Option<Millis> = tx
        .query_opt("SELECT requested_at FROM pending_erasures WHERE subject_id = $1 FOR UPDATE", &[&sid])
        .await
        .map_err(pg_err)?
        .map(|r| r.get(0));
    let erased_at = match (intent, destroyed_at(tx, sid).await?) {
        (Some(at), None) => {
            destroy_key(tx, sid, at).await?;
            at
        }
        (Some(at), Some(_)) | (None, Some(at)) => at,
        (None, None) => return Ok(Erasure::NotFound),
    };
    if !exists {
        tx.execute("DELETE FROM pending_erasures WHERE subject_id = $1", &[&sid]).await.map_err(pg_err)?;
        return Ok(match kept_certificate(tx, sid).await? {
            Some((at, cert)) => Erasure::AlreadyErased { erased_at: at, certificate: Some(cert) },
            None => Erasure::AlreadyErased { erased_at, certificate: None },
        });
    }
    // Recipients given the customer's data are told (before the grants go with them), and the
    // certificate names exactly those. The subject's row is locked, so no grant can take them
    // in meanwhile.
    let rows = tx.query(crate::outbox::GRANT_RECIPIENTS_POSTGRES, &[&sid]).await.map_err(pg_err)?;
    let told = notified(rows.iter().map(|r| (r.get(0), r.get(1))).collect());
    for n in &told {
        tx.execute(crate::outbox::NOTIFY_ERASURE_POSTGRES, &[&n.recipient, &sid, &erased_at]).await.map_err(pg_err)?;
    }
    let certificate = certify(&told);
    // Messages stay recognisable as genuine, without anything about the customer.
    tx.execute(crate::messages::KEEP_ERASED_POSTGRES, &[&sid]).await.map_err(pg_err)?;
    // Values, lookup rows, events, consents, ... go with the subject.
    tx.execute("DELETE FROM subjects WHERE id = $1", &[&sid]).await.map_err(pg_err)?;
    tx.execute(
        "INSERT INTO erasures (subject_id, erased_at, certificate) VALUES ($1, $2, $3)
         ON CONFLICT (subject_id) DO UPDATE SET erased_at = excluded.erased_at, certificate = excluded.certificate",
        &[&sid, &erased_at, &certificate],
    )
    .await
    .map_err(pg_err)?;
    tx.execute("DELETE FROM pending_erasures WHERE subject_id = $1", &[&sid]).await.map_err(pg_err)?;
    append_log_tx(tx, std::slice::from_ref(&log)).await?;
    Ok(Erasure::Erased)
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
        notify: Option<(&'static str, Millis)>,
    ) -> Result<Toggle, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let sid = id.to_string();
        if !lock_subject(&tx, &sid).await? {
            return Ok(Toggle::NotFound);
        }
        if tx.execute(sql, args).await.map_err(pg_err)? == 0 {
            return Ok(Toggle::Unchanged);
        }
        if let Some((kind, now)) = notify {
            tx.execute(crate::outbox::ENQUEUE_POSTGRES, &[&sid, &kind, &"", &now]).await.map_err(pg_err)?;
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

    async fn erase_subject_certified(
        &self,
        id: SubjectId,
        now: Millis,
        request: ErasureRequest,
        certify: Certify,
        log: LogRecord,
    ) -> Result<Erasure, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let sid = id.to_string();
        if let Some(done) = begin_erasure(&tx, &sid, now, &request).await? {
            return Ok(done);
        }
        let erased = finish_erasure(&tx, &sid, certify, log).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(erased)
    }

    async fn begin_erasure(&self, id: SubjectId, now: Millis, request: ErasureRequest) -> Result<Erasure, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        if let Some(done) = begin_erasure(&tx, &id.to_string(), now, &request).await? {
            return Ok(done);
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(Erasure::Erased)
    }

    async fn finish_erasure(&self, id: SubjectId, certify: Certify, log: LogRecord) -> Result<Erasure, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let erased = finish_erasure(&tx, &id.to_string(), certify, log).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(erased)
    }

    async fn pending_erasures(&self) -> Result<Vec<PendingErasure>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT subject_id, requested_at, certificate_id, token_id, role, purpose FROM pending_erasures
                 UNION ALL
                 SELECT k.subject_id, k.destroyed_at, NULL, NULL, NULL, NULL FROM candor_keys.subject_keys k
                 WHERE k.destroyed_at IS NOT NULL
                   AND EXISTS (SELECT 1 FROM subjects s WHERE s.id = k.subject_id)
                   AND NOT EXISTS (SELECT 1 FROM pending_erasures p WHERE p.subject_id = k.subject_id)
                 ORDER BY 2, 1",
                &[],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let request = r.get::<_, Option<String>>(2).map(|certificate_id| ErasureRequest {
                    certificate_id,
                    token_id: r.get(3),
                    role: r.get(4),
                    purpose: r.get(5),
                });
                Ok(PendingErasure { subject: subject_of(r.get(0))?, requested_at: r.get(1), request })
            })
            .collect()
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
            None,
        )
        .await
    }

    async fn lift_hold(&self, id: SubjectId, log: LogRecord) -> Result<Toggle, StoreError> {
        let sid = id.to_string();
        self.toggle(id, log, "DELETE FROM legal_holds WHERE subject_id = $1", &[&sid], None).await
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
            Some(("restriction", now)),
        )
        .await
    }

    async fn lift_restriction(&self, id: SubjectId, log: LogRecord) -> Result<Toggle, StoreError> {
        let sid = id.to_string();
        self.toggle(id, log, "DELETE FROM restrictions WHERE subject_id = $1", &[&sid], None).await
    }

    async fn retention_candidates(
        &self,
        rules: &[RetentionRule],
        after: Option<SubjectId>,
        limit: u32,
    ) -> Result<Vec<SubjectId>, StoreError> {
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let names: Vec<String> = rules.iter().map(|r| r.name.as_str().to_string()).collect();
        let mut parts = Vec::new();
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&after];
        for (rule, name_value) in rules.iter().zip(&names) {
            let (table, name, time) = rule_columns(rule);
            let n = args.len();
            parts.push(format!(
                "SELECT subject_id FROM {table} WHERE {name} = ${} AND {time} <= ${} AND subject_id > $1",
                n + 1,
                n + 2
            ));
            args.push(name_value);
            args.push(&rule.cutoff);
        }
        let limit = i64::from(limit);
        let sql = format!(
            "SELECT subject_id FROM ({}) AS due WHERE subject_id NOT IN (SELECT subject_id FROM legal_holds)
             ORDER BY subject_id LIMIT ${}",
            parts.join(" UNION "),
            args.len() + 1
        );
        args.push(&limit);
        let rows = self.client().await?.query(sql.as_str(), &args).await.map_err(pg_err)?;
        rows.iter().map(|r| subject_of(r.get(0))).collect()
    }

    async fn retention_due(&self, rules: &[RetentionRule]) -> Result<Vec<Due>, StoreError> {
        let client = self.client().await?;
        let mut out = Vec::new();
        for rule in rules {
            let (table, name, time) = rule_columns(rule);
            let sql = format!(
                "SELECT COALESCE(SUM(CASE WHEN h.subject_id IS NULL THEN 1 ELSE 0 END), 0)::BIGINT,
                        COUNT(DISTINCT CASE WHEN h.subject_id IS NULL THEN t.subject_id END)::BIGINT,
                        COALESCE(SUM(CASE WHEN h.subject_id IS NULL THEN 0 ELSE 1 END), 0)::BIGINT
                 FROM {table} t LEFT JOIN legal_holds h ON h.subject_id = t.subject_id
                 WHERE t.{name} = $1 AND t.{time} <= $2"
            );
            let r = client.query_one(sql.as_str(), &[&rule.name.as_str(), &rule.cutoff]).await.map_err(pg_err)?;
            out.push(Due {
                rule: rule.clone(),
                items: r.get::<_, i64>(0) as u64,
                subjects: r.get::<_, i64>(1) as u64,
                held_items: r.get::<_, i64>(2) as u64,
            });
        }
        Ok(out)
    }

    async fn apply_retention(
        &self,
        id: SubjectId,
        rules: &[RetentionRule],
        log: RetentionLog,
    ) -> Result<Expired, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let sid = id.to_string();
        if !lock_subject(&tx, &sid).await? {
            return Ok(Expired::default());
        }
        if tx.query_opt("SELECT 1 FROM legal_holds WHERE subject_id = $1", &[&sid]).await.map_err(pg_err)?.is_some() {
            return Ok(Expired { held: true, ..Default::default() });
        }
        let mut expired = Expired::default();
        for rule in rules {
            let (table, name, time) = rule_columns(rule);
            let n = tx
                .execute(
                    format!("DELETE FROM {table} WHERE subject_id = $1 AND {name} = $2 AND {time} <= $3").as_str(),
                    &[&sid, &rule.name.as_str(), &rule.cutoff],
                )
                .await
                .map_err(pg_err)?;
            if n == 0 {
                continue;
            }
            match rule.target {
                RuleTarget::Event => expired.events.push((rule.name.clone(), n)),
                RuleTarget::Field => {
                    tx.execute(
                        "DELETE FROM blind_index WHERE subject_id = $1 AND field = $2",
                        &[&sid, &rule.name.as_str()],
                    )
                    .await
                    .map_err(pg_err)?;
                    expired.fields.push(rule.name.clone());
                }
            }
        }
        if !expired.is_empty() {
            append_log_tx(&tx, &[log(&expired)]).await?;
            tx.commit().await.map_err(pg_err)?;
        }
        Ok(expired)
    }

    async fn insert_request(&self, r: Request, log: LogRecord) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute(
            format!("INSERT INTO requests ({REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)").as_str(),
            &[
                &r.id,
                &r.subject_id,
                &r.kind,
                &r.status,
                &r.received_at,
                &r.due_at,
                &r.created_by,
                &r.closed_at,
                &r.closed_by,
            ],
        )
        .await
        .map_err(pg_err)?;
        append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        tx.commit().await.map_err(pg_err)
    }

    async fn close_request(
        &self,
        id: &str,
        status: &str,
        at: Millis,
        by: &str,
        log: LogRecord,
    ) -> Result<Option<Request>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let changed = tx
            .execute(
                "UPDATE requests SET status = $2, closed_at = $3, closed_by = $4 WHERE id = $1 AND status = 'open'",
                &[&id, &status, &at, &by],
            )
            .await
            .map_err(pg_err)?;
        if changed == 1 {
            append_log_tx(&tx, std::slice::from_ref(&log)).await?;
        }
        let found = tx
            .query_opt(format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1").as_str(), &[&id])
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(found.as_ref().map(request_row))
    }

    async fn request(&self, id: &str) -> Result<Option<Request>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1").as_str(), &[&id])
            .await
            .map_err(pg_err)?;
        Ok(row.as_ref().map(request_row))
    }

    async fn requests(&self, status: Option<&str>, limit: u32) -> Result<Vec<Request>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                format!(
                    "SELECT {REQUEST_COLUMNS} FROM requests WHERE ($1::text IS NULL OR status = $1)
                     ORDER BY received_at DESC, id LIMIT $2"
                )
                .as_str(),
                &[&status, &i64::from(limit)],
            )
            .await
            .map_err(pg_err)?;
        Ok(rows.iter().map(request_row).collect())
    }

    async fn overdue_requests(&self, now: Millis) -> Result<u64, StoreError> {
        let row = self
            .client()
            .await?
            .query_one("SELECT COUNT(*) FROM requests WHERE status = 'open' AND due_at < $1", &[&now])
            .await
            .map_err(pg_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}
