//! The notice outbox ([`OutboxStore`](crate::outbox::OutboxStore)).

use super::{Exec, Row, args, sql};
use crate::grants::split_names;
use crate::outbox::Notice;
use crate::{LogRecord, Millis, StoreError};

macro_rules! columns {
    () => {
        "id, recipient, subject_id, kind, fields, created_at, attempts, next_attempt_at, delivered_at, confirmed_at, \
         last_error"
    };
}

fn notice(r: &dyn Row) -> Result<Notice, StoreError> {
    Ok(Notice {
        id: r.text(0)?,
        recipient: r.text(1)?,
        subject: r.text(2)?,
        kind: r.text(3)?,
        fields: split_names(&r.text(4)?),
        created_at: r.int(5)?,
        attempts: r.int(6)? as u32,
        next_attempt_at: r.int(7)?,
        delivered_at: r.opt_int(8)?,
        confirmed_at: r.opt_int(9)?,
        last_error: r.opt_text(10)?,
    })
}

pub(crate) async fn due_notices(c: &impl Exec, now: Millis, limit: u32) -> Result<Vec<Notice>, StoreError> {
    let sql = sql!(concat!(
        "SELECT ",
        columns!(),
        " FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY created_at, id LIMIT $2"
    ));
    c.query(sql, args![now, limit], notice).await
}

pub(crate) async fn notice_delivered(c: &impl Exec, id: String, now: Millis, log: LogRecord) -> Result<(), StoreError> {
    let sql = sql!("UPDATE outbox SET delivered_at = $2, attempts = attempts + 1, last_error = NULL WHERE id = $1");
    super::change_logged(c, sql, args![&id, now], Some(log)).await.map(drop)
}

pub(crate) async fn notice_failed(c: &impl Exec, id: String, next: Millis, error: String) -> Result<(), StoreError> {
    let sql = sql!("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE id = $1");
    c.execute(sql, args![&id, next, &error]).await.map(drop)
}

pub(crate) async fn confirm_notice(c: &impl Exec, id: String, now: Millis, log: LogRecord) -> Result<bool, StoreError> {
    let sql = sql!(
        "UPDATE outbox SET confirmed_at = COALESCE(confirmed_at, $2), delivered_at = COALESCE(delivered_at, $2)
         WHERE id = $1"
    );
    super::change_logged(c, sql, args![&id, now], Some(log)).await
}

pub(crate) async fn notice_by_id(c: &impl Exec, id: String) -> Result<Option<Notice>, StoreError> {
    c.query_opt(sql!(concat!("SELECT ", columns!(), " FROM outbox WHERE id = $1")), args![&id], notice).await
}

pub(crate) async fn unconfirmed_notices(c: &impl Exec, limit: u32) -> Result<Vec<Notice>, StoreError> {
    let sql = sql!(concat!(
        "SELECT ",
        columns!(),
        " FROM outbox WHERE confirmed_at IS NULL ORDER BY created_at, id LIMIT $1"
    ));
    c.query(sql, args![limit], notice).await
}

pub(crate) async fn notice_counts(c: &impl Exec) -> Result<(u64, u64), StoreError> {
    let sql = sql!(
        postgres: "SELECT COUNT(*) FILTER (WHERE delivered_at IS NULL),
                          COUNT(*) FILTER (WHERE delivered_at IS NOT NULL AND confirmed_at IS NULL) FROM outbox",
        sqlite: "SELECT COALESCE(SUM(delivered_at IS NULL), 0),
                        COALESCE(SUM(delivered_at IS NOT NULL AND confirmed_at IS NULL), 0) FROM outbox",
    );
    c.query_one(sql, &[], |r| Ok((r.count(0)?, r.count(1)?))).await
}

pub(crate) async fn retry_notice(c: &impl Exec, id: String, now: Millis, log: LogRecord) -> Result<bool, StoreError> {
    let sql = sql!("UPDATE outbox SET next_attempt_at = $2 WHERE id = $1 AND delivered_at IS NULL");
    let changed = c.execute(sql, args![&id, now]).await? == 1;
    if changed {
        c.log(log).await?;
    }
    Ok(changed)
}

/// [`OutboxStore`](crate::outbox::OutboxStore) for a store with the runners of [`crate::sql`].
macro_rules! impl_outbox_store {
    ($store:ty) => {
        const _: () = {
            use $crate::outbox::{Notice, OutboxStore};
            use $crate::sql::outbox as op;
            use $crate::{LogRecord, Millis, StoreError};

            #[async_trait::async_trait]
            impl OutboxStore for $store {
                async fn due_notices(&self, now: Millis, limit: u32) -> Result<Vec<Notice>, StoreError> {
                    self.run_read(move |c| Box::pin(op::due_notices(c, now, limit))).await
                }

                async fn notice_delivered(&self, id: &str, now: Millis, log: LogRecord) -> Result<(), StoreError> {
                    let id = id.to_string();
                    self.run_tx(move |c| Box::pin(op::notice_delivered(c, id, now, log))).await
                }

                async fn notice_failed(&self, id: &str, next: Millis, error: &str) -> Result<(), StoreError> {
                    let (id, error) = (id.to_string(), error.chars().take(200).collect::<String>());
                    self.run_write(move |c| Box::pin(op::notice_failed(c, id, next, error))).await
                }

                async fn confirm_notice(&self, id: &str, now: Millis, log: LogRecord) -> Result<bool, StoreError> {
                    let id = id.to_string();
                    self.run_tx(move |c| Box::pin(op::confirm_notice(c, id, now, log))).await
                }

                async fn notice(&self, id: &str) -> Result<Option<Notice>, StoreError> {
                    let id = id.to_string();
                    self.run_read(move |c| Box::pin(op::notice_by_id(c, id))).await
                }

                async fn unconfirmed_notices(&self, limit: u32) -> Result<Vec<Notice>, StoreError> {
                    self.run_read(move |c| Box::pin(op::unconfirmed_notices(c, limit))).await
                }

                async fn notice_counts(&self) -> Result<(u64, u64), StoreError> {
                    self.run_read(move |c| Box::pin(op::notice_counts(c))).await
                }

                async fn retry_notice(&self, id: &str, now: Millis, log: LogRecord) -> Result<bool, StoreError> {
                    let id = id.to_string();
                    self.run_tx(move |c| Box::pin(op::retry_notice(c, id, now, log))).await
                }
            }
        };
    };
}
pub(crate) use impl_outbox_store;
