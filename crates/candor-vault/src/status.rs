//! What the vault can say about itself without naming anyone: whether its database answers,
//! whether its storage takes writes, and the counts `/metrics` exports.

use candor_store::Millis;

use super::{Vault, VaultError};

/// Counts for `/metrics`: never an id or a value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics {
    /// Open customer requests past their legal deadline.
    pub requests_overdue: u64,
    /// Open customer requests.
    pub requests_open: u64,
    /// Entries in the tamper-evident log.
    pub log_entries: u64,
    /// Break-glass overrides ever opened, and those open now.
    pub break_glass_total: u64,
    pub break_glass_open: u64,
    /// Notices to recipients not delivered yet, and delivered but not confirmed.
    pub notices_undelivered: u64,
    pub notices_unconfirmed: u64,
}

impl Vault {
    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), VaultError> {
        Ok(self.store.ping().await?)
    }

    /// A one-row write, to learn whether the storage takes writes again after it was full.
    pub async fn probe_write(&self, now: Millis) -> Result<(), VaultError> {
        Ok(self.store.probe_write(now).await?)
    }

    /// The counts `/metrics` exports.
    pub async fn metrics(&self) -> Result<Metrics, VaultError> {
        let now = self.now_millis();
        let requests_overdue = self.store.overdue_requests(now).await?;
        let requests_open = self.store.requests(Some("open"), u32::MAX).await?.len() as u64;
        let (log_entries, _) = self.store.log_head().await?;
        let (break_glass_total, break_glass_open) = self.store.break_glass_counts(now).await?;
        let (notices_undelivered, notices_unconfirmed) = self.store.notice_counts().await?;
        Ok(Metrics {
            requests_overdue,
            requests_open,
            log_entries,
            break_glass_total,
            break_glass_open,
            notices_undelivered,
            notices_unconfirmed,
        })
    }
}
