//! Break-glass overrides ([`OverrideStore`](crate::overrides::OverrideStore)).

use candor_core::{Ciphertext, SubjectId};

use super::{Exec, args, sql};
use crate::overrides::BreakGlass;
use crate::{LogRecord, Millis, StoreError};

macro_rules! columns {
    () => {
        "id, subject_id, token_id, role, purpose, reason, opened_at, expires_at"
    };
}

pub(crate) async fn open_break_glass(c: &impl Exec, b: BreakGlass, log: LogRecord) -> Result<bool, StoreError> {
    let sql = sql!(concat!(
        "INSERT INTO break_glass (",
        columns!(),
        ") SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM subjects WHERE id = $2)"
    ));
    let subject = b.subject.to_string();
    let args = args![&b.id, &subject, &b.token_id, &b.role, &b.purpose, b.reason.as_bytes(), b.opened_at, b.expires_at];
    if c.execute(sql, args).await? == 0 {
        return Ok(false);
    }
    // Counted where erasure does not reach (the override's row goes with the customer).
    let count = sql!(
        postgres: "INSERT INTO counters (name, value) VALUES ('break_glass_opened', 1)
                   ON CONFLICT (name) DO UPDATE SET value = counters.value + 1",
        sqlite: "INSERT INTO counters (name, value) VALUES ('break_glass_opened', 1)
                 ON CONFLICT (name) DO UPDATE SET value = value + 1",
    );
    c.execute(count, &[]).await?;
    c.log(log).await?;
    Ok(true)
}

pub(crate) async fn active_break_glass(
    c: &impl Exec,
    token_id: String,
    subject: SubjectId,
    purpose: String,
    now: Millis,
) -> Result<Option<String>, StoreError> {
    let sql = sql!(
        "SELECT id FROM break_glass WHERE token_id = $1 AND subject_id = $2 AND purpose = $3
         AND opened_at <= $4 AND expires_at > $4 ORDER BY expires_at DESC LIMIT 1"
    );
    c.query_opt(sql, args![&token_id, &subject.to_string(), &purpose, now], |r| r.text(0)).await
}

pub(crate) async fn break_glass_for(c: &impl Exec, subject: SubjectId) -> Result<Vec<BreakGlass>, StoreError> {
    let sql = sql!(concat!("SELECT ", columns!(), " FROM break_glass WHERE subject_id = $1 ORDER BY opened_at, id"));
    c.query(sql, args![&subject.to_string()], |r| {
        Ok(BreakGlass {
            id: r.text(0)?,
            subject: r.subject(1)?,
            token_id: r.text(2)?,
            role: r.text(3)?,
            purpose: r.text(4)?,
            reason: Ciphertext::from_bytes(r.blob(5)?),
            opened_at: r.int(6)?,
            expires_at: r.int(7)?,
        })
    })
    .await
}

pub(crate) async fn break_glass_counts(c: &impl Exec, now: Millis) -> Result<(u64, u64), StoreError> {
    let sql = sql!(
        "SELECT (SELECT COALESCE(MAX(value), 0) FROM counters WHERE name = 'break_glass_opened'),
                (SELECT COUNT(*) FROM break_glass WHERE opened_at <= $1 AND expires_at > $1)"
    );
    c.query_one(sql, args![now], |r| Ok((r.count(0)?, r.count(1)?))).await
}

/// [`OverrideStore`](crate::overrides::OverrideStore) for a store with the runners of
/// [`crate::sql`].
macro_rules! impl_override_store {
    ($store:ty) => {
        const _: () = {
            use candor_core::SubjectId;
            use $crate::overrides::{BreakGlass, OverrideStore};
            use $crate::sql::overrides as op;
            use $crate::{LogRecord, Millis, StoreError};

            #[async_trait::async_trait]
            impl OverrideStore for $store {
                async fn open_break_glass(&self, b: BreakGlass, log: LogRecord) -> Result<bool, StoreError> {
                    self.run_tx(move |c| Box::pin(op::open_break_glass(c, b, log))).await
                }

                async fn active_break_glass(
                    &self,
                    token_id: &str,
                    subject: SubjectId,
                    purpose: &str,
                    now: Millis,
                ) -> Result<Option<String>, StoreError> {
                    let (token_id, purpose) = (token_id.to_string(), purpose.to_string());
                    self.run_read(move |c| Box::pin(op::active_break_glass(c, token_id, subject, purpose, now))).await
                }

                async fn break_glass_for(&self, subject: SubjectId) -> Result<Vec<BreakGlass>, StoreError> {
                    self.run_read(move |c| Box::pin(op::break_glass_for(c, subject))).await
                }

                async fn break_glass_counts(&self, now: Millis) -> Result<(u64, u64), StoreError> {
                    self.run_read(move |c| Box::pin(op::break_glass_counts(c, now))).await
                }
            }
        };
    };
}
pub(crate) use impl_override_store;
