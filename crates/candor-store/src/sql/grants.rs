//! Grants to recipients ([`GrantStore`](crate::grants::GrantStore)).

use candor_core::SubjectId;

use super::{Arg, Exec, Row, args, change_logged, sql};
use crate::grants::{Grant, split_names};
use crate::{LogRecord, Millis, StoreError};

macro_rules! columns {
    ($p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "recipient, ",
            $p,
            "purpose, ",
            $p,
            "fields, ",
            $p,
            "credential_hash, ",
            $p,
            "created_by, ",
            $p,
            "created_at, ",
            $p,
            "expires_at, ",
            $p,
            "max_reads, ",
            $p,
            "reads, ",
            $p,
            "revoked_at"
        )
    };
}

fn grant(r: &dyn Row) -> Result<Grant, StoreError> {
    Ok(Grant {
        id: r.text(0)?,
        recipient: r.text(1)?,
        purpose: r.text(2)?,
        fields: split_names(&r.text(3)?),
        credential_hash: r.blob(4)?.try_into().map_err(|_| StoreError::Corrupt("grant credential hash".into()))?,
        created_by: r.text(5)?,
        created_at: r.int(6)?,
        expires_at: r.int(7)?,
        max_reads: r.opt_int(8)?.map(|n| n as u64),
        reads: r.count(9)?,
        revoked_at: r.opt_int(10)?,
    })
}

pub(crate) async fn create_grant(
    c: &impl Exec,
    g: Grant,
    subjects: Vec<SubjectId>,
    logs: Vec<LogRecord>,
) -> Result<u64, StoreError> {
    let sql =
        sql!(concat!("INSERT INTO grants (", columns!(""), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, NULL)"));
    let fields = g.fields.join(",");
    let max_reads = g.max_reads.map(|n| n as i64);
    let args = args![
        &g.id,
        &g.recipient,
        &g.purpose,
        &fields,
        &g.credential_hash,
        &g.created_by,
        g.created_at,
        g.expires_at,
        max_reads
    ];
    c.execute(sql, args).await?;
    let ids: Vec<String> = subjects.iter().map(ToString::to_string).collect();
    let mut held = 0;
    if c.postgres() {
        // One statement for all of them.
        let sql = sql!(
            postgres: "INSERT INTO grant_subjects (grant_id, subject_id)
                       SELECT $1, s.id FROM subjects s WHERE s.id = ANY($2) ON CONFLICT DO NOTHING",
            sqlite: "",
        );
        held = c.execute(sql, &[Arg::Text(&g.id), Arg::Texts(&ids)]).await?;
    } else {
        let sql = sql!(
            "INSERT OR IGNORE INTO grant_subjects (grant_id, subject_id)
             SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM subjects WHERE id = $2)"
        );
        for id in &ids {
            held += c.execute(sql, args![&g.id, id]).await?;
        }
    }
    c.log_all(logs).await?;
    Ok(held)
}

pub(crate) async fn grant_by_id(c: &impl Exec, id: String) -> Result<Option<Grant>, StoreError> {
    c.query_opt(sql!(concat!("SELECT ", columns!(""), " FROM grants WHERE id = $1")), args![&id], grant).await
}

pub(crate) async fn grant_subjects(
    c: &impl Exec,
    id: String,
    after: String,
    limit: u32,
) -> Result<Vec<SubjectId>, StoreError> {
    let sql = sql!(
        "SELECT subject_id FROM grant_subjects WHERE grant_id = $1 AND subject_id > $2
         ORDER BY subject_id LIMIT $3"
    );
    c.query(sql, args![&id, &after, limit], |r| r.subject(0)).await
}

pub(crate) async fn count_grant_read(
    c: &impl Exec,
    id: String,
    now: Millis,
    log: LogRecord,
) -> Result<bool, StoreError> {
    let sql = sql!(
        "UPDATE grants SET reads = reads + 1 WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2
         AND (max_reads IS NULL OR reads < max_reads)"
    );
    change_logged(c, sql, args![&id, now], Some(log)).await
}

