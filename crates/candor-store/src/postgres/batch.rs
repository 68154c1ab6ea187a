//! Group commit of changes on PostgreSQL: the changes that arrive together run in one
//! transaction, each in a savepoint (a failing change rolls back only itself), and commit once —
//! one `log_head` lock and one WAL flush for the batch. A change hands its log records to the
//! batch's [`LogSink`]; they are appended together, in one multi-row append, just before the
//! commit (records of a change rolled back are dropped). Callers are answered after the commit.

use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use tokio::sync::{mpsc, oneshot};

use super::{append_log_tx, claim_idempotency_keys, pg_err, pool_err};
use crate::{LogRecord, StoreError};

/// The log records of a batch's changes, appended together before the commit.
#[derive(Default)]
pub(super) struct LogSink(std::sync::Mutex<Vec<LogRecord>>);

impl LogSink {
    pub(super) fn push(&self, record: LogRecord) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(record);
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
    fn truncate(&self, len: usize) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).truncate(len);
    }
    /// The records pushed since the sink held `len`, taken out.
    fn take_from(&self, len: usize) -> Vec<LogRecord> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).split_off(len)
    }
    fn extend(&self, records: Vec<LogRecord>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend(records);
    }
    fn take(&self) -> Vec<LogRecord> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Most changes committed together.
const MAX_BATCH: usize = 256;

pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A change: runs on the batch's transaction (in its savepoint) and says whether to keep it.
/// Given no transaction (the batch could not start), it only prepares its delivery.
type Job = Box<dyn for<'t> FnOnce(Option<(&'t Transaction<'t>, &'t LogSink)>) -> BoxFuture<'t, (bool, Deliver)> + Send>;

#[derive(Clone)]
pub(super) struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
}

impl Batcher {
    pub(super) fn start(pool: Pool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, rx));
        Self { tx }
    }

    /// Runs `f` in the next batch; returns its result once the batch is committed.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t Transaction<'t>, &'t LogSink) -> BoxFuture<'t, Result<T, StoreError>> + Send + 'static,
    {
        self.run_keeping(f, |_| true).await
    }

    /// Like [`Batcher::run`], but a successful result for which `keep` says no is rolled back
    /// (for changes that find out midway that they must not happen).
    pub(super) async fn run_keeping<T, F>(&self, f: F, keep: fn(&T) -> bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t Transaction<'t>, &'t LogSink) -> BoxFuture<'t, Result<T, StoreError>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |tx| {
            Box::pin(async move {
                let result = match tx {
                    Some((tx, log)) => f(tx, log).await,
                    None => Err(StoreError::Internal("not run".into())),
                };
                let keep = result.as_ref().is_ok_and(keep);
                let deliver: Deliver = Box::new(move |commit| {
                    let _ = reply.send(commit.and(result));
                });
                (keep, deliver)
            })
        });
        self.tx.send(job).map_err(|_| StoreError::Internal("the batch writer stopped".into()))?;
        answer.await.map_err(|_| StoreError::Internal("the batch writer stopped".into()))?
    }
}

async fn run(pool: Pool, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut delivers: Vec<Deliver> = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        let outcome = async {
            let mut client = pool.get().await.map_err(pool_err)?;
            let mut tx = client.transaction().await.map_err(pg_err)?;
            let sink = LogSink::default();
            for job in jobs.by_ref() {
                let sp = tx.savepoint("change").await.map_err(pg_err)?;
                let logged = sink.len();
                let (mut keep, mut deliver) = job(Some((&sp, &sink))).await;
                if keep {
                    // Claimed in the change's own savepoint: a key used before rolls back only
                    // this change, not the batch.
                    let mut mine = sink.take_from(logged);
                    match claim_idempotency_keys(&sp, &mine).await {
                        Ok(()) => mine.iter_mut().for_each(|r| r.idempotency = None),
                        Err(e) => {
                            keep = false;
                            let first = deliver;
                            deliver = Box::new(move |_| first(Err(e)));
                        }
                    }
                    sink.extend(mine);
                }
                delivers.push(deliver);
                if keep {
                    sp.commit().await.map_err(pg_err)?;
                } else {
                    sink.truncate(logged);
                    sp.rollback().await.map_err(pg_err)?;
                }
            }
            let records = sink.take();
            if !records.is_empty() {
                append_log_tx(&tx, &records).await?;
            }
            tx.commit().await.map_err(pg_err)
        }
        .await;
        // Changes the batch never reached (it failed before them) get the same error.
        for job in jobs {
            delivers.push(job(None).await.1);
        }
        for d in delivers {
            d(match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(e.duplicate()),
            });
        }
    }
}
