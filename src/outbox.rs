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
//!
//! Only the recipient's own answer counts: redirects are not followed (a 3xx is a failed
//! delivery), no proxy is used, and unless `[sharing] allow_private_webhook_targets = true` a
//! `webhook_url` that is, or resolves to, a loopback, private, link-local or otherwise reserved
//! address is refused. Every address a name resolves to is checked, and the connection goes only
//! to those checked addresses (no second lookup an attacker's DNS could answer differently).
//! What is stored about a failure is Candor's own short reason ("HTTP 500", "connection
//! refused"), never anything the recipient sent.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use candor_crypto::webhook::{read_webhook_secrets, sign_webhook};
use candor_store::Notice;
use serde_json::json;
use zeroize::Zeroizing;

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
        "created_at": crate::clock::rfc3339(n.created_at),
        "controller": vault.catalog().organisation.name,
        "what_to_do": what,
        "confirm_url": confirm_url,
    });
    serde_json::to_vec(&body).expect("JSON serialises")
}

/// What kind of address `ip` is when webhooks must not go there without
/// `allow_private_webhook_targets` (`"a loopback"`, `"a private"`, …), or `None` for a public one.
pub fn private_kind(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(a) => v4_kind(a),
        IpAddr::V6(a) => v6_kind(a),
    }
}

fn v4_kind(a: Ipv4Addr) -> Option<&'static str> {
    let [o0, o1, o2, _] = a.octets();
    if a.is_loopback() {
        Some("a loopback")
    } else if a.is_private() {
        Some("a private")
    } else if a.is_link_local() {
        Some("a link-local")
    } else if o0 == 100 && (o1 & 0xc0) == 64 {
        Some("a shared (carrier-grade NAT)")
    } else if o0 == 0 || o0 >= 224 || (o0 == 192 && o1 == 0 && o2 == 0) || (o0 == 198 && (o1 & 0xfe) == 18) {
        Some("a reserved")
    } else {
        None
    }
}

fn v6_kind(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    let embedded = |hi: u16, lo: u16| v4_kind(Ipv4Addr::from(((hi as u32) << 16) | lo as u32));
    if a.is_loopback() {
        Some("a loopback")
    } else if a.is_unspecified() || a.is_multicast() {
        Some("a reserved")
    } else if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfec0 {
        Some("a private")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("a link-local")
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..6] == [0; 6] {
        // NAT64 and IPv4-compatible addresses reach the IPv4 address inside.
        embedded(s[6], s[7])
    } else if s[0] == 0x2002 {
        // 6to4 reaches the IPv4 address inside.
        embedded(s[1], s[2])
    } else {
        None
    }
}

/// A webhook target refused because of its address (the reason shown to staff).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refusal(what: &str, ip: IpAddr) -> Option<Refused> {
    private_kind(ip).map(|kind| {
        Refused(format!(
            "{what} is {kind} address: webhooks go only to public addresses unless [sharing] allow_private_webhook_targets = true"
        ))
    })
}

/// Resolves webhook hosts, refusing the whole name when any address it resolves to is not
/// public. The client connects only to the addresses returned here, so a name cannot pass the
/// check with one address and be connected to with another.
struct CheckedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private
                && let Some(refused) =
                    addrs.iter().find_map(|a| refusal(&format!("{host} resolves to {}, which", a.ip()), a.ip()))
            {
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client that delivers webhooks: no redirects, no proxy, checked addresses only.
pub fn webhook_client(allow_private: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(CheckedResolver { allow_private })
        .build()
}

/// POSTs one signed notice. `Ok` when the recipient answered 2xx itself; otherwise the reason to
/// keep, in Candor's words (never the recipient's body or headers).
async fn post_notice(
    client: &reqwest::Client,
    url: &str,
    allow_private: bool,
    headers: [(&str, String); 3],
    body: Vec<u8>,
) -> Result<(), String> {
    let target = reqwest::Url::parse(url).map_err(|_| "the webhook_url is not a valid address".to_string())?;
    if !matches!(target.scheme(), "http" | "https") {
        return Err("the webhook_url is not an http or https address".into());
    }
    // A literal address is connected to as it is (no resolver): check it here.
    let literal =
        target.host_str().and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok());
    if !allow_private && let Some(refused) = literal.and_then(|ip| refusal(&ip.to_string(), ip)) {
        return Err(format!("refused: {refused}"));
    }
    let mut request = client.post(target).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    match request.body(body).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) if r.status().is_redirection() => {
            Err(format!("HTTP {}: the webhook answered with a redirect, which is not followed", r.status().as_u16()))
        }
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) => Err(failure_reason(&e)),
    }
}

