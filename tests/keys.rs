//! Key-encryption-key rotation with the real binary: rotate, rewrap online while a server keeps
//! reading and writing, retire (refused while needed), and a rewrap killed with SIGKILL that
//! resumes; every customer still reads back.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use candor_crypto::pkcs11::SOFTHSM_MODULE;
use common::{BIN, Client, Install, Server, candor};
use serde_json::json;

fn keys(install: &Install, args: &[&str]) -> (bool, String, String) {
    let config = install.config();
    let mut all = vec!["keys"];
    all.extend_from_slice(args);
    all.extend(["--config", config.to_str().unwrap()]);
    candor(&all, install.config().parent().unwrap())
}

/// Starts `candor keys <job>` slowly and kills it with SIGKILL after 1.5 s.
async fn kill_part_way(install: &Install, job: &str, per_second: &str) {
    let config = install.config();
    let mut child = Command::new(BIN)
        .args(["keys", job, "--per-second", per_second, "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
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
    kill_part_way(&install, "rewrap", "20").await;
    let (_, status, _) = keys(&install, &["status"]);
    assert!(status.contains("kek v2:") && status.contains("decrypt-only"), "interrupted part-way: {status}");
    let (ok, out, err) = keys(&install, &["rewrap"]);
    assert!(ok, "{err}");
    assert!(out.contains("rewrapped under kek v3"), "{out}");
    let (_, status, _) = keys(&install, &["status"]);
    assert!(status.contains("kek v2: 0 data key(s)"), "{status}");
    all_read_back(&server, &token, &ids).await;
    let text = whole_log(&server, &install).await;
    for action in ["keys.rotate", "keys.rewrap", "keys.retire"] {
        assert!(text.contains(action), "{action} is in the log");
    }
}

/// A SoftHSM2 token in `dir` (its own token directory and config): returns the config path for
/// `SOFTHSM2_CONF`, or `None` when SoftHSM2 is not installed (said loudly; CI sets
/// CANDOR_HSM_TESTS, which turns that into a failure).
fn softhsm_token(dir: &std::path::Path, label: &str, pin: &str) -> Option<std::path::PathBuf> {
    if !candor_crypto::pkcs11::softhsm_installed() {
        assert!(std::env::var_os("CANDOR_HSM_TESTS").is_none(), "CANDOR_HSM_TESTS is set but SoftHSM2 is missing");
        eprintln!("SKIPPED: SoftHSM2 is not installed; the PKCS#11 key provider was not tested (apt install softhsm2)");
        return None;
    }
    Some(candor_crypto::pkcs11::init_softhsm_token(dir, label, pin).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_move_from_the_key_file_into_an_hsm_and_never_leave_it() {
    let install = Install::new();
    let Some(conf) = softhsm_token(&install.dir.path().join("hsm"), "candor", "4321-pin") else { return };
    let env = [("SOFTHSM2_CONF", conf.as_path())];
    let keys_env = |args: &[&str]| {
        let config = install.config();
        let mut all = vec!["keys"];
        all.extend_from_slice(args);
        all.extend(["--config", config.to_str().unwrap()]);
        common::candor_with_env(&all, install.config().parent().unwrap(), &env)
    };
    let token = install.token("shop_backend");
    let server = install.serve();
    let client = server.client(&token, Some("account"));
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push((i, create(&client, i).await));
    }
    drop(server.stop());

    // Point the installation at the token, with unwrapped data keys kept 30 s (each unwrap is a
    // call into the token); the PIN file must be owner-only.
    let pin_file = install.config().with_file_name("keys").join("hsm.pin");
    std::fs::write(&pin_file, "4321-pin\n").unwrap();
    let config = std::fs::read_to_string(install.config())
        .unwrap()
        .replace("provider = \"file\"", "provider = \"pkcs11\"")
        .replace("dek_cache_seconds = 0", "dek_cache_seconds = 30")
        + &format!(
            "\n[keys.pkcs11]\nmodule = \"{SOFTHSM_MODULE}\"\ntoken_label = \"candor\"\npin_file = \"keys/hsm.pin\"\n"
        );
    std::fs::write(install.config(), config).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = keys_env(&["status"]);
    assert!(!ok && err.contains("chmod 600"), "a readable PIN file is refused: {err}");
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // The first HSM version follows the file's; new data keys go into the HSM after a restart,
    // while the file's v1 still opens the older ones.
    let (ok, out, err) = keys_env(&["rotate"]);
    assert!(ok && out.contains("kek v2 added to PKCS#11 token `candor`"), "{out}{err}");
    let server = install.serve_with_env(&env);
    all_read_back(&server, &token, &ids).await;
    let client = server.client(&token, Some("account"));
    for i in 20..25 {
        ids.push((i, create(&client, i).await));
    }
    let (_, status, _) = keys_env(&["status"]);
    assert!(
        status.contains("kek v1: 20 data key(s); decrypt-only") && status.contains("in PKCS#11 token `candor`"),
        "{status}"
    );
    assert!(status.contains("kek v2: 5 data key(s); primary; in PKCS#11 token `candor`"), "{status}");

    // Rewrap everything into the HSM, retire the file's key, and the HSM alone serves.
    let (ok, out, err) = keys_env(&["rewrap"]);
    assert!(ok && out.contains("20 data key(s) rewrapped under kek v2"), "{out}{err}");
    let (ok, _, err) = keys_env(&["retire", "1"]);
    assert!(ok, "{err}");
    let kek_file = std::fs::read_to_string(install.config().with_file_name("keys").join("kek.key")).unwrap();
    assert!(!kek_file.contains("candor-kek v"), "no key is left in the file: {kek_file}");
    drop(server.stop());
    let server = install.serve_with_env(&env);
    all_read_back(&server, &token, &ids).await;
    let (ok, out, _) = common::candor_with_env(
        &["doctor", "--config", install.config().to_str().unwrap()],
        install.config().parent().unwrap(),
        &env,
    );
    assert!(out.contains("PKCS#11 token `candor`") && out.contains("HSM PIN file"), "{ok} {out}");
    assert!(!out.contains("4321-pin"));

    // A wrong PIN stops the server from starting, with a message that does not repeat it.
    drop(server.stop());
    std::fs::write(&pin_file, "9999-wrong\n").unwrap();
    let (ok, _, err) = keys_env(&["status"]);
    assert!(!ok && err.contains("PIN") && !err.contains("9999-wrong"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kek_that_used_its_wrapping_budget_wraps_no_more_until_rotated() {
    let install = Install::new();
    // A budget of 10 data keys: the KEK stops at 9 (90%), warns from 5 (half).
    let config = std::fs::read_to_string(install.config()).unwrap();
    std::fs::write(install.config(), config.replace("kek_wrap_limit = 4294967296", "kek_wrap_limit = 10")).unwrap();
    let token = install.token("shop_backend");
    let server = install.serve();
    let client = server.client(&token, Some("account"));
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.push((i, create(&client, i).await));
    }
    let refused = client
        .post("/v1/subjects", json!({"fields": {"email": "late@example.com", "full_name": "Late Customer"}}))
        .await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.code(), "key_rotation_required");
    all_read_back(&server, &token, &ids).await;
    // An erasure does not give the nonces back.
    let eraser = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let erased = eraser.request(reqwest::Method::DELETE, &format!("/v1/subjects/{}", ids[0].1)).send().await.unwrap();
    assert_eq!(erased.status(), 200);
    ids.remove(0);
    assert_eq!(
        client
            .post("/v1/subjects", json!({"fields": {"email": "late@example.com", "full_name": "Late Customer"}}))
            .await
            .status,
        503
    );

    let (_, status, err) = keys(&install, &["status"]);
    assert!(status.contains("wrapping budget: 9 of 10 data keys") && status.contains("EXHAUSTED"), "{status}{err}");
    let (ok, doctor, _) =
        candor(&["doctor", "--config", install.config().to_str().unwrap()], install.config().parent().unwrap());
    assert!(!ok && doctor.contains("kek v1 has wrapped 9 of the 10"), "{doctor}");

    // Rotation gives a fresh budget; the rewrap spends the new KEK's (8 live keys of 10 would
    // stop at 9), so new customers fit again.
    assert!(keys(&install, &["rotate"]).0);
    drop(server.stop());
    let server = install.serve();
    let client = server.client(&token, Some("account"));
    ids.push((100, create(&client, 100).await));
    let (ok, out, err) = keys(&install, &["rewrap"]);
    assert!(ok && out.contains("8 data key(s) rewrapped under kek v2"), "{out}{err}");
    let (_, status, _) = keys(&install, &["status"]);
    assert!(status.contains("wrapping budget: 9 of 10 data keys"), "{status}");
    all_read_back(&server, &token, &ids).await;
}

/// Every log entry the server shows, as one text.
async fn whole_log(server: &Server, install: &Install) -> String {
    let admin = server.client(&install.admin_token, None);
    let mut text = String::new();
    for start in (0..100_000).step_by(1000) {
        let page = admin.get(&format!("/v1/log/entries?start={start}&end={}", start + 1000)).await;
        if page.status != 200 || page.body["entries"].as_array().is_none_or(|e| e.is_empty()) {
            break;
        }
        text.push_str(&page.body.to_string());
    }
    text
}

async fn found(client: &Client, email: &str) -> serde_json::Value {
    let r = client.get(&format!("/v1/subjects?email={email}")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["ids"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_key_rotates_while_lookups_keep_finding_everyone_and_corrections_win() {
    let install = Install::new();
    let token = install.token("shop_backend");
    let server = install.serve();
    let client = server.client(&token, Some("account"));
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push((i, create(&client, i).await));
    }
    // Rows from before index-key versions were recorded (an upgraded installation) carry 0:
    // made by the only key held, so nothing to do — until the key is rotated.
    let db = rusqlite::Connection::open(install.db_path()).unwrap();
    for (_, id) in &ids[30..40] {
        db.execute(
            "UPDATE blind_index SET key_version = 0 WHERE subject_no = (SELECT no FROM subjects WHERE id = ?1)",
            [id],
        )
        .unwrap();
    }
    let (_, status, _) = keys(&install, &["status"]);
    assert!(
        status.contains(
            "index key v0: 10 lookup row(s); made before index-key versions were recorded, by the only index key held"
        ),
        "{status}"
    );
    let (_, doctor, _) =
        candor(&["doctor", "--config", install.config().to_str().unwrap()], install.config().parent().unwrap());
    assert!(!doctor.contains("candor keys reindex"), "{doctor}");
    let (ok, _, err) = keys(&install, &["retire-index", "1"]);
    assert!(!ok && err.contains("primary index key"), "{err}");
    let (ok, out, err) = keys(&install, &["rotate-index"]);
    assert!(ok && out.contains("index key v2"), "{out}{err}");
    let (_, status, _) = keys(&install, &["status"]);
    assert!(status.contains("index key v1: 30 lookup row(s); lookups still use it"), "{status}");
    assert!(
        status.contains(
            "index key v0: 10 lookup row(s); made before index-key versions were recorded (run `candor keys reindex`)"
        ),
        "{status}"
    );
    let (ok, _, err) = keys(&install, &["retire-index", "1"]);
    assert!(!ok && err.contains("40 lookup row(s) may still need index key v1"), "{err}");

    // After the restart: old rows are still found, new and corrected values are indexed under v2.
    drop(server.stop());
    let server = install.serve();
    let client = server.client(&token, Some("account"));
    assert_eq!(found(&client, "c0@example.com").await, json!([ids[0].1]));
    let r = client.patch(&format!("/v1/subjects/{}", ids[3].1), json!({"fields": {"email": "new3@example.com"}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    ids.push((100, create(&client, 100).await));
    let (_, status, _) = keys(&install, &["status"]);
    assert!(
        status.contains("index key v1: 29 lookup row(s)") && status.contains("index key v2: 2 lookup row(s); primary"),
        "{status}"
    );

    // Reindex, killed part-way with SIGKILL, while lookups go on: nobody goes missing.
    let stop = Arc::new(AtomicBool::new(false));
    let misses = Arc::new(AtomicUsize::new(0));
    let load = {
        let (client, stop, misses, ids) = (client.clone(), stop.clone(), misses.clone(), ids.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let (i, id) = &ids[n % ids.len()];
                if *i != 3 && found(&client, &format!("c{i}@example.com")).await != json!([id]) {
                    misses.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            n
        })
    };
    kill_part_way(&install, "reindex", "10").await;
    let (_, status, _) = keys(&install, &["status"]);
    assert!(status.contains("index key v1:") && status.contains("lookups still use it"), "part-way: {status}");
    let config = install.config();
    let reindex = tokio::task::spawn_blocking(move || {
        Command::new(BIN).args(["keys", "reindex", "--config", config.to_str().unwrap()]).output().unwrap()
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let lookups = load.await.unwrap();
    let out = String::from_utf8_lossy(&reindex.stdout);
    assert!(reindex.status.success(), "{}", String::from_utf8_lossy(&reindex.stderr));
    assert!(out.contains("lookup row(s) recomputed under index key v2"), "{out}");
    assert!(!out.contains("example.com"), "no value is printed: {out}");
    assert_eq!(misses.load(Ordering::Relaxed), 0, "every lookup during the reindex found its customer");
    assert!(lookups > 0);

    let (_, status, _) = keys(&install, &["status"]);
    assert!(
        status.contains("index key v1: 0 lookup row(s); unused") && status.contains("index key v2: 41"),
        "{status}"
    );
    assert!(!status.contains("index key v0"), "every old row was recomputed: {status}");
    let (ok, _, err) = keys(&install, &["retire-index", "1"]);
    assert!(ok, "{err}");
    let index_file = std::fs::read_to_string(install.config().with_file_name("keys").join("index.key")).unwrap();
    assert!(!index_file.contains("candor-index-key v1 ") && index_file.contains("candor-index-key v2 "));

    // With v1 gone, every customer is found by their current e-mail, and only by it.
    drop(server.stop());
    let server = install.serve();
    let client = server.client(&token, Some("account"));
    for (i, id) in &ids {
        let email = if *i == 3 { "new3@example.com".to_string() } else { format!("c{i}@example.com") };
        assert_eq!(found(&client, &email).await, json!([id]), "customer {i}");
    }
    assert_eq!(found(&client, "c3@example.com").await, json!([]));
    let log = whole_log(&server, &install).await;
    for action in ["keys.rotate_index", "keys.reindex", "keys.retire_index"] {
        assert!(log.contains(action), "{action} is in the log");
    }
    assert!(!log.contains("c7@example.com"), "the log holds no value");
}
