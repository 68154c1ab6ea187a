//! The executor the shared logic ([`crate::sql`]) runs on: a pooled connection or a
//! transaction (statements prepared once per connection, in deadpool's statement cache), with
//! the log records of a batched change handed to its batch.

use deadpool_postgres::Transaction;
use tokio_postgres::Statement;
use tokio_postgres::types::{ToSql, Type};

use super::batch::LogSink;
use super::{append_log_tx, pg_err};
use crate::sql::{Arg, Exec, Row, Sql};
use crate::{LogRecord, StoreError};

pub(super) enum Pg<'t> {
    Pooled(&'t deadpool_postgres::ClientWrapper),
    Tx(&'t Transaction<'t>),
    /// A change of a batch: its log records go to the batch's sink.
    Batched(&'t Transaction<'t>, &'t LogSink),
}

type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// Binds `args` as the types PostgreSQL declared for the statement's parameters.
fn bind<'a>(statement: &Statement, args: &[Arg<'a>]) -> Result<Vec<Param<'a>>, StoreError> {
    let types = statement.params();
    if types.len() != args.len() {
        return Err(StoreError::Internal(format!("{} parameters for a statement of {}", args.len(), types.len())));
    }
    let range = |_| StoreError::Internal("an integer parameter is out of its column's range".into());
    args.iter()
        .zip(types)
        .map(|(arg, ty)| {
            Ok(match *arg {
                Arg::Int(v) if *ty == Type::INT4 => Box::new(i32::try_from(v).map_err(range)?) as Param<'a>,
                Arg::Int(v) if *ty == Type::INT2 => Box::new(i16::try_from(v).map_err(range)?),
                Arg::Int(v) => Box::new(v),
                Arg::Text(s) => Box::new(s),
                Arg::Blob(b) => Box::new(b),
                Arg::Texts(list) => Box::new(list),
                Arg::Blobs(list) => Box::new(list),
                Arg::Null if *ty == Type::INT8 => Box::new(None::<i64>),
                Arg::Null if *ty == Type::INT4 => Box::new(None::<i32>),
                Arg::Null if *ty == Type::BYTEA => Box::new(None::<&[u8]>),
                Arg::Null => Box::new(None::<&str>),
            })
        })
        .collect()
}

fn decode(e: tokio_postgres::Error) -> StoreError {
    StoreError::Internal(format!("cannot read a stored row: {e}"))
}

impl Row for tokio_postgres::Row {
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        let ty = self.columns()[i].type_();
        if *ty == Type::INT4 {
            self.try_get::<_, Option<i32>>(i).map(|v| v.map(i64::from)).map_err(decode)
        } else if *ty == Type::INT2 {
            self.try_get::<_, Option<i16>>(i).map(|v| v.map(i64::from)).map_err(decode)
        } else {
            self.try_get(i).map_err(decode)
        }
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.try_get(i).map_err(decode)
    }
    fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        self.try_get(i).map_err(decode)
    }
}

impl Pg<'_> {
    async fn run(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let statement = self.prepare(sql).await?;
        let bound = bind(&statement, args)?;
        let params: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        match self {
            Pg::Pooled(c) => c.query(&statement, &params).await,
            Pg::Tx(t) | Pg::Batched(t, _) => t.query(&statement, &params).await,
        }
        .map_err(pg_err)
    }

    async fn prepare(&self, sql: Sql<'_>) -> Result<Statement, StoreError> {
        match self {
            Pg::Pooled(c) => c.prepare_cached(sql.postgres).await,
            Pg::Tx(t) | Pg::Batched(t, _) => t.prepare_cached(sql.postgres).await,
        }
        .map_err(pg_err)
    }
}

impl Exec for Pg<'_> {
    async fn execute(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let statement = self.prepare(sql).await?;
        let bound = bind(&statement, args)?;
        let params: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        match self {
            Pg::Pooled(c) => c.execute(&statement, &params).await,
            Pg::Tx(t) | Pg::Batched(t, _) => t.execute(&statement, &params).await,
        }
        .map_err(pg_err)
    }

    async fn query<T>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        f: impl FnMut(&dyn Row) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError> {
        let mut f = f;
        self.run(sql, args).await?.iter().map(|r| f(r)).collect()
    }

    async fn query_opt<T>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        f: impl FnOnce(&dyn Row) -> Result<T, StoreError> + Send,
    ) -> Result<Option<T>, StoreError> {
        let rows = self.run(sql, args).await?;
        match rows.as_slice() {
            [] => Ok(None),
            [row] => f(row).map(Some),
            _ => Err(StoreError::Internal("a query expected to return at most one row returned more".into())),
        }
    }

    async fn query_one<T>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        f: impl FnOnce(&dyn Row) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        match self.query_opt(sql, args, f).await? {
            Some(value) => Ok(value),
            None => Err(StoreError::Internal("a query expected to return one row returned none".into())),
        }
    }

    async fn lock_log(&self) -> Result<(), StoreError> {
        self.query_one(crate::sql::sql!("SELECT size FROM log_head FOR UPDATE"), &[], |_| Ok(())).await
    }

    fn postgres(&self) -> bool {
        true
    }

    async fn log_all(&self, records: Vec<LogRecord>) -> Result<(), StoreError> {
        match self {
            Pg::Batched(_, sink) => {
                records.into_iter().for_each(|r| sink.push(r));
                Ok(())
            }
            Pg::Tx(t) => append_log_tx(t, &records).await.map(drop),
            Pg::Pooled(_) => Err(StoreError::Internal("a log record written outside a transaction".into())),
        }
    }
}
