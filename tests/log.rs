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
    let original_leaf = stored_hash(&db, 0, index);
    set_stored_hash(&db, 0, index, &forged_leaf);
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
    set_stored_hash(&db, 0, index, &original_leaf);
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

/// Runs `f` for `0..n`, `at_once` at a time.
async fn concurrently<F, Fut, T>(n: usize, at_once: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter((0..n).map(f)).buffered(at_once).collect().await
}

fn kept_checkpoint_size(db: &std::path::Path) -> u64 {
    sqlite3(db, "SELECT COALESCE(MAX(size), 0) FROM log_checkpoints").parse().unwrap()
}

fn log_size(db: &std::path::Path) -> u64 {
    sqlite3(db, "SELECT COUNT(*) FROM log_entries").parse().unwrap()
}

#[tokio::test]
async fn log_verify_checks_every_entry_not_only_those_up_to_the_last_checkpoint() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;
    for _ in 0..3 {
        backend.get(&format!("/v1/subjects/{id}")).await;
    }
    let key = server.anonymous().get("/v1/log/key").await.body["verifier_key"].as_str().unwrap().to_string();
    // A crash: nothing signs what was appended since the server's last checkpoint.
    drop(server);
    for _ in 0..3 {
        install.token("support_agent");
    }
    let db = install.db_path();
    let (signed, size) = (kept_checkpoint_size(&db), log_size(&db));
    assert!(size >= signed + 6, "entries after the last checkpoint: {signed} signed of {size}");
    let cwd = install.dir.path();
    let config = install.config();
    let config = config.to_str().unwrap();

    // An edit to one of those entries is caught and named.
    let index: u64 = sqlite3(
        &db,
        "SELECT idx FROM log_entries WHERE CAST(entry AS TEXT) LIKE '%token.create%' ORDER BY idx DESC LIMIT 1",
    )
    .parse()
    .unwrap();
    assert!(index >= signed, "{index} is after the checkpoint of size {signed}");
    let original = sqlite3(&db, &format!("SELECT hex(entry) FROM log_entries WHERE idx = {index}"));
    sqlite3(
        &db,
        &format!(
            "UPDATE log_entries SET entry = CAST(replace(CAST(entry AS TEXT), 'token.create', 'token.revoke') AS BLOB) WHERE idx = {index}"
        ),
    );
    let (ok, out, err) = candor(&["log", "verify", "--config", config], cwd);
    assert!(!ok, "an edit after the last checkpoint is caught: {out}");
    assert!(err.contains(&format!("FAILED at index {index}")), "{err}");
    assert_eq!(kept_checkpoint_size(&db), signed, "no checkpoint is kept for a log that failed");
    sqlite3(&db, &format!("UPDATE log_entries SET entry = X'{original}' WHERE idx = {index}"));

    // Without the log key nothing can sign the tail: it fails unless explicitly allowed.
    let key_file = cwd.join("keys/log.key");
    let moved = cwd.join("log.key.away");
    std::fs::rename(&key_file, &moved).unwrap();
    let (ok, _, err) = candor(&["log", "verify", "--config", config, "--key", &key], cwd);
    assert!(!ok, "an unsigned tail fails");
    assert!(
        err.contains(&format!("FAILED at index {signed}: entries {signed} to {}", size - 1))
            && err.contains("--allow-unsigned-tail"),
        "{err}"
    );
    let (ok, out, err) = candor(&["log", "verify", "--config", config, "--key", &key, "--allow-unsigned-tail"], cwd);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("log OK: {signed} of {size} entries checked")), "{out}");
    assert!(out.contains(&format!("NOT covered by a signed checkpoint: entries {signed} to {}", size - 1)), "{out}");

    // With the key, a checkpoint of the whole log is signed first, and kept once it checks.
    std::fs::rename(&moved, &key_file).unwrap();
    let (ok, out, err) = candor(&["log", "verify", "--config", config], cwd);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("log OK: {size} of {size} entries checked")), "{out}");
    assert!(out.contains("signed now with the log key"), "{out}");
    assert_eq!(kept_checkpoint_size(&db), size);
}

