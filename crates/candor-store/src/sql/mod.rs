//! The vault's statements and transaction logic, written once for both backends.
//!
//! Most of what a store does is the same on SQLite and PostgreSQL: the same tables (see the two
//! `migrations/` folders), the same statements apart from their placeholders, the same steps in
//! one transaction. That part lives here, in one module per sub-trait (and [`core`] for the
//! shared part of [`Store`](crate::Store)); the backends keep only what is genuinely theirs: how
//! a statement is run (their executor and runners), the SQLite group-commit writer, PostgreSQL's
//! batching and locking, the log's append and proofs, creating, loading, finding and importing
//! customers (PostgreSQL's array statements, SQLite's key-first commit), how an erasure is
//! committed, the consent audience stream, the key store's preparation and checks, and the
//! migrations.
//!
//! How it fits together, and why:
//!
//! - **Statements** are written once with PostgreSQL's `$n` placeholders in [`sql!`]. SQLite
//!   reads `$1` as a *named* parameter numbered in order of first appearance, which would bind
//!   wrongly as soon as `$2` appears before `$1`; so the macro also derives, at compile time (a
//!   `const fn`, no cost at run time, same length), the SQLite text with `?n` placeholders,
//!   which SQLite numbers explicitly, exactly as PostgreSQL does. Where the dialects really
//!   differ (`GREATEST` against a two-argument `MAX`, `gen_random_uuid()` against
//!   `randomblob`, `ON CONFLICT DO NOTHING` against `INSERT OR IGNORE`, the key store's schema
//!   `candor_keys` against the attached `keys`), a statement spells both texts out:
//!   `sql!(postgres: "…", sqlite: "…")`. The few statements built at run time (retention rules)
//!   are written for PostgreSQL and converted with [`sqlite_of`].
//! - **Parameters** are [`Arg`]s: an integer, text, bytes or NULL (and, on PostgreSQL only, a
//!   list). Each backend binds them to its own types: PostgreSQL gets an integer as the
//!   `INT4`/`INT2`/`INT8` the statement's parameter was declared as (the schemas use `INTEGER`
//!   for key versions and attempt counts, `BIGINT` for times and sizes), bytes as `BYTEA`, a
//!   NULL typed as the parameter; SQLite binds them as they are (`INTEGER`, `TEXT`, `BLOB`).
//! - **Rows** are read through [`Row`], implemented for both drivers' row types, so the mapping
//!   from a row to the store's structs is written once (PostgreSQL's integer widths are again
//!   the backend's concern).
//! - **Transactions**: the logic of an operation is an `async fn` over an [`Exec`], the
//!   executor a backend hands it. PostgreSQL's executor is truly asynchronous; SQLite's runs
//!   every statement synchronously (rusqlite), on the writer thread or a reader, so its future
//!   never waits and the backend completes it with one poll ([`finish`]). Which connection and
//!   transaction an operation runs in is chosen by the trait implementations here, through a
//!   backend's runners (inherent methods of the same names on both stores):
//!   - `run_read`: a pooled connection (SQLite: a reader; PostgreSQL: each statement its own
//!     transaction);
//!   - `run_snapshot`: a read transaction on a pooled connection, for several statements that
//!     must see one state;
//!   - `run_write`: single statements without a transaction of their own (SQLite: in the next
//!     group commit; PostgreSQL: autocommit);
//!   - `run_tx`: one transaction (SQLite: a savepoint of the next group commit; PostgreSQL: a
//!     transaction of its own, its log records appended in it);
//!   - `run_batched`: the same on SQLite; on PostgreSQL the batcher, which runs the changes
//!     that arrive together in one transaction and appends their log records together;
//!   - `run_batched_keeping`: as `run_batched`, but a result the operation marks as not to be
//!     kept is rolled back (consents for an unknown customer).
//!
//!   A successful result commits; an error rolls back. Few steps differ by backend inside an
//!   operation: [`Exec::lock_log`] (PostgreSQL locks the log head where a one-time change must
//!   happen once across servers) and [`Exec::postgres`] (one statement over an array parameter
//!   instead of one per item).
//! - **Trait implementations** are generated for each store by one macro per sub-trait
//!   (`impl_session_store!` and the like); `Store` itself, whose implementation also holds each
//!   backend's own methods, stays in the backend and calls [`core`] in one line per shared
//!   method. A generic implementation over a backend trait
//!   cannot be written: the async traits need `Send` futures, which PostgreSQL's are and
//!   SQLite's (holding a `&Connection`, which is not `Sync`) are not, even though SQLite's
//!   never leave the thread they run on. Expanded for the concrete store, each method is
//!   checked with the concrete executor.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use candor_core::SubjectId;

