//! Whether the server can do its work right now, for `/readyz` and for requests waiting on the
//! database. A watchdog pings the database every [`PING_EVERY`]; when a ping gets no answer
//! within [`PING_TIMEOUT`] the database counts as unresponsive, and requests that have waited
//! `[server] database_timeout_seconds` are answered `503` instead of hanging. A full disk, seen
//! by any write, is logged once with its cause (and again every [`REPEAT_EVERY`] while it
//! lasts, with the number of requests refused); the watchdog then probes with a one-row write
//! and clears the state when one succeeds. Nothing here reads the domain clock: these are
//! durations of the process, not times anyone records.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::vault::Vault;

/// How often the watchdog pings the database.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// A ping not answered within this counts as "the database does not answer".
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a lasting full disk is logged again.
pub const REPEAT_EVERY: Duration = Duration::from_secs(300);

/// What stops the server from serving, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// The database did not answer the latest ping in time (or refused it).
    DatabaseUnavailable,
    /// A write failed because the storage is full, and no probe write has succeeded since.
    StorageFull,
}

impl NotReady {
    pub fn code(self) -> &'static str {
        match self {
            NotReady::DatabaseUnavailable => "database_unavailable",
            NotReady::StorageFull => "storage_full",
        }
    }
}

struct Full {
    since: Instant,
    cause: String,
    refused: u64,
    logged: Instant,
}

/// The server's view of its database and storage.
pub struct Health {
    responsive: watch::Sender<bool>,
    full: Mutex<Option<Full>>,
}

impl Default for Health {
    fn default() -> Self {
        Self { responsive: watch::Sender::new(true), full: Mutex::new(None) }
    }
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Follows whether the database answers (`false` while it does not).
    pub fn responsive(&self) -> watch::Receiver<bool> {
        self.responsive.subscribe()
    }

    /// What keeps the server from being ready, if anything.
    pub fn not_ready(&self) -> Option<NotReady> {
        if !*self.responsive.borrow() {
            Some(NotReady::DatabaseUnavailable)
        } else if self.full.lock().is_ok_and(|f| f.is_some()) {
            Some(NotReady::StorageFull)
        } else {
            None
        }
    }

    /// A write failed for lack of space: says so (with `cause`) the first time, then again every
    /// [`REPEAT_EVERY`] with the number of requests refused meanwhile.
    pub fn storage_full(&self, cause: &str) {
        let Ok(mut full) = self.full.lock() else { return };
        let now = Instant::now();
        match full.as_mut() {
            None => {
                tracing::error!(
                    cause,
                    "the storage is full: writes fail, and so do reads (each read appends its log entry); requests \
                     are answered 507 storage_full and /readyz reports it. Free space on the volume of the database \
                     (or the key store); writes resume by themselves"
                );
                *full = Some(Full { since: now, cause: cause.to_string(), refused: 1, logged: now });
            }
            Some(f) => {
                f.refused += 1;
                if now.duration_since(f.logged) >= REPEAT_EVERY {
                    tracing::error!(
                        cause = %f.cause,
                        for_seconds = now.duration_since(f.since).as_secs(),
                        refused = f.refused,
                        "the storage is still full"
                    );
                    f.logged = now;
                }
            }
        }
    }

    fn set_responsive(&self, ok: bool, why: &str) {
        let was = self.responsive.send_replace(ok);
        match (was, ok) {
            (true, false) => tracing::error!(
                reason = why,
                "the database does not answer: requests that wait on it are answered 503 database_unavailable, and \
                 /readyz reports it"
            ),
            (false, true) => tracing::warn!("the database answers again"),
            _ => {}
        }
    }

    #[cfg(test)]
    pub fn mark_unresponsive_for_test(&self) {
        self.set_responsive(false, "test");
    }

    /// After a successful probe write: storage takes writes again.
    fn storage_recovered(&self) {
        let Ok(mut full) = self.full.lock() else { return };
        if let Some(f) = full.take() {
            tracing::warn!(
                after_seconds = f.since.elapsed().as_secs(),
                refused = f.refused,
                "the storage takes writes again"
            );
        }
    }

    /// Pings the database every [`PING_EVERY`] for as long as the runtime lives.
    pub fn spawn_watchdog(self: &Arc<Self>, vault: Vault) {
        let health = self.clone();
        tokio::spawn(async move {
            loop {
                match tokio::time::timeout(PING_TIMEOUT, vault.ping()).await {
                    Ok(Ok(())) => health.set_responsive(true, ""),
                    Ok(Err(e)) => health.set_responsive(false, &e.to_string()),
                    Err(_) => health.set_responsive(false, "no answer to a ping within 2 seconds"),
                }
                if health.not_ready() == Some(NotReady::StorageFull)
                    && let Ok(Ok(())) =
                        tokio::time::timeout(PING_TIMEOUT, vault.probe_write(crate::clock::now_millis())).await
                {
                    health.storage_recovered();
                }
                tokio::time::sleep(PING_EVERY).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_database_and_the_storage() {
        let h = Health::default();
        assert_eq!(h.not_ready(), None);
        h.storage_full("database or disk is full");
        h.storage_full("database or disk is full");
        assert_eq!(h.not_ready(), Some(NotReady::StorageFull));
        assert_eq!(h.full.lock().unwrap().as_ref().map(|f| f.refused), Some(2));
        h.set_responsive(false, "test");
        assert_eq!(h.not_ready(), Some(NotReady::DatabaseUnavailable), "the database comes first");
        h.set_responsive(true, "");
        h.storage_recovered();
        assert_eq!(h.not_ready(), None);
    }
}
