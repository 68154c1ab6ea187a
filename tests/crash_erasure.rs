//! Erasure that survives a crash: a server killed (SIGKILL) while many erasures run leaves no
//! customer half-erased once it is started again. Each customer either reads normally, or is
//! gone: unreadable, not found by a lookup, and with the erasure in the log.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Install, candor};
use serde_json::{Value, json};

const CUSTOMERS: usize = 100;

/// The brake on bulk erasure would refuse most of these erasures: turned off here.
fn without_the_erasure_brake(install: &Install) {
    let config = install.config();
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("erasures_per_hour = 60"), "the installation's candor.toml sets the brake");
    std::fs::write(&config, text.replace("erasures_per_hour = 60", "erasures_per_hour = 0")).unwrap();
}

fn email(i: usize) -> String {
    format!("customer{i}@example.com")
}

async fn a_server_killed_during_erasures_leaves_nobody_half_erased(install: Install) {
    without_the_erasure_brake(&install);
    let (backend_token, privacy_token) = (install.token("shop_backend"), install.token("privacy_team"));
    let server = install.serve();
    let backend = server.client(&backend_token, Some("account"));
    let mut ids = Vec::with_capacity(CUSTOMERS);
    for i in 0..CUSTOMERS {
        ids.push(backend.create(json!({"email": email(i), "full_name": format!("Customer {i}")})).await);
    }

    // Erase them all at once; kill the server once a quarter of the answers have come back.
    let privacy = server.client(&privacy_token, Some("privacy_requests"));
    let answered = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (privacy, id, answered, tx) = (privacy.clone(), id.clone(), answered.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let sent = privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}")).send().await;
            // A request cut off by the kill has no answer; one answered 200 must stay erased.
            let status = match sent {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            answered.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send((i, status));
        }));
    }
    drop(tx);
    let mut confirmed = Vec::new();
    while let Some((i, status)) = rx.recv().await {
        assert!(matches!(status, 0 | 200), "erasure {i} answered {status}");
        if status == 200 {
            confirmed.push(i);
        }
        if confirmed.len() >= CUSTOMERS / 4 {
            break;
        }
    }
    server.stop();
    while let Some((i, status)) = rx.recv().await {
        if status == 200 {
            confirmed.push(i);
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(answered.load(Ordering::SeqCst), CUSTOMERS);

    // Started again: interrupted erasures are completed before anything is served.
    let server = install.serve();
    let backend = server.client(&backend_token, Some("account"));
    let privacy = server.client(&privacy_token, Some("privacy_requests"));
    let (mut kept, mut erased) = (0, 0);
    for (i, id) in ids.iter().enumerate() {
        let read = backend.get(&format!("/v1/subjects/{id}")).await;
        let found = backend.get(&format!("/v1/subjects?email={}", email(i))).await;
        assert_eq!(found.status, 200, "{:?}", found.body);
        match read.status {
            200 => {
                assert!(!confirmed.contains(&i), "customer {i}'s erasure was confirmed, yet they read");
                assert_eq!(read.body["fields"]["email"], email(i).as_str());
                assert_eq!(found.body["ids"], json!([id]), "customer {i} is found by e-mail");
                kept += 1;
            }
            404 | 410 => {
                assert_eq!(found.body["ids"], json!([]), "customer {i} is erased yet found by e-mail");
                let log = privacy.get(&format!("/v1/subjects/{id}/access-log")).await;
                assert_eq!(log.status, 200, "{:?}", log.body);
                let erasures: Vec<&Value> = log.body["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["entry"]["action"] == "subject.erase" && e["entry"]["decision"] != "denied")
                    .collect();
                assert_eq!(erasures.len(), 1, "customer {i}'s erasure is logged once: {:?}", log.body);
                assert_eq!(erasures[0]["entry"]["actor"]["role"], "privacy_team");
                assert_eq!(erasures[0]["entry"]["purpose"], "privacy_requests");
                // Idempotent: asking again answers with the certificate kept.
                let again = privacy.send(privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}"))).await;
                assert_eq!(again.status, 200, "{:?}", again.body);
                assert_eq!(again.body["subject_id"], id.as_str(), "{:?}", again.body);
                erased += 1;
            }
            other => panic!("customer {i} reads {other}: {:?}", read.body),
        }
    }
    assert_eq!(kept + erased, CUSTOMERS);
    assert!(erased >= CUSTOMERS / 4, "at least the confirmed erasures happened ({erased})");
    server.stop();

    let config = install.config();
    let (ok, out, err) = candor(&["log", "verify", "--config", config.to_str().unwrap()], install.dir.path());
    assert!(ok, "{out}{err}");
}

on_both_backends!(a_server_killed_during_erasures_leaves_nobody_half_erased);
