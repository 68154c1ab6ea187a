//! Customer rights ([`RightsStore`](crate::rights::RightsStore)): inventory, holds,
//! restrictions, retention, requests, and the steps of an erasure. How an erasure's steps are
//! committed stays with each backend: SQLite's key store is another file, so the intent and the
//! destroyed key are committed (and checkpointed) before the data is deleted; PostgreSQL's is a
//! schema of the same database, so one transaction does it all, holding the customer's row.

use candor_core::rights::{RetentionRule, RuleTarget};
use candor_core::{Ciphertext, FieldName, SubjectId};

use super::{Arg, Exec, Row, Sql, args, sql, sqlite_of};
use crate::rights::{
    Certify, Due, Erasure, ErasureRequest, Expired, Inventory, Request, RequestChange, RetentionLog, Toggle, notified,
};
use crate::{LogRecord, Millis, StoreError};

/// The rows a retention rule reads, on PostgreSQL and on SQLite (each with a `subject_id`
/// column), and their name and time columns. SQLite keys a customer's values by their internal
/// number, so there the values are joined back to the customer's id.
fn rule_columns(rule: &RetentionRule) -> (Sql<'static>, &'static str, &'static str) {
    match rule.target {
        RuleTarget::Event => (sql!("events"), "event_type", "recorded_at"),
        RuleTarget::Field => {
            (sql!(postgres: "field_values", sqlite: super::SQLITE_VALUES_BY_ID), "field", "updated_at")
        }
    }
}

macro_rules! request_columns {
    () => {
        "id, subject_id, kind, status, received_at, due_at, created_by, closed_at, closed_by, assignee, waiting_since, \
         paused_ms, reason"
    };
}

fn request_row(r: &dyn Row) -> Result<Request, StoreError> {
    Ok(Request {
        id: r.text(0)?,
        subject_id: r.text(1)?,
        kind: r.text(2)?,
        status: r.text(3)?,
        received_at: r.int(4)?,
        due_at: r.int(5)?,
        created_by: r.text(6)?,
        closed_at: r.opt_int(7)?,
        closed_by: r.opt_text(8)?,
        assignee: r.opt_text(9)?,
        waiting_since: r.opt_int(10)?,
        paused_ms: r.int(11)?,
        reason: r.opt_text(12)?,
    })
}

/// Whether the customer exists; on PostgreSQL their row is locked for the transaction.
pub(crate) async fn lock_subject(c: &impl Exec, sid: &str) -> Result<bool, StoreError> {
    let sql = sql!(
        postgres: "SELECT 1 FROM subjects WHERE id = $1 FOR UPDATE",
        sqlite: "SELECT 1 FROM subjects WHERE id = ?1",
    );
    Ok(c.query_opt(sql, args![sid], |_| Ok(())).await?.is_some())
}

async fn held(c: &impl Exec, sid: &str) -> Result<bool, StoreError> {
    let sql = sql!("SELECT 1 FROM legal_holds WHERE subject_id = $1 LIMIT 1");
    Ok(c.query_opt(sql, args![sid], |_| Ok(())).await?.is_some())
}

/// The certificate kept by an earlier erasure, and when it was made.
async fn kept_certificate(c: &impl Exec, sid: &str) -> Result<Option<(Millis, String)>, StoreError> {
    let sql = sql!("SELECT erased_at, certificate FROM erasures WHERE subject_id = $1");
    c.query_opt(sql, args![sid], |r| Ok((r.int(0)?, r.text(1)?))).await
}

/// When the customer's key was destroyed, if it was.
async fn destroyed_at(c: &impl Exec, sid: &str) -> Result<Option<Millis>, StoreError> {
    let sql = sql!(
        postgres: "SELECT destroyed_at FROM candor_keys.subject_keys WHERE subject_id = $1",
        sqlite: "SELECT destroyed_at FROM keys.subject_keys WHERE subject_id = ?1",
    );
    Ok(c.query_opt(sql, args![sid], |r| r.opt_int(0)).await?.flatten())
}

