//! Durability under concurrency: the server is killed with SIGKILL while many clients write —
//! and, in the second test, while erasures run and a backup is between its two copies; after a
//! restart every acknowledged write is there and readable, no half-written or half-erased
//! customer exists, and the log verifies. The backup taken across the kill restores, and one
//! killed itself is refused as unfinished.

mod backup_support;
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

/// SIGKILL while clients create customers, 60 erasures run and `candor backup` holds between its
/// copy of the data store and its copy of the key store; then the backup is let finish, and a
/// second backup is killed itself at the same point.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_during_erasures_and_a_backup_loses_nothing_acknowledged_and_half_erases_nobody() {
    use backup_support::{
        HeldBackup, Seen, fresh_place, log_verifies, restore, seen, stored_ids, without_the_erasure_brake,
    };
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    const DOOMED: usize = 60;
    let install = Install::new();
    without_the_erasure_brake(&install);
    let (backend_token, privacy_token) = (install.token("shop_backend"), install.token("privacy_team"));
    let server = install.serve();
    let backend = server.client(&backend_token, Some("account"));
    let doomed_email = |i: usize| format!("doomed{i}@example.com");
    let mut doomed = Vec::with_capacity(DOOMED);
    for i in 0..DOOMED {
        doomed.push(backend.create(json!({"email": doomed_email(i), "full_name": format!("Doomed {i}")})).await);
    }

    // Writers until the server is gone; each write notes whether the backup had started when it
    // was acknowledged.
    let backup_started = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Vec<(String, String, bool)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let (tick, mut ticks) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut clients = Vec::new();
    for t in 0..12 {
        let client = server.client(&backend_token, Some("account"));
        let (acknowledged, backup_started, count, tick) =
            (acknowledged.clone(), backup_started.clone(), count.clone(), tick.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            loop {
                let email = format!("k{t}-{n}@example.com");
                let request = client
                    .request(reqwest::Method::POST, "/v1/subjects")
                    .json(&json!({"fields": {"email": email, "full_name": format!("Customer {t} {n}")}}));
                match request.send().await {
                    Ok(r) if r.status() == 201 => {
                        // Acknowledged before the backup started only if it was answered before.
                        let during = backup_started.load(Ordering::SeqCst);
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        if let Some(id) = body["id"].as_str() {
                            acknowledged.lock().unwrap().push((id.to_string(), email, during));
                            count.fetch_add(1, Ordering::SeqCst);
                            let _ = tick.send(());
                        }
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the server was killed
                }
                n += 1;
            }
        }));
    }
    drop(tick);
    while count.load(Ordering::SeqCst) < 100 {
        tokio::time::timeout(Duration::from_secs(120), ticks.recv())
            .await
            .expect("the clients write")
            .expect("writers");
    }

    // The backup copies the data store and holds.
    backup_started.store(true, Ordering::SeqCst);
    let to = install.dir.path().join("backup-across-a-kill");
    let held = {
        let (dir, to) = (install.dir.path().to_path_buf(), to.clone());
        tokio::task::spawn_blocking(move || HeldBackup::start(&dir, &to)).await.unwrap()
    };

    // 60 erasures at once; the kill lands once a quarter of them are confirmed.
    let privacy = server.client(&privacy_token, Some("privacy_requests"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut erasures = Vec::new();
    for (i, id) in doomed.iter().enumerate() {
        let (privacy, id, tx) = (privacy.clone(), id.clone(), tx.clone());
        erasures.push(tokio::spawn(async move {
            let sent = privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}")).send().await;
            let _ = tx.send((i, sent.map(|r| r.status().as_u16()).unwrap_or(0)));
        }));
    }
    drop(tx);
    let mut confirmed = Vec::new();
    while let Some((i, status)) = rx.recv().await {
        assert!(matches!(status, 0 | 200), "erasure {i} answered {status}");
        if status == 200 {
            confirmed.push(i);
        }
        if confirmed.len() >= DOOMED / 4 {
            break;
        }
    }
    server.stop(); // SIGKILL: mid-writes, mid-erasures, mid-backup
    while let Some((i, status)) = rx.recv().await {
        if status == 200 {
            confirmed.push(i);
        }
    }
    for e in erasures {
        e.await.unwrap();
    }
    for c in clients {
        c.await.unwrap();
    }
    // The backup finishes with the server dead: it read the data store before, the key store now.
    let (ok, out, err) = tokio::task::spawn_blocking(move || held.release()).await.unwrap();
    assert!(ok, "the backup across the kill: {out}{err}");

    // A backup killed itself between its copies leaves no manifest: refused as unfinished.
    let killed = install.dir.path().join("killed-backup");
    {
        let (dir, killed) = (install.dir.path().to_path_buf(), killed.clone());
        tokio::task::spawn_blocking(move || HeldBackup::start(&dir, &killed).kill()).await.unwrap();
    }
    let elsewhere = fresh_place(&install, &to, None);
    let (ok, _, err) = restore(elsewhere.path(), &killed, &[]);
    assert!(!ok && err.contains("has no manifest.json"), "{err}");
    assert!(!elsewhere.path().join("data/candor.db").exists());

    let acknowledged = acknowledged.lock().unwrap().clone();
    let before_backup = acknowledged.iter().filter(|(_, _, during)| !during).count();

    // The installation itself, started again: the start-up pass finishes interrupted erasures.
    let server = install.serve();
    let client = server.client(&backend_token, Some("account"));
    for (id, email, _) in &acknowledged {
        assert_eq!(seen(&client, id, email).await, Seen::Whole(email.clone()), "acknowledged {id} survived");
    }
    let mut erased = 0;
    for (i, id) in doomed.iter().enumerate() {
        match seen(&client, id, &doomed_email(i)).await {
            Seen::Erased => erased += 1,
            Seen::Whole(_) => assert!(!confirmed.contains(&i), "doomed {i}'s erasure was confirmed, yet they read"),
        }
    }
    for id in stored_ids(&install.db_path(), None) {
        let r = client.get(&format!("/v1/subjects/{id}")).await;
        assert_eq!(r.status, 200, "{id} is stored, so it reads whole: {:?}", r.body);
    }
    drop(server);
    let verified = log_verifies(&install.config(), install.dir.path());

    // The backup taken across the kill: every write acknowledged before it started is in it, and
    // every erasure confirmed before the kill (so before its key-store copy) holds.
    let place = fresh_place(&install, &to, None);
    let (ok, out, err) = restore(place.path(), &to, &[]);
    assert!(ok, "restore: {out}{err}");
    let restored = common::Server::start(&place.path().join("candor.toml"), &place.path().join("server.log"));
    let client = restored.client(&backend_token, Some("account"));
    let mut restored_writes = 0;
    for (id, email, during) in &acknowledged {
        let now = seen(&client, id, email).await;
        if !during {
            assert_eq!(now, Seen::Whole(email.clone()), "{id} was acknowledged before the backup");
        }
        if now != Seen::Erased {
            restored_writes += 1;
        }
    }
    let mut erased_in_backup = 0;
    for (i, id) in doomed.iter().enumerate() {
        let now = seen(&client, id, &doomed_email(i)).await;
        if confirmed.contains(&i) {
            assert_eq!(now, Seen::Erased, "doomed {i}'s erasure was confirmed before the key store was copied");
        }
        if now == Seen::Erased {
            erased_in_backup += 1;
        }
    }
    for id in stored_ids(&place.path().join("data/candor.db"), None) {
        let r = client.get(&format!("/v1/subjects/{id}")).await;
        assert_eq!(r.status, 200, "{id}: {:?}", r.body);
    }
    drop(restored);
    log_verifies(&place.path().join("candor.toml"), place.path());
    eprintln!(
        "FIGURES kill during erasures and a backup: {} writes acknowledged ({before_backup} before the backup), all \
         read back after the restart; {} of {DOOMED} erasures confirmed before the kill, {erased} customers erased \
         after the restart, none half-erased; the backup across the kill restored {restored_writes} customers with \
         every write acknowledged before it and {erased_in_backup} erased (every confirmed erasure among them); a \
         backup killed between its copies was refused as unfinished; {}",
        acknowledged.len(),
        confirmed.len(),
        verified.trim()
    );
}
