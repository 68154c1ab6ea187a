//! The executor the shared logic ([`crate::sql`]) runs on: a connection, transaction or
//! savepoint of SQLite, used synchronously (every future it returns is ready at once).

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::{append_log_tx, db_err, execute_cached};
use crate::sql::{Arg, Exec, Row, Sql};
use crate::{LogRecord, StoreError};

/// A connection (or a transaction or savepoint, which dereference to one).
pub(super) struct Lite<'c>(pub(super) &'c Connection);

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Int(v) => ToSqlOutput::Owned(Value::Integer(v)),
            Arg::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Arg::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Arg::Null => ToSqlOutput::Owned(Value::Null),
            Arg::Texts(_) | Arg::Blobs(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure("SQLite binds no lists".into()));
            }
        })
    }
}

impl Row for rusqlite::Row<'_> {
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.get(i).map_err(db_err)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.get(i).map_err(db_err)
    }
    fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(i).map_err(db_err)
    }
}

impl Exec for Lite<'_> {
    async fn execute(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        execute_cached(self.0, sql.sqlite, params_from_iter(args)).map(|n| n as u64).map_err(db_err)
    }

    async fn query<T>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        mut f: impl FnMut(&dyn Row) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.0.prepare_cached(sql.sqlite).map_err(db_err)?;
        let mut rows = stmt.query(params_from_iter(args)).map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db_err)? {
            out.push(f(row)?);
        }
        Ok(out)
    }

    async fn query_opt<T>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        f: impl FnOnce(&dyn Row) -> Result<T, StoreError> + Send,
    ) -> Result<Option<T>, StoreError> {
        let mut stmt = self.0.prepare_cached(sql.sqlite).map_err(db_err)?;
        stmt.query_row(params_from_iter(args), |row| Ok(f(row))).optional().map_err(db_err)?.transpose()
    }

    async fn query_one<T>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        f: impl FnOnce(&dyn Row) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        let mut stmt = self.0.prepare_cached(sql.sqlite).map_err(db_err)?;
        stmt.query_row(params_from_iter(args), |row| Ok(f(row))).map_err(db_err)?
    }

    async fn lock_log(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn postgres(&self) -> bool {
        false
    }

    async fn log_all(&self, records: Vec<LogRecord>) -> Result<(), StoreError> {
        append_log_tx(self.0, &records).map(drop)
    }
}