/// Destroys the customer's key. The row stays as a tombstone without key bytes. On SQLite,
/// `secure_delete` overwrites them in the key store's file and the checkpoint moves the change
/// out of its WAL.
async fn destroy_key(c: &impl Exec, sid: &str, now: Millis) -> Result<(), StoreError> {
    let sql = sql!(
        postgres: "UPDATE candor_keys.subject_keys SET wrapped_dek = NULL, destroyed_at = $2
                   WHERE subject_id = $1 AND destroyed_at IS NULL",
        sqlite: "UPDATE keys.subject_keys SET wrapped_dek = NULL, destroyed_at = ?2
                 WHERE subject_id = ?1 AND destroyed_at IS NULL",
    );
    c.execute(sql, args![sid, now]).await?;
    empty_key_store_wal(c).await
}

/// On SQLite, copies the key store's WAL into its file and truncates it, so that a destroyed
/// key's earlier page image is gone from the WAL too. SQLite answers `busy` rather than an error
/// when it could not (a reader still on an older snapshot after the busy timeout, another
/// connection checkpointing): that is an error here, so the erasure is retried rather than
/// reported done with the key's bytes still in the WAL.
async fn empty_key_store_wal(c: &impl Exec) -> Result<(), StoreError> {
    if c.postgres() {
        return Ok(());
    }
    let checkpoint = sql!(postgres: "", sqlite: "PRAGMA keys.wal_checkpoint(TRUNCATE)");
    if c.query_one(checkpoint, &[], |r| r.int(0)).await? != 0 {
        return Err(StoreError::Unavailable(
            "the key store is busy: a destroyed key is not yet cleared from its write-ahead log; retry".into(),
        ));
    }
    Ok(())
}

