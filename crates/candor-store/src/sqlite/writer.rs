//! Group commit: one writer thread owns the write connection and runs the writes that arrive
//! together in one transaction, each in a savepoint of its own, then commits once. A write is
//! acknowledged only after that commit (with `synchronous = FULL`, once it is durable), so
//! concurrent requests share an fsync instead of queueing for one each.
//!
//! A write that fails rolls back to its savepoint and leaves the others alone. A write with a
//! key-store part (creating a customer) has that part committed in a transaction of its own
//! before the data, so a crash can leave an unused key, never a customer without one. Writes that
//! need their own transactions (erasure: key destroyed durably before the data is deleted) run
//! alone between batches.

use std::panic::{AssertUnwindSafe, catch_unwind};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

/// Most writes committed together.
const MAX_BATCH: usize = 512;

/// Hands the outcome of the batch's commit to the waiting caller.
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write run inside the batch (it uses `Connection::savepoint`), returning its delivery; given
/// an error instead of a connection, it only delivers that error.
type Batched = Box<dyn FnOnce(Result<&mut Connection, StoreError>) -> Deliver + Send>;
/// The key-store part of a write, committed before the batch.
type Pre = Box<dyn FnOnce(&Connection) -> Result<(), StoreError> + Send>;

enum Job {
    Batched { pre: Option<(Pre, oneshot::Sender<Result<(), StoreError>>)>, run: Batched },
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
}

/// The writer thread's mailbox.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

fn lost() -> StoreError {
    StoreError::Internal("the database writer stopped".into())
}

fn panicked() -> StoreError {
    StoreError::Internal("a database write panicked".into())
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(super) fn start(conn: Connection) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("candor-sqlite-writer".into())
            .spawn(move || run(conn, rx))
            .expect("the writer thread starts");
        Self { jobs }
    }

    /// Runs `f` in the next batch; returns once the batch is committed.
    pub(super) async fn batched<T: Send + 'static>(
        &self,
        pre: Option<Pre>,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let run: Batched = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|_| Err(panicked())),
                Err(e) => Err(e),
            };
            Box::new(move |commit: Result<(), StoreError>| {
                let _ = tx.send(commit.and(result));
            })
        });
        let (pre_tx, pre_rx) = oneshot::channel();
        let has_pre = pre.is_some();
        self.jobs.send(Job::Batched { pre: pre.map(|p| (p, pre_tx)), run }).map_err(|_| lost())?;
        if has_pre {
            // The key part's own outcome (an error there means the data part never ran).
            pre_rx.await.map_err(|_| lost())??;
        }
        rx.await.map_err(|_| lost())?
    }

    /// Runs `f` alone on the connection (no batch open), with its own transactions.
    pub(super) async fn alone<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.queue_alone(f).outcome().await
    }

    /// As [`Writer::alone`], but `f` is in the writer's queue when this returns (writes queued
    /// one after the other run in that order); its outcome is awaited separately.
    pub(super) fn queue_alone<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Queued<T> {
        let (tx, rx) = oneshot::channel();
        let sent = self.jobs.send(Job::Alone(Box::new(move |conn| {
            let result = catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|_| Err(panicked()));
            let _ = tx.send(result);
        })));
        Queued(sent.map(|()| rx).map_err(|_| lost()))
    }
}

/// A write in the writer's queue ([`Writer::queue_alone`]).
pub(super) struct Queued<T>(Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>);

impl<T> Queued<T> {
    /// Waits for the write's outcome.
    pub(super) async fn outcome(self) -> Result<T, StoreError> {
        self.0?.await.map_err(|_| lost())?
    }
}

fn run(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut batch = Vec::new();
        for job in jobs {
            match job {
                Job::Alone(f) => {
                    commit_batch(&mut conn, std::mem::take(&mut batch));
                    f(&mut conn);
                    // A write that left a transaction open must not swallow the next batch.
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    // Its entries are in the tree before anything else is written (a write
                    // alone commits its own transactions, most of them extending the tiles
                    // already; this catches any that did not). A failure here is retried
                    // before the next commit.
                    let _ = super::tiles::tile_untiled_entries(&mut conn);
                }
                batched => batch.push(batched),
            }
        }
        commit_batch(&mut conn, batch);
    }
}

fn begin(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(super::db_err)
}

/// Commits the batch's transaction, its entries' tiles first (one write per changed tile for
/// the whole batch, not node rows per entry).
fn commit(conn: &Connection) -> Result<(), StoreError> {
    if let Err(e) = super::tiles::tile_new_entries(conn) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        super::db_err(e)
    })
}

fn commit_batch(conn: &mut Connection, batch: Vec<Job>) {
    if batch.is_empty() {
        return;
    }
    // Phase 1: the key-store parts, committed on their own first.
    let mut runs = Vec::with_capacity(batch.len());
    let mut pres = Vec::new();
    for job in batch {
        if let Job::Batched { pre, run } = job {
            match pre {
                Some(p) => pres.push((p, run)),
                None => runs.push(run),
            }
        }
    }
    if !pres.is_empty() {
        match begin(conn) {
            Err(e) => {
                for ((_, tx), _) in pres {
                    let _ = tx.send(Err(e.duplicate()));
                }
            }
            Ok(()) => {
                let mut passed = Vec::with_capacity(pres.len());
                for ((pre, tx), run) in pres {
                    let outcome = match conn.savepoint() {
                        Ok(mut sp) => {
                            let r = catch_unwind(AssertUnwindSafe(|| pre(&sp))).unwrap_or_else(|_| Err(panicked()));
                            if r.is_ok() {
                                sp.commit().map_err(super::db_err)
                            } else {
                                sp.rollback().map_err(super::db_err).and(r)
                            }
                        }
                        Err(e) => Err(super::db_err(e)),
                    };
                    match outcome {
                        Ok(()) => passed.push((tx, run)),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                }
                match commit(conn) {
                    Ok(()) => {
                        for (tx, run) in passed {
                            let _ = tx.send(Ok(()));
                            runs.push(run);
                        }
                    }
                    Err(e) => {
                        for (tx, _) in passed {
                            let _ = tx.send(Err(e.duplicate()));
                        }
                    }
                }
            }
        }
    }
    if runs.is_empty() {
        return;
    }
    // Phase 2: the data, one savepoint per write, one commit for all.
    if let Err(e) = begin(conn) {
        for run in runs {
            run(Err(e.duplicate()))(Ok(()));
        }
        return;
    }
    let delivers: Vec<Deliver> = runs.into_iter().map(|run| run(Ok(&mut *conn))).collect();
    let result = commit(conn);
    for d in delivers {
        d(match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(e.duplicate()),
        });
    }
}
