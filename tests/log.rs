//! The tamper-evident log, black-box: what is logged, proofs a customer's tool can check
//! without trusting the server, and `candor log verify` catching edits made with sqlite3.

mod common;

on_both_backends!(
    every_access_change_and_refusal_is_logged_with_ids_and_names_only,
    a_customers_access_log_carries_proofs_that_verify_without_trusting_the_server,
);

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use candor_log::Hash;
use candor_log::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use candor_log::note::VerifierKey;
use common::{Install, Resp, candor};
use serde_json::{Value, json};

fn hash(v: &Value) -> Hash {
    STANDARD.decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(hash).collect()
}

async fn all_entries(admin: &common::Client) -> Vec<Value> {
    let r: Resp = admin.get("/v1/log/entries?start=0&end=1000").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["entries"].as_array().unwrap().clone()
}

fn sqlite3(db: &std::path::Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 tool is installed (scripts/test.sh installs it)");
    assert!(out.status.success(), "sqlite3 failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn every_access_change_and_refusal_is_logged_with_ids_and_names_only(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let admin = server.client(&install.admin_token, None);

    let id = backend.create(json!({"email": "log-canary@example.com", "full_name": "Logan Canary"})).await;
    assert_eq!(backend.get(&format!("/v1/subjects/{id}")).await.status, 200);
    backend.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"full_name": "Logan C. Canary"}})).await;
    support.get("/v1/subjects?email=log-canary@example.com").await;
    backend
        .with_purpose("order_fulfilment")
        .post(&format!("/v1/subjects/{id}/events"), json!({"type": "purchase", "data": {"item": "log-canary-item"}}))
        .await;
    assert_eq!(support.with_purpose("account").get(&format!("/v1/subjects/{id}")).await.status, 403);
    assert_eq!(
        backend.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"phone": "+442079460000"}})).await.status,
        403
    );

    let entries = all_entries(&admin).await;
    let actions: Vec<&str> = entries.iter().map(|e| e["entry"]["action"].as_str().unwrap()).collect();
    for want in [
        "catalog.changed",
        "token.create",
        "subject.create",
        "subject.read",
        "subject.correct",
        "subject.lookup",
        "event.append",
        "access.denied",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    let read = entries.iter().find(|e| e["entry"]["action"] == "subject.read").unwrap();
    assert_eq!(read["entry"]["subjects"], json!([id]));
    assert_eq!(read["entry"]["purpose"], "account");
    assert_eq!(read["entry"]["actor"]["role"], "shop_backend");
    assert_eq!(read["entry"]["decision"], "full");
    assert_eq!(read["entry"]["fields"], json!(["email", "full_name"]));
    let lookup = entries.iter().find(|e| e["entry"]["action"] == "subject.lookup").unwrap();
    assert_eq!(lookup["entry"]["subjects"], json!([id]), "a customer found by lookup sees it in their log");
    let denials: Vec<&Value> = entries
        .iter()
        .filter(|e| e["entry"]["action"] == "access.denied" || e["entry"]["decision"] == "denied")
        .collect();
    assert_eq!(denials.len(), 2, "{denials:?}");
    assert!(
        denials.iter().any(|d| d["entry"]["detail"] == "purpose_not_allowed" && d["entry"]["subjects"] == json!([id])),
        "a refused read is logged against the customer it targeted: {denials:?}"
    );
    assert!(
        denials.iter().any(|d| d["entry"]["detail"] == "field_not_allowed" && d["entry"]["fields"] == json!(["phone"]))
    );
    // The leaf hash the server reports is the hash of the bytes it serves.
    for e in &entries {
        let data = STANDARD.decode(e["data"].as_str().unwrap()).unwrap();
        assert_eq!(leaf_hash(&data), hash(&e["leaf_hash"]));
    }
    let text = serde_json::to_string(&entries).unwrap().to_lowercase();
    for value in ["log-canary", "logan", "+442079460000"] {
        assert!(!text.contains(value), "`{value}` appears in the log");
    }
    // Entries need a token; checkpoints and proofs do not.
    assert_eq!(server.anonymous().get("/v1/log/entries?start=0&end=10").await.status, 401);
    assert_eq!(admin.get("/v1/log/entries?start=5&end=2000").await.code(), "invalid_query");
}