/// The first step of an erasure: `None` once the intent is recorded and the key destroyed, or
/// what to answer instead. (SQLite runs it outside any transaction, so the intent is committed
/// before the key is touched: a crash in between leaves an intent with the key intact, which
/// [`finish_key`] completes; never a destroyed key without an intent.)
pub(crate) async fn begin_erasure(
    c: &impl Exec,
    sid: &str,
    now: Millis,
    request: &ErasureRequest,
) -> Result<Option<Erasure>, StoreError> {
    if !lock_subject(c, sid).await? {
        return Ok(Some(match (kept_certificate(c, sid).await?, destroyed_at(c, sid).await?) {
            (Some((at, cert)), _) => Erasure::AlreadyErased { erased_at: at, certificate: Some(cert) },
            (None, Some(at)) => Erasure::AlreadyErased { erased_at: at, certificate: None },
            (None, None) => Erasure::NotFound,
        }));
    }
    if held(c, sid).await? {
        return Ok(Some(Erasure::Held));
    }
    let intent = sql!(
        postgres: "INSERT INTO pending_erasures (subject_id, requested_at, certificate_id, token_id, role, purpose)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subject_id) DO NOTHING",
        sqlite: "INSERT OR IGNORE INTO pending_erasures (subject_id, requested_at, certificate_id, token_id, role, purpose)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    );
    let r = request;
    c.execute(intent, args![sid, now, &r.certificate_id, &r.token_id, &r.role, &r.purpose]).await?;
    destroy_key(c, sid, now).await?;
    Ok(None)
}

/// The key half of finishing an erasure: when it was erased (its key destroyed now if an
/// interrupted erasure left it), or `NotFound` when no erasure was begun.
pub(crate) async fn finish_key(c: &impl Exec, sid: &str) -> Result<Result<Millis, Erasure>, StoreError> {
    let intent = sql!(
        postgres: "SELECT requested_at FROM pending_erasures WHERE subject_id = $1 FOR UPDATE",
        sqlite: "SELECT requested_at FROM pending_erasures WHERE subject_id = ?1",
    );
    let intent = c.query_opt(intent, args![sid], |r| r.int(0)).await?;
    Ok(match (intent, destroyed_at(c, sid).await?) {
        (Some(at), None) => {
            // Interrupted between the intent and the key: the key goes first, as always.
            destroy_key(c, sid, at).await?;
            Ok(at)
        }
        (Some(at), Some(_)) => {
            // The key went, but its erasure stopped before the data (perhaps because the WAL
            // could not be emptied then): empty it now.
            empty_key_store_wal(c).await?;
            Ok(at)
        }
        (None, Some(at)) => Ok(at),
        (None, None) => Err(Erasure::NotFound),
    })
}

/// The data half: deletes the customer's data (values, lookup rows, events, consents, hold and
/// restriction rows go with the subject), tells the recipients, keeps the certificate, logs
/// the erasure and clears the intent.
pub(crate) async fn finish_data(
    c: &impl Exec,
    sid: &str,
    erased_at: Millis,
    certify: Certify,
    log: LogRecord,
) -> Result<Erasure, StoreError> {
    let clear = sql!("DELETE FROM pending_erasures WHERE subject_id = $1");
    if !lock_subject(c, sid).await? {
        c.execute(clear, args![sid]).await?;
        return Ok(match kept_certificate(c, sid).await? {
            Some((at, cert)) => Erasure::AlreadyErased { erased_at: at, certificate: Some(cert) },
            None => Erasure::AlreadyErased { erased_at, certificate: None },
        });
    }
    // Recipients given the customer's data are told (before the grants go with them), and the
    // certificate names exactly those. (On PostgreSQL the subject's row is locked, so no grant
    // can take them in meanwhile.)
    let recipients = sql!(
        "SELECT g.recipient, g.fields FROM grants g JOIN grant_subjects s ON s.grant_id = g.id WHERE s.subject_id = $1"
    );
    let told = notified(c.query(recipients, args![sid], |r| Ok((r.text(0)?, r.text(1)?))).await?);
    let notify = sql!(
        postgres: "INSERT INTO outbox (id, recipient, subject_id, kind, fields, created_at, next_attempt_at)
                   VALUES (replace(gen_random_uuid()::text, '-', ''), $1, $2, 'erasure', '', $3, $3)",
        sqlite: "INSERT INTO outbox (id, recipient, subject_id, kind, fields, created_at, next_attempt_at)
                 VALUES (lower(hex(randomblob(16))), ?1, ?2, 'erasure', '', ?3, ?3)",
    );
    for n in &told {
        c.execute(notify, args![&n.recipient, sid, erased_at]).await?;
    }
    let certificate = certify(&told);
    // Messages stay recognisable as genuine, without anything about the customer.
    let keep = sql!(
        postgres: "INSERT INTO erased_messages (code_hash, channel, sent_at)
                   SELECT code_hash, channel, sent_at FROM messages WHERE subject_id = $1 ON CONFLICT DO NOTHING",
        sqlite: "INSERT OR IGNORE INTO erased_messages (code_hash, channel, sent_at)
                 SELECT code_hash, channel, sent_at FROM messages WHERE subject_id = ?1",
    );
    c.execute(keep, args![sid]).await?;
    c.execute(sql!("DELETE FROM subjects WHERE id = $1"), args![sid]).await?;
    let kept = sql!(
        postgres: "INSERT INTO erasures (subject_id, erased_at, certificate) VALUES ($1, $2, $3)
                   ON CONFLICT (subject_id) DO UPDATE SET erased_at = excluded.erased_at, certificate = excluded.certificate",
        sqlite: "INSERT OR REPLACE INTO erasures (subject_id, erased_at, certificate) VALUES (?1, ?2, ?3)",
    );
    c.execute(kept, args![sid, erased_at, &certificate]).await?;
    c.execute(clear, args![sid]).await?;
    c.log(log).await?;
    Ok(Erasure::Erased)
}

pub(crate) async fn inventory(c: &impl Exec, id: SubjectId) -> Result<Option<Inventory>, StoreError> {
    let sid = id.to_string();
    if c.query_opt(sql!("SELECT 1 FROM subjects WHERE id = $1"), args![&sid], |_| Ok(())).await?.is_none() {
        return Ok(None);
    }
    let fields = sql!(
        postgres: "SELECT field FROM field_values WHERE subject_id = $1 ORDER BY field",
        sqlite: "SELECT v.field FROM field_values v JOIN subjects s ON s.no = v.subject_no WHERE s.id = ?1
                 ORDER BY v.field",
    );
    let events =
        sql!("SELECT event_type, COUNT(*) FROM events WHERE subject_id = $1 GROUP BY event_type ORDER BY event_type");
    Ok(Some(Inventory {
        fields: c.query(fields, args![&sid], |r| Ok(FieldName::new(r.text(0)?))).await?,
        events: c.query(events, args![&sid], |r| Ok((FieldName::new(r.text(0)?), r.count(1)?))).await?,
        consents: c
            .query_one(sql!("SELECT COUNT(*) FROM consents WHERE subject_id = $1"), args![&sid], |r| r.count(0))
            .await?,
    }))
}

/// Runs `sql` (one statement on the customer's rows, `$1` their id) and logs `log` when it
/// changed a row; a restriction also tells the recipients (`notify`: kind and time).
pub(crate) async fn toggle(
    c: &impl Exec,
    id: SubjectId,
    sql: Sql<'_>,
    args: &[Arg<'_>],
    notify: Option<(&str, Millis)>,
    log: LogRecord,
) -> Result<Toggle, StoreError> {
    let sid = id.to_string();
    if !lock_subject(c, &sid).await? {
        return Ok(Toggle::NotFound);
    }
    let mut all = vec![Arg::Text(&sid)];
    all.extend_from_slice(args);
    if c.execute(sql, &all).await? == 0 {
        return Ok(Toggle::Unchanged);
    }
    if let Some((kind, now)) = notify {
        c.execute(super::core::ENQUEUE, args![&sid, kind, "", now]).await?;
    }
    c.log(log).await?;
    Ok(Toggle::Changed)
}

pub(crate) async fn place_hold(
    c: &impl Exec,
    id: SubjectId,
    note: Ciphertext,
    now: Millis,
    log: LogRecord,
) -> Result<Toggle, StoreError> {
    let sql = sql!("INSERT INTO legal_holds (subject_id, placed_at, note) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING");
    toggle(c, id, sql, args![now, note.as_bytes()], None, log).await
}

pub(crate) async fn restrict(
    c: &impl Exec,
    id: SubjectId,
    note: Option<Ciphertext>,
    now: Millis,
    log: LogRecord,
) -> Result<Toggle, StoreError> {
    let sql = sql!("INSERT INTO restrictions (subject_id, since, note) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING");
    toggle(c, id, sql, args![now, note.as_ref().map(Ciphertext::as_bytes)], Some(("restriction", now)), log).await
}

pub(crate) async fn hold(c: &impl Exec, id: SubjectId) -> Result<Option<(Millis, Ciphertext)>, StoreError> {
    let sql = sql!("SELECT placed_at, note FROM legal_holds WHERE subject_id = $1");
    c.query_opt(sql, args![&id.to_string()], |r| Ok((r.int(0)?, Ciphertext::from_bytes(r.blob(1)?)))).await
}

pub(crate) async fn retention_candidates(
    c: &impl Exec,
    rules: Vec<RetentionRule>,
    after: Option<SubjectId>,
    limit: u32,
) -> Result<Vec<SubjectId>, StoreError> {
    if rules.is_empty() {
        return Ok(Vec::new());
    }
    let after = after.map(|a| a.to_string()).unwrap_or_default();
    let (mut postgres, mut sqlite) = (Vec::new(), Vec::new());
    let mut args = vec![Arg::Text(&after)];
    for rule in &rules {
        let (table, name, time) = rule_columns(rule);
        let (n, m) = (args.len() + 1, args.len() + 2);
        let part = |table: &str| {
            format!("SELECT subject_id FROM {table} WHERE {name} = ${n} AND {time} <= ${m} AND subject_id > $1")
        };
        postgres.push(part(table.postgres));
        sqlite.push(part(table.sqlite));
        args.extend([Arg::Text(rule.name.as_str()), Arg::Int(rule.cutoff)]);
    }
    let whole = |parts: Vec<String>| {
        format!(
            "SELECT subject_id FROM ({}) AS due WHERE subject_id NOT IN (SELECT subject_id FROM legal_holds)
             ORDER BY subject_id LIMIT ${}",
            parts.join(" UNION "),
            args.len() + 1
        )
    };
    let (postgres, sqlite) = (whole(postgres), sqlite_of(&whole(sqlite)));
    args.push(Arg::from(limit));
    c.query(Sql { postgres: &postgres, sqlite: &sqlite }, &args, |r| r.subject(0)).await
}

pub(crate) async fn retention_due(c: &impl Exec, rules: Vec<RetentionRule>) -> Result<Vec<Due>, StoreError> {
    let mut out = Vec::new();
    for rule in rules {
        let (table, name, time) = rule_columns(&rule);
        let sqlite = format!(
            "SELECT COALESCE(SUM(CASE WHEN h.subject_id IS NULL THEN 1 ELSE 0 END), 0),
                    COUNT(DISTINCT CASE WHEN h.subject_id IS NULL THEN t.subject_id END),
                    COALESCE(SUM(CASE WHEN h.subject_id IS NULL THEN 0 ELSE 1 END), 0)
             FROM {} t LEFT JOIN legal_holds h ON h.subject_id = t.subject_id
             WHERE t.{name} = ?1 AND t.{time} <= ?2",
            table.sqlite
        );
        // The sums as BIGINT on PostgreSQL (a SUM is NUMERIC there for some argument types).
        let postgres = format!(
            "SELECT COALESCE(SUM(CASE WHEN h.subject_id IS NULL THEN 1 ELSE 0 END), 0)::BIGINT,
                    COUNT(DISTINCT CASE WHEN h.subject_id IS NULL THEN t.subject_id END)::BIGINT,
                    COALESCE(SUM(CASE WHEN h.subject_id IS NULL THEN 0 ELSE 1 END), 0)::BIGINT
             FROM {} t LEFT JOIN legal_holds h ON h.subject_id = t.subject_id
             WHERE t.{name} = $1 AND t.{time} <= $2",
            table.postgres
        );
        let sql = Sql { postgres: &postgres, sqlite: &sqlite };
        let (items, subjects, held_items) = c
            .query_one(sql, args![rule.name.as_str(), rule.cutoff], |r| Ok((r.count(0)?, r.count(1)?, r.count(2)?)))
            .await?;
        out.push(Due { rule, items, subjects, held_items });
    }
    Ok(out)
}

pub(crate) async fn apply_retention(
    c: &impl Exec,
    id: SubjectId,
    rules: Vec<RetentionRule>,
    log: RetentionLog,
) -> Result<Expired, StoreError> {
    let sid = id.to_string();
    if !lock_subject(c, &sid).await? {
        return Ok(Expired::default());
    }
    if held(c, &sid).await? {
        return Ok(Expired { held: true, ..Default::default() });
    }
    let mut expired = Expired::default();
    for rule in &rules {
        let sql = match rule.target {
            RuleTarget::Event => {
                sql!("DELETE FROM events WHERE subject_id = $1 AND event_type = $2 AND recorded_at <= $3")
            }
            RuleTarget::Field => sql!(
                postgres: "DELETE FROM field_values WHERE subject_id = $1 AND field = $2 AND updated_at <= $3",
                sqlite: "DELETE FROM field_values WHERE subject_no = (SELECT no FROM subjects WHERE id = ?1)
                         AND field = ?2 AND updated_at <= ?3",
            ),
        };
        let n = c.execute(sql, args![&sid, rule.name.as_str(), rule.cutoff]).await?;
        if n == 0 {
            continue;
        }
        match rule.target {
            RuleTarget::Event => expired.events.push((rule.name.clone(), n)),
            RuleTarget::Field => {
                c.execute(super::core::UNINDEX, args![&sid, rule.name.as_str()]).await?;
                expired.fields.push(rule.name.clone());
            }
        }
    }
    if !expired.is_empty() {
        c.log(log(&expired)).await?;
    }
    Ok(expired)
}

pub(crate) async fn insert_request(c: &impl Exec, r: Request, log: LogRecord) -> Result<(), StoreError> {
    let sql = sql!(concat!(
        "INSERT INTO requests (",
        request_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ));
    let args = args![
        &r.id,
        &r.subject_id,
        &r.kind,
        &r.status,
        r.received_at,
        r.due_at,
        &r.created_by,
        r.closed_at,
        r.closed_by.as_ref(),
        r.assignee.as_ref(),
        r.waiting_since,
        r.paused_ms,
        r.reason.as_ref()
    ];
    c.execute(sql, args).await?;
    c.log(log).await
}

pub(crate) async fn close_request(
    c: &impl Exec,
    id: String,
    status: String,
    reason: Option<String>,
    at: Millis,
    by: String,
    log: LogRecord,
) -> Result<Option<Request>, StoreError> {
    let sql = sql!(
        "UPDATE requests SET status = $2, reason = $3, closed_at = $4, closed_by = $5 WHERE id = $1 AND status = 'open'"
    );
    if c.execute(sql, args![&id, &status, reason.as_ref(), at, &by]).await? == 1 {
        c.log(log).await?;
    }
    request(c, id).await
}

pub(crate) async fn change_request(
    c: &impl Exec,
    id: String,
    change: RequestChange,
    log: LogRecord,
) -> Result<Option<(Request, bool)>, StoreError> {
    let changed = match &change {
        RequestChange::Assign(to) => {
            let sql = sql!(
                postgres: "UPDATE requests SET assignee = $2 WHERE id = $1 AND status = 'open' AND assignee IS DISTINCT FROM $2",
                sqlite: "UPDATE requests SET assignee = ?2 WHERE id = ?1 AND status = 'open' AND assignee IS NOT ?2",
            );
            c.execute(sql, args![&id, to.as_ref()]).await?
        }
        RequestChange::AwaitIdentity { at } => {
            let sql = sql!(
                "UPDATE requests SET waiting_since = $2 WHERE id = $1 AND status = 'open' AND waiting_since IS NULL"
            );
            c.execute(sql, args![&id, *at]).await?
        }
        RequestChange::IdentityProven { at } => {
            // The deadline moves by the time the clock stood still (never backwards).
            let sql = sql!(
                "UPDATE requests SET \
                 due_at = due_at + CASE WHEN $2 > waiting_since THEN $2 - waiting_since ELSE 0 END, \
                 paused_ms = paused_ms + CASE WHEN $2 > waiting_since THEN $2 - waiting_since ELSE 0 END, \
                 waiting_since = NULL \
                 WHERE id = $1 AND status = 'open' AND waiting_since IS NOT NULL"
            );
            c.execute(sql, args![&id, *at]).await?
        }
    } == 1;
    if changed {
        c.log(log).await?;
    }
    Ok(request(c, id).await?.map(|r| (r, changed)))
}

pub(crate) async fn subject_requests(
    c: &impl Exec,
    subject: SubjectId,
    limit: u32,
) -> Result<Vec<Request>, StoreError> {
    let sql = sql!(concat!(
        "SELECT ",
        request_columns!(),
        " FROM requests WHERE subject_id = $1 ORDER BY received_at DESC, id LIMIT $2"
    ));
    c.query(sql, args![&subject.to_string(), limit], request_row).await
}

pub(crate) async fn request(c: &impl Exec, id: String) -> Result<Option<Request>, StoreError> {
    c.query_opt(sql!(concat!("SELECT ", request_columns!(), " FROM requests WHERE id = $1")), args![&id], request_row)
        .await
}

pub(crate) async fn requests(c: &impl Exec, status: Option<String>, limit: u32) -> Result<Vec<Request>, StoreError> {
    let sql = sql!(
        postgres: concat!(
            "SELECT ",
            request_columns!(),
            " FROM requests WHERE ($1::text IS NULL OR status = $1) ORDER BY received_at DESC, id LIMIT $2"
        ),
        sqlite: concat!(
            "SELECT ",
            request_columns!(),
            " FROM requests WHERE (?1 IS NULL OR status = ?1) ORDER BY received_at DESC, id LIMIT ?2"
        ),
    );
    c.query(sql, args![status.as_ref(), limit], request_row).await
}

pub(crate) async fn overdue_requests(c: &impl Exec, now: Millis) -> Result<u64, StoreError> {
    let sql = sql!("SELECT COUNT(*) FROM requests WHERE status = 'open' AND due_at < $1 AND waiting_since IS NULL");
    c.query_one(sql, args![now], |r| r.count(0)).await
}

/// [`RightsStore`](crate::rights::RightsStore) for a store with the runners of [`crate::sql`],
/// an inherent `erase` (begin and/or finish an erasure, committed as the backend must) and an
/// inherent `pending` (the erasures left unfinished).
macro_rules! impl_rights_store {
    ($store:ty) => {
        const _: () = {
            use candor_core::rights::RetentionRule;
            use candor_core::{Ciphertext, SubjectId};
            use $crate::rights::{
                Certify, Due, Erasure, ErasureRequest, Expired, Inventory, PendingErasure, Request, RequestChange,
                RetentionLog, RightsStore, Toggle,
            };
            use $crate::sql::rights as op;
            use $crate::sql::{args, sql};
            use $crate::{LogRecord, Millis, StoreError};

            #[async_trait::async_trait]
            impl RightsStore for $store {
                async fn inventory(&self, id: SubjectId) -> Result<Option<Inventory>, StoreError> {
                    self.run_snapshot(move |c| Box::pin(op::inventory(c, id))).await
                }

                async fn erase_subject_certified(
                    &self,
                    id: SubjectId,
                    now: Millis,
                    request: ErasureRequest,
                    certify: Certify,
                    log: LogRecord,
                ) -> Result<Erasure, StoreError> {
                    self.erase(id, Some((now, request)), Some((certify, log))).await
                }

                async fn begin_erasure(
                    &self,
                    id: SubjectId,
                    now: Millis,
                    request: ErasureRequest,
                ) -> Result<Erasure, StoreError> {
                    self.erase(id, Some((now, request)), None).await
                }

                async fn finish_erasure(
                    &self,
                    id: SubjectId,
                    certify: Certify,
                    log: LogRecord,
                ) -> Result<Erasure, StoreError> {
                    self.erase(id, None, Some((certify, log))).await
                }

                async fn pending_erasures(&self) -> Result<Vec<PendingErasure>, StoreError> {
                    self.pending().await
                }

                async fn place_hold(
                    &self,
                    id: SubjectId,
                    note: Ciphertext,
                    now: Millis,
                    log: LogRecord,
                ) -> Result<Toggle, StoreError> {
                    self.run_tx(move |c| Box::pin(op::place_hold(c, id, note, now, log))).await
                }

                async fn lift_hold(&self, id: SubjectId, log: LogRecord) -> Result<Toggle, StoreError> {
                    let sql = sql!("DELETE FROM legal_holds WHERE subject_id = $1");
                    self.run_tx(move |c| Box::pin(async move { op::toggle(c, id, sql, args![], None, log).await }))
                        .await
                }

                async fn hold(&self, id: SubjectId) -> Result<Option<(Millis, Ciphertext)>, StoreError> {
                    self.run_read(move |c| Box::pin(op::hold(c, id))).await
                }

                async fn restrict(
                    &self,
                    id: SubjectId,
                    note: Option<Ciphertext>,
                    now: Millis,
                    log: LogRecord,
                ) -> Result<Toggle, StoreError> {
                    self.run_tx(move |c| Box::pin(op::restrict(c, id, note, now, log))).await
                }

                async fn lift_restriction(&self, id: SubjectId, log: LogRecord) -> Result<Toggle, StoreError> {
                    let sql = sql!("DELETE FROM restrictions WHERE subject_id = $1");
                    self.run_tx(move |c| Box::pin(async move { op::toggle(c, id, sql, args![], None, log).await }))
                        .await
                }

                async fn retention_candidates(
                    &self,
                    rules: &[RetentionRule],
                    after: Option<SubjectId>,
                    limit: u32,
                ) -> Result<Vec<SubjectId>, StoreError> {
                    let rules = rules.to_vec();
                    self.run_read(move |c| Box::pin(op::retention_candidates(c, rules, after, limit))).await
                }

                async fn retention_due(&self, rules: &[RetentionRule]) -> Result<Vec<Due>, StoreError> {
                    let rules = rules.to_vec();
                    self.run_read(move |c| Box::pin(op::retention_due(c, rules))).await
                }

                async fn apply_retention(
                    &self,
                    id: SubjectId,
                    rules: &[RetentionRule],
                    log: RetentionLog,
                ) -> Result<Expired, StoreError> {
                    let rules = rules.to_vec();
                    self.run_tx(move |c| Box::pin(op::apply_retention(c, id, rules, log))).await
                }

                async fn insert_request(&self, r: Request, log: LogRecord) -> Result<(), StoreError> {
                    self.run_tx(move |c| Box::pin(op::insert_request(c, r, log))).await
                }

                async fn close_request(
                    &self,
                    id: &str,
                    status: &str,
                    reason: Option<&str>,
                    at: Millis,
                    by: &str,
                    log: LogRecord,
                ) -> Result<Option<Request>, StoreError> {
                    let (id, status, by) = (id.to_string(), status.to_string(), by.to_string());
                    let reason = reason.map(str::to_string);
                    self.run_tx(move |c| Box::pin(op::close_request(c, id, status, reason, at, by, log))).await
                }

                async fn change_request(
                    &self,
                    id: &str,
                    change: RequestChange,
                    log: LogRecord,
                ) -> Result<Option<(Request, bool)>, StoreError> {
                    let id = id.to_string();
                    self.run_tx(move |c| Box::pin(op::change_request(c, id, change, log))).await
                }

                async fn subject_requests(&self, subject: SubjectId, limit: u32) -> Result<Vec<Request>, StoreError> {
                    self.run_read(move |c| Box::pin(op::subject_requests(c, subject, limit))).await
                }

                async fn request(&self, id: &str) -> Result<Option<Request>, StoreError> {
                    let id = id.to_string();
                    self.run_read(move |c| Box::pin(op::request(c, id))).await
                }

                async fn requests(&self, status: Option<&str>, limit: u32) -> Result<Vec<Request>, StoreError> {
                    let status = status.map(str::to_string);
                    self.run_read(move |c| Box::pin(op::requests(c, status, limit))).await
                }

                async fn overdue_requests(&self, now: Millis) -> Result<u64, StoreError> {
                    self.run_read(move |c| Box::pin(op::overdue_requests(c, now))).await
                }
            }
        };
    };
}
pub(crate) use impl_rights_store;
