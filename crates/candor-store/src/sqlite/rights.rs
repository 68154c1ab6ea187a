//! Customer rights on SQLite: the key store is the attached `keys` file.

use async_trait::async_trait;
use candor_core::rights::{RetentionRule, RuleTarget};
use candor_core::{Ciphertext, FieldName, SubjectId};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, append_log_tx, db_err, parse_subject};
use super::{execute_cached, query_row_cached};
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

fn request_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Request> {
    Ok(Request {
        id: r.get(0)?,
        subject_id: r.get(1)?,
        kind: r.get(2)?,
        status: r.get(3)?,
        received_at: r.get(4)?,
        due_at: r.get(5)?,
        created_by: r.get(6)?,
        closed_at: r.get(7)?,
        closed_by: r.get(8)?,
    })
}

const REQUEST_COLUMNS: &str = "id, subject_id, kind, status, received_at, due_at, created_by, closed_at, closed_by";

fn subject_exists(c: &Connection, sid: &str) -> Result<bool, StoreError> {
    query_row_cached(c, "SELECT EXISTS (SELECT 1 FROM subjects WHERE id = ?1)", params![sid], |r| r.get(0))
        .map_err(db_err)
}

/// Destroys the customer's key, durably, before their data is touched. The row stays as a
/// tombstone without key bytes; secure_delete overwrites them in the file and the checkpoint
/// moves the change out of the WAL.
fn destroy_key(c: &Connection, sid: &str, now: Millis) -> Result<(), StoreError> {
    execute_cached(
        c,
        "UPDATE keys.subject_keys SET wrapped_dek = NULL, destroyed_at = ?2
         WHERE subject_id = ?1 AND destroyed_at IS NULL",
        params![sid, now],
    )
    .map_err(db_err)?;
    query_row_cached(c, "PRAGMA keys.wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(db_err)?;
    Ok(())
}

/// When the customer's key was destroyed, if it was.
fn destroyed_at(c: &Connection, sid: &str) -> Result<Option<Millis>, StoreError> {
    Ok(query_row_cached(c, "SELECT destroyed_at FROM keys.subject_keys WHERE subject_id = ?1", params![sid], |r| {
        r.get(0)
    })
    .optional()
    .map_err(db_err)?
    .flatten())
}

/// The certificate kept by an earlier erasure, and when it was made.
fn kept_certificate(c: &Connection, sid: &str) -> Result<Option<(Millis, String)>, StoreError> {
    query_row_cached(c, "SELECT erased_at, certificate FROM erasures WHERE subject_id = ?1", params![sid], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
    .map_err(db_err)
}

/// The first step of an erasure, on a connection outside any transaction: `None` once the
/// intent is recorded and the key destroyed, or what to answer instead. The two files are
/// committed one after the other (a transaction over attached WAL databases is not atomic
/// across them), intent first: a crash in between leaves an intent with the key intact, which
/// [`finish_erasure`] completes; never a destroyed key without an intent.
fn begin_erasure(
    c: &Connection,
    sid: &str,
    now: Millis,
    request: &ErasureRequest,
) -> Result<Option<Erasure>, StoreError> {
    if !subject_exists(c, sid)? {
        return Ok(Some(match (kept_certificate(c, sid)?, destroyed_at(c, sid)?) {
            (Some((at, cert)), _) => Erasure::AlreadyErased { erased_at: at, certificate: Some(cert) },
            (None, Some(at)) => Erasure::AlreadyErased { erased_at: at, certificate: None },
            (None, None) => Erasure::NotFound,
        }));
    }
    let held: bool =
        query_row_cached(c, "SELECT EXISTS (SELECT 1 FROM legal_holds WHERE subject_id = ?1)", params![sid], |r| {
            r.get(0)
        })
        .map_err(db_err)?;
    if held {
        return Ok(Some(Erasure::Held));
    }
    // 1. The intent, committed (synchronous = FULL: durable) before the key is touched.
    execute_cached(
        c,
        "INSERT OR IGNORE INTO pending_erasures (subject_id, requested_at, certificate_id, token_id, role, purpose)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![sid, now, request.certificate_id, request.token_id, request.role, request.purpose],
    )
    .map_err(db_err)?;
    // 2. The key, destroyed durably before the data is touched.
    destroy_key(c, sid, now)?;
    Ok(None)
}

/// The second step of an erasure (see [`RightsStore::finish_erasure`]), on a connection
/// outside any transaction.
fn finish_erasure(c: &mut Connection, sid: &str, certify: Certify, log: LogRecord) -> Result<Erasure, StoreError> {
    let intent: Option<Millis> =
        query_row_cached(c, "SELECT requested_at FROM pending_erasures WHERE subject_id = ?1", params![sid], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db_err)?;
    let destroyed = destroyed_at(c, sid)?;
    let erased_at = match (intent, destroyed) {
        (Some(at), None) => {
            // Interrupted between the intent and the key: the key goes first, as always.
            destroy_key(c, sid, at)?;
            at
        }
        (Some(at), Some(_)) | (None, Some(at)) => at,
        (None, None) => return Ok(Erasure::NotFound),
    };
    // 3. Delete the data (values, lookup rows, events, consents, hold and restriction rows go
    //    with the subject), keep the certificate, log the erasure, clear the intent.
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
    if !subject_exists(&tx, sid)? {
        execute_cached(&tx, "DELETE FROM pending_erasures WHERE subject_id = ?1", params![sid]).map_err(db_err)?;
        let kept = kept_certificate(&tx, sid)?;
        tx.commit().map_err(db_err)?;
        return Ok(match kept {
            Some((at, cert)) => Erasure::AlreadyErased { erased_at: at, certificate: Some(cert) },
            None => Erasure::AlreadyErased { erased_at, certificate: None },
        });
    }
    // Recipients given the customer's data are told (before the grants go with them), and the
    // certificate names exactly those.
    let rows = {
        let mut stmt = tx.prepare_cached(crate::outbox::GRANT_RECIPIENTS_SQLITE).map_err(db_err)?;
        let rows = stmt.query_map(params![sid], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err)?;
        rows.collect::<Result<Vec<(String, String)>, _>>().map_err(db_err)?
    };
    let told = notified(rows);
    for n in &told {
        execute_cached(&tx, crate::outbox::NOTIFY_ERASURE_SQLITE, params![n.recipient, sid, erased_at])
            .map_err(db_err)?;
    }
    let certificate = certify(&told);
    // Messages stay recognisable as genuine, without anything about the customer.
    execute_cached(&tx, crate::messages::KEEP_ERASED_SQLITE, params![sid]).map_err(db_err)?;
    execute_cached(&tx, "DELETE FROM subjects WHERE id = ?1", params![sid]).map_err(db_err)?;
    execute_cached(
        &tx,
        "INSERT OR REPLACE INTO erasures (subject_id, erased_at, certificate) VALUES (?1, ?2, ?3)",
        params![sid, erased_at, certificate],
    )
    .map_err(db_err)?;
    execute_cached(&tx, "DELETE FROM pending_erasures WHERE subject_id = ?1", params![sid]).map_err(db_err)?;
    append_log_tx(&tx, std::slice::from_ref(&log))?;
    tx.commit().map_err(db_err)?;
    Ok(Erasure::Erased)
}

impl SqliteStore {
    /// Runs `sql` (its first parameter is the subject id, then `args`) in a transaction that
    /// also appends `log` when it changed a row.
    async fn toggle_row(
        &self,
        id: SubjectId,
        log: LogRecord,
        sql: &'static str,
        args: Vec<Value>,
        notify: Option<(&'static str, Millis)>,
    ) -> Result<Toggle, StoreError> {
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let sid = id.to_string();
            if !subject_exists(&tx, &sid)? {
                return Ok(Toggle::NotFound);
            }
            let params = std::iter::once(Value::Text(sid.clone())).chain(args);
            if execute_cached(&tx, sql, rusqlite::params_from_iter(params)).map_err(db_err)? == 0 {
                return Ok(Toggle::Unchanged);
            }
            if let Some((kind, now)) = notify {
                execute_cached(&tx, crate::outbox::ENQUEUE_SQLITE, params![sid, kind, "", now]).map_err(db_err)?;
            }
            append_log_tx(&tx, std::slice::from_ref(&log))?;
            tx.commit().map_err(db_err)?;
            Ok(Toggle::Changed)
        })
        .await
    }
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
            inv.consents = query_row_cached(&tx,"SELECT COUNT(*) FROM consents WHERE subject_id = ?1", params![sid], |r| r.get::<_, i64>(0))
                .map_err(db_err)? as u64;
            Ok(Some(inv))
        })
        .await
    }

    async fn erase_subject_certified(
        &self,
        id: SubjectId,
        now: Millis,
        request: ErasureRequest,
        certify: Certify,
        log: LogRecord,
    ) -> Result<Erasure, StoreError> {
        self.write_alone(move |c| {
            let sid = id.to_string();
            if let Some(done) = begin_erasure(c, &sid, now, &request)? {
                return Ok(done);
            }
            finish_erasure(c, &sid, certify, log)
        })
        .await
    }

    async fn begin_erasure(&self, id: SubjectId, now: Millis, request: ErasureRequest) -> Result<Erasure, StoreError> {
        self.write_alone(move |c| Ok(begin_erasure(c, &id.to_string(), now, &request)?.unwrap_or(Erasure::Erased)))
            .await
    }

    async fn finish_erasure(&self, id: SubjectId, certify: Certify, log: LogRecord) -> Result<Erasure, StoreError> {
        self.write_alone(move |c| finish_erasure(c, &id.to_string(), certify, log)).await
    }

    async fn pending_erasures(&self) -> Result<Vec<PendingErasure>, StoreError> {
        self.read(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            let mut out = Vec::new();
            {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT subject_id, requested_at, certificate_id, token_id, role, purpose
                         FROM pending_erasures ORDER BY requested_at, subject_id",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            ErasureRequest {
                                certificate_id: r.get(2)?,
                                token_id: r.get(3)?,
                                role: r.get(4)?,
                                purpose: r.get(5)?,
                            },
                        ))
                    })
                    .map_err(db_err)?;
                for row in rows {
                    let (sid, at, request) = row.map_err(db_err)?;
                    out.push(PendingErasure {
                        subject: parse_subject(&sid)?,
                        requested_at: at,
                        request: Some(request),
                    });
                }
                // Keys destroyed with the data still there and no intent recorded.
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT k.subject_id, k.destroyed_at FROM keys.subject_keys k
                         WHERE k.destroyed_at IS NOT NULL
                           AND EXISTS (SELECT 1 FROM subjects s WHERE s.id = k.subject_id)
                           AND NOT EXISTS (SELECT 1 FROM pending_erasures p WHERE p.subject_id = k.subject_id)
                         ORDER BY k.destroyed_at, k.subject_id",
                    )
                    .map_err(db_err)?;
                let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(db_err)?;
                for row in rows {
                    let (sid, at) = row.map_err(db_err)?;
                    out.push(PendingErasure { subject: parse_subject(&sid)?, requested_at: at, request: None });
                }
            }
            out.sort_by_key(|p| p.requested_at);
            Ok(out)
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
        let note = Value::Blob(note.into_bytes());
        self.toggle_row(
            id,
            log,
            "INSERT INTO legal_holds (subject_id, placed_at, note) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            vec![Value::Integer(now), note],
            None,
        )
        .await
    }

    async fn lift_hold(&self, id: SubjectId, log: LogRecord) -> Result<Toggle, StoreError> {
        self.toggle_row(id, log, "DELETE FROM legal_holds WHERE subject_id = ?1", vec![], None).await
    }

    async fn hold(&self, id: SubjectId) -> Result<Option<(Millis, Ciphertext)>, StoreError> {
        self.read(move |c| {
            query_row_cached(
                c,
                "SELECT placed_at, note FROM legal_holds WHERE subject_id = ?1",
                params![id.to_string()],
                |r| Ok((r.get(0)?, Ciphertext::from_bytes(r.get(1)?))),
            )
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
        let note = note.map_or(Value::Null, |n| Value::Blob(n.into_bytes()));
        self.toggle_row(
            id,
            log,
            "INSERT INTO restrictions (subject_id, since, note) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            vec![Value::Integer(now), note],
            Some(("restriction", now)),
        )
        .await
    }

    async fn lift_restriction(&self, id: SubjectId, log: LogRecord) -> Result<Toggle, StoreError> {
        self.toggle_row(id, log, "DELETE FROM restrictions WHERE subject_id = ?1", vec![], None).await
    }

    async fn retention_candidates(
        &self,
        rules: &[RetentionRule],
        after: Option<SubjectId>,
        limit: u32,
    ) -> Result<Vec<SubjectId>, StoreError> {
        let rules = rules.to_vec();
        self.read(move |c| {
            if rules.is_empty() {
                return Ok(Vec::new());
            }
            let after = after.map(|a| a.to_string()).unwrap_or_default();
            let mut parts = Vec::new();
            let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
            for rule in &rules {
                let (table, name, time) = rule_columns(rule);
                let n = args.len();
                parts.push(format!(
                    "SELECT subject_id FROM {table} WHERE {name} = ?{} AND {time} <= ?{} AND subject_id > ?{}",
                    n + 1,
                    n + 2,
                    n + 3
                ));
                args.push(Box::new(rule.name.as_str().to_string()));
                args.push(Box::new(rule.cutoff));
                args.push(Box::new(after.clone()));
            }
            let sql = format!(
                "SELECT subject_id FROM ({}) WHERE subject_id NOT IN (SELECT subject_id FROM legal_holds)
                 ORDER BY subject_id LIMIT ?{}",
                parts.join(" UNION "),
                args.len() + 1
            );
            args.push(Box::new(i64::from(limit)));
            let mut stmt = c.prepare(&sql).map_err(db_err)?;
            let rows =
                stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| r.get::<_, String>(0)).map_err(db_err)?;
            rows.map(|r| parse_subject(&r.map_err(db_err)?)).collect()
        })
        .await
    }

    async fn retention_due(&self, rules: &[RetentionRule]) -> Result<Vec<Due>, StoreError> {
        let rules = rules.to_vec();
        self.read(move |c| {
            let mut out = Vec::new();
            for rule in rules {
                let (table, name, time) = rule_columns(&rule);
                let sql = format!(
                    "SELECT COALESCE(SUM(CASE WHEN h.subject_id IS NULL THEN 1 ELSE 0 END), 0),
                            COUNT(DISTINCT CASE WHEN h.subject_id IS NULL THEN t.subject_id END),
                            COALESCE(SUM(CASE WHEN h.subject_id IS NULL THEN 0 ELSE 1 END), 0)
                     FROM {table} t LEFT JOIN legal_holds h ON h.subject_id = t.subject_id
                     WHERE t.{name} = ?1 AND t.{time} <= ?2"
                );
                let (items, subjects, held): (i64, i64, i64) =
                    query_row_cached(c, &sql, params![rule.name.as_str(), rule.cutoff], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .map_err(db_err)?;
                out.push(Due { rule, items: items as u64, subjects: subjects as u64, held_items: held as u64 });
            }
            Ok(out)
        })
        .await
    }

    async fn apply_retention(
        &self,
        id: SubjectId,
        rules: &[RetentionRule],
        log: RetentionLog,
    ) -> Result<Expired, StoreError> {
        let rules = rules.to_vec();
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let sid = id.to_string();
            let held: bool = query_row_cached(
                &tx,
                "SELECT EXISTS (SELECT 1 FROM legal_holds WHERE subject_id = ?1)",
                params![sid],
                |r| r.get(0),
            )
            .map_err(db_err)?;
            if held {
                return Ok(Expired { held: true, ..Default::default() });
            }
            let mut expired = Expired::default();
            for rule in &rules {
                let (table, name, time) = rule_columns(rule);
                let n = execute_cached(
                    &tx,
                    &format!("DELETE FROM {table} WHERE subject_id = ?1 AND {name} = ?2 AND {time} <= ?3"),
                    params![sid, rule.name.as_str(), rule.cutoff],
                )
                .map_err(db_err)?;
                if n == 0 {
                    continue;
                }
                match rule.target {
                    RuleTarget::Event => expired.events.push((rule.name.clone(), n as u64)),
                    RuleTarget::Field => {
                        execute_cached(
                            &tx,
                            "DELETE FROM blind_index WHERE subject_id = ?1 AND field = ?2",
                            params![sid, rule.name.as_str()],
                        )
                        .map_err(db_err)?;
                        expired.fields.push(rule.name.clone());
                    }
                }
            }
            if !expired.is_empty() {
                append_log_tx(&tx, &[log(&expired)])?;
                tx.commit().map_err(db_err)?;
            }
            Ok(expired)
        })
        .await
    }

    async fn insert_request(&self, r: Request, log: LogRecord) -> Result<(), StoreError> {
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            execute_cached(
                &tx,
                &format!("INSERT INTO requests ({REQUEST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    r.id,
                    r.subject_id,
                    r.kind,
                    r.status,
                    r.received_at,
                    r.due_at,
                    r.created_by,
                    r.closed_at,
                    r.closed_by
                ],
            )
            .map_err(db_err)?;
            append_log_tx(&tx, std::slice::from_ref(&log))?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn close_request(
        &self,
        id: &str,
        status: &str,
        at: Millis,
        by: &str,
        log: LogRecord,
    ) -> Result<Option<Request>, StoreError> {
        let (id, status, by) = (id.to_string(), status.to_string(), by.to_string());
        self.write(move |c| {
            let tx = c.savepoint().map_err(db_err)?;
            let changed = execute_cached(
                &tx,
                "UPDATE requests SET status = ?2, closed_at = ?3, closed_by = ?4 WHERE id = ?1 AND status = 'open'",
                params![id, status, at, by],
            )
            .map_err(db_err)?;
            if changed == 1 {
                append_log_tx(&tx, std::slice::from_ref(&log))?;
            }
            let found = query_row_cached(
                &tx,
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"),
                params![id],
                request_row,
            )
            .optional()
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(found)
        })
        .await
    }

    async fn request(&self, id: &str) -> Result<Option<Request>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            query_row_cached(
                c,
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"),
                params![id],
                request_row,
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn requests(&self, status: Option<&str>, limit: u32) -> Result<Vec<Request>, StoreError> {
        let status = status.map(str::to_string);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {REQUEST_COLUMNS} FROM requests WHERE (?1 IS NULL OR status = ?1)
                     ORDER BY received_at DESC, id LIMIT ?2"
                ))
                .map_err(db_err)?;
            let rows = stmt.query_map(params![status, i64::from(limit)], request_row).map_err(db_err)?;
            rows.map(|r| r.map_err(db_err)).collect()
        })
        .await
    }

    async fn overdue_requests(&self, now: Millis) -> Result<u64, StoreError> {
        self.read(move |c| {
            query_row_cached(
                c,
                "SELECT COUNT(*) FROM requests WHERE status = 'open' AND due_at < ?1",
                params![now],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(db_err)
        })
        .await
    }
}