#[tokio::test]
async fn log_verify_recomputes_the_stored_subtree_hashes_that_proofs_are_built_from() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;
    let path = format!("/v1/subjects/{id}");
    let reads = concurrently(300, 16, |_| backend.get(&path)).await;
    assert!(reads.iter().all(|r| r.status == 200));
    let key_doc = server.anonymous().get("/v1/log/key").await.body;
    let key = VerifierKey::parse(key_doc["verifier_key"].as_str().unwrap()).unwrap();
    let note = reqwest::get(format!("{}/v1/log/checkpoint", server.url)).await.unwrap().text().await.unwrap();
    let checkpoint = key.open(&note).unwrap();
    assert!(checkpoint.size > 300, "{}", checkpoint.size);
    let cwd = install.dir.path();
    let url_args = ["log", "verify", "--url", &server.url, "--token", &install.admin_token];
    let (ok, out, err) = candor(&["log", "verify"], cwd);
    assert!(ok, "{err}");
    assert!(out.contains("log OK"), "{out}");
    let (ok, out, err) = candor(&url_args, cwd);
    assert!(ok && out.contains("log OK"), "{err}");

    // One bit flipped in the stored hash of entries 0 to 255 (tree level 8, node 0).
    let db = install.db_path();
    let stored = stored_hash(&db, 8, 0);
    let mut bytes: Vec<u8> =
        (0..stored.len() / 2).map(|i| u8::from_str_radix(&stored[2 * i..2 * i + 2], 16).unwrap()).collect();
    bytes[7] ^= 0x10;
    let flipped: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    set_stored_hash(&db, 8, 0, &flipped);

    // The server's proofs for later entries go through it and no longer lead to the signed root.
    let index = checkpoint.size - 1;
    let p = server
        .anonymous()
        .get(&format!("/v1/log/proofs/inclusion?index={index}&tree_size={}", checkpoint.size))
        .await
        .body;
    assert!(
        verify_inclusion(&hash(&p["leaf_hash"]), index, checkpoint.size, &hashes(&p["proof"]), &checkpoint.root)
            .is_err()
    );

    // Verification recomputes every stored node and names the bad one, from the database and
    // through the server's hash tiles alike.
    let (ok, _, err) = candor(&["log", "verify"], cwd);
    assert!(!ok, "a corrupted stored node fails verification");
    assert!(
        err.contains("FAILED at index 0: the stored hash of entries 0 to 255 (tree level 8, node 0) does not match"),
        "{err}"
    );
    let (ok, _, err) = candor(&url_args, cwd);
    assert!(!ok, "over HTTP too");
    assert!(err.contains("(tree level 8, node 0) does not match"), "{err}");

    // A leaf hash in the first tile (entry 9), with the level-8 hash restored.
    set_stored_hash(&db, 8, 0, &stored);
    set_stored_hash(&db, 0, 9, &"00".repeat(32));
    let (ok, _, err) = candor(&["log", "verify"], cwd);
    assert!(!ok && err.contains("FAILED at index 9: entry 9 does not match its recorded hash"), "{err}");
}

/// The stored hash of node `index` of tree level `level` (a multiple of 8), in hex: hash
/// tiles (`log_tiles`) hold 256 hashes of one level each.
fn stored_hash(db: &std::path::Path, level: u32, index: u64) -> String {
    let tile = sqlite3(
        db,
        &format!("SELECT hex(hashes) FROM log_tiles WHERE level = {} AND idx = {}", level / 8, index / 256),
    );
    let at = 64 * (index % 256) as usize;
    tile[at..at + 64].to_string()
}

