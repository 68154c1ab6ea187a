//! Durability under concurrency: the server is killed with SIGKILL while many clients write;
//! after a restart every acknowledged write is there and readable, no half-written customer
//! exists, and the log verifies.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Install, candor};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_survives_a_sigkill_during_concurrent_writes() {
    let install = Install::new();
    let token = install.token("shop_backend");
    let server = install.serve();
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    // The kill lands once the clients have written a good number, however long that takes on
    // this machine (a bound only against a server that never answers).
    let give_up_at = Instant::now() + Duration::from_secs(300);
    let mut clients = Vec::new();
    for t in 0..24 {
        let client = server.client(&token, Some("account"));
        let acknowledged = acknowledged.clone();
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            // Keep writing until the server is gone: the kill lands mid-flight.
            loop {
                let email = format!("c{t}-{n}@example.com");
                let request = client
                    .request(reqwest::Method::POST, "/v1/subjects")
                    .json(&json!({"fields": {"email": email, "full_name": format!("Customer {t} {n}")}}));
                match request.send().await {
                    Ok(r) if r.status() == 201 => {
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        if let Some(id) = body["id"].as_str() {
                            acknowledged.lock().unwrap().push((id.to_string(), email));
                        }
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the server was killed
                }
                n += 1;
            }
        }));
    }
    while acknowledged.lock().unwrap().len() < 100 {
        assert!(Instant::now() < give_up_at, "the clients could not write before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop(); // SIGKILL: no shutdown, no flush
    for c in clients {
        c.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 50, "the clients wrote before the kill ({} acknowledged)", acknowledged.len());

    let server = install.serve();
    let client = server.client(&token, Some("account"));
    // No half-written customer: every stored one (acknowledged or not) reads back whole.
    let out =
        std::process::Command::new("sqlite3").arg(install.db_path()).arg("SELECT id FROM subjects").output().unwrap();
    let mut read_back = std::collections::HashMap::new();
    for id in String::from_utf8_lossy(&out.stdout).lines() {
        let r = client.get(&format!("/v1/subjects/{id}")).await;
        assert_eq!(r.status, 200, "{id}: {:?}", r.body);
        assert!(r.body["fields"]["full_name"].is_string(), "{id}");
        read_back.insert(id.to_string(), r.body["fields"]["email"].as_str().unwrap().to_string());
    }
    // Every acknowledged write is there, with what was written.
    for (id, email) in &acknowledged {
        assert_eq!(read_back.get(id), Some(email), "acknowledged {id} survived the crash");
    }
    drop(server);
    let (ok, out, err) = candor(&["log", "verify", "--config", install.config().to_str().unwrap()], install.dir.path());
    assert!(ok, "the log verifies after the crash: {out}{err}");
}
