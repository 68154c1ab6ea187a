//! What the online key jobs (`candor keys rewrap`, `candor keys reindex`) share: their log
//! entries, progress bar, rate limit and what an unreachable database means for them.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use candor_store::{Store, StoreError};

use crate::vault::audit::{Audit, system_actor};

/// Logs a key-management step (system actor, no customer).
pub async fn log(store: &dyn Store, action: candor_log::Action, detail: String) -> Result<()> {
    store.append_log(vec![Audit::new(&system_actor(), action).detail(detail).record()]).await?;
    Ok(())
}

/// The progress bar of an online key job over `total` items.
pub fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, {{eta}} left)");
    bar.set_style(indicatif::ProgressStyle::with_template(&template).expect("template"));
    bar
}

/// A batch's result; an unreachable database ends the job with how to resume it (`candor keys
/// <job>` again: it starts from what the store says is left).
pub fn resumable<T>(result: Result<T, StoreError>, job: &str) -> Result<T> {
    match result {
        Ok(t) => Ok(t),
        Err(StoreError::Unavailable(m)) => bail!("the database is unavailable ({m}); run {job} again to resume"),
        Err(e) => Err(e.into()),
    }
}

/// The rate limit of an online key job: batches of about a tenth of a second's worth (at most
/// `page`), and a wait after each so the job averages `per_second` items (0: no limit).
pub struct Pace {
    per_second: u32,
    page: usize,
    started: Instant,
}

impl Pace {
    pub fn new(per_second: u32, page: usize) -> Self {
        Self { per_second, page, started: Instant::now() }
    }

    /// How many items to commit at a time.
    pub fn batch(&self) -> usize {
        if self.per_second > 0 { (self.per_second as usize / 10).clamp(1, self.page) } else { self.page }
    }

    /// Waits until `handled` items are due at the rate.
    pub async fn wait(&self, handled: u64) {
        if self.per_second > 0 {
            let due = Duration::from_secs_f64(handled as f64 / f64::from(self.per_second));
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}