/// Overwrites that stored hash (as someone with write access to the database file could).
fn set_stored_hash(db: &std::path::Path, level: u32, index: u64, hex: &str) {
    let (tile_level, tile_index) = (level / 8, index / 256);
    let mut tile =
        sqlite3(db, &format!("SELECT hex(hashes) FROM log_tiles WHERE level = {tile_level} AND idx = {tile_index}"));
    let at = 64 * (index % 256) as usize;
    tile.replace_range(at..at + 64, hex);
    sqlite3(db, &format!("UPDATE log_tiles SET hashes = X'{tile}' WHERE level = {tile_level} AND idx = {tile_index}"));
}

#[tokio::test]
async fn entry_bundles_stay_well_formed_when_a_grant_names_thousands_of_customers() {
    let install = Install::new();
    // The grant's request names every customer (about 70 KB).
    let config = std::fs::read_to_string(install.config()).unwrap();
    let config: String = config
        .lines()
        .map(|l| if l.starts_with("max_body_bytes") { "max_body_bytes = 1048576" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(install.config(), config).unwrap();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("order_fulfilment"));
    let account = backend.with_purpose("account");
    // Enough customers that one entry naming them all would pass 65,535 bytes.
    let customers = 1800;
    let ids = concurrently(customers, 32, |i| {
        let account = account.clone();
        async move { account.create(json!({"email": format!("c{i}@example.com"), "full_name": "Customer"})).await }
    })
    .await;
    let expires = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let r = backend
        .post(
            "/v1/grants",
            json!({"recipient": "parcel_carrier", "subjects": ids, "fields": ["full_name"], "expires_at": expires}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let grant = r.body["id"].as_str().unwrap().to_string();
    let r = backend.send(backend.request(reqwest::Method::DELETE, &format!("/v1/grants/{grant}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let note = reqwest::get(format!("{}/v1/log/checkpoint", server.url)).await.unwrap().text().await.unwrap();
    let key_doc = server.anonymous().get("/v1/log/key").await.body;
    let size = VerifierKey::parse(key_doc["verifier_key"].as_str().unwrap()).unwrap().open(&note).unwrap().size;

    // Every entry bundle frames its entries exactly, and each matches the leaf hash tile.
    let http = reqwest::Client::new();
    let mut entries = Vec::new();
    for tile in 0..size.div_ceil(256) {
        let width = (size - tile * 256).min(256);
        let name = if width == 256 { format!("{tile:03}") } else { format!("{tile:03}.p/{width}") };
        assert!(tile < 1000);
        let bundle = http
            .get(format!("{}/log/tile/entries/{name}", server.url))
            .bearer_auth(&install.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(bundle.status(), 200);
        let bundle = bundle.bytes().await.unwrap();
        let leaves = reqwest::get(format!("{}/log/tile/0/{name}", server.url)).await.unwrap().bytes().await.unwrap();
        let mut rest = &bundle[..];
        for i in 0..width as usize {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            let entry = &rest[2..2 + len];
            assert_eq!(&leaf_hash(entry)[..], &leaves[32 * i..32 * i + 32], "entry {} of tile {name}", i);
            entries.push(serde_json::from_slice::<Value>(entry).expect("each framed entry is a whole entry"));
            rest = &rest[2 + len..];
        }
        assert!(rest.is_empty(), "tile {name}: {} bytes beyond its {width} entries", rest.len());
    }
    // The grant's creation and revocation are each logged in parts naming every customer once.
    for action in ["grant.create", "grant.revoke"] {
        let parts: Vec<&Value> = entries.iter().filter(|e| e["action"] == action).collect();
        assert_eq!(parts.len(), 2, "{action}");
        let mut named: Vec<&str> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            assert!(part["detail"].as_str().unwrap().ends_with(&format!("(part {} of 2)", i + 1)), "{part}");
            named.extend(part["subjects"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()));
        }
        let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
        named.sort_unstable();
        expected.sort_unstable();
        assert_eq!(named, expected, "{action}");
    }
    // The verifier reads the log through the same bundles.
    let cwd = install.dir.path();
    let (ok, out, err) = candor(&["log", "verify", "--url", &server.url, "--token", &install.admin_token], cwd);
    assert!(ok, "{err}");
    assert!(out.contains("log OK"), "{out}");
}

#[tokio::test]
async fn a_normal_shutdown_signs_a_checkpoint_covering_every_change() {
    let install = Install::new();
    let mut server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;
    backend.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"full_name": "Ada L."}})).await;
    let db = install.db_path();
    assert!(kept_checkpoint_size(&db) < log_size(&db), "the changes are not signed yet");

    let status = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(common::eventually(std::time::Duration::from_secs(60), || !server.is_running()), "the server stops");
    assert_eq!(kept_checkpoint_size(&db), log_size(&db), "the checkpoint signed at shutdown covers every entry");
    assert!(server.stop().contains("signed a log checkpoint at shutdown"));
}

/// Every checkpoint commits the completeness map (`candor-map/v1` extension line, signed with
/// the body); `candor log verify` rebuilds the map from the entries and checks each committed
/// root, and names the checkpoint whose map misstates the customers' histories.
#[tokio::test]
async fn checkpoints_commit_the_completeness_map_and_log_verify_checks_its_evolution() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;
    let first = reqwest::get(format!("{}/v1/log/checkpoint", server.url)).await.unwrap().text().await.unwrap();
    backend.get(&format!("/v1/subjects/{id}")).await;
    backend.create(json!({"email": "bob@example.com", "full_name": "Bob"})).await;
    let second = reqwest::get(format!("{}/v1/log/checkpoint", server.url)).await.unwrap().text().await.unwrap();
    let key =
        VerifierKey::parse(server.anonymous().get("/v1/log/key").await.body["verifier_key"].as_str().unwrap()).unwrap();
    let (a, b) = (key.open(&first).unwrap(), key.open(&second).unwrap());
    assert!(first.lines().nth(3).unwrap().starts_with("candor-map/v1 "), "{first}");
    assert!(b.size > a.size);
    assert_ne!(a.map_root, b.map_root, "the map changed with the new entries");
    server.stop();

    let cwd = install.dir.path();
    let (ok, out, err) = candor(&["log", "verify"], cwd);
    assert!(ok, "{err}");
    assert!(out.contains("completeness map: rebuilt from the entries; the map root in"), "{out}");

    // A checkpoint of the right log root whose map says something else (signed with the log key,
    // as a server misstating one customer's history would): log verify names it.
    let config = candor::config::Config::load(&install.config()).unwrap();
    let signer = candor::install::load_log_signer(&config).unwrap();
    let db = install.db_path();
    let size: u64 = sqlite3(&db, "SELECT MAX(size) FROM log_checkpoints").parse().unwrap();
    let kept = key.open(&sqlite3(&db, &format!("SELECT note FROM log_checkpoints WHERE size = {size}"))).unwrap();
    assert!(kept.map_root.is_some());
    let forged = candor_log::note::Checkpoint { map_root: Some([7u8; 32]), ..kept };
    let note = candor_log::note::sign_checkpoint(&forged, &key, |m| signer.sign(m));
    sqlite3(&db, &format!("UPDATE log_checkpoints SET note = '{note}' WHERE size = {size}"));
    let (ok, _, err) = candor(&["log", "verify"], cwd);
    assert!(!ok, "a misstated map is caught");
    assert!(err.contains(&format!("the completeness map committed in the signed checkpoint of size {size}")), "{err}");
}

/// The customer's story: download the proof from the privacy center, check it offline with
/// `candor verify history`; then an entry about them is deleted from the database and the
/// next proof fails, naming the checkpoint.
#[tokio::test]
async fn a_customer_verifies_their_downloaded_history_and_a_deleted_entry_makes_it_fail() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;
    let other = backend.create(json!({"email": "bob@example.com", "full_name": "Bob"})).await;
    for _ in 0..3 {
        support.get(&format!("/v1/subjects/{id}")).await;
        support.get(&format!("/v1/subjects/{other}")).await;
    }
    let r = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{id}/privacy-center-links"), json!({}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut visitor = common::visitor::Visitor::new(&server);
    visitor.sign_in(r.body["path"].as_str().unwrap()).await;
    let access = visitor.get("/privacy/me/access").await;
    assert!(access.html.contains("candor verify history history-proof.json"), "{}", access.html);
    let csrf = visitor.get("/privacy/me/download").await.csrf();
    let download = visitor.post("/privacy/me/download", &[("csrf", &csrf), ("format", "proof")]).await;
    assert_eq!(download.status, 200, "{}", download.html);
    assert!(download.headers["content-disposition"].to_str().unwrap().contains("history-proof.json"));
    let bundle: Value = serde_json::from_str(&download.html).unwrap();
    assert_eq!(bundle["subject"], id.as_str());
    // Only this customer's entries, never Bob's.
    assert!(!download.html.contains(&other));
    let listed = bundle["entries"].as_array().unwrap().len();
    assert!(listed >= 4, "create, three reads and the link: {listed}");
    let path = install.dir.path().join("history-proof.json");
    std::fs::write(&path, &download.html).unwrap();

    let key = server.anonymous().get("/v1/log/key").await.body["verifier_key"].as_str().unwrap().to_string();
    let cwd = install.dir.path();
    let (ok, out, err) = candor(&["verify", "history", path.to_str().unwrap(), "--log-key", &key], cwd);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!(
            "VERIFIED: all {listed} entries about your data (3 of them accesses that showed your data)"
        )),
        "{out}"
    );
    assert!(out.contains("no independent witness has cosigned this checkpoint"), "{out}");

    // Later: one more read, a new bundle that keeps every earlier entry in place.
    let first = install.dir.path().join("history-proof-first.json");
    std::fs::copy(&path, &first).unwrap();
    support.get(&format!("/v1/subjects/{id}")).await;
    let csrf = visitor.get("/privacy/me/download").await.csrf();
    let later = visitor.post("/privacy/me/download", &[("csrf", &csrf), ("format", "proof")]).await;
    std::fs::write(&path, &later.html).unwrap();
    let (ok, out, err) =
        candor(&["verify", "history", path.to_str().unwrap(), "--since", first.to_str().unwrap()], cwd);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("EXTENDS the earlier bundle: its {listed} entries")), "{out}");
    // Swapped: the "later" one is older.
    let (ok, _, err) = candor(&["verify", "history", first.to_str().unwrap(), "--since", path.to_str().unwrap()], cwd);
    assert!(!ok && err.contains("is older than the earlier one"), "{err}");

    // Altered in the file: caught.
    let mut altered = bundle.clone();
    altered["entries"].as_array_mut().unwrap().remove(1);
    std::fs::write(&path, serde_json::to_string(&altered).unwrap()).unwrap();
    let (ok, _, err) = candor(&["verify", "history", path.to_str().unwrap()], cwd);
    assert!(!ok && err.contains("INCOMPLETE") && err.contains("missing from the history shown"), "{err}");

    // One read of Ada deleted from the database: the server can no longer list it, and the
    // checkpoint's map still counts it.
    let db = install.db_path();
    let index: u64 = sqlite3(
        &db,
        &format!(
            "SELECT idx FROM log_entries WHERE CAST(entry AS TEXT) LIKE '%subject.read%' AND CAST(entry AS TEXT) LIKE '%{id}%' ORDER BY idx LIMIT 1"
        ),
    )
    .parse()
    .unwrap();
    sqlite3(&db, &format!("DELETE FROM log_entries WHERE idx = {index}"));
    let csrf = visitor.get("/privacy/me/download").await.csrf();
    let download = visitor.post("/privacy/me/download", &[("csrf", &csrf), ("format", "proof")]).await;
    assert_eq!(download.status, 200, "{}", download.html);
    std::fs::write(&path, &download.html).unwrap();
    let size = serde_json::from_str::<Value>(&download.html).unwrap()["checkpoint"]
        .as_str()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let (ok, _, err) = candor(&["verify", "history", path.to_str().unwrap(), "--log-key", &key], cwd);
    assert!(!ok, "a deleted entry fails the customer's verification");
    assert!(err.contains(&format!("INCOMPLETE: the checkpoint of size {size} commits to")), "{err}");
    assert!(err.contains("1 entries about you are missing"), "{err}");
}

