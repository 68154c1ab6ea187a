//! Breach records ([`BreachStore`](crate::breaches::BreachStore)).

use candor_core::SubjectId;

use super::{Arg, Exec, Row, args, change_logged, sql};
use crate::breaches::Breach;
use crate::grants::split_names;
use crate::{LogRecord, Millis, StoreError};

fn breach(r: &dyn Row) -> Result<Breach, StoreError> {
    Ok(Breach {
        id: r.text(0)?,
        detected_at: r.int(1)?,
        recorded_at: r.int(2)?,
        nature: r.text(3)?,
        categories: split_names(&r.text(4)?),
        customers: r.count(5)?,
        consequences: r.text(6)?,
        measures: r.text(7)?,
        authority_notified_at: r.opt_int(8)?,
        closed_at: r.opt_int(9)?,
    })
}

pub(crate) async fn record_breach(
    c: &impl Exec,
    b: Breach,
    subjects: Vec<SubjectId>,
    logs: Vec<LogRecord>,
) -> Result<(), StoreError> {
    let sql = sql!(
        "INSERT INTO breaches (id, detected_at, recorded_at, nature, categories, customers, consequences, measures,
                               authority_notified_at, closed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)"
    );
    let categories = b.categories.join(",");
    let customers = b.customers as i64;
    let args =
        args![&b.id, b.detected_at, b.recorded_at, &b.nature, &categories, customers, &b.consequences, &b.measures];
    c.execute(sql, args).await?;
    let ids: Vec<String> = subjects.iter().map(ToString::to_string).collect();
    if c.postgres() {
        // One statement for all of them.
        let sql = sql!(
            postgres: "INSERT INTO breach_subjects (breach_id, subject_id)
                       SELECT $1, s.id FROM subjects s WHERE s.id = ANY($2) ON CONFLICT DO NOTHING",
            sqlite: "",
        );
        c.execute(sql, &[Arg::Text(&b.id), Arg::Texts(&ids)]).await?;
    } else {
        let sql = sql!(
            "INSERT OR IGNORE INTO breach_subjects (breach_id, subject_id)
             SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM subjects WHERE id = $2)"
        );
        for id in &ids {
            c.execute(sql, args![&b.id, id]).await?;
        }
    }
    c.log_all(logs).await
}

pub(crate) async fn breaches(c: &impl Exec, subject: Option<SubjectId>) -> Result<Vec<Breach>, StoreError> {
    match subject {
        None => {
            let sql = sql!(
                "SELECT id, detected_at, recorded_at, nature, categories, customers, consequences, measures,
                        authority_notified_at, closed_at
                 FROM breaches ORDER BY detected_at DESC, id"
            );
            c.query(sql, &[], breach).await
        }
        Some(subject) => {
            let sql = sql!(
                "SELECT b.id, b.detected_at, b.recorded_at, b.nature, b.categories, b.customers, b.consequences,
                        b.measures, b.authority_notified_at, b.closed_at
                 FROM breaches b JOIN breach_subjects s ON s.breach_id = b.id
                 WHERE s.subject_id = $1 ORDER BY b.detected_at DESC, b.id"
            );
            c.query(sql, args![&subject.to_string()], breach).await
        }
    }
}

pub(crate) async fn update_breach(
    c: &impl Exec,
    id: String,
    closed: bool,
    at: Millis,
    log: LogRecord,
) -> Result<bool, StoreError> {
    let sql = if closed {
        sql!("UPDATE breaches SET closed_at = COALESCE(closed_at, $2) WHERE id = $1")
    } else {
        sql!("UPDATE breaches SET authority_notified_at = COALESCE(authority_notified_at, $2) WHERE id = $1")
    };
    change_logged(c, sql, args![&id, at], Some(log)).await
}

/// [`BreachStore`](crate::breaches::BreachStore) for a store with the runners of [`crate::sql`].
macro_rules! impl_breach_store {
    ($store:ty) => {
        const _: () = {
            use candor_core::SubjectId;
            use $crate::breaches::{Breach, BreachStore};
            use $crate::sql::breaches as op;
            use $crate::{LogRecord, Millis, StoreError};

            #[async_trait::async_trait]
            impl BreachStore for $store {
                async fn record_breach(
                    &self,
                    b: Breach,
                    subjects: Vec<SubjectId>,
                    logs: Vec<LogRecord>,
                ) -> Result<(), StoreError> {
                    self.run_tx(move |c| Box::pin(op::record_breach(c, b, subjects, logs))).await
                }

                async fn breaches(&self) -> Result<Vec<Breach>, StoreError> {
                    self.run_read(move |c| Box::pin(op::breaches(c, None))).await
                }

                async fn breaches_of(&self, subject: SubjectId) -> Result<Vec<Breach>, StoreError> {
                    self.run_read(move |c| Box::pin(op::breaches(c, Some(subject)))).await
                }

                async fn update_breach(
                    &self,
                    id: &str,
                    closed: bool,
                    at: Millis,
                    log: LogRecord,
                ) -> Result<bool, StoreError> {
                    let id = id.to_string();
                    self.run_tx(move |c| Box::pin(op::update_breach(c, id, closed, at, log))).await
                }
            }
        };
    };
}
pub(crate) use impl_breach_store;