async fn a_customers_access_log_carries_proofs_that_verify_without_trusting_the_server(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;
    let other = backend.create(json!({"email": "bob@example.com", "full_name": "Bob"})).await;
    support.get(&format!("/v1/subjects/{id}")).await;
    support.get(&format!("/v1/subjects/{other}")).await;

    let key_doc = server.anonymous().get("/v1/log/key").await.body;
    let key = VerifierKey::parse(key_doc["verifier_key"].as_str().unwrap()).unwrap();

    let r = support.get(&format!("/v1/subjects/{id}/access-log")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let checkpoint =
        key.open(r.body["checkpoint"].as_str().unwrap()).expect("the checkpoint is signed by the published key");
    assert_eq!(checkpoint.size, r.body["tree_size"].as_u64().unwrap());
    let items = r.body["entries"].as_array().unwrap();
    let actions: Vec<&str> = items.iter().map(|i| i["entry"]["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["subject.create", "subject.read"], "only this customer's entries");
    assert_eq!(items[1]["entry"]["actor"]["role"], "support_agent");
    for item in items {
        let data = STANDARD.decode(item["data"].as_str().unwrap()).unwrap();
        verify_inclusion(
            &leaf_hash(&data),
            item["index"].as_u64().unwrap(),
            checkpoint.size,
            &hashes(&item["inclusion_proof"]),
            &checkpoint.root,
        )
        .expect("the inclusion proof verifies");
    }

    // Consistency between this checkpoint and a later one, both signed.
    support.get(&format!("/v1/subjects/{id}")).await;
    let later_text = reqwest::get(format!("{}/v1/log/checkpoint", server.url)).await.unwrap().text().await.unwrap();
    let later = key.open(&later_text).unwrap();
    assert!(later.size > checkpoint.size);
    let c = server
        .anonymous()
        .get(&format!("/v1/log/proofs/consistency?from={}&to={}", checkpoint.size, later.size))
        .await
        .body;
    verify_consistency(checkpoint.size, later.size, &checkpoint.root, &later.root, &hashes(&c["proof"])).unwrap();
    let p = server.anonymous().get(&format!("/v1/log/proofs/inclusion?index=0&tree_size={}", later.size)).await.body;
    verify_inclusion(&hash(&p["leaf_hash"]), 0, later.size, &hashes(&p["proof"]), &later.root).unwrap();
    let bad = server
        .anonymous()
        .get(&format!("/v1/log/proofs/inclusion?index={}&tree_size={}", later.size + 5, later.size + 9))
        .await;
    assert_eq!((bad.status, bad.code()), (400, "out_of_range"));

    // C2SP tlog-tiles: the level-0 partial tile holds the leaf hashes, the entry bundle the entries.
    let size = later.size;
    let tile = reqwest::get(format!("{}/log/tile/0/000.p/{size}", server.url)).await.unwrap();
    assert_eq!(tile.status(), 200);
    let tile = tile.bytes().await.unwrap();
    assert_eq!(tile.len() as u64, 32 * size);
    assert_eq!(&tile[..32], &hash(&p["leaf_hash"])[..]);
    assert_eq!(reqwest::get(format!("{}/log/tile/0/000", server.url)).await.unwrap().status(), 404, "no full tile yet");
    let bundle = reqwest::Client::new()
        .get(format!("{}/log/tile/entries/000.p/{size}", server.url))
        .bearer_auth(&install.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    let bundle = bundle.bytes().await.unwrap();
    let first_len = u16::from_be_bytes([bundle[0], bundle[1]]) as usize;
    assert_eq!(leaf_hash(&bundle[2..2 + first_len]), hash(&p["leaf_hash"]));
    assert_eq!(reqwest::get(format!("{}/log/tile/entries/000.p/1", server.url)).await.unwrap().status(), 401);
    assert!(
        reqwest::get(format!("{}/log/checkpoint", server.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("\n\n\u{2014} ")
    );
}

#[tokio::test]
async fn log_verify_names_the_entry_edited_with_sqlite3_and_passes_once_restored() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;
    for _ in 0..3 {
        backend.get(&format!("/v1/subjects/{id}")).await;
    }
    let saved = reqwest::get(format!("{}/v1/log/checkpoint", server.url)).await.unwrap().text().await.unwrap();
    let saved_path = install.dir.path().join("saved-checkpoint.txt");
    std::fs::write(&saved_path, &saved).unwrap();
    backend.get(&format!("/v1/subjects/{id}")).await;
    reqwest::get(format!("{}/v1/log/checkpoint", server.url)).await.unwrap();
    let cwd = install.dir.path();
    let saved_arg = saved_path.to_str().unwrap();

    let (ok, out, err) = candor(&["log", "verify", "--checkpoint", saved_arg], cwd);
    assert!(ok, "a clean log verifies: {err}");
    assert!(out.contains("log OK") && out.contains("still extends your saved checkpoint"), "{out}");

    // Over HTTP too, with the key pinned.
    let key = server.anonymous().get("/v1/log/key").await.body["verifier_key"].as_str().unwrap().to_string();
    let (ok, out, err) = candor(
        &[
            "log",
            "verify",
            "--url",
            &server.url,
            "--token",
            &install.admin_token,
            "--key",
            &key,
            "--checkpoint",
            saved_arg,
        ],
        cwd,
    );
    assert!(ok, "verify over HTTP: {err}");
    assert!(out.contains("log OK"), "{out}");

    // Edit one entry in place with the sqlite3 tool: a read now claims another role.
    let db = install.db_path();
    let index: u64 = sqlite3(
        &db,
        "SELECT idx FROM log_entries WHERE CAST(entry AS TEXT) LIKE '%subject.read%' ORDER BY idx LIMIT 1",
    )
    .parse()
    .unwrap();
    let original = sqlite3(&db, &format!("SELECT hex(entry) FROM log_entries WHERE idx = {index}"));
    sqlite3(
        &db,
        &format!(
            "UPDATE log_entries SET entry = CAST(replace(CAST(entry AS TEXT), 'shop_backend', 'auditor_xyz') AS BLOB) WHERE idx = {index}"
        ),
    );
    let (ok, _, err) = candor(&["log", "verify"], cwd);
    assert!(!ok, "an edited entry is caught");
    assert!(err.contains(&format!("FAILED at index {index}")), "{err}");
    let (ok, _, err) = candor(&["log", "verify", "--url", &server.url, "--token", &install.admin_token], cwd);
    assert!(!ok && err.contains(&format!("FAILED at index {index}")), "over HTTP: {err}");

    // Also rewriting the stored leaf hash (a careful attacker) breaks the signed root.
    let forged = sqlite3(&db, &format!("SELECT hex(entry) FROM log_entries WHERE idx = {index}"));
    let forged_bytes: Vec<u8> =
        (0..forged.len() / 2).map(|i| u8::from_str_radix(&forged[2 * i..2 * i + 2], 16).unwrap()).collect();
    let forged_leaf: String = leaf_hash(&forged_bytes).iter().map(|b| format!("{b:02X}")).collect();
    let original_leaf = sqlite3(&db, &format!("SELECT hex(hash) FROM log_nodes WHERE level = 0 AND idx = {index}"));
    sqlite3(&db, &format!("UPDATE log_nodes SET hash = X'{forged_leaf}' WHERE level = 0 AND idx = {index}"));
    let (ok, _, err) = candor(&["log", "verify"], cwd);
    assert!(!ok && err.contains("the log was rewritten"), "{err}");
    // Kept checkpoints narrow it down: the edited entry lies in the reported range.
    let range = err.split("at an index from ").nth(1).map(|r| {
        let mut nums =
            r.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|n| n.parse::<u64>().unwrap());
        (nums.next().unwrap(), nums.next().unwrap())
    });
    let exact = err.split("first bad index: ").nth(1).map(|r| r.trim().parse::<u64>().unwrap());
    match (range, exact) {
        (Some((lo, hi)), _) => assert!(lo <= index && index <= hi, "{index} not in {lo}..={hi}: {err}"),
        (None, Some(i)) => assert_eq!(i, index, "{err}"),
        _ => panic!("no location given: {err}"),
    }

    // Restore: verification passes again.
    sqlite3(&db, &format!("UPDATE log_entries SET entry = X'{original}' WHERE idx = {index}"));
    sqlite3(&db, &format!("UPDATE log_nodes SET hash = X'{original_leaf}' WHERE level = 0 AND idx = {index}"));
    let (ok, _, err) = candor(&["log", "verify", "--checkpoint", saved_arg], cwd);
    assert!(ok, "restored log verifies: {err}");

    // Deleting the newest entries (truncation) is caught against the signed checkpoint.
    let size: u64 = sqlite3(&db, "SELECT COUNT(*) FROM log_entries").parse().unwrap();
    sqlite3(&db, &format!("DELETE FROM log_entries WHERE idx = {}", size - 1));
    let (ok, _, err) = candor(&["log", "verify", "--checkpoint", saved_arg], cwd);
    assert!(!ok && err.contains(&format!("FAILED at index {}", size - 1)), "{err}");
}

#[tokio::test]
async fn no_unlogged_access_a_read_or_write_whose_log_entry_fails_returns_nothing() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    let db = install.db_path();
    // Make every log append fail, as a full disk or a broken log table would.
    sqlite3(
        &db,
        "CREATE TRIGGER refuse_log BEFORE INSERT ON log_entries BEGIN SELECT RAISE(ABORT, 'log unavailable'); END;",
    );

    let r = backend.get(&format!("/v1/subjects/{id}")).await;
    assert!(r.status >= 400, "a read that cannot be logged fails: {:?}", r.body);
    assert!(r.body.get("fields").is_none() && !r.body.to_string().contains("Ada"), "{:?}", r.body);
    let r = backend.post("/v1/subjects", json!({"fields": {"email": "bob@example.com", "full_name": "Bob"}})).await;
    assert!(r.status >= 400, "{:?}", r.body);
    let r = backend.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"full_name": "Ada King"}})).await;
    assert!(r.status >= 400, "{:?}", r.body);

    sqlite3(&db, "DROP TRIGGER refuse_log;");
    assert_eq!(
        backend.get("/v1/subjects?email=bob@example.com").await.body["ids"],
        json!([]),
        "the unlogged create left nothing"
    );
    let r = backend.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(r.body["fields"]["full_name"], "Ada Lovelace", "the unlogged correction changed nothing");
}
