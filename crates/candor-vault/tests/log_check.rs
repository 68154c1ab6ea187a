//! The log checked from inside (`Vault::check_log`, what the staff console's accountability page
//! runs), against a real SQLite store that the test then edits behind the vault's back.

use std::sync::Arc;

use candor_vault::clock::ManualClock;
use candor_vault::testing::{acting_as, example_vault};
use candor_vault::{Principal, VaultError};
use serde_json::{Map, Value, json};

fn principal(role: &str) -> Principal {
    Principal { token_id: format!("t-{role}"), role: role.into(), origin: None }
}

#[tokio::test]
async fn the_log_checks_out_until_an_entry_is_edited_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at("2026-12-03T10:00:00Z".parse().unwrap()));
    let vault = example_vault(dir.path(), clock).await;
    let backend = acting_as(&vault, "shop_backend", "account").await;
    for n in 0..5 {
        let fields: Map<String, Value> =
            json!({"email": format!("c{n}@example.com"), "full_name": "C"}).as_object().unwrap().clone();
        let id = vault.create_subject(&backend, &fields).await.unwrap();
        vault.read_subject(&backend, id).await.unwrap();
    }
    vault.checkpoint().await.unwrap();
    let more: Map<String, Value> = json!({"email": "late@example.com", "full_name": "L"}).as_object().unwrap().clone();
    vault.create_subject(&backend, &more).await.unwrap();

    let check = vault.check_log(&principal("privacy_team")).await.unwrap();
    assert!(check.passed(), "{check:?}");
    assert_eq!((check.entries, check.checkpoint_size), (11, 10), "an entry past the checkpoint is checked too");
    assert_eq!(check.map_matches, Some(true), "the checkpoint's completeness map is rebuilt and matches");

    // A role that does not audit is refused.
    let refused = vault.check_log(&principal("support_agent")).await;
    assert!(matches!(refused, Err(VaultError::AuditNotAllowed(_))), "{refused:?}");

    // An entry's bytes edited in the database: found, by index, and the signed root no longer matches.
    let db = rusqlite::Connection::open(dir.path().join("candor.db")).unwrap();
    let edited = db
        .execute("UPDATE log_entries SET entry = CAST(REPLACE(CAST(entry AS TEXT), 'subject.read', 'subject.XXXX') AS BLOB) WHERE idx = 3", [])
        .unwrap();
    assert_eq!(edited, 1);
    let check = vault.check_log(&principal("admin")).await.unwrap();
    assert!(!check.passed() && !check.checkpoint_matches && !check.head_matches, "{check:?}");
    assert_eq!(check.map_matches, Some(false), "the edited entry's customer history no longer matches the map");
    assert_eq!(check.altered, [3]);
    assert!(check.signature_ok, "the checkpoint itself is intact");
}
