//! The storage floor: how fast the database commits bare inserts with exactly the durability
//! settings the store uses, on the same disk, measured in the same benchmark run as the
//! scenarios so each write can be reported as a share of what the storage allows.
//!
//! The rows are 200 bytes (about one sealed field with its ids); the table is created and
//! dropped by the measurement.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::StoreError;

/// What one floor measurement did.
#[derive(Debug, Clone, Copy)]
pub struct FloorRun {
    pub rows: u64,
    pub commits: u64,
    pub elapsed: Duration,
}

impl FloorRun {
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

const ROW: [u8; 200] = [0x5a; 200];

/// Inserts into a table of the SQLite database at `path` (its key store is `keys_path`), opened
/// and configured as the store opens it (WAL, `synchronous = FULL`, `secure_delete`), for
/// `seconds`, committing every `rows_per_commit` rows. Blocking: call from a blocking thread.
pub fn sqlite(path: &Path, keys_path: &Path, seconds: f64, rows_per_commit: usize) -> Result<FloorRun, StoreError> {
    let mut conn = crate::sqlite::open_connection(path, keys_path)?;
    let err = |e: rusqlite::Error| StoreError::Internal(e.to_string());
    conn.execute_batch(
        "DROP TABLE IF EXISTS bench_floor; CREATE TABLE bench_floor (id INTEGER PRIMARY KEY, v BLOB NOT NULL)",
    )
    .map_err(err)?;
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let (mut rows, mut commits) = (0u64, 0u64);
    // At least one commit however slow the machine, so a rate is never 0/elapsed.
    while commits == 0 || start.elapsed() < budget {
        let tx = conn.transaction().map_err(err)?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO bench_floor (v) VALUES (?1)").map_err(err)?;
            for _ in 0..rows_per_commit {
                insert.execute([&ROW[..]]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        rows += rows_per_commit as u64;
        commits += 1;
    }
    let elapsed = start.elapsed();
    conn.execute_batch("DROP TABLE bench_floor").map_err(err)?;
    Ok(FloorRun { rows, commits, elapsed })
}

/// `clients` connections to the PostgreSQL database at `url` insert one row per transaction
/// (autocommit, the server's own `synchronous_commit`) concurrently for `seconds`: PostgreSQL
/// shares WAL flushes between concurrent commits, so this is the floor for concurrent writes.
pub async fn postgres(url: &str, seconds: f64, clients: usize) -> Result<FloorRun, StoreError> {
    let err = |e: tokio_postgres::Error| StoreError::Internal(e.to_string());
    let (setup, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(err)?;
    let driver = tokio::spawn(connection);
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS bench_floor; CREATE TABLE bench_floor (id BIGSERIAL PRIMARY KEY, v BYTEA NOT NULL)",
        )
        .await
        .map_err(err)?;
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            let driver = tokio::spawn(connection);
            let insert = client.prepare("INSERT INTO bench_floor (v) VALUES ($1)").await?;
            let mut rows = 0u64;
            while rows == 0 || start.elapsed() < budget {
                client.execute(&insert, &[&&ROW[..]]).await?;
                rows += 1;
            }
            drop(client);
            let _ = driver.await;
            Ok::<u64, tokio_postgres::Error>(rows)
        }));
    }
    let mut rows = 0;
    for t in tasks {
        rows += t.await.map_err(|e| StoreError::Internal(e.to_string()))?.map_err(err)?;
    }
    let elapsed = start.elapsed();
    setup.batch_execute("DROP TABLE bench_floor").await.map_err(err)?;
    drop(setup);
    let _ = driver.await;
    Ok(FloorRun { rows, commits: rows, elapsed })
}
