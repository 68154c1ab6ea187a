//! Retention: deleting values and events whose retention period (from the catalog) has passed,
//! customer by customer, skipping those under a legal hold, each deletion logged with names and
//! counts. Run by the server every `[retention] sweep_interval_seconds` and by
//! `candor retention run [--dry-run]`. The clock is a parameter, so tests move it instead of
//! sleeping. The same runs forget staff and recipient request addresses older than
//! `[log] caller_address_days`.

use candor_core::SubjectId;
use candor_core::rights::retention_rules;
use candor_store::{Due, Expired};
use futures_util::StreamExt;

use crate::audit::{Audit, system_actor};
use crate::{Vault, VaultError};

/// Customers fetched per page of candidates, and retention passes in flight at once.
const PAGE: u32 = 5000;
const IN_FLIGHT: usize = 64;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Customers something was deleted for.
    pub subjects: u64,
    pub fields: u64,
    pub events: u64,
    /// Customers skipped because a legal hold was placed during the sweep.
    pub held: u64,
}

fn describe(expired: &Expired) -> String {
    let mut parts: Vec<String> = expired.events.iter().map(|(t, n)| format!("events {t} {n}")).collect();
    parts.extend(expired.fields.iter().map(|f| format!("field {f}")));
    format!("retention passed: {}", parts.join(", "))
}

impl Vault {
    /// Forgets the staff and recipient request addresses recorded more than `days` before
    /// `now` (with 0, all of them: recording is off). Returns how many.
    pub async fn prune_caller_addresses(&self, now: i64, days: u32) -> Result<u64, VaultError> {
        Ok(self.store.prune_log_callers(now - i64::from(days) * 86_400_000).await?)
    }

    /// What the retention rules in force at `now` would delete.
    pub async fn retention_due(&self, now: i64) -> Result<Vec<Due>, VaultError> {
        Ok(self.store.retention_due(&retention_rules(self.catalog(), now)).await?)
    }

    /// Deletes everything due at `now`. `progress` is told how many customers were processed.
    pub async fn sweep_retention(&self, now: i64, progress: impl Fn(u64)) -> Result<SweepReport, VaultError> {
        let rules = retention_rules(self.catalog(), now);
        let mut report = SweepReport::default();
        let mut after: Option<SubjectId> = None;
        let mut done = 0;
        loop {
            let page = self.store.retention_candidates(&rules, after, PAGE).await?;
            let Some(last) = page.last().copied() else {
                break;
            };
            // Several customers in flight at once: their transactions share commits (group commit).
            let passes = page.into_iter().map(|id| {
                let rules = &rules;
                let clock = self.clock.clone();
                async move {
                    self.store
                        .apply_retention(
                            id,
                            rules,
                            Box::new(move |e| {
                                let names = e
                                    .fields
                                    .iter()
                                    .map(|f| f.as_str().to_string())
                                    .chain(e.events.iter().map(|(t, _)| t.as_str().to_string()));
                                Audit::at(&system_actor(), candor_log::Action::RetentionDelete, clock.now())
                                    .subjects(&[id])
                                    .fields(names.collect::<Vec<_>>())
                                    .detail(describe(e))
                                    .record_quiet()
                            }),
                        )
                        .await
                }
            });
            let mut passes = futures_util::stream::iter(passes).buffer_unordered(IN_FLIGHT);
            while let Some(expired) = passes.next().await {
                let expired = expired?;
                if expired.held {
                    report.held += 1;
                } else if !expired.is_empty() {
                    report.subjects += 1;
                    report.fields += expired.fields.len() as u64;
                    report.events += expired.events.iter().map(|(_, n)| n).sum::<u64>();
                }
                done += 1;
                progress(done);
            }
            after = Some(last);
        }
        Ok(report)
    }
}
