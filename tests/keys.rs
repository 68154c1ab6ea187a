//! Key-encryption-key rotation with the real binary: rotate, rewrap online while a server keeps
//! reading and writing, retire (refused while needed), and a rewrap killed with SIGKILL that
//! resumes; every customer still reads back.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{BIN, Client, Install, Server, candor};
use serde_json::json;

fn keys(install: &Install, args: &[&str]) -> (bool, String, String) {
    let config = install.config();
    let mut all = vec!["keys"];
    all.extend_from_slice(args);
    all.extend(["--config", config.to_str().unwrap()]);
    candor(&all, install.config().parent().unwrap())
}

async fn create(client: &Client, i: usize) -> String {
    client.create(json!({"email": format!("c{i}@example.com"), "full_name": format!("Customer {i}")})).await
}

async fn all_read_back(server: &Server, token: &str, ids: &[(usize, String)]) {
    let client = server.client(token, Some("account"));
    for (i, id) in ids {
        let r = client.get(&format!("/v1/subjects/{id}")).await;
        assert_eq!(r.status, 200, "customer {i}: {:?}", r.body);
        assert_eq!(r.body["fields"]["email"], format!("c{i}@example.com"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_rewraps_online_loses_nothing_and_old_keys_retire_only_when_unused() {
    let install = Install::new();
    let token = install.token("shop_backend");
    let server = install.serve();
    let client = server.client(&token, Some("account"));
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push((i, create(&client, i).await));
    }

    let (ok, _, err) = keys(&install, &["retire", "1"]);
    assert!(!ok && err.contains("primary"), "{err}");
    let (ok, out, err) = keys(&install, &["rotate"]);
    assert!(ok && out.contains("kek v2"), "{out}{err}");
    let (_, status, _) = keys(&install, &["status"]);
    assert!(
        status.contains("kek v1: 60 data key(s); decrypt-only") && status.contains("kek v2: 0 data key(s); primary"),
        "{status}"
    );
    let (ok, _, err) = keys(&install, &["retire", "1"]);
    assert!(!ok && err.contains("60 data key(s) still need kek v1"), "{err}");

    // Servers pick the new primary up at restart; then rewrap runs while they serve.
    drop(server.stop());
    let server = install.serve();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let load = {
        let (client, stop, failures, ids) =
            (server.client(&token, Some("account")), stop.clone(), failures.clone(), ids.clone());
        tokio::spawn(async move {
            let mut made = Vec::new();
            let mut n = 1000;
            while !stop.load(Ordering::Relaxed) {
                let (i, id) = &ids[n % ids.len()];
                let r = client.get(&format!("/v1/subjects/{id}")).await;
                if r.status != 200 || r.body["fields"]["email"] != format!("c{i}@example.com") {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                if n % 5 == 0 {
                    made.push((n, create(&client, n).await));
                }
                n += 1;
            }
            made
        })
    };
    let config = install.config();
    let rewrap = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["keys", "rewrap", "--per-second", "200", "--config", config.to_str().unwrap()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let made = load.await.unwrap();
    assert!(rewrap.status.success(), "{}", String::from_utf8_lossy(&rewrap.stderr));
    assert!(String::from_utf8_lossy(&rewrap.stdout).contains("60 data key(s) rewrapped under kek v2"));
    assert_eq!(failures.load(Ordering::Relaxed), 0, "reads during the rewrap all worked");
    assert!(!made.is_empty(), "writes happened during the rewrap");
    ids.extend(made);

    let (_, status, _) = keys(&install, &["status"]);
    assert!(status.contains("kek v1: 0 data key(s); unused (can be retired)"), "{status}");
    let (ok, _, err) = keys(&install, &["retire", "1"]);
    assert!(ok, "{err}");
    let kek = std::fs::read_to_string(install.config().with_file_name("keys").join("kek.key")).unwrap();
    assert!(!kek.contains("candor-kek v1 ") && kek.contains("candor-kek v2 "));
    drop(server.stop());
    let server = install.serve();
    all_read_back(&server, &token, &ids).await;

    // A rewrap killed half-way resumes and finishes.
    assert!(keys(&install, &["rotate"]).0);
    drop(server.stop());
    let server = install.serve();
    let config = install.config();
    let mut child = Command::new(BIN)
        .args(["keys", "rewrap", "--per-second", "20", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (_, status, _) = keys(&install, &["status"]);
    assert!(status.contains("kek v2:") && status.contains("decrypt-only"), "interrupted part-way: {status}");
    let (ok, out, err) = keys(&install, &["rewrap"]);
    assert!(ok, "{err}");
    assert!(out.contains("rewrapped under kek v3"), "{out}");
    let (_, status, _) = keys(&install, &["status"]);
    assert!(status.contains("kek v2: 0 data key(s)"), "{status}");
    all_read_back(&server, &token, &ids).await;
    let admin = server.client(&install.admin_token, None);
    let mut text = String::new();
    for start in (0..20_000).step_by(1000) {
        let page = admin.get(&format!("/v1/log/entries?start={start}&end={}", start + 1000)).await;
        if page.status != 200 || page.body["entries"].as_array().is_none_or(|e| e.is_empty()) {
            break;
        }
        text.push_str(&page.body.to_string());
    }
    for action in ["keys.rotate", "keys.rewrap", "keys.retire"] {
        assert!(text.contains(action), "{action} is in the log");
    }
}
