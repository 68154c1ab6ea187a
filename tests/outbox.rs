//! Erasure, correction and restriction reach every recipient that was given the customer's data:
//! signed webhooks from the transactional outbox, retried with growing waits, kept across a
//! restart of Candor while the recipient is down, and confirmed by a signed callback.
//!
//! Delivery is at least once: a notice the recipient accepted just before Candor was killed
//! (SIGKILL, before it could record the delivery) is sent again after the restart, with the same
//! idempotency key, so the recipient acts on each notice once. The test allows exactly that one
//! notice in flight at the kill to arrive twice, and no other repeat.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use candor_crypto::webhook::{sign_webhook, verify_webhook};
use common::{Install, candor, eventually};
use serde_json::{Value, json};

#[derive(Default)]
struct Received {
    /// Requests answered so far (failures included).
    requests: usize,
    /// Answer 500 to the first this many requests.
    fail_first: usize,
    /// idempotency key -> (body, valid signature, times answered 200)
    notices: HashMap<String, (Value, bool, usize)>,
    /// A repeat under a known key whose notice differed from the first (must never happen).
    conflicting_repeats: Vec<String>,
}

type Shared = Arc<Mutex<(Received, String)>>;

async fn hook(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut guard = shared.lock().unwrap();
    let (received, secret) = &mut *guard;
    received.requests += 1;
    if received.requests <= received.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let valid = h("candor-timestamp")
        .parse::<i64>()
        .is_ok_and(|t| verify_webhook(secret, t, &body, &h("candor-signature"), jiff::Timestamp::now().as_second()));
    let key = h("candor-idempotency-key");
    let mut notice: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // Where to confirm follows the server's address, which a restart may change.
    let _ = notice.as_object_mut().map(|o| o.remove("confirm_url"));
    match received.notices.get_mut(&key) {
        // A repeat: the recipient keeps the first and acts once; it must be the same notice.
        Some(first) => {
            first.2 += 1;
            first.1 &= valid;
            if first.0 != notice {
                received.conflicting_repeats.push(key);
            }
        }
        None => {
            received.notices.insert(key, (notice, valid, 1));
        }
    }
    StatusCode::OK
}