/// The map is not stored: a process that starts builds it again from the log, and must sign the
/// very checkpoint (same map root, same bytes) the stopped server signed for the same size.
#[tokio::test]
async fn after_a_restart_the_map_is_rebuilt_from_the_log_to_the_same_root() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    for i in 0..5 {
        let id = backend.create(json!({"email": format!("c{i}@example.com"), "full_name": "C"})).await;
        support.get(&format!("/v1/subjects/{id}")).await;
    }
    // A normal stop (SIGTERM) signs a checkpoint covering every entry.
    let mut server = server;
    assert!(Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap().success());
    assert!(common::eventually(std::time::Duration::from_secs(60), || !server.is_running()), "the server stops");
    server.stop();
    let db = install.db_path();
    let size = kept_checkpoint_size(&db);
    assert_eq!(size, log_size(&db), "the shutdown checkpoint covers every entry");
    let kept = sqlite3(&db, &format!("SELECT note FROM log_checkpoints WHERE size = {size}"));
    // A fresh process (no map in memory) signs the head: byte for byte the same note.
    let (ok, out, err) = candor(&["log", "checkpoint"], install.dir.path());
    assert!(ok, "{err}");
    assert_eq!(out.trim_end(), kept.trim_end());
    assert!(kept.contains("\ncandor-map/v1 "), "{kept}");

    // A restarted server serves proofs again, and every kept checkpoint's map checks.
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "later@example.com", "full_name": "L"})).await;
    let r = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{id}/privacy-center-links"), json!({}))
        .await;
    let mut visitor = common::visitor::Visitor::new(&server);
    visitor.sign_in(r.body["path"].as_str().unwrap()).await;
    let csrf = visitor.get("/privacy/me/download").await.csrf();
    let download = visitor.post("/privacy/me/download", &[("csrf", &csrf), ("format", "proof")]).await;
    let path = install.dir.path().join("history-proof.json");
    std::fs::write(&path, &download.html).unwrap();
    let (ok, out, err) = candor(&["verify", "history", path.to_str().unwrap()], install.dir.path());
    assert!(ok && out.contains("VERIFIED"), "{out}{err}");
    server.stop();
    let (ok, out, err) = candor(&["log", "verify"], install.dir.path());
    assert!(ok, "{err}");
    assert!(out.contains("completeness map: rebuilt from the entries; the map root in"), "{out}");
}

