//! The behaviour every [`Store`] backend must show. Backends call [`run_all`] from their tests,
//! so SQLite and any later backend are held to the very same contract.

use candor_core::{BlindIndex, Ciphertext, EventId, FieldName, StoredDek, SubjectId, WrappedDek};

use candor_log::merkle::{self, RootBuilder};

use crate::{FieldChange, LogRecord, NewEvent, NewSubject, NewToken, Store};

fn f(n: &str) -> FieldName {
    FieldName::new(n)
}
fn ct(b: &[u8]) -> Ciphertext {
    Ciphertext::from_bytes(b.to_vec())
}
fn bi(b: u8) -> BlindIndex {
    BlindIndex::from_bytes(vec![b; 32])
}
fn log(what: &str, subject: Option<SubjectId>) -> LogRecord {
    LogRecord { entry: format!("{{\"test\":\"{what}\"}}").into_bytes(), subjects: subject.into_iter().collect() }
}

fn dek() -> StoredDek {
    StoredDek { kek_version: 1, dek_version: 1, wrapped: WrappedDek::from_bytes(vec![7; 60]) }
}

async fn new_subject(store: &dyn Store, email_index: u8) -> SubjectId {
    let id = SubjectId::random();
    store
        .create_subject(
            NewSubject {
                id,
                dek: dek(),
                values: vec![(f("email"), ct(b"c-email")), (f("name"), ct(b"c-name"))],
                index: vec![(f("email"), bi(email_index))],
                now: 1_000,
            },
            log("create", Some(id)),
        )
        .await
        .unwrap();
    id
}

/// Runs every contract check against `store` (which should be empty of test data).
pub async fn run_all(store: &dyn Store) {
    store.ping().await.unwrap();
    let (size_before, _) = store.log_head().await.unwrap();
    assert_eq!(size_before, 0, "the suite starts on an empty log");
    created_subjects_read_back(store).await;
    unknown_subjects_are_none_and_change_nothing(store).await;
    updates_replace_values_and_index_entries(store).await;
    a_duplicate_subject_id_fails_and_leaves_no_partial_state(store).await;
    events_are_listed_in_order_by_type_and_cursor(store).await;
    tokens_are_found_by_hash_only(store).await;
    failed_changes_log_nothing_and_every_change_logs_once(store).await;
    the_log_proves_inclusion_and_consistency(store).await;
    checkpoints_and_catalog_changes_are_kept(store).await;
}

async fn entries(store: &dyn Store) -> Vec<String> {
    let (size, _) = store.log_head().await.unwrap();
    store.log_entries(0, size).await.unwrap().into_iter().map(|(_, e)| String::from_utf8(e).unwrap()).collect()
}

async fn failed_changes_log_nothing_and_every_change_logs_once(store: &dyn Store) {
    let logged = entries(store).await;
    // The duplicate create, the ghost update, the ghost event and the duplicate token failed:
    // none of them left a log entry; every successful change left exactly one.
    for failed in ["create-again", "ghost", "ghost-event", "token-again"] {
        assert!(!logged.iter().any(|e| e.contains(&format!("\"{failed}\""))), "{failed} was logged");
    }
    assert_eq!(logged.iter().filter(|e| e.contains("\"create\"")).count(), 4);
    assert_eq!(logged.iter().filter(|e| e.contains("\"update\"")).count(), 1);
    assert_eq!(logged.iter().filter(|e| e.contains("\"event\"")).count(), 4);
    assert_eq!(logged.iter().filter(|e| e.contains("\"token\"")).count(), 1);
}

async fn the_log_proves_inclusion_and_consistency(store: &dyn Store) {
    let subject = SubjectId::random();
    let first = store
        .append_log(vec![log("read-1", Some(subject)), log("read-2", None), log("read-3", Some(subject))])
        .await
        .unwrap();
    let (size, root) = store.log_head().await.unwrap();
    assert_eq!(first + 3, size);
    let all = store.log_entries(0, size).await.unwrap();
    assert_eq!(all.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (0..size).collect::<Vec<_>>());
    let mut b = RootBuilder::new();
    for (_, e) in &all {
        b.push(merkle::leaf_hash(e));
    }
    assert_eq!(b.root(), root, "the stored root is the root of the stored entries");
    let leaves = store.log_nodes(0, 0, size).await.unwrap();
    assert_eq!(leaves.len() as u64, size);
    for index in [0, size / 2, size - 1] {
        let (leaf, proof) = store.log_inclusion_proof(index, size).await.unwrap();
        assert_eq!(leaf, merkle::leaf_hash(&all[index as usize].1));
        merkle::verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
    }
    for old in [1, size / 2, size - 1] {
        let (r1, r2, proof) = store.log_consistency_proof(old, size).await.unwrap();
        assert_eq!(r2, root);
        merkle::verify_consistency(old, size, &r1, &r2, &proof).unwrap();
    }
    assert!(store.log_inclusion_proof(size, size).await.is_err());
    assert!(store.log_consistency_proof(1, size + 1).await.is_err());
    assert_eq!(store.subject_log_indices(subject).await.unwrap(), vec![first, first + 2]);
}

async fn checkpoints_and_catalog_changes_are_kept(store: &dyn Store) {
    assert!(store.latest_checkpoint().await.unwrap().is_none());
    store.save_checkpoint(3, "note-3", 1).await.unwrap();
    store.save_checkpoint(5, "note-5", 2).await.unwrap();
    store.save_checkpoint(5, "note-5-again", 3).await.unwrap();
    assert_eq!(store.latest_checkpoint().await.unwrap(), Some((5, "note-5".to_string())));
    assert_eq!(store.checkpoints().await.unwrap(), vec![(3, "note-3".to_string()), (5, "note-5".to_string())]);
    let (size, _) = store.log_head().await.unwrap();
    assert!(store.note_catalog("sha256:aa", log("catalog-a", None)).await.unwrap());
    assert!(!store.note_catalog("sha256:aa", log("catalog-a-again", None)).await.unwrap());
    assert!(store.note_catalog("sha256:bb", log("catalog-b", None)).await.unwrap());
    assert_eq!(store.log_head().await.unwrap().0, size + 2);
}