/// A short reason for a request that got no answer.
fn failure_reason(e: &reqwest::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return format!("refused: {refused}");
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => return "connection reset".into(),
                _ => {}
            }
        }
        source = cause.source();
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "the request failed".into()
    }
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
        let client = match webhook_client(settings.allow_private_targets) {
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
    for n in vault.due_notices(now_millis(), BATCH).await? {
        let recipient = vault.catalog().recipients.iter().find(|r| r.id == n.recipient);
        let target = recipient.and_then(|r| r.webhook_url.clone());
        let id = n.id.clone();
        let failed = |why: String| {
            let next = next_attempt(now_millis(), n.attempts, settings.retry_base_ms);
            async move { vault.notice_failed(&id, next, &why).await }
        };
        let (Some(url), Some(secret)) = (target, secrets.get(&n.recipient)) else {
            failed("the recipient has no webhook_url in the catalog or no secret in [sharing] webhook_secrets".into())
                .await?;
            continue;
        };
        let body = notice_body(vault, &n, &format!("{base_url}/v1/notices/{}/confirm", n.id));
        let timestamp = crate::clock::now().as_second();
        let headers = [
            ("Candor-Idempotency-Key", n.id.clone()),
            ("Candor-Timestamp", timestamp.to_string()),
            ("Candor-Signature", sign_webhook(secret, timestamp, &body)),
        ];
        match post_notice(client, &url, settings.allow_private_targets, headers, body).await {
            Ok(()) => vault.notice_delivered(&n).await?,
            Err(why) => failed(why).await?,
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

    #[test]
    fn only_public_addresses_are_webhook_targets() {
        let kind = |s: &str| private_kind(s.parse().unwrap());
        for (address, expected) in [
            ("127.0.0.1", "a loopback"),
            ("10.1.2.3", "a private"),
            ("172.16.0.1", "a private"),
            ("192.168.1.1", "a private"),
            ("169.254.169.254", "a link-local"),
            ("100.64.0.1", "a shared (carrier-grade NAT)"),
            ("0.0.0.0", "a reserved"),
            ("255.255.255.255", "a reserved"),
            ("::1", "a loopback"),
            ("::", "a reserved"),
            ("fd00::1", "a private"),
            ("fe80::1", "a link-local"),
            ("::ffff:127.0.0.1", "a loopback"),
            ("::ffff:10.0.0.1", "a private"),
            ("64:ff9b::a9fe:a9fe", "a link-local"),
            ("2002:c0a8:0101::1", "a private"),
        ] {
            assert_eq!(kind(address), Some(expected), "{address}");
        }
        for public in ["203.0.113.9", "8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8", "100.128.0.1"] {
            assert_eq!(kind(public), None, "{public}");
        }
    }

    fn headers() -> [(&'static str, String); 3] {
        [("a", "1".into()), ("b", "2".into()), ("c", "3".into())]
    }

    #[tokio::test]
    async fn private_targets_are_refused_by_address_and_by_name_with_a_reason_of_our_own() {
        let strict = webhook_client(false).unwrap();
        let why = post_notice(&strict, "http://127.0.0.1:9/hook", false, headers(), Vec::new()).await.unwrap_err();
        assert!(why.starts_with("refused: 127.0.0.1 is a loopback address"), "{why}");
        assert!(why.contains("allow_private_webhook_targets"), "{why}");
        let why = post_notice(&strict, "http://[::1]:9/hook", false, headers(), Vec::new()).await.unwrap_err();
        assert!(why.starts_with("refused: ::1 is a loopback address"), "{why}");
        // A name is resolved and every address checked before any connection.
        let why = post_notice(&strict, "http://localhost:9/hook", false, headers(), Vec::new()).await.unwrap_err();
        assert!(why.starts_with("refused: localhost resolves to ") && why.contains("loopback"), "{why}");
        let why = post_notice(&strict, "ftp://example.com/x", false, headers(), Vec::new()).await.unwrap_err();
        assert!(why.contains("not an http or https address"), "{why}");
        // Allowed: the connection is tried, and its failure is told in our words.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let open = webhook_client(true).unwrap();
        let why = post_notice(&open, &format!("http://127.0.0.1:{port}/hook"), true, headers(), Vec::new())
            .await
            .unwrap_err();
        assert_eq!(why, "connection refused");
    }
}
