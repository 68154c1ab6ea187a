//! `candor-bench`: Candor's benchmarks (the HTTP scenarios against real servers, the storage
//! floor, log, rights, key-rotation and breach-assessment runs), printed as tables and, with
//! `--json`, written with the machine. A tool of the developers, not part of the product: it
//! is not in the workspace's default members and ships in no installation. It seeds data
//! through the store's test support, and starts `candor serve` (the `candor` binary beside it,
//! or `$CANDOR_BIN`) for `--server-process` and the HSM runs.
#![forbid(unsafe_code)]

mod keys;
mod rights;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

/// Measure the hot paths (sealing, blind index, lookup, every core HTTP operation) and print
/// ops/s; see BENCHMARKS.md.
#[derive(Parser)]
#[command(name = "candor-bench", version)]
struct Args {
    /// Customers to store before measuring lookups.
    #[arg(long, default_value_t = 10_000)]
    subjects: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Build a log of this many entries and measure appends, proofs and verification
    /// (0 skips the log benchmarks).
    #[arg(long, default_value_t = 100_000)]
    log_entries: u64,
    /// Events of the customer in the rights benchmark (report, export, erasure, retention;
    /// 0 skips it).
    #[arg(long, default_value_t = 10_000)]
    rights_events: u64,
    /// Also write every measurement, with the machine, as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Customers to load (full profile, two purchases each, with a progress bar) before the
    /// HTTP scenarios, which then run against all of them.
    #[arg(long, default_value_t = 0)]
    customers: usize,
    /// Customers in the key-rotation and breach-assessment benchmark (0 skips it).
    #[arg(long, default_value_t = 0)]
    keys: usize,
    /// Customers in the consent audience benchmark (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    audience: usize,
    /// Also run the HTTP scenarios on this PostgreSQL server (in a fresh database that is
    /// dropped afterwards), with 1 and 2 server instances.
    #[arg(long)]
    postgres: Option<String>,
    /// Serve the SQLite HTTP scenarios from a separate `candor serve` process, so the
    /// server's own CPU and peak memory are measured (instead of servers in this process).
    #[arg(long)]
    server_process: bool,
}

/// The `candor` binary the benchmarks start (`candor serve`, `candor keys …`): `$CANDOR_BIN`,
/// or the one built beside this benchmark (`cargo build --release --workspace`).
pub fn candor_exe() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CANDOR_BIN") {
        return Ok(PathBuf::from(path));
    }
    let beside = std::env::current_exe()?.with_file_name(format!("candor{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        beside.exists(),
        "{} not found: build the workspace first (cargo build --release --workspace) or set CANDOR_BIN",
        beside.display()
    );
    Ok(beside)
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Benchmarks print a table; per-request logging would drown it (and cost time).
    let filter = tracing_subscriber::EnvFilter::try_from_env("CANDOR_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let Args {
        subjects,
        seconds,
        log_entries,
        audience,
        rights_events,
        keys,
        json,
        customers,
        postgres,
        server_process,
    } = args;
    eprintln!(
        "candor-bench: about 30 measurements of {seconds} s each, plus loading {subjects} customers{}{}{}; \
             with the defaults this takes several minutes. For a quick look: \
             candor-bench --subjects 1000 --seconds 0.2 --log-entries 10000 --audience 10000 --rights-events 1000",
        if log_entries > 0 { format!(", a {log_entries}-entry log") } else { String::new() },
        if audience > 0 { format!(", a {audience}-customer consent audience") } else { String::new() },
        if rights_events > 0 { format!(", a customer with {rights_events} events") } else { String::new() },
    );
    let options =
        scenarios::BenchOptions { postgres, subjects, seconds, log_entries, audience, customers, server_process };
    scenarios::run(options).await?;
    if rights_events > 0 {
        rights::run(rights_events).await?;
    }
    if keys > 0 {
        keys::run(keys).await?;
    }
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&scenarios::results_json())?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("measurements written to {}", path.display());
    }
    Ok(())
}
