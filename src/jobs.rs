//! Every background job of a running server, started from this one place: the checkpoint
//! signer, the retention sweeper, the witness pusher and the outbox dispatcher. The HTTP layer
//! starts none of them; it only serves requests (its own database watchdog aside, which is
//! part of answering `/readyz`).

use std::sync::Arc;

use crate::config::Config;
use crate::vault::{Vault, VaultError};
use crate::witness::client::Witnesses;

/// Which jobs run beside the server.
pub struct Jobs {
    /// The retention sweeper (`candor serve`; a quickstart's demo data is not swept).
    pub sweep_retention: bool,
}

impl Jobs {
    /// Starts every job. `public_base` is where customers and recipients reach this server
    /// (`[privacy_center] public_url`, or the address it listens on): notices to recipients
    /// link back to it.
    pub fn start(
        &self,
        vault: &Vault,
        config: &Config,
        witnesses: Option<&Arc<Witnesses>>,
        webhook_secrets: &std::collections::HashMap<String, zeroize::Zeroizing<String>>,
        public_base: String,
    ) {
        spawn_checkpointer(vault.clone(), config.log.checkpoint_interval_seconds);
        if self.sweep_retention {
            spawn_sweeper(vault.clone(), config.retention_sweep_interval_seconds, config.log.caller_address_days);
        }
        if let Some(w) = witnesses {
            crate::witness::client::spawn_pusher(vault.clone(), w.clone(), config.log.checkpoint_interval_seconds);
        }
        crate::outbox::spawn_dispatcher(vault.clone(), config.webhooks.clone(), webhook_secrets.clone(), public_base);
    }
}

/// Signs a checkpoint now and then every `interval_seconds` while the log grows.
pub fn spawn_checkpointer(vault: Vault, interval_seconds: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(interval_seconds));
        loop {
            tick.tick().await;
            match vault.checkpoint_if_grown().await {
                Ok(Some(size)) => tracing::info!(size, "signed a log checkpoint"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not sign a log checkpoint"),
            }
        }
    });
}

/// Sweeps every `interval_seconds` (0: never) while the server runs, and forgets request
/// addresses older than `caller_address_days`.
pub fn spawn_sweeper(vault: Vault, interval_seconds: u64, caller_address_days: u32) {
    if interval_seconds == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(interval_seconds));
        loop {
            tick.tick().await;
            // An erasure whose last step failed while the server kept running is finished here
            // too, not only at the next start-up.
            match vault.complete_pending_erasures().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(customers = n, "unfinished erasures completed"),
                Err(e) => tracing::warn!(error = %e, "unfinished erasures not completed; next sweep retries"),
            }
            match vault.sweep_retention(crate::clock::now_millis(), |_| {}).await {
                Ok(r) if r.subjects > 0 || r.held > 0 => tracing::info!(
                    customers = r.subjects,
                    fields = r.fields,
                    events = r.events,
                    held = r.held,
                    "retention sweep"
                ),
                Ok(_) => {}
                Err(VaultError::Store(candor_store::StoreError::Unavailable(e))) => {
                    tracing::warn!(error = %e, "retention sweep postponed")
                }
                Err(e) => tracing::error!(error = %e, "retention sweep failed"),
            }
            match vault.prune_caller_addresses(crate::clock::now_millis(), caller_address_days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(addresses = n, "request addresses past [log] caller_address_days forgotten"),
                Err(e) => tracing::warn!(error = %e, "request addresses not pruned; next sweep retries"),
            }
            if let Err(e) = vault.prune_idempotency_keys(crate::clock::now_millis()).await {
                tracing::warn!(error = %e, "idempotency keys older than a day not pruned; next sweep retries");
            }
        }
    });
}