/// A recipient's webhook endpoint on `listener`; stops when the returned handle is aborted.
fn receiver(listener: std::net::TcpListener, shared: Shared) -> tokio::task::JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(shared);
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let _ = axum::serve(listener, app).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notice_reaches_its_recipient_signed_across_failures_and_a_restart() {
    let install = Install::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let catalog = install.config().with_file_name("catalog.toml");
    let text = std::fs::read_to_string(&catalog).unwrap().replace(
        "contact = \"privacy@parcelco.example\"",
        &format!("contact = \"privacy@parcelco.example\"\nwebhook_url = \"http://127.0.0.1:{port}/hook\""),
    );
    std::fs::write(&catalog, text).unwrap();
    let config = std::fs::read_to_string(install.config()).unwrap();
    // The recipient listens on 127.0.0.1, which only an explicit setting allows.
    let config = config
        .replace("webhook_retry_base_ms = 30000", "webhook_retry_base_ms = 200")
        .replace("allow_private_webhook_targets = false", "allow_private_webhook_targets = true");
    std::fs::write(install.config(), config).unwrap();
    let config_path = install.config();
    let (ok, secret, err) = candor(
        &["recipients", "secret", "parcel_carrier", "--config", config_path.to_str().unwrap()],
        install.config().parent().unwrap(),
    );
    assert!(ok, "{err}");
    let secret = secret.trim().to_string();
    assert!(secret.starts_with("whsec_"));

    let shared: Shared = Arc::new(Mutex::new((Received { fail_first: 5, ..Default::default() }, secret.clone())));
    let first_receiver = receiver(listener, shared.clone());
    let server = install.serve();
    let token = install.token("shop_backend");
    let backend = server.client(&token, Some("account"));
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            backend.create(json!({"email": format!("c{i}@example.com"), "full_name": format!("Customer {i}")})).await,
        );
    }
    let expires = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let r = backend
        .with_purpose("order_fulfilment")
        .post(
            "/v1/grants",
            json!({"recipient": "parcel_carrier", "subjects": ids, "fields": ["full_name"], "expires_at": expires}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // Three changes, three notices.
    let eraser = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let erased = eraser.send(eraser.request(reqwest::Method::DELETE, &format!("/v1/subjects/{}", ids[0]))).await;
    assert_eq!(erased.status, 200);
    assert_eq!(erased.body["recipients_notified"]["recipients"][0]["recipient"], "parcel_carrier");
    let r = backend.patch(&format!("/v1/subjects/{}", ids[1]), json!({"fields": {"full_name": "Customer One"}})).await;
    assert_eq!(r.status, 200);
    let r =
        backend.with_purpose("privacy_requests").post(&format!("/v1/subjects/{}/restriction", ids[2]), json!({})).await;
    assert!(r.status == 200 || r.status == 201, "{:?}", r.body);

    // The recipient fails the first attempts; retries follow. Then it goes down, and so does
    // Candor; both come back.
    assert!(eventually(Duration::from_secs(120), || shared.lock().unwrap().0.requests >= 4), "retries after failures");
    first_receiver.abort();
    let _ = first_receiver.await;
    drop(server.stop());
    let server = install.serve();
    // At most one notice got through before the recipient went down; the rest are still queued
    // after the restart.
    let metrics = server.client(&token, None).request(reqwest::Method::GET, "/metrics").send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let undelivered: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("candor_recipient_notices_undelivered "))
        .and_then(|n| n.parse().ok())
        .expect("metric");
    assert!(undelivered >= 2, "{metrics}");
    let listener = (0..50)
        .find_map(|_| {
            std::net::TcpListener::bind(("127.0.0.1", port)).ok().or_else(|| {
                std::thread::sleep(Duration::from_millis(100));
                None
            })
        })
        .expect("the recipient's port is free again");
    let second_receiver = receiver(listener, shared.clone());
    assert!(
        eventually(Duration::from_secs(120), || shared.lock().unwrap().0.notices.len() == 3),
        "every notice arrives: {:?}",
        shared.lock().unwrap().0.notices.keys().collect::<Vec<_>>()
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (notices, conflicting) = {
        let guard = shared.lock().unwrap();
        (guard.0.notices.clone(), guard.0.conflicting_repeats.clone())
    };
    second_receiver.abort();
    assert!(conflicting.is_empty(), "a key is only ever reused for the same notice: {conflicting:?}");
    let repeats: usize = notices.values().map(|(_, _, times)| times - 1).sum();
    assert!(repeats <= 1, "only the notice in flight when Candor was killed may arrive twice: {repeats} repeats");
    let mut kinds: Vec<String> = Vec::new();
    for (key, (body, valid, _)) in &notices {
        assert!(*valid, "signature of {key}");
        assert_eq!(body["notice_id"], key.as_str());
        assert_eq!(body["recipient"], "parcel_carrier");
        assert!(!body.to_string().contains("Customer"), "notices hold ids and names, never values: {body}");
        kinds.push(format!("{} {}", body["kind"].as_str().unwrap(), body["subject_id"].as_str().unwrap()));
    }
    kinds.sort();
    let mut expected =
        vec![format!("correction {}", ids[1]), format!("erasure {}", ids[0]), format!("restriction {}", ids[2])];
    expected.sort();
    assert_eq!(kinds, expected);

    // The recipient confirms, signed; a bad signature is refused.
    let privacy = server.client(&token, Some("privacy_requests"));
    let listed = privacy.get("/v1/notices").await;
    assert_eq!(listed.body["notices"].as_array().unwrap().len(), 3, "{:?}", listed.body);
    let (id, _) = notices.iter().find(|(_, (b, _, _))| b["kind"] == "erasure").unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/notices/{id}/confirm", server.url);
    let now = jiff::Timestamp::now().as_second();
    let bad = http
        .post(&url)
        .header("Candor-Timestamp", now.to_string())
        .header("Candor-Signature", "v1=00")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let good = http
        .post(&url)
        .header("Candor-Timestamp", now.to_string())
        .header("Candor-Signature", sign_webhook(&secret, now, id.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let listed = privacy.get("/v1/notices").await;
    assert_eq!(listed.body["notices"].as_array().unwrap().len(), 2);
    let metrics = privacy.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("candor_recipient_notices_unconfirmed 2"), "{metrics}");
    assert!(metrics.contains("candor_recipient_notices_undelivered 0"), "{metrics}");
    // Listing the notices is a read of customer-linked rows: it is in the history of each
    // customer the list names, under the caller's purpose.
    let history = privacy.get(&format!("/v1/subjects/{}/access-log", ids[1])).await;
    assert_eq!(history.status, 200, "{:?}", history.body);
    let listings: Vec<&Value> = history.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["action"] == "recipient_notices.read")
        .collect();
    assert_eq!(listings.len(), 2, "both listings name this customer: {:?}", history.body);
    assert_eq!(listings[0]["entry"]["purpose"], "privacy_requests", "{:?}", listings[0]);
}

/// Points parcel_carrier's webhook at `url`, retries every 200 ms, allows private targets or
/// not, and gives the recipient a secret.
fn webhook_to(install: &Install, url: &str, allow_private: bool) {
    let catalog = install.config().with_file_name("catalog.toml");
    let text = std::fs::read_to_string(&catalog).unwrap().replace(
        "contact = \"privacy@parcelco.example\"",
        &format!("contact = \"privacy@parcelco.example\"\nwebhook_url = \"{url}\""),
    );
    std::fs::write(&catalog, text).unwrap();
    let config = std::fs::read_to_string(install.config()).unwrap();
    assert!(config.contains("allow_private_webhook_targets = false"), "off by default");
    let config = config
        .replace("webhook_retry_base_ms = 30000", "webhook_retry_base_ms = 200")
        .replace("allow_private_webhook_targets = false", &format!("allow_private_webhook_targets = {allow_private}"));
    std::fs::write(install.config(), config).unwrap();
    let config_path = install.config();
    let (ok, _, err) = candor(
        &["recipients", "secret", "parcel_carrier", "--config", config_path.to_str().unwrap()],
        install.dir.path(),
    );
    assert!(ok, "{err}");
}

/// Shares a customer with parcel_carrier and erases them: one notice to deliver. Returns a
/// client that lists notices.
async fn erase_a_shared_customer(install: &Install, server: &common::Server) -> common::Client {
    let token = install.token("shop_backend");
    let backend = server.client(&token, Some("account"));
    let id = backend.create(json!({"email": "c@example.com", "full_name": "Customer Zero"})).await;
    let expires = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let r = backend
        .with_purpose("order_fulfilment")
        .post(
            "/v1/grants",
            json!({"recipient": "parcel_carrier", "subjects": [id], "fields": ["full_name"], "expires_at": expires}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let eraser = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let erased = eraser.send(eraser.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}"))).await;
    assert_eq!(erased.status, 200, "{:?}", erased.body);
    server.client(&token, Some("privacy_requests"))
}

/// The one notice, once its first delivery attempt failed (polled; the dispatcher runs on its
/// own schedule).
async fn after_a_failed_attempt(privacy: &common::Client) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let listed = privacy.get("/v1/notices").await;
        assert_eq!(listed.status, 200, "{:?}", listed.body);
        let notice = listed.body["notices"][0].clone();
        if notice["last_error"].is_string() || notice["delivered_at"].is_string() {
            return notice;
        }
        assert!(std::time::Instant::now() < deadline, "no delivery attempt: {notice}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Answers every request with `status`, a `Location` and a body of its own, counting requests.
fn answering(
    listener: std::net::TcpListener,
    status: StatusCode,
    location: String,
    count: Arc<Mutex<usize>>,
) -> tokio::task::JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    let app = axum::Router::new().fallback(move || {
        let (location, count) = (location.clone(), count.clone());
        async move {
            *count.lock().unwrap() += 1;
            (status, [("location", location)], "internal-service-says-port-5432-is-open")
        }
    });
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let _ = axum::serve(listener, app).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failed_delivery_and_is_never_followed() {
    let install = Install::new();
    let (inner, outer) =
        (std::net::TcpListener::bind("127.0.0.1:0").unwrap(), std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let inner_url = format!("http://127.0.0.1:{}/admin", inner.local_addr().unwrap().port());
    let outer_url = format!("http://127.0.0.1:{}/hook", outer.local_addr().unwrap().port());
    let (inner_hits, outer_hits) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    let _inner = answering(inner, StatusCode::OK, String::new(), inner_hits.clone());
    let _outer = answering(outer, StatusCode::FOUND, inner_url, outer_hits.clone());
    webhook_to(&install, &outer_url, true);
    let server = install.serve();
    let privacy = erase_a_shared_customer(&install, &server).await;

    let notice = after_a_failed_attempt(&privacy).await;
    assert!(notice["delivered_at"].is_null(), "a redirect is not a delivery: {notice}");
    let error = notice["last_error"].as_str().unwrap();
    assert!(error.starts_with("HTTP 302") && error.contains("redirect"), "{error}");
    assert!(!error.contains("internal-service"), "nothing the recipient sent is kept: {error}");
    assert!(*outer_hits.lock().unwrap() >= 1);
    assert_eq!(*inner_hits.lock().unwrap(), 0, "the redirect's target is never contacted");

    // The privacy team can ask for it to be sent again now (logged); others cannot.
    let id = notice["id"].as_str().unwrap();
    let r = privacy.post(&format!("/v1/notices/{id}/retry"), json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["delivered_at"].is_null() && r.body["next_attempt_at"].is_string(), "{:?}", r.body);
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    assert_eq!(support.post(&format!("/v1/notices/{id}/retry"), json!({})).await.status, 403);
    let r = privacy.post("/v1/notices/no-such-notice/retry", json!({})).await;
    assert_eq!((r.status, r.code()), (404, "notice_not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_to_a_loopback_address_is_refused_unless_private_targets_are_allowed() {
    let install = Install::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
    let hits = Arc::new(Mutex::new(0));
    let _receiver = answering(listener, StatusCode::OK, String::new(), hits.clone());
    webhook_to(&install, &url, false);
    let server = install.serve();
    let privacy = erase_a_shared_customer(&install, &server).await;

    let notice = after_a_failed_attempt(&privacy).await;
    assert!(notice["delivered_at"].is_null(), "{notice}");
    let error = notice["last_error"].as_str().unwrap();
    assert!(
        error.starts_with("refused: 127.0.0.1 is a loopback address")
            && error.contains("allow_private_webhook_targets"),
        "{error}"
    );
    assert_eq!(*hits.lock().unwrap(), 0, "nothing is sent to a refused address");
}