use crate::{LogRecord, StoreError};

pub(crate) mod breaches;

/// On SQLite, `field_values`, `blind_index` and the log's links to existing customers
/// (`log_customer_links`, beside `log_subjects` for ids that are no customer's) name a customer
/// by their internal number (`subjects.no`); these row sources give each row the customer's id
/// as `subject_id`, in PostgreSQL's columns, for the statements and the copy that read them by id.
pub(crate) const SQLITE_VALUES_BY_ID: &str = "(SELECT s.id AS subject_id, v.field, v.ciphertext, v.updated_at
      FROM field_values v JOIN subjects s ON s.no = v.subject_no)";
pub(crate) const SQLITE_INDEX_BY_ID: &str = "(SELECT b.field, b.token, s.id AS subject_id, b.key_version
      FROM blind_index b JOIN subjects s ON s.no = b.subject_no)";
pub(crate) const SQLITE_LOG_LINKS_BY_ID: &str = "(SELECT subject_id, idx FROM log_subjects UNION ALL
      SELECT s.id AS subject_id, l.idx FROM log_customer_links l JOIN subjects s ON s.no = l.subject_no)";

pub(crate) mod consents;
pub(crate) mod core;
pub(crate) mod grants;
pub(crate) mod keys;
pub(crate) mod messages;
pub(crate) mod outbox;
pub(crate) mod overrides;
pub(crate) mod rights;
pub(crate) mod sessions;
pub(crate) mod staff;

/// One statement in both dialects. Made with [`sql!`] (or, for a statement built at run time,
/// from its PostgreSQL text and [`sqlite_of`] of it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sql<'a> {
    pub(crate) postgres: &'a str,
    pub(crate) sqlite: &'a str,
}

/// The SQLite text of a statement built at run time (see [`sqlite_text`]).
pub(crate) fn sqlite_of(postgres: &str) -> String {
    let bytes = postgres.as_bytes();
    let mut out = String::with_capacity(postgres.len());
    for (i, ch) in postgres.char_indices() {
        let placeholder = ch == '$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
        out.push(if placeholder { '?' } else { ch });
    }
    out
}

/// The SQLite text of a statement written for PostgreSQL: `$n` placeholders become `?n` (same
/// length, so it fits the array the [`sql!`] macro sizes from the PostgreSQL text).
pub(crate) const fn sqlite_text<const N: usize>(postgres: &str) -> [u8; N] {
    let bytes = postgres.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = if bytes[i] == b'$' && i + 1 < N && bytes[i + 1].is_ascii_digit() { b'?' } else { bytes[i] };
        i += 1;
    }
    out
}

/// A statement for both backends: `sql!("… $1 …")` (PostgreSQL placeholders; the SQLite text is
/// derived at compile time), or `sql!(postgres: "…", sqlite: "…")` where the dialects differ.
macro_rules! sql {
    (postgres: $postgres:expr, sqlite: $sqlite:expr $(,)?) => {
        $crate::sql::Sql { postgres: $postgres, sqlite: $sqlite }
    };
    ($text:expr) => {{
        const POSTGRES: &str = $text;
        const SQLITE_BYTES: [u8; POSTGRES.len()] = $crate::sql::sqlite_text(POSTGRES);
        const SQLITE: &str = match std::str::from_utf8(&SQLITE_BYTES) {
            Ok(text) => text,
            Err(_) => panic!("a statement is not UTF-8"),
        };
        $crate::sql::Sql { postgres: POSTGRES, sqlite: SQLITE }
    }};
}
pub(crate) use sql;

/// The parameters of a statement: `args![a, b, …]`, each converted with `Arg::from`.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        &[$($crate::sql::Arg::from($arg)),*]
    };
}
pub(crate) use args;

/// A statement parameter; see the module documentation for how each backend binds it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
    Null,
    /// A list of texts: a `text[]` on PostgreSQL (`= ANY($n)`); SQLite binds no lists (the
    /// logic runs one statement per item there, see [`Exec::postgres`]).
    Texts(&'a [String]),
    /// A list of byte strings: a `bytea[]` on PostgreSQL (as [`Arg::Texts`]).
    Blobs(&'a [&'a [u8]]),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<u32> for Arg<'_> {
    fn from(v: u32) -> Self {
        Arg::Int(i64::from(v))
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Blob(v)
    }
}

