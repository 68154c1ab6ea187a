//! Evidence that personal values are protected at rest and in logs, and that ciphertexts
//! cannot be moved between records.

mod common;

on_both_backends!(a_ciphertext_moved_to_another_subject_or_field_fails_loudly);

use common::Install;
use serde_json::json;

/// Distinctive values that must never appear in plaintext anywhere Candor writes.
const CANARIES: [&str; 9] = [
    "Quetzalcoatl Canarywing",
    "zanzibar.canary.7781@example.org",
    "ZANZIBAR.CANARY.7781",
    "+44 20 7946 7781",
    "+442079467781",
    "Canaryville-Xq",
    "Canarystrasse 99",
    "canary-widget-5531",
    "1911-07-04",
];

fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Stores the canaries through the API (and sends them in refused requests and lookups), then
/// returns the server's log.
async fn store_canaries(install: &Install) -> String {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend
        .create(json!({"email": "Zanzibar.Canary.7781@example.org", "full_name": "Quetzalcoatl Canarywing", "date_of_birth": "1911-07-04"}))
        .await;
    let fulfilment = backend.with_purpose("order_fulfilment");
    let r = fulfilment
        .patch(
            &format!("/v1/subjects/{id}"),
            json!({"fields": {"phone": "+44 20 7946 7781", "shipping_address": {"street": "Canarystrasse 99", "city": "Canaryville-Xq", "country": "DE"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = fulfilment
        .post(&format!("/v1/subjects/{id}/events"), json!({"type": "purchase", "data": {"item": "canary-widget-5531"}}))
        .await;
    assert_eq!(r.status, 201);
    // Lookups and refused writes carry values too: in the query string and in bodies.
    assert_eq!(backend.get("/v1/subjects?email=zanzibar.canary.7781@example.org").await.body["ids"], json!([id]));
    let r = backend
        .post(
            "/v1/subjects",
            json!({"fields": {"email": "canary-widget-5531", "full_name": "Quetzalcoatl Canarywing"}}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = backend.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"date_of_birth": "Canaryville-Xq"}})).await;
    assert_eq!(r.status, 422);
    // A consent recorded on the customer's behalf: the reason and evidence may quote the customer;
    // sealed too.
    let r = backend
        .post(
            &format!("/v1/subjects/{id}/consents"),
            json!({"changes": [{"purpose": "marketing", "action": "grant"}], "actor": "staff",
                   "reason": "Quetzalcoatl Canarywing called from +44 20 7946 7781", "evidence": "canary-widget-5531"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // A break-glass reason may quote the customer too: sealed, and the read under it unmasked.
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let r = support
        .post(
            &format!("/v1/subjects/{id}/break-glass"),
            json!({"reason": "Quetzalcoatl Canarywing locked out, confirming +44 20 7946 7781 on the call"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(support.get(&format!("/v1/subjects/{id}")).await.body["fields"]["phone"], "+44 20 7946 7781");
    // And reading them back works (so the values really are stored).
    let r = fulfilment.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(r.body["fields"]["shipping_address"]["city"], "Canaryville-Xq");
    assert_eq!(
        fulfilment.get(&format!("/v1/subjects/{id}/events")).await.body["events"][0]["data"]["item"],
        "canary-widget-5531"
    );

    let log = server.stop();
    assert!(log.contains("subject.create"), "the server log is being captured:\n{log}");
    log
}

#[tokio::test]
async fn no_personal_value_reaches_the_database_its_wal_or_the_server_log() {
    let install = Install::new();
    let log = store_canaries(&install).await;
    let db = install.db_path();
    let mut files = vec![("server log".to_string(), log.into_bytes())];
    let key_store = install.dir.path().join("keys/keystore.db");
    for file in [&db, &key_store] {
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", file.display());
            if let Ok(bytes) = std::fs::read(&path) {
                files.push((path, bytes));
            }
        }
    }
    assert!(files.len() >= 2, "the database file was found");
    // The scan does see what is stored in plaintext on purpose (field names), so it would see
    // a value too.
    assert!(files.iter().skip(1).any(|(_, b)| contains(b, "shipping_address")), "the scan reads the stored rows");
    for (name, bytes) in &files {
        for canary in CANARIES {
            assert!(!contains(bytes, canary), "`{canary}` found in plaintext in {name}");
        }
    }
}

#[tokio::test]
async fn no_personal_value_reaches_postgresql_or_the_server_log() {
    let Some(install) = Install::postgres("no_personal_value_reaches_postgresql_or_the_server_log").await else {
        return;
    };
    let log = store_canaries(&install).await;
    let url = &install.postgres.as_ref().unwrap().url;
    let dump = std::process::Command::new("pg_dump").args(["--data-only", url]).output().expect("pg_dump is installed");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    assert!(contains(&dump.stdout, "shipping_address"), "the dump holds the stored rows");
    for (name, bytes) in [("server log", log.as_bytes()), ("database dump", &dump.stdout[..])] {
        for canary in CANARIES {
            assert!(!contains(bytes, canary), "`{canary}` found in plaintext in the {name}");
        }
    }
}

/// Runs SQL directly against the installation's database, as an attacker with database access
/// would: the sqlite3 tool on SQLite, psql on PostgreSQL.
fn sql(install: &Install, statement: &str) {
    let out = match &install.postgres {
        Some(db) => std::process::Command::new("psql")
            .args([db.url.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", statement])
            .output(),
        None => std::process::Command::new("sqlite3").arg(install.db_path()).arg(statement).output(),
    }
    .expect("the database command-line tool is installed");
    assert!(out.status.success(), "{statement}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs a statement on the key store (`subject_keys`): its own SQLite file, or the
/// `candor_keys` schema on PostgreSQL.
fn key_sql(install: &Install, statement: &str) {
    if install.postgres.is_some() {
        return sql(install, &statement.replace("subject_keys", "candor_keys.subject_keys"));
    }
    let out = std::process::Command::new("sqlite3")
        .arg(install.dir.path().join("keys/keystore.db"))
        .arg(statement)
        .output()
        .expect("sqlite3 is installed");
    assert!(out.status.success(), "{statement}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn a_ciphertext_moved_to_another_subject_or_field_fails_loudly(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ada = backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    let bob = backend.create(json!({"email": "bob@example.com", "full_name": "Bob Builder"})).await;
    let fulfilment = backend.with_purpose("order_fulfilment");
    for (who, item) in [(&ada, "ada-item"), (&bob, "bob-item")] {
        let r = fulfilment
            .post(&format!("/v1/subjects/{who}/events"), json!({"type": "purchase", "data": {"item": item}}))
            .await;
        assert_eq!(r.status, 201);
    }
    // SQLite keys values by the customer's internal number, PostgreSQL by their id.
    let (values, owner_of_row, row_of) = if install.postgres.is_some() {
        ("field_values", "field_values.subject_id", "subject_id = '{id}'")
    } else {
        (
            "(SELECT s.id AS subject_id, v.field, v.ciphertext FROM field_values v JOIN subjects s ON s.no = v.subject_no)",
            "(SELECT id FROM subjects WHERE no = field_values.subject_no)",
            "subject_no = (SELECT no FROM subjects WHERE id = '{id}')",
        )
    };
    sql(&install, &format!("CREATE TABLE fv_backup AS SELECT subject_id, field, ciphertext FROM {values}"));
    let put = |to: &str, field: &str, from: &str, from_field: &str| {
        format!(
            "UPDATE field_values SET ciphertext = (SELECT ciphertext FROM fv_backup WHERE subject_id = '{from}' AND field = '{from_field}') \
             WHERE {} AND field = '{field}'",
            row_of.replace("{id}", to)
        )
    };
    let restore = format!(
        "UPDATE field_values SET ciphertext = (SELECT ciphertext FROM fv_backup b \
         WHERE b.subject_id = {owner_of_row} AND b.field = field_values.field)"
    );
    let restore = restore.as_str();

    // Ada's e-mail ciphertext copied into Bob's row: Bob's read fails, Ada's data never shows.
    sql(&install, &put(&bob, "email", &ada, "email"));
    let r = backend.get(&format!("/v1/subjects/{bob}")).await;
    assert_eq!((r.status, r.code()), (500, "integrity_error"), "{:?}", r.body);
    assert!(!r.body.to_string().contains("ada@"), "{:?}", r.body);
    sql(&install, restore);
    assert_eq!(backend.get(&format!("/v1/subjects/{bob}")).await.body["fields"]["email"], "bob@example.com");

    // Bob's name ciphertext moved into Bob's e-mail field: fails too.
    sql(&install, &put(&bob, "email", &bob, "full_name"));
    assert_eq!(backend.get(&format!("/v1/subjects/{bob}")).await.code(), "integrity_error");
    sql(&install, restore);

    // Ada's wrapped data key given to Bob (in the key store): fails.
    key_sql(
        &install,
        &format!(
            "UPDATE subject_keys SET wrapped_dek = (SELECT wrapped_dek FROM subject_keys WHERE subject_id = '{ada}') \
             WHERE subject_id = '{bob}'"
        ),
    );
    assert_eq!(backend.get(&format!("/v1/subjects/{bob}")).await.code(), "integrity_error");

    // An event payload copied onto another event (Bob's event handed to Ada, then given Ada's
    // payload) fails: payloads are bound to their event id.
    sql(&install, &format!("UPDATE events SET subject_id = '{ada}' WHERE subject_id = '{bob}'"));
    sql(
        &install,
        &format!(
            "UPDATE events SET payload = (SELECT payload FROM events WHERE subject_id = '{ada}' ORDER BY seq LIMIT 1) \
             WHERE subject_id = '{ada}' AND seq = (SELECT MAX(seq) FROM events WHERE subject_id = '{ada}')"
        ),
    );
    let r = fulfilment.get(&format!("/v1/subjects/{ada}/events")).await;
    assert_eq!((r.status, r.code()), (500, "integrity_error"), "{:?}", r.body);
    assert!(!r.body.to_string().contains("item"));

    // The server keeps serving other requests.
    assert_eq!(backend.get("/v1/subjects?email=ada@example.com").await.body["ids"], json!([ada]));
}