async fn created_subjects_read_back(store: &dyn Store) {
    let id = new_subject(store, 1).await;
    let rec = store.load_subject(id, &[f("email"), f("name"), f("phone")]).await.unwrap().unwrap();
    assert_eq!(rec.dek, dek());
    assert_eq!(rec.values, vec![(f("email"), ct(b"c-email")), (f("name"), ct(b"c-name"))]);
    let only_email = store.load_subject(id, &[f("email")]).await.unwrap().unwrap();
    assert_eq!(only_email.values.len(), 1);
    assert_eq!(store.find_by_index(&f("email"), &bi(1)).await.unwrap(), vec![id]);
    assert!(store.find_by_index(&f("name"), &bi(1)).await.unwrap().is_empty());
}

async fn unknown_subjects_are_none_and_change_nothing(store: &dyn Store) {
    let ghost = SubjectId::random();
    assert!(store.load_subject(ghost, &[f("email")]).await.unwrap().is_none());
    let changed = store
        .update_subject(
            ghost,
            vec![FieldChange::Set { field: f("email"), value: ct(b"x"), index: Some(bi(99)) }],
            5,
            log("ghost", Some(ghost)),
        )
        .await
        .unwrap();
    assert!(!changed);
    assert!(store.find_by_index(&f("email"), &bi(99)).await.unwrap().is_empty());
    let appended = store
        .append_event(
            NewEvent {
                id: EventId::random(),
                subject: ghost,
                event_type: f("page_view"),
                recorded_at: 1,
                payload: ct(b"p"),
            },
            log("ghost-event", Some(ghost)),
        )
        .await
        .unwrap();
    assert!(!appended);
}

async fn updates_replace_values_and_index_entries(store: &dyn Store) {
    let id = new_subject(store, 2).await;
    let changed = store
        .update_subject(
            id,
            vec![
                FieldChange::Set { field: f("email"), value: ct(b"c-email-2"), index: Some(bi(3)) },
                FieldChange::Remove { field: f("name") },
                FieldChange::Set { field: f("phone"), value: ct(b"c-phone"), index: None },
            ],
            2_000,
            log("update", Some(id)),
        )
        .await
        .unwrap();
    assert!(changed);
    let rec = store.load_subject(id, &[f("email"), f("name"), f("phone")]).await.unwrap().unwrap();
    assert_eq!(rec.values, vec![(f("email"), ct(b"c-email-2")), (f("phone"), ct(b"c-phone"))]);
    assert_eq!(rec.updated_at, 2_000);
    assert!(store.find_by_index(&f("email"), &bi(2)).await.unwrap().is_empty(), "old index entry must go");
    assert_eq!(store.find_by_index(&f("email"), &bi(3)).await.unwrap(), vec![id]);
}

async fn a_duplicate_subject_id_fails_and_leaves_no_partial_state(store: &dyn Store) {
    let id = new_subject(store, 4).await;
    let again = store
        .create_subject(
            NewSubject {
                id,
                dek: dek(),
                values: vec![(f("phone"), ct(b"should-not-stay"))],
                index: vec![(f("phone"), bi(5))],
                now: 3_000,
            },
            log("create-again", Some(id)),
        )
        .await;
    assert!(again.is_err());
    assert!(store.find_by_index(&f("phone"), &bi(5)).await.unwrap().is_empty());
    let rec = store.load_subject(id, &[f("phone")]).await.unwrap().unwrap();
    assert!(rec.values.is_empty());
}

async fn events_are_listed_in_order_by_type_and_cursor(store: &dyn Store) {
    let id = new_subject(store, 6).await;
    let mut ids = Vec::new();
    for (i, ty) in ["page_view", "purchase", "page_view", "page_view"].iter().enumerate() {
        let eid = EventId::random();
        ids.push(eid);
        let ok = store
            .append_event(
                NewEvent { id: eid, subject: id, event_type: f(ty), recorded_at: i as i64, payload: ct(&[i as u8]) },
                log("event", Some(id)),
            )
            .await
            .unwrap();
        assert!(ok);
    }
    let views = store.list_events(id, &[f("page_view")], None, 10).await.unwrap();
    assert_eq!(views.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[0], ids[2], ids[3]]);
    let page = store.list_events(id, &[f("page_view"), f("purchase")], None, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    let rest = store.list_events(id, &[f("page_view"), f("purchase")], Some(page[1].seq), 10).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[2], ids[3]]);
    assert!(store.list_events(id, &[], None, 10).await.unwrap().is_empty());
    assert!(store.list_events(SubjectId::random(), &[f("page_view")], None, 10).await.unwrap().is_empty());
}

async fn tokens_are_found_by_hash_only(store: &dyn Store) {
    let token = NewToken {
        id: "tok-1".into(),
        hash: [9; 32],
        role: "support_agent".into(),
        description: "test".into(),
        created_at: 10,
        expires_at: Some(20),
    };
    store.insert_token(token.clone(), log("token", None)).await.unwrap();
    let found = store.token_by_hash(&[9; 32]).await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.role.as_str(), found.expires_at, found.revoked_at),
        ("tok-1", "support_agent", Some(20), None)
    );
    assert!(store.token_by_hash(&[8; 32]).await.unwrap().is_none());
    assert!(store.insert_token(token, log("token-again", None)).await.is_err(), "a token hash is unique");
}