pub(crate) async fn revoke_grant(
    c: &impl Exec,
    id: String,
    now: Millis,
    logs: Vec<LogRecord>,
) -> Result<bool, StoreError> {
    let sql = sql!("UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL");
    if c.execute(sql, args![&id, now]).await? == 0 {
        return Ok(false);
    }
    c.log_all(logs).await?;
    Ok(true)
}

pub(crate) async fn grant_sizes(c: &impl Exec) -> Result<Vec<(String, u64)>, StoreError> {
    let sql = sql!("SELECT grant_id, COUNT(*) FROM grant_subjects GROUP BY grant_id ORDER BY grant_id");
    c.query(sql, &[], |r| Ok((r.text(0)?, r.count(1)?))).await
}

pub(crate) async fn grants(c: &impl Exec, subject: Option<SubjectId>) -> Result<Vec<Grant>, StoreError> {
    match subject {
        None => {
            c.query(sql!(concat!("SELECT ", columns!(""), " FROM grants ORDER BY created_at DESC, id")), &[], grant)
                .await
        }
        Some(subject) => {
            let sql = sql!(concat!(
                "SELECT ",
                columns!("g."),
                " FROM grants g JOIN grant_subjects s ON s.grant_id = g.id
                 WHERE s.subject_id = $1 ORDER BY g.created_at, g.id"
            ));
            c.query(sql, args![&subject.to_string()], grant).await
        }
    }
}

/// [`GrantStore`](crate::grants::GrantStore) for a store with the runners of [`crate::sql`].
macro_rules! impl_grant_store {
    ($store:ty) => {
        const _: () = {
            use candor_core::SubjectId;
            use $crate::grants::{Grant, GrantStore};
            use $crate::sql::grants as op;
            use $crate::{LogRecord, Millis, StoreError};

            #[async_trait::async_trait]
            impl GrantStore for $store {
                async fn create_grant(
                    &self,
                    g: Grant,
                    subjects: Vec<SubjectId>,
                    logs: Vec<LogRecord>,
                ) -> Result<u64, StoreError> {
                    self.run_tx(move |c| Box::pin(op::create_grant(c, g, subjects, logs))).await
                }

                async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
                    let id = id.to_string();
                    self.run_read(move |c| Box::pin(op::grant_by_id(c, id))).await
                }

                async fn grant_subjects(
                    &self,
                    id: &str,
                    after: Option<SubjectId>,
                    limit: u32,
                ) -> Result<Vec<SubjectId>, StoreError> {
                    let (id, after) = (id.to_string(), after.map(|a| a.to_string()).unwrap_or_default());
                    self.run_read(move |c| Box::pin(op::grant_subjects(c, id, after, limit))).await
                }

                async fn count_grant_read(&self, id: &str, now: Millis, log: LogRecord) -> Result<bool, StoreError> {
                    let id = id.to_string();
                    self.run_tx(move |c| Box::pin(op::count_grant_read(c, id, now, log))).await
                }

                async fn revoke_grant(&self, id: &str, now: Millis, logs: Vec<LogRecord>) -> Result<bool, StoreError> {
                    let id = id.to_string();
                    self.run_tx(move |c| Box::pin(op::revoke_grant(c, id, now, logs))).await
                }

                async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
                    self.run_read(move |c| Box::pin(op::grants(c, None))).await
                }

                async fn grant_sizes(&self) -> Result<Vec<(String, u64)>, StoreError> {
                    self.run_read(move |c| Box::pin(op::grant_sizes(c))).await
                }

                async fn grants_of(&self, subject: SubjectId) -> Result<Vec<Grant>, StoreError> {
                    self.run_read(move |c| Box::pin(op::grants(c, Some(subject)))).await
                }
            }
        };
    };
}
pub(crate) use impl_grant_store;
