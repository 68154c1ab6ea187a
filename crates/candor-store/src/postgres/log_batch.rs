//! Group commit of plain log appends (the entry every audited read writes): the appends that
//! arrive together go into one transaction — one `log_head` lock, one commit, one WAL flush — and
//! each caller is answered with its first index only after that commit.

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::{append_log_tx, pg_err, pool_err};
use crate::{LogRecord, StoreError};

/// Most appends committed together.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<u64, StoreError>>;

#[derive(Clone)]
pub(super) struct LogBatcher {
    tx: mpsc::UnboundedSender<(Vec<LogRecord>, Reply)>,
}

impl LogBatcher {
    pub(super) fn start(pool: Pool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, rx));
        Self { tx }
    }

    /// Appends `records` in the next batch; returns the index of the first once committed.
    pub(super) async fn append(&self, records: Vec<LogRecord>) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((records, reply)).map_err(|_| StoreError::Internal("the log batcher stopped".into()))?;
        answer.await.map_err(|_| StoreError::Internal("the log batcher stopped".into()))?
    }
}

async fn run(pool: Pool, mut rx: mpsc::UnboundedReceiver<(Vec<LogRecord>, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let sizes: Vec<usize> = batch.iter().map(|(r, _)| r.len()).collect();
        let records: Vec<LogRecord> = batch.iter_mut().flat_map(|(r, _)| std::mem::take(r)).collect();
        let result = async {
            let mut client = pool.get().await.map_err(pool_err)?;
            let tx = client.transaction().await.map_err(pg_err)?;
            let first = append_log_tx(&tx, &records).await?;
            tx.commit().await.map_err(pg_err)?;
            Ok::<_, StoreError>(first)
        }
        .await;
        let mut next = result.as_ref().copied().unwrap_or(0);
        for ((_, reply), size) in batch.into_iter().zip(sizes) {
            let _ = reply.send(match &result {
                Ok(_) => Ok(next),
                Err(e) => Err(e.duplicate()),
            });
            next += size as u64;
        }
    }
}
