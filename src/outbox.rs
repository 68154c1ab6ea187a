//! Delivering the outbox (GDPR Art. 19): every notice of an erasure, correction or restriction
//! that the store wrote in the same transaction as the change is POSTed to its recipient's
//! `webhook_url`, signed with the recipient's secret (`Candor-Signature`, `Candor-Timestamp`),
//! with its id as `Candor-Idempotency-Key`, until the recipient answers 2xx. Failures wait
//! `retry_base_ms`, then twice as long each time (at most 6 hours); the schedule is in the
//! database, so it survives restarts. Several servers may deliver the same notice twice in a
//! race; the idempotency key lets the recipient keep one.
//!
//! The recipient confirms it acted with `POST /v1/notices/{id}/confirm`, signed the same way
//! over the notice id. Unconfirmed notices are listed (`GET /v1/notices`) and counted in
//! `/metrics`.

use std::collections::HashMap;
use std::time::Duration;

use candor_crypto::webhook::{read_webhook_secrets, sign_webhook};
use candor_store::Notice;
use serde_json::json;
use zeroize::Zeroizing;

use crate::audit::{Audit, system_actor};
use crate::config::WebhookSettings;
use crate::vault::{Vault, now_millis};

/// Longest wait between attempts.
const MAX_BACKOFF_MS: i64 = 6 * 3600 * 1000;
/// Notices taken per round.
const BATCH: u32 = 50;

/// When to try again after `attempts` failed attempts.
pub fn next_attempt(now: i64, attempts: u32, base_ms: u64) -> i64 {
    let wait = (base_ms as i64).saturating_mul(1i64 << attempts.min(20)).min(MAX_BACKOFF_MS);
    now + wait
}

/// The secrets, read once at start (a missing file means no recipient has one yet).
pub fn load_secrets(settings: &WebhookSettings) -> anyhow::Result<HashMap<String, Zeroizing<String>>> {
    if !settings.secrets_file.exists() {
        return Ok(HashMap::new());
    }
    Ok(read_webhook_secrets(&settings.secrets_file)?)
}

/// The JSON a recipient receives.
pub fn notice_body(vault: &Vault, n: &Notice, confirm_url: &str) -> Vec<u8> {
    let what = match n.kind.as_str() {
        "erasure" => "The customer's data was erased here: erase what you received about them.",
        "correction" => "The customer's data was corrected here: correct or fetch again what you received.",
        "restriction" => "The customer asked us to restrict the use of their data: stop using what you received.",
        _ => "The customer's data changed.",
    };
    let body = json!({
        "notice_id": n.id,
        "kind": n.kind,
        "subject_id": n.subject,
        "fields": n.fields,
        "recipient": n.recipient,
        "created_at": crate::http::rfc3339(n.created_at),
        "controller": vault.catalog().organisation.name,
        "what_to_do": what,
        "confirm_url": confirm_url,
    });
    serde_json::to_vec(&body).expect("JSON serialises")
}

/// Delivers due notices until the process ends.
pub fn spawn_dispatcher(
    vault: Vault,
    settings: WebhookSettings,
    secrets: HashMap<String, Zeroizing<String>>,
    base_url: String,
) {
    let tick = Duration::from_millis((settings.retry_base_ms / 2).clamp(50, 1000));
    tokio::spawn(async move {
        let client = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhook client could not start; notices stay queued");
                return;
            }
        };
        loop {
            if let Err(e) = deliver_due(&vault, &client, &settings, &secrets, &base_url).await {
                tracing::warn!(error = %e, "delivering notices failed; retrying");
            }
            tokio::time::sleep(tick).await;
        }
    });
}

async fn deliver_due(
    vault: &Vault,
    client: &reqwest::Client,
    settings: &WebhookSettings,
    secrets: &HashMap<String, Zeroizing<String>>,
    base_url: &str,
) -> anyhow::Result<()> {
    let store = vault.store();
    for n in store.due_notices(now_millis(), BATCH).await? {
        let recipient = vault.catalog().recipients.iter().find(|r| r.id == n.recipient);
        let target = recipient.and_then(|r| r.webhook_url.clone());
        let id = n.id.clone();
        let failed = |why: String| {
            let next = next_attempt(now_millis(), n.attempts, settings.retry_base_ms);
            async move { store.notice_failed(&id, next, &why).await }
        };
        let (Some(url), Some(secret)) = (target, secrets.get(&n.recipient)) else {
            failed("the recipient has no webhook_url in the catalog or no secret in [sharing] webhook_secrets".into())
                .await?;
            continue;
        };
        let body = notice_body(vault, &n, &format!("{base_url}/v1/notices/{}/confirm", n.id));
        let timestamp = crate::clock::now().as_second();
        let sent = client
            .post(&url)
            .header("content-type", "application/json")
            .header("Candor-Idempotency-Key", &n.id)
            .header("Candor-Timestamp", timestamp.to_string())
            .header("Candor-Signature", sign_webhook(secret, timestamp, &body))
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                let now = now_millis();
                store.notice_delivered(&n.id, now).await?;
                let subjects: Vec<candor_core::SubjectId> =
                    candor_core::SubjectId::parse(&n.subject).into_iter().collect();
                let log = Audit::new(&system_actor(), "recipient.notified")
                    .subjects(&subjects)
                    .detail(format!("notice {} ({}) to {}", n.id, n.kind, n.recipient))
                    .record();
                store.append_log(vec![log]).await?;
            }
            Ok(r) => failed(format!("HTTP {}", r.status().as_u16())).await?,
            // The error names the host, never the body; no value is in either.
            Err(e) => failed(if e.is_timeout() { "timed out".into() } else { "could not connect".into() }).await?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_six_hours() {
        assert_eq!(next_attempt(0, 0, 1000), 1000);
        assert_eq!(next_attempt(0, 1, 1000), 2000);
        assert_eq!(next_attempt(0, 3, 1000), 8000);
        assert_eq!(next_attempt(0, 40, 30_000), MAX_BACKOFF_MS);
    }
}