/// An app acting on a customer's request fetches the same proof over the API
/// (`GET /v1/subjects/{id}/history-proof` under a customer-requests purpose), and it verifies
/// offline; other purposes and roles are refused.
#[tokio::test]
async fn an_app_fetches_a_customers_history_proof_over_the_api_and_it_verifies() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;
    support.get(&format!("/v1/subjects/{id}")).await;
    let path = format!("/v1/subjects/{id}/history-proof");
    assert_eq!(backend.get(&path).await.code(), "purpose_not_allowed");
    assert_eq!(support.with_purpose("privacy_requests").get(&path).await.status, 403);
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let r = privacy.get(&path).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["subject"], id.as_str());
    let file = install.dir.path().join("api-history-proof.json");
    std::fs::write(&file, serde_json::to_vec(&r.body).unwrap()).unwrap();
    let key = server.anonymous().get("/v1/log/key").await.body["verifier_key"].as_str().unwrap().to_string();
    let (ok, out, err) = candor(&["verify", "history", file.to_str().unwrap(), "--log-key", &key], install.dir.path());
    assert!(ok && out.contains("VERIFIED"), "{out}{err}");
    let unknown = format!("/v1/subjects/{}/history-proof", "7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70");
    assert_eq!(privacy.get(&unknown).await.status, 404);
}