impl<'a> From<&'a Vec<u8>> for Arg<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Arg::Blob(v)
    }
}

impl<'a> From<&'a [u8; 32]> for Arg<'a> {
    fn from(v: &'a [u8; 32]) -> Self {
        Arg::Blob(v)
    }
}

impl<'a, T: Into<Arg<'a>>> From<Option<T>> for Arg<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Arg::Null, Into::into)
    }
}

/// A result row of either backend, read by column index.
pub(crate) trait Row {
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError>;

    fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?.ok_or_else(|| null(i))
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.ok_or_else(|| null(i))
    }
    fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        self.opt_blob(i)?.ok_or_else(|| null(i))
    }
    /// A count or size (stored signed).
    fn count(&self, i: usize) -> Result<u64, StoreError> {
        Ok(self.int(i)? as u64)
    }
    fn subject(&self, i: usize) -> Result<SubjectId, StoreError> {
        parse_subject(&self.text(i)?)
    }
}

fn null(i: usize) -> StoreError {
    StoreError::Corrupt(format!("column {i} of a stored row is unexpectedly empty"))
}

pub(crate) fn parse_subject(s: &str) -> Result<SubjectId, StoreError> {
    SubjectId::parse(s).ok_or_else(|| StoreError::Corrupt("a stored subject id is not a UUID".into()))
}

/// Runs statements for the logic written here: a connection, a transaction or a savepoint of a
/// backend. Errors are already mapped to [`StoreError`] (Unavailable, Conflict, StorageFull, …)
/// by the backend.
pub(crate) trait Exec {
    /// Runs a statement; the number of rows it changed.
    async fn execute(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> Result<u64, StoreError>;

    /// Every row of a query, each mapped by `f`.
    async fn query<T>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        f: impl FnMut(&dyn Row) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError>;

    /// The first row of a query, if any (on PostgreSQL, more than one is an error).
    async fn query_opt<T>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        f: impl FnOnce(&dyn Row) -> Result<T, StoreError> + Send,
    ) -> Result<Option<T>, StoreError>;

    /// The one row of a query that always returns one.
    async fn query_one<T>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        f: impl FnOnce(&dyn Row) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError>;

    /// Takes the log's lock before anything else of the transaction (PostgreSQL: the `log_head`
    /// row, so that servers starting together do a one-time change once; SQLite has one writer).
    async fn lock_log(&self) -> Result<(), StoreError>;

    /// Whether this is PostgreSQL, for the few steps done differently there (one statement over
    /// an array parameter instead of one per item).
    fn postgres(&self) -> bool;

    /// Appends `records` to the log as part of this transaction (PostgreSQL's batcher appends
    /// the records of its whole batch together, just before the commit).
    async fn log_all(&self, records: Vec<LogRecord>) -> Result<(), StoreError>;

    /// Appends one record (see [`Exec::log_all`]).
    async fn log(&self, record: LogRecord) -> Result<(), StoreError> {
        self.log_all(vec![record]).await
    }
}

/// Runs `sql` (an insert that adds its row only when the customer exists, or an update or
/// delete of one row) and, if it changed a row, logs `log`. Returns whether it did.
pub(crate) async fn change_logged(
    c: &impl Exec,
    sql: Sql<'_>,
    args: &[Arg<'_>],
    log: Option<LogRecord>,
) -> Result<bool, StoreError> {
    if c.execute(sql, args).await? == 0 {
        return Ok(false);
    }
    if let Some(log) = log {
        c.log(log).await?;
    }
    Ok(true)
}

pub(crate) fn hash_of(bytes: Vec<u8>) -> Result<crate::Hash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt("a stored log hash is not 32 bytes".into()))
}

/// A log proof's failure as the store's error.
pub(crate) fn proof_err(e: candor_log::merkle::ProofError) -> StoreError {
    use candor_log::merkle::ProofError;
    match e {
        ProofError::Storage(m) => StoreError::Internal(m),
        ProofError::MissingNode { .. } => StoreError::Corrupt(format!("the log's stored hashes are incomplete: {e}")),
        other => StoreError::OutOfRange(other.to_string()),
    }
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The future of an operation on SQLite's executor, boxed to cross the runner (not `Send`).
pub(crate) type LocalFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + 't>>;
/// The same on PostgreSQL (`Send`, as the async traits need).
pub(crate) type SendFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 't>>;

/// Completes a future that never waits (the logic run on SQLite's synchronous executor).
pub(crate) fn finish<T>(f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(StoreError::Internal("a synchronous statement did not complete".into())),
    }
}
