//! The behaviour every [`Store`] backend must show. Backends call [`run_all`] from their tests,
//! so SQLite and any later backend are held to the very same contract.

use candor_core::{BlindIndex, Ciphertext, EventId, FieldName, StoredDek, SubjectId, WrappedDek};

use candor_log::merkle::{self, RootBuilder};

use candor_core::PurposeId;
use candor_core::catalog::Channel;
use candor_core::consent::{ActorKind, ConsentAction, ConsentMethod};

use crate::{
    FieldChange, ImportRow, LogRecord, NewConsentEntry, NewConsentRecord, NewEvent, NewSubject, NewToken, NoticeText,
    Recorded, Store,
};

fn f(n: &str) -> FieldName {
    FieldName::new(n)
}
fn ct(b: &[u8]) -> Ciphertext {
    Ciphertext::from_bytes(b.to_vec())
}
fn bi(b: u8) -> BlindIndex {
    BlindIndex::new(1, vec![b; 32])
}
fn log(what: &str, subject: Option<SubjectId>) -> LogRecord {
    LogRecord {
        entry: format!("{{\"test\":\"{what}\"}}").into_bytes(),
        subjects: subject.into_iter().collect(),
        ..Default::default()
    }
}

fn request(certificate_id: &str) -> crate::rights::ErasureRequest {
    crate::rights::ErasureRequest {
        certificate_id: certificate_id.into(),
        token_id: "tok-privacy".into(),
        role: "privacy_team".into(),
        purpose: "privacy_requests".into(),
    }
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
    the_logs_tiles_hold_across_their_boundaries_however_appends_arrive(store).await;
    checkpoints_and_catalog_changes_are_kept(store).await;
    the_consent_ledger_appends_all_or_nothing_and_streams_audiences(store).await;
    erasure_destroys_the_key_and_the_data_unless_held_and_is_idempotent(store).await;
    restriction_is_a_flag_on_the_record_and_changes_are_logged_once(store).await;
    retention_deletes_what_is_due_skips_held_customers_and_logs_names_and_counts(store).await;
    requests_are_tracked_until_closed_and_overdue_ones_are_counted(store).await;
    break_glass_overrides_are_open_only_for_their_token_subject_purpose_and_time(store).await;
    notice_versions_are_kept_in_order_and_republishing_the_latest_changes_nothing(store).await;
    sign_in_links_work_once_before_expiry_and_sessions_go_with_the_customer(store).await;
    registered_messages_are_found_by_code_listed_per_customer_and_erased_with_them(store).await;
    grants_count_reads_until_revoked_expired_or_used_up_and_lose_erased_customers(store).await;
    data_keys_are_counted_per_kek_and_replaced_only_if_unchanged(store).await;
    lookup_rows_move_to_a_new_index_key_only_if_unchanged(store).await;
    caller_addresses_are_kept_beside_the_log_and_pruned(store).await;
    breaches_are_recorded_with_their_customers_and_their_clock(store).await;
    an_erasure_interrupted_after_the_key_was_destroyed_is_completed_from_its_intent(store).await;
    an_idempotency_key_is_stored_with_its_change_once(store).await;
    an_import_batch_stores_each_customer_with_its_entry_and_never_a_taken_unique_value(store).await;
}

async fn breaches_are_recorded_with_their_customers_and_their_clock(store: &dyn Store) {
    use crate::breaches::Breach;
    let (a, b) = (new_subject(store, 130).await, new_subject(store, 131).await);
    let breach = Breach {
        id: "br-1".into(),
        detected_at: 1_000,
        recorded_at: 2_000,
        nature: "a support token was used from an unknown device".into(),
        categories: vec!["contact".into(), "identity".into()],
        customers: 2,
        consequences: "phishing".into(),
        measures: "token revoked".into(),
        authority_notified_at: None,
        closed_at: None,
    };
    store.record_breach(breach.clone(), vec![a, SubjectId::random()], vec![log("breach", None)]).await.unwrap();
    assert_eq!(store.breaches().await.unwrap().iter().find(|x| x.id == "br-1"), Some(&breach));
    assert_eq!(store.breaches_of(a).await.unwrap().len(), 1);
    assert!(store.breaches_of(b).await.unwrap().is_empty());
    assert!(store.update_breach("br-1", false, 3_000, log("notified", None)).await.unwrap());
    assert!(store.update_breach("br-1", false, 4_000, log("notified again", None)).await.unwrap());
    assert!(store.update_breach("br-1", true, 5_000, log("closed", None)).await.unwrap());
    assert!(!store.update_breach("nope", true, 5_000, log("none", None)).await.unwrap());
    let kept = store.breaches().await.unwrap().into_iter().find(|x| x.id == "br-1").unwrap();
    assert_eq!((kept.authority_notified_at, kept.closed_at), (Some(3_000), Some(5_000)), "the first time counts");
}

async fn data_keys_are_counted_per_kek_and_replaced_only_if_unchanged(store: &dyn Store) {
    let a = new_subject(store, 120).await;
    let count = |counts: &[(u32, u64)], v: u32| counts.iter().find(|(k, _)| *k == v).map_or(0, |(_, n)| *n);
    let before = store.dek_counts().await.unwrap();
    assert!(count(&before, 1) >= 1);
    let pending = store.deks_not_under(2, None, 1000).await.unwrap();
    let (_, old) = pending.iter().find(|(s, _)| *s == a).unwrap().clone();
    let new = StoredDek { kek_version: 2, dek_version: 1, wrapped: WrappedDek::from_bytes(vec![8; 60]) };
    assert_eq!(store.replace_deks(vec![(a, old.clone(), new.clone())]).await.unwrap(), 1);
    assert_eq!(
        store.replace_deks(vec![(a, old, new.clone())]).await.unwrap(),
        0,
        "already replaced: the stale one loses"
    );
    assert_eq!(store.load_subject(a, &[]).await.unwrap().unwrap().dek, new);
    let after = store.dek_counts().await.unwrap();
    assert_eq!((count(&after, 1), count(&after, 2)), (count(&before, 1) - 1, count(&before, 2) + 1));
    assert!(store.deks_not_under(2, None, 1000).await.unwrap().iter().all(|(s, _)| *s != a));
    // Paging by cursor covers every key once.
    let all = store.deks_not_under(99, None, 1000).await.unwrap();
    let mut paged = Vec::new();
    let mut after_id = None;
    loop {
        let page = store.deks_not_under(99, after_id, 2).await.unwrap();
        let Some((last, _)) = page.last() else { break };
        after_id = Some(*last);
        paged.extend(page);
    }
    assert_eq!(paged.len(), all.len());
    // An erased customer's key is gone from all of this.
    store.erase_subject(a, 9_000, "{}".into(), log("erase", Some(a))).await.unwrap();
    assert!(store.deks_not_under(99, None, 1000).await.unwrap().iter().all(|(s, _)| *s != a));
}

async fn caller_addresses_are_kept_beside_the_log_and_pruned(store: &dyn Store) {
    use crate::CallerAddress;
    let (size, _) = store.log_head().await.unwrap();
    let at = |address: &str, at| Some(CallerAddress { address: address.parse().unwrap(), at });
    let records = vec![
        LogRecord { caller: at("203.0.113.7", 1_000), ..log("from staff", None) },
        log("from a customer", None),
        LogRecord { caller: at("2001:db8::5", 9_000), ..log("from a recipient", None) },
    ];
    let first = store.append_log(records).await.unwrap();
    assert_eq!(first, size);
    let (after, _) = store.log_head().await.unwrap();
    assert_eq!(after, size + 3, "addresses do not change the log itself");
    let stored = store.log_callers(first, first + 3).await.unwrap();
    assert_eq!(stored, vec![(first, "203.0.113.7".parse().unwrap()), (first + 2, "2001:db8::5".parse().unwrap())]);
    assert_eq!(store.prune_log_callers(5_000).await.unwrap(), 1);
    assert_eq!(store.log_callers(first, first + 3).await.unwrap(), vec![(first + 2, "2001:db8::5".parse().unwrap())]);
    assert_eq!(store.log_entries(first, first + 3).await.unwrap().len(), 3, "entries stay");
}

async fn lookup_rows_move_to_a_new_index_key_only_if_unchanged(store: &dyn Store) {
    use crate::IndexReplacement;
    let count = |counts: &[(u32, u64)], v: u32| counts.iter().find(|(k, _)| *k == v).map_or(0, |(_, n)| *n);
    let (a, b) = (new_subject(store, 130).await, new_subject(store, 131).await);
    let new_a = BlindIndex::new(2, vec![230; 32]);
    let before = store.index_counts().await.unwrap();
    assert!(count(&before, 1) >= 2);
    // A lookup searches every version's token in one go, each customer once.
    let both = [new_a.clone(), bi(130)];
    assert_eq!(store.find_by_index(&f("email"), &both).await.unwrap(), vec![a]);
    assert!(store.index_rows_under(1, None, 10_000).await.unwrap().contains(&(a, f("email"))));
    let change = |current: Vec<BlindIndex>| IndexReplacement {
        subject: a,
        field: f("email"),
        key_version: 1,
        current,
        new: new_a.clone(),
    };
    // The value changed since it was read (its index differs): the row stays.
    assert_eq!(store.replace_index_rows(vec![change(vec![bi(129)])]).await.unwrap(), 0);
    assert_eq!(
        store.replace_index_rows(vec![change(vec![BlindIndex::new(2, vec![1; 32]), bi(130)])]).await.unwrap(),
        1
    );
    assert_eq!(store.replace_index_rows(vec![change(vec![bi(130)])]).await.unwrap(), 0, "already moved");
    assert!(store.find_by_index(&f("email"), &[bi(130)]).await.unwrap().is_empty());
    assert_eq!(store.find_by_index(&f("email"), &both).await.unwrap(), vec![a]);
    let after = store.index_counts().await.unwrap();
    assert_eq!((count(&after, 1), count(&after, 2)), (count(&before, 1) - 1, count(&before, 2) + 1));
    assert!(!store.index_rows_under(1, None, 10_000).await.unwrap().contains(&(a, f("email"))));
    assert_eq!(store.index_rows_under(2, None, 10_000).await.unwrap(), vec![(a, f("email"))]);
    // Paging by (subject, field) cursor covers every row once.
    let all = store.index_rows_under(1, None, 10_000).await.unwrap();
    assert!(all.contains(&(b, f("email"))));
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.index_rows_under(1, cursor, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(last.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all);
    // A correction writes its row under the key it was indexed with; erasure takes rows along.
    let set =
        FieldChange::Set { field: f("email"), value: ct(b"c-email-3"), index: Some(BlindIndex::new(2, vec![231; 32])) };
    assert!(store.update_subject(b, vec![set], 2_000, log("correct", Some(b))).await.unwrap());
    assert!(store.index_rows_under(2, None, 10_000).await.unwrap().contains(&(b, f("email"))));
    for s in [a, b] {
        store.erase_subject(s, 9_000, "{}".into(), log("erase", Some(s))).await.unwrap();
    }
    assert!(store.index_rows_under(2, None, 10_000).await.unwrap().is_empty());
}

async fn grants_count_reads_until_revoked_expired_or_used_up_and_lose_erased_customers(store: &dyn Store) {
    use crate::grants::Grant;
    let (a, b) = (new_subject(store, 101).await, new_subject(store, 102).await);
    let grant = |id: &str, max_reads| Grant {
        id: id.into(),
        recipient: "parcel_carrier".into(),
        purpose: "order_fulfilment".into(),
        fields: vec!["full_name".into(), "shipping_address".into()],
        credential_hash: [id.len() as u8; 32],
        created_by: "t-1".into(),
        created_at: 1_000,
        expires_at: 5_000,
        max_reads,
        reads: 0,
        revoked_at: None,
    };
    let (log_before, _) = store.log_head().await.unwrap();
    let held = store
        .create_grant(grant("g-1", Some(2)), vec![a, b, SubjectId::random()], vec![log("grant", None)])
        .await
        .unwrap();
    assert_eq!(held, 2, "customers that do not exist are not held");
    assert_eq!(store.grant("g-1").await.unwrap().unwrap(), grant("g-1", Some(2)));
    let mut all = vec![a, b];
    all.sort_by_key(|s| s.to_string());
    assert_eq!(store.grant_subjects("g-1", None, 10).await.unwrap(), all);
    assert_eq!(store.grant_subjects("g-1", Some(all[0]), 10).await.unwrap(), [all[1]]);
    assert_eq!(store.grant_subjects("g-1", None, 1).await.unwrap(), [all[0]]);
    let sizes = store.grant_sizes().await.unwrap();
    assert_eq!(sizes.iter().find(|(id, _)| id == "g-1").map(|(_, n)| *n), Some(2), "{sizes:?}");

    // Reads: counted up to max_reads, never after expiry or revocation; refused ones log nothing.
    assert!(!store.count_grant_read("g-1", 5_000, log("late", None)).await.unwrap());
    assert!(store.count_grant_read("g-1", 2_000, log("read 1", None)).await.unwrap());
    assert!(store.count_grant_read("g-1", 2_000, log("read 2", None)).await.unwrap());
    assert!(!store.count_grant_read("g-1", 2_000, log("read 3", None)).await.unwrap());
    assert_eq!(store.grant("g-1").await.unwrap().unwrap().reads, 2);
    store.create_grant(grant("g-22", None), vec![a], vec![log("grant 2", None)]).await.unwrap();
    assert!(store.revoke_grant("g-22", 3_000, vec![log("revoke", None)]).await.unwrap());
    assert!(!store.revoke_grant("g-22", 3_100, vec![log("revoke again", None)]).await.unwrap());
    assert!(!store.count_grant_read("g-22", 3_200, log("after revoke", None)).await.unwrap());
    assert_eq!(store.log_head().await.unwrap().0, log_before + 5);

    // An entry in several parts (a grant of more customers than one entry names) commits with
    // its change, all of it or nothing: a grant that fails (its id is taken) logs no part, and a
    // revocation that changes nothing (revoked already) logs no part either.
    let parts = |what: &str| vec![log(&format!("{what} part 1"), Some(a)), log(&format!("{what} part 2"), Some(b))];
    let (size, _) = store.log_head().await.unwrap();
    assert!(store.create_grant(grant("g-1", None), vec![a, b], parts("grant taken")).await.is_err());
    assert_eq!(store.log_head().await.unwrap().0, size, "a failed grant logs none of its parts");
    assert_eq!(store.create_grant(grant("g-333", None), vec![a, b], parts("grant in parts")).await.unwrap(), 2);
    assert!(store.revoke_grant("g-333", 3_000, parts("revoke in parts")).await.unwrap());
    assert!(!store.revoke_grant("g-333", 3_100, parts("revoke in parts again")).await.unwrap());
    assert!(!store.revoke_grant("g-none", 3_100, parts("revoke nothing")).await.unwrap());
    let added: Vec<String> = store
        .log_entries(size, size + 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| String::from_utf8(e).unwrap())
        .collect();
    let expected: Vec<String> =
        ["grant in parts part 1", "grant in parts part 2", "revoke in parts part 1", "revoke in parts part 2"]
            .iter()
            .map(|w| format!("{{\"test\":\"{w}\"}}"))
            .collect();
    assert_eq!(added, expected, "every part with its change, once");

    let ids: Vec<String> = store.grants_of(a).await.unwrap().into_iter().map(|g| g.id).collect();
    assert_eq!(ids, ["g-1", "g-22", "g-333"]);
    // The certificate is made from the recipients the erasure writes notices to: one per
    // recipient, with the fields of all its grants.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = seen.clone();
    let certify: crate::Certify = Box::new(move |told| {
        into.lock().unwrap().extend_from_slice(told);
        format!("told {}", told.len())
    });
    store.erase_subject_certified(a, 6_000, request("c-a"), certify, log("erase", Some(a))).await.unwrap();
    let told = seen.lock().unwrap().clone();
    assert_eq!(
        told,
        [crate::Notified {
            recipient: "parcel_carrier".into(),
            fields: vec!["full_name".into(), "shipping_address".into()]
        }]
    );
    let kept = store.erase_subject(a, 6_100, "again".into(), log("erase again", Some(a))).await.unwrap();
    assert_eq!(kept, crate::Erasure::AlreadyErased { erased_at: 6_000, certificate: Some("told 1".into()) });
    // A customer in no grant: nobody to tell.
    let alone = new_subject(store, 103).await;
    let certify: crate::Certify = Box::new(|told| format!("told {}", told.len()));
    store
        .erase_subject_certified(alone, 6_200, request("c-alone"), certify, log("erase alone", Some(alone)))
        .await
        .unwrap();
    let kept = store.erase_subject(alone, 6_300, "again".into(), log("erase again", Some(alone))).await.unwrap();
    assert_eq!(kept, crate::Erasure::AlreadyErased { erased_at: 6_200, certificate: Some("told 0".into()) });
    assert!(store.grants_of(a).await.unwrap().is_empty());
    assert_eq!(store.grant_subjects("g-1", None, 10).await.unwrap(), [b]);

    // The outbox: erasing `a` wrote one notice per recipient that held them (one here, though
    // two grants held them); correcting and restricting `b` write theirs; nothing else does.
    // (The erasure notice is already there.)
    let (before_undelivered, before_unconfirmed) = store.notice_counts().await.unwrap();
    let change = FieldChange::Set { field: f("email"), value: ct(b"new"), index: None };
    assert!(store.update_subject(b, vec![change], 7_000, log("correct b", Some(b))).await.unwrap());
    store.restrict(b, None, 7_100, log("restrict b", Some(b))).await.unwrap();
    store.lift_restriction(b, log("unrestrict b", Some(b))).await.unwrap();
    let mut due = store.due_notices(i64::MAX, 100).await.unwrap();
    due.retain(|n| n.subject == a.to_string() || n.subject == b.to_string());
    let kinds: Vec<(&str, &str, &str)> =
        due.iter().map(|n| (n.recipient.as_str(), n.kind.as_str(), n.subject.as_str())).collect();
    let (sa, sb) = (a.to_string(), b.to_string());
    assert_eq!(
        kinds,
        [
            ("parcel_carrier", "erasure", sa.as_str()),
            ("parcel_carrier", "correction", sb.as_str()),
            ("parcel_carrier", "restriction", sb.as_str())
        ]
    );
    assert_eq!(due[1].fields, ["email"]);
    assert_eq!(store.notice_counts().await.unwrap(), (before_undelivered + 2, before_unconfirmed));
    assert!(store.due_notices(6_999, 100).await.unwrap().iter().all(|n| n.subject != sb), "not due before it was made");

    store.notice_failed(&due[0].id, 9_000, "HTTP 500").await.unwrap();
    assert!(store.due_notices(8_999, 100).await.unwrap().iter().all(|n| n.id != due[0].id), "retried later");
    let size = store.log_head().await.unwrap().0;
    assert!(store.retry_notice(&due[0].id, 8_000, log("retry now", None)).await.unwrap());
    assert!(store.due_notices(8_000, 100).await.unwrap().iter().any(|n| n.id == due[0].id), "due at once");
    assert_eq!(store.log_head().await.unwrap().0, size + 1, "the retry and its entry, together");
    assert!(!store.retry_notice("no-such-notice", 8_000, log("retry ghost", None)).await.unwrap());
    let retried = store.notice(&due[0].id).await.unwrap().unwrap();
    assert_eq!((retried.attempts, retried.last_error.as_deref()), (1, Some("HTTP 500")));
    let size = store.log_head().await.unwrap().0;
    store.notice_delivered(&due[0].id, 9_100, log("notified", Some(a))).await.unwrap();
    assert_eq!(store.log_head().await.unwrap().0, size + 1, "the delivery and its entry, together");
    assert!(store.due_notices(i64::MAX, 100).await.unwrap().iter().all(|n| n.id != due[0].id));
    assert_eq!(store.notice_counts().await.unwrap(), (before_undelivered + 1, before_unconfirmed + 1));
    assert!(store.unconfirmed_notices(100).await.unwrap().iter().any(|n| n.id == due[0].id));
    assert!(store.confirm_notice(&due[0].id, 9_200, log("confirmed", Some(a))).await.unwrap());
    assert_eq!(store.log_head().await.unwrap().0, size + 2, "the confirmation and its entry, together");
    assert!(!store.confirm_notice("no-such-notice", 9_200, log("confirmed", None)).await.unwrap());
    assert_eq!(store.log_head().await.unwrap().0, size + 2, "no notice: nothing logged");
    assert_eq!(store.notice(&due[0].id).await.unwrap().unwrap().confirmed_at, Some(9_200));
    assert!(store.unconfirmed_notices(100).await.unwrap().iter().all(|n| n.id != due[0].id));
    assert!(!store.retry_notice(&due[0].id, 9_300, log("retry delivered", None)).await.unwrap(), "delivered already");
}

async fn registered_messages_are_found_by_code_listed_per_customer_and_erased_with_them(store: &dyn Store) {
    use crate::messages::StoredMessage;
    let (a, b) = (new_subject(store, 97).await, new_subject(store, 98).await);
    let (log_before, _) = store.log_head().await.unwrap();
    let message = |id: &str, subject, code: u8, sent_at| StoredMessage {
        id: id.into(),
        subject,
        purpose: "order_fulfilment".into(),
        channel: "email".into(),
        subject_line: ct(b"sealed subject line"),
        body_sha256: [9; 32],
        code_hash: [code; 32],
        sent_at,
    };
    assert!(store.register_message(message("m-1", a, 1, 1_000), log("m1", Some(a))).await.unwrap());
    assert!(store.register_message(message("m-2", a, 2, 2_000), log("m2", Some(a))).await.unwrap());
    assert!(store.register_message(message("m-3", b, 3, 1_500), log("m3", Some(b))).await.unwrap());
    assert!(!store.register_message(message("m-4", SubjectId::random(), 4, 1), log("m4", None)).await.unwrap());
    assert!(matches!(
        store.register_message(message("m-5", b, 1, 1), log("m5", Some(b))).await,
        Err(crate::StoreError::Conflict(_))
    ));
    assert_eq!(store.log_head().await.unwrap().0, log_before + 3);
    let found = store.message_by_code(&[2; 32]).await.unwrap().unwrap();
    assert_eq!(found, message("m-2", a, 2, 2_000));
    assert_eq!(store.message_by_code(&[4; 32]).await.unwrap(), None);
    let ids: Vec<String> = store.messages_of(a, 10).await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["m-2", "m-1"], "newest first");
    assert_eq!(store.messages_of(a, 1).await.unwrap().len(), 1);
    assert_eq!(store.erased_message_by_code(&[1; 32]).await.unwrap(), None, "not erased yet");
    store.erase_subject(a, 3_000, "{}".into(), log("erase", Some(a))).await.unwrap();
    assert_eq!(store.message_by_code(&[1; 32]).await.unwrap(), None);
    assert!(store.messages_of(a, 10).await.unwrap().is_empty());
    assert_eq!(store.messages_of(b, 10).await.unwrap().len(), 1);
    // What stays: the code's hash with how and when, and nothing about the customer.
    let kept = store.erased_message_by_code(&[2; 32]).await.unwrap().unwrap();
    assert_eq!(kept, crate::ErasedMessage { channel: "email".into(), sent_at: 2_000 });
    assert!(store.erased_message_by_code(&[1; 32]).await.unwrap().is_some());
    assert_eq!(store.erased_message_by_code(&[3; 32]).await.unwrap(), None, "b's message is not erased");
}

async fn sign_in_links_work_once_before_expiry_and_sessions_go_with_the_customer(store: &dyn Store) {
    use crate::sessions::NewSession;
    let a = new_subject(store, 95).await;
    let (log_before, _) = store.log_head().await.unwrap();
    assert!(store.create_sign_in_link([1; 32], a, 1_000, 2_000, log("link", Some(a))).await.unwrap());
    assert!(store.create_sign_in_link([2; 32], a, 1_000, 2_000, log("link 2", Some(a))).await.unwrap());
    // Nobody to sign in: nothing stored, nothing logged.
    let nobody = SubjectId::random();
    assert!(!store.create_sign_in_link([3; 32], nobody, 1_000, 2_000, log("link none", None)).await.unwrap());
    assert_eq!(store.sign_in_link(&[3; 32]).await.unwrap(), None);
    assert_eq!(store.log_head().await.unwrap().0, log_before + 2);
    let link = store.sign_in_link(&[1; 32]).await.unwrap().unwrap();
    assert_eq!((link.subject, link.expires_at, link.used_at), (a, 2_000, None));

    let session = |id: &str, hash: u8, now| NewSession { id: id.into(), hash: [hash; 32], subject: a, now };
    // Expired at expires_at.
    assert!(!store.redeem_sign_in_link([2; 32], session("s-late", 20, 2_000), 0, log("late", Some(a))).await.unwrap());
    assert!(store.redeem_sign_in_link([1; 32], session("s-1", 10, 1_500), 0, log("in", Some(a))).await.unwrap());
    // Once only, even before expiry; the failed attempts logged nothing and started nothing.
    assert!(!store.redeem_sign_in_link([1; 32], session("s-2", 11, 1_600), 0, log("again", Some(a))).await.unwrap());
    assert_eq!(store.session_by_hash(&[11; 32]).await.unwrap(), None);
    assert_eq!(store.session_by_hash(&[20; 32]).await.unwrap(), None);
    assert_eq!(store.sign_in_link(&[1; 32]).await.unwrap().unwrap().used_at, Some(1_500));
    assert_eq!(store.log_head().await.unwrap().0, log_before + 3);

    let s = store.session_by_hash(&[10; 32]).await.unwrap().unwrap();
    assert_eq!((s.id.as_str(), s.subject, s.created_at, s.last_seen_at), ("s-1", a, 1_500, 1_500));
    store.touch_session("s-1", 1_700).await.unwrap();
    store.touch_session("s-1", 1_650).await.unwrap();
    assert_eq!(store.session_by_hash(&[10; 32]).await.unwrap().unwrap().last_seen_at, 1_700);
    assert!(store.end_session("s-1", Some(log("out", Some(a)))).await.unwrap());
    assert!(!store.end_session("s-1", Some(log("out again", Some(a)))).await.unwrap());
    assert_eq!(store.session_by_hash(&[10; 32]).await.unwrap(), None);
    assert_eq!(store.log_head().await.unwrap().0, log_before + 4);

    // Redeeming prunes what expired long ago; erasing the customer takes their links and sessions.
    assert!(store.create_sign_in_link([4; 32], a, 3_000, 4_000, log("link 4", Some(a))).await.unwrap());
    assert!(store.create_sign_in_link([5; 32], a, 3_000, 9_000, log("link 5", Some(a))).await.unwrap());
    assert!(store.redeem_sign_in_link([5; 32], session("s-5", 50, 5_000), 4_500, log("in", Some(a))).await.unwrap());
    assert_eq!(store.sign_in_link(&[4; 32]).await.unwrap(), None, "pruned");
    assert_eq!(store.sign_in_link(&[2; 32]).await.unwrap(), None, "pruned");
    assert!(store.session_by_hash(&[50; 32]).await.unwrap().is_some());
    store.erase_subject(a, 6_000, "{}".into(), log("erase", Some(a))).await.unwrap();
    assert_eq!(store.session_by_hash(&[50; 32]).await.unwrap(), None);
    assert_eq!(store.sign_in_link(&[5; 32]).await.unwrap(), None);
}

async fn notice_versions_are_kept_in_order_and_republishing_the_latest_changes_nothing(store: &dyn Store) {
    let (log_before, _) = store.log_head().await.unwrap();
    assert!(store.publish_notice("sha256:a", 10, "{\"v\":\"a\"}", log("notice a", None)).await.unwrap());
    assert!(!store.publish_notice("sha256:a", 20, "{\"v\":\"a\"}", log("notice a again", None)).await.unwrap());
    assert!(store.publish_notice("sha256:b", 30, "{\"v\":\"b\"}", log("notice b", None)).await.unwrap());
    let versions = store.notice_versions().await.unwrap();
    let names: Vec<&str> = versions.iter().map(|(v, _, _)| v.as_str()).collect();
    assert_eq!(names, ["sha256:a", "sha256:b"]);
    assert_eq!(versions[1], ("sha256:b".to_string(), 30, "{\"v\":\"b\"}".to_string()));
    assert_eq!(store.log_head().await.unwrap().0, log_before + 2);
}

async fn break_glass_overrides_are_open_only_for_their_token_subject_purpose_and_time(store: &dyn Store) {
    use crate::overrides::BreakGlass;
    let (a, b) = (new_subject(store, 90).await, new_subject(store, 91).await);
    let (log_before, _) = store.log_head().await.unwrap();
    let (opened_before, _) = store.break_glass_counts(0).await.unwrap();
    let bg = |id: &str, subject| BreakGlass {
        id: id.into(),
        subject,
        token_id: "t-bg".into(),
        role: "support_agent".into(),
        purpose: "customer_support".into(),
        reason: ct(b"sealed reason"),
        opened_at: 1_000,
        expires_at: 2_000,
    };
    assert!(store.open_break_glass(bg("bg-1", a), log("bg open", Some(a))).await.unwrap());
    // A customer that does not exist gets no override, and nothing is logged.
    assert!(!store.open_break_glass(bg("bg-2", SubjectId::random()), log("bg none", None)).await.unwrap());
    assert_eq!(store.log_head().await.unwrap().0, log_before + 1);

    let active = |token: &'static str, subject, purpose: &'static str, now| async move {
        store.active_break_glass(token, subject, purpose, now).await.unwrap()
    };
    assert_eq!(active("t-bg", a, "customer_support", 1_500).await.as_deref(), Some("bg-1"));
    assert_eq!(active("t-bg", a, "customer_support", 2_000).await, None, "expired at expires_at");
    assert_eq!(active("t-bg", a, "customer_support", 999).await, None);
    assert_eq!(active("t-other", a, "customer_support", 1_500).await, None);
    assert_eq!(active("t-bg", b, "customer_support", 1_500).await, None);
    assert_eq!(active("t-bg", a, "account", 1_500).await, None);

    let listed = store.break_glass_for(a).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].role.as_str(), listed[0].reason.as_bytes()), ("support_agent", &b"sealed reason"[..]));
    assert!(store.break_glass_for(b).await.unwrap().is_empty());
    let (opened, open_now) = store.break_glass_counts(1_500).await.unwrap();
    assert_eq!((opened - opened_before, open_now), (1, 1));
    // Ever opened does not go down when the customer (and their override's row) is erased.
    store.erase_subject(a, 1_600, "{}".into(), log("erase bg", Some(a))).await.unwrap();
    assert!(store.break_glass_for(a).await.unwrap().is_empty());
    let (opened, open_now) = store.break_glass_counts(1_700).await.unwrap();
    assert_eq!((opened - opened_before, open_now), (1, 0));
}

async fn retention_deletes_what_is_due_skips_held_customers_and_logs_names_and_counts(store: &dyn Store) {
    use candor_core::rights::{RetentionRule, RuleTarget};
    let (a, b, held) = (new_subject(store, 70).await, new_subject(store, 71).await, new_subject(store, 72).await);
    for (who, at) in [(a, 100), (a, 200), (a, 900), (b, 900), (held, 100)] {
        let event = NewEvent {
            id: EventId::random(),
            subject: who,
            event_type: f("retained_view"),
            recorded_at: at,
            payload: ct(b"e"),
        };
        store.append_event(event, log("event", Some(who))).await.unwrap();
    }
    store.place_hold(held, ct(b"r"), 1, log("hold", Some(held))).await.unwrap();
    let rules = [
        RetentionRule { target: RuleTarget::Event, name: f("retained_view"), cutoff: 500 },
        // Every subject's e-mail was stored at 1,000 (new_subject): not due.
        RetentionRule { target: RuleTarget::Field, name: f("email"), cutoff: 999 },
    ];
    let due = store.retention_due(&rules).await.unwrap();
    assert_eq!((due[0].items, due[0].subjects, due[0].held_items), (2, 1, 1));
    assert_eq!((due[1].items, due[1].subjects), (0, 0));
    assert_eq!(store.retention_candidates(&rules, None, 10).await.unwrap(), [a]);
    assert!(store.retention_candidates(&rules, Some(a), 10).await.unwrap().is_empty());

    let expired = store
        .apply_retention(a, &rules, Box::new(move |e| log(&format!("retention-{}", e.events[0].1), Some(a))))
        .await
        .unwrap();
    assert_eq!(expired.events, [(f("retained_view"), 2)]);
    assert!(expired.fields.is_empty());
    assert_eq!(store.list_events(a, &[f("retained_view")], None, 10).await.unwrap().len(), 1, "the recent one stays");
    // Nothing more due: nothing deleted, nothing logged.
    let again = store.apply_retention(a, &rules, Box::new(move |_| log("retention-again", Some(a)))).await.unwrap();
    assert!(again.is_empty());
    let held_pass =
        store.apply_retention(held, &rules, Box::new(move |_| log("retention-held", Some(held)))).await.unwrap();
    assert!(held_pass.held);
    assert_eq!(store.list_events(held, &[f("retained_view")], None, 10).await.unwrap().len(), 1);
    // A field rule deletes the value and its index entry.
    let field_rule = [RetentionRule { target: RuleTarget::Field, name: f("email"), cutoff: 1_000 }];
    let expired =
        store.apply_retention(b, &field_rule, Box::new(move |_| log("retention-field", Some(b)))).await.unwrap();
    assert_eq!(expired.fields, [f("email")]);
    assert!(store.find_by_index(&f("email"), &[bi(71)]).await.unwrap().is_empty());
    let logged = entries(store).await;
    for (what, n) in [("retention-2", 1), ("retention-again", 0), ("retention-held", 0), ("retention-field", 1)] {
        assert_eq!(logged.iter().filter(|e| e.contains(&format!("\"{what}\""))).count(), n, "{what}");
    }
}

async fn requests_are_tracked_until_closed_and_overdue_ones_are_counted(store: &dyn Store) {
    use crate::rights::Request;
    let subject = SubjectId::random();
    let request = |id: &str, due_at| Request {
        id: id.into(),
        subject_id: subject.to_string(),
        kind: "access".into(),
        status: "open".into(),
        received_at: due_at - 100,
        due_at,
        created_by: "t-1".into(),
        closed_at: None,
        closed_by: None,
        assignee: None,
        waiting_since: None,
        paused_ms: 0,
        reason: None,
    };
    store.insert_request(request("r-1", 1_000), log("request", None)).await.unwrap();
    store.insert_request(request("r-2", 5_000), log("request", None)).await.unwrap();
    assert_eq!(store.overdue_requests(2_000).await.unwrap(), 1);
    assert_eq!(store.requests(Some("open"), 10).await.unwrap().len(), 2);
    let closed =
        store.close_request("r-1", "completed", None, 2_500, "t-2", log("close", None)).await.unwrap().unwrap();
    assert_eq!((closed.status.as_str(), closed.closed_by.as_deref()), ("completed", Some("t-2")));
    let again = store
        .close_request("r-1", "rejected", Some("excessive"), 2_600, "t-3", log("close-again", None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.status.as_str(), again.reason), ("completed", None), "closed once");
    assert!(store.close_request("r-x", "completed", None, 1, "t", log("close-ghost", None)).await.unwrap().is_none());
    assert_eq!(store.overdue_requests(2_000).await.unwrap(), 0);
    assert_eq!(
        store.requests(Some("open"), 10).await.unwrap().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r-2"]
    );
    assert_eq!(store.requests(None, 10).await.unwrap().len(), 2);

    // Handling an open one: assigned (once), its clock paused while the customer proves who
    // they are (not overdue meanwhile), restarted with the deadline moved by the pause.
    use crate::rights::RequestChange;
    let assign = RequestChange::Assign(Some("staff:stf_1".into()));
    let (r, changed) = store.change_request("r-2", assign.clone(), log("assign", None)).await.unwrap().unwrap();
    assert!(changed && r.assignee.as_deref() == Some("staff:stf_1"));
    let (_, changed) = store.change_request("r-2", assign, log("assign-again", None)).await.unwrap().unwrap();
    assert!(!changed, "the same assignee again changes nothing");
    let wait = RequestChange::AwaitIdentity { at: 4_000 };
    let (r, changed) = store.change_request("r-2", wait.clone(), log("wait", None)).await.unwrap().unwrap();
    assert!(changed && r.waiting_since == Some(4_000));
    assert!(!store.change_request("r-2", wait, log("wait-again", None)).await.unwrap().unwrap().1);
    assert_eq!(store.overdue_requests(9_000).await.unwrap(), 0, "a paused clock is not overdue");
    let proven = RequestChange::IdentityProven { at: 7_000 };
    let (r, changed) = store.change_request("r-2", proven.clone(), log("proven", None)).await.unwrap().unwrap();
    assert_eq!((changed, r.waiting_since, r.due_at, r.paused_ms), (true, None, 8_000, 3_000));
    assert!(!store.change_request("r-2", proven, log("proven-again", None)).await.unwrap().unwrap().1);
    assert_eq!(store.overdue_requests(7_999).await.unwrap(), 0);
    assert_eq!(store.overdue_requests(8_001).await.unwrap(), 1);
    assert!(store.change_request("r-x", RequestChange::Assign(None), log("ghost", None)).await.unwrap().is_none());
    let (_, changed) =
        store.change_request("r-1", RequestChange::Assign(None), log("closed-assign", None)).await.unwrap().unwrap();
    assert!(!changed, "a closed request does not change");
    let rejected = store
        .close_request("r-2", "rejected", Some("identity_not_proven"), 8_500, "t-4", log("reject", None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rejected.reason.as_deref(), Some("identity_not_proven"));
    let theirs: Vec<String> = store.subject_requests(subject, 10).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(theirs, ["r-2", "r-1"], "newest first");
    assert!(store.subject_requests(SubjectId::random(), 10).await.unwrap().is_empty());

    let logged = entries(store).await;
    for (what, n) in [
        ("close-again", 0),
        ("assign", 1),
        ("assign-again", 0),
        ("wait", 1),
        ("wait-again", 0),
        ("proven", 1),
        ("proven-again", 0),
        ("closed-assign", 0),
        ("reject", 1),
    ] {
        assert_eq!(logged.iter().filter(|e| e.contains(&format!("\"{what}\""))).count(), n, "{what}");
    }
}

async fn erasure_destroys_the_key_and_the_data_unless_held_and_is_idempotent(store: &dyn Store) {
    use crate::rights::{Erasure, Toggle};
    let (a, b) = (new_subject(store, 50).await, new_subject(store, 51).await);
    store
        .append_event(
            NewEvent {
                id: EventId::random(),
                subject: a,
                event_type: f("purchase"),
                recorded_at: 1,
                payload: ct(b"e"),
            },
            log("event", Some(a)),
        )
        .await
        .unwrap();
    let inv = store.inventory(a).await.unwrap().unwrap();
    assert_eq!(inv.fields, [f("email"), f("name")]);
    assert_eq!(inv.events, [(f("purchase"), 1)]);
    assert!(store.inventory(SubjectId::random()).await.unwrap().is_none());

    // A hold blocks erasure and changes nothing.
    assert_eq!(store.place_hold(a, ct(b"sealed reason"), 5, log("hold", Some(a))).await.unwrap(), Toggle::Changed);
    assert_eq!(store.place_hold(a, ct(b"again"), 6, log("hold-again", Some(a))).await.unwrap(), Toggle::Unchanged);
    assert_eq!(store.hold(a).await.unwrap().unwrap().0, 5);
    let size = store.log_head().await.unwrap().0;
    assert_eq!(store.erase_subject(a, 7, "cert".into(), log("erase-held", Some(a))).await.unwrap(), Erasure::Held);
    assert_eq!(store.log_head().await.unwrap().0, size);
    assert!(store.load_subject(a, &[f("email")]).await.unwrap().is_some());
    assert_eq!(store.lift_hold(a, log("lift", Some(a))).await.unwrap(), Toggle::Changed);
    assert_eq!(store.lift_hold(a, log("lift-again", Some(a))).await.unwrap(), Toggle::Unchanged);

    // Erased: no key, no values, no index entry, no events; the certificate is kept; logged once.
    assert_eq!(store.erase_subject(a, 8, "cert-a".into(), log("erase", Some(a))).await.unwrap(), Erasure::Erased);
    assert!(store.load_subject(a, &[f("email")]).await.unwrap().is_none());
    assert_eq!(store.find_by_index(&f("email"), &[bi(50)]).await.unwrap(), Vec::<SubjectId>::new());
    assert!(store.list_events(a, &[f("purchase")], None, 10).await.unwrap().is_empty());
    assert_eq!(
        store.erase_subject(a, 9, "cert-again".into(), log("erase-again", Some(a))).await.unwrap(),
        Erasure::AlreadyErased { erased_at: 8, certificate: Some("cert-a".into()) }
    );
    assert_eq!(
        store.erase_subject(SubjectId::random(), 9, "x".into(), log("ghost-erase", None)).await.unwrap(),
        Erasure::NotFound
    );
    let logged = entries(store).await;
    for (what, times) in [
        ("erase", 1),
        ("erase-held", 0),
        ("erase-again", 0),
        ("hold", 1),
        ("hold-again", 0),
        ("lift", 1),
        ("lift-again", 0),
    ] {
        assert_eq!(logged.iter().filter(|e| e.contains(&format!("\"{what}\""))).count(), times, "{what}");
    }
    // The other customer is untouched.
    assert_eq!(store.load_subject(b, &[f("email")]).await.unwrap().unwrap().values.len(), 1);
}

async fn restriction_is_a_flag_on_the_record_and_changes_are_logged_once(store: &dyn Store) {
    use crate::rights::Toggle;
    let a = new_subject(store, 60).await;
    assert!(!store.load_subject(a, &[]).await.unwrap().unwrap().restricted);
    assert_eq!(store.restrict(a, None, 1, log("restrict", Some(a))).await.unwrap(), Toggle::Changed);
    assert_eq!(store.restrict(a, None, 2, log("restrict-again", Some(a))).await.unwrap(), Toggle::Unchanged);
    assert!(store.load_subject(a, &[]).await.unwrap().unwrap().restricted);
    assert_eq!(store.lift_restriction(a, log("unrestrict", Some(a))).await.unwrap(), Toggle::Changed);
    assert!(!store.load_subject(a, &[]).await.unwrap().unwrap().restricted);
    assert_eq!(store.restrict(SubjectId::random(), None, 1, log("ghost", None)).await.unwrap(), Toggle::NotFound);
    let logged = entries(store).await;
    assert_eq!(logged.iter().filter(|e| e.contains("\"restrict-again\"")).count(), 0);
    assert_eq!(logged.iter().filter(|e| e.contains("\"unrestrict\"")).count(), 1);
}

fn consent(
    subject: SubjectId,
    receipt: &str,
    entries: &[(&str, Option<Channel>, ConsentAction)],
    at: i64,
) -> NewConsentRecord {
    NewConsentRecord {
        receipt_id: receipt.into(),
        subject,
        method: ConsentMethod::Api,
        actor_kind: ActorKind::Subject,
        actor_token: Some("t-1".into()),
        given_at: at,
        recorded_at: at + 1,
        entries: entries
            .iter()
            .map(|(p, channel, action)| NewConsentEntry {
                purpose: PurposeId::new(*p),
                channel: *channel,
                action: *action,
                notice_version: "sha256:v1".into(),
            })
            .collect(),
        receipt: format!("{{\"receipt_id\":\"{receipt}\"}}"),
        note: Some(ct(b"sealed-note")),
    }
}

async fn audience(store: &dyn Store, purpose: &str, channel: Option<Channel>) -> Vec<(SubjectId, ConsentAction)> {
    let mut rx = store.consent_audience(&PurposeId::new(purpose), channel);
    let mut out = Vec::new();
    while let Some(batch) = rx.recv().await {
        out.extend(batch.unwrap().into_iter().map(|row| (row.subject, row.action)));
    }
    out
}

async fn the_consent_ledger_appends_all_or_nothing_and_streams_audiences(store: &dyn Store) {
    use ConsentAction::{Grant, Withdraw};
    let email = Some(Channel::Email);
    let (a, b) = (new_subject(store, 40).await, new_subject(store, 41).await);
    let (size, _) = store.log_head().await.unwrap();
    let notice =
        NoticeText { version: "sha256:v1".into(), purpose: PurposeId::new("marketing"), text: "Why: offers".into() };
    let recorded = store
        .record_consents(
            vec![
                consent(a, "r-a1", &[("marketing", email, Grant), ("analytics", None, Grant)], 100),
                consent(b, "r-b1", &[("marketing", email, Grant)], 100),
            ],
            vec![notice.clone()],
            vec![log("consent", Some(a)), log("consent", Some(b))],
        )
        .await
        .unwrap();
    assert_eq!(recorded, Recorded::All);
    assert_eq!(store.log_head().await.unwrap().0, size + 2, "logged in the same transaction");
    store
        .record_consents(
            vec![consent(a, "r-a2", &[("marketing", email, Withdraw)], 200)],
            vec![notice],
            vec![log("consent", Some(a))],
        )
        .await
        .unwrap();

    // An unknown subject anywhere in the batch: nothing at all is recorded or logged.
    let ghost = SubjectId::random();
    let before = store.log_head().await.unwrap();
    let outcome = store
        .record_consents(
            vec![
                consent(b, "r-b2", &[("analytics", None, Grant)], 300),
                consent(ghost, "r-g", &[("analytics", None, Grant)], 300),
            ],
            vec![],
            vec![log("consent-ghost", Some(b))],
        )
        .await
        .unwrap();
    assert_eq!(outcome, Recorded::UnknownSubject(ghost));
    assert_eq!(store.log_head().await.unwrap(), before);
    assert!(store.consent_receipt(b, "r-b2").await.unwrap().is_none());

    let history = store.consent_history(a, None).await.unwrap();
    let summary: Vec<_> =
        history.iter().map(|c| (c.purpose.as_str().to_string(), c.channel, c.action, c.given_at)).collect();
    assert_eq!(
        summary,
        [
            ("marketing".to_string(), email, Grant, 100),
            ("analytics".to_string(), None, Grant, 100),
            ("marketing".to_string(), email, Withdraw, 200)
        ]
    );
    assert_eq!(history[0].receipt_id, "r-a1");
    assert_eq!(history[0].method, ConsentMethod::Api);
    assert_eq!(history[0].actor_token.as_deref(), Some("t-1"));
    assert_eq!(store.consent_history(a, Some(&PurposeId::new("analytics"))).await.unwrap().len(), 1);
    assert!(store.consent_history(b, Some(&PurposeId::new("analytics"))).await.unwrap().is_empty());
    // A read under a consent purpose gets the customer and that purpose's entries together.
    let marketing = PurposeId::new("marketing");
    let (record, entries) = store.load_subject_with_consents(a, &[], &marketing).await.unwrap().unwrap();
    let alone = store.load_subject(a, &[]).await.unwrap().unwrap();
    assert_eq!((record.created_at, record.restricted, record.values.len()), (alone.created_at, alone.restricted, 0));
    assert_eq!(entries.iter().map(|c| (c.action, c.given_at)).collect::<Vec<_>>(), [(Grant, 100), (Withdraw, 200)]);
    assert!(entries.iter().all(|c| c.purpose == marketing));
    let (_, none) = store.load_subject_with_consents(b, &[], &PurposeId::new("analytics")).await.unwrap().unwrap();
    assert!(none.is_empty());
    assert!(store.load_subject_with_consents(ghost, &[], &marketing).await.unwrap().is_none());

    let receipt = store.consent_receipt(a, "r-a1").await.unwrap().unwrap();
    assert_eq!(receipt.body, "{\"receipt_id\":\"r-a1\"}");
    assert_eq!(receipt.note.unwrap().as_bytes(), b"sealed-note");
    assert!(store.consent_receipt(b, "r-a1").await.unwrap().is_none(), "a receipt belongs to its subject");
    assert_eq!(store.notice_text("sha256:v1").await.unwrap().as_deref(), Some("Why: offers"));
    assert_eq!(store.notice_text("sha256:nope").await.unwrap(), None);

    // The audience stream: every entry of the slot, grouped by subject, in deciding order.
    let mut expected = vec![(a, Grant), (a, Withdraw), (b, Grant)];
    let got = audience(store, "marketing", email).await;
    if b.to_string() < a.to_string() {
        expected = vec![(b, Grant), (a, Grant), (a, Withdraw)];
    }
    assert_eq!(got, expected);
    assert_eq!(audience(store, "analytics", None).await, [(a, Grant)]);
    assert!(audience(store, "marketing", Some(Channel::Sms)).await.is_empty());

    // The counts agree with each customer's latest entry in the audience stream.
    let counts = store.consent_counts().await.unwrap();
    for (purpose, channel, slot) in [("marketing", "email", email), ("analytics", "", None)] {
        let mut latest = std::collections::HashMap::new();
        for (subject, action) in audience(store, purpose, slot).await {
            latest.insert(subject, action);
        }
        for (action, name) in [(Grant, "grant"), (Withdraw, "withdraw")] {
            let expected = latest.values().filter(|a| **a == action).count() as u64;
            let counted: u64 = counts
                .iter()
                .filter(|c| c.purpose == purpose && c.channel == channel && c.action == name)
                .map(|c| c.customers)
                .sum();
            assert_eq!(counted, expected, "{purpose}/{channel} {name}: {counts:?}");
        }
    }
    assert!(counts.iter().any(|c| c.purpose == "marketing" && c.action == "withdraw" && c.customers >= 1));
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

/// The tree is stored as 256-hash tiles: appends that arrive alone, together (one group commit)
/// and in batches that fill and cross tiles give the same tree as the entries, and proofs at
/// sizes on and around a tile's edge hold.
async fn the_logs_tiles_hold_across_their_boundaries_however_appends_arrive(store: &dyn Store) {
    let (start, _) = store.log_head().await.unwrap();
    for size in [1usize, 254, 3, 300] {
        let records = (0..size).map(|i| log(&format!("tile-{size}-{i}"), None)).collect();
        store.append_log(records).await.unwrap();
    }
    let together = (0..40).map(|i| store.append_log(vec![log(&format!("together-{i}"), None)]));
    for r in futures_util::future::join_all(together).await {
        r.unwrap();
    }
    let (size, root) = store.log_head().await.unwrap();
    assert_eq!(size, start + 598);
    let leaves: Vec<_> = store.log_entries(0, size).await.unwrap().iter().map(|(_, e)| merkle::leaf_hash(e)).collect();
    let mut b = RootBuilder::new();
    leaves.iter().for_each(|l| b.push(*l));
    assert_eq!(b.root(), root);
    assert_eq!(store.log_nodes(0, 0, size).await.unwrap(), leaves, "level 0: the leaf hashes");
    let level8 = store.log_nodes(8, 0, size / 256 + 1).await.unwrap();
    assert_eq!(level8.len() as u64, size / 256, "level 8: one hash per complete 256 leaves");
    for (i, h) in level8.iter().enumerate() {
        assert_eq!(
            *h,
            merkle::subtree_hash(&mut merkle::LeafSource(&leaves), i as u64 * 256, (i as u64 + 1) * 256).unwrap()
        );
    }
    assert!(store.log_nodes(3, 0, 1).await.is_err(), "only every 8th level is stored");
    for tree in [255, 256, 257, 511, 512, size] {
        let tree = tree.min(size);
        let r = merkle::root(&mut merkle::LeafSource(&leaves), tree).unwrap();
        for index in [0, tree / 2, tree - 1] {
            let (leaf, proof) = store.log_inclusion_proof(index, tree).await.unwrap();
            merkle::verify_inclusion(&leaf, index, tree, &proof, &r).unwrap();
        }
        let (r1, r2, proof) = store.log_consistency_proof(tree, size).await.unwrap();
        assert_eq!((r1, r2), (r, root));
        merkle::verify_consistency(tree, size, &r1, &r2, &proof).unwrap();
    }
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
    let recent = store.recent_subject_log_entries(subject, 10).await.unwrap();
    let expected: Vec<(u64, Vec<u8>)> = [first, first + 2].iter().map(|i| (*i, all[*i as usize].1.clone())).collect();
    assert_eq!(recent, expected, "oldest first, with their bytes");
    assert_eq!(store.recent_subject_log_entries(subject, 1).await.unwrap(), expected[1..], "the latest only");
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
    assert_eq!(store.find_by_index(&f("email"), &[bi(1)]).await.unwrap(), vec![id]);
    assert!(store.find_by_index(&f("name"), &[bi(1)]).await.unwrap().is_empty());
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
    assert!(store.find_by_index(&f("email"), &[bi(99)]).await.unwrap().is_empty());
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
    assert!(store.find_by_index(&f("email"), &[bi(2)]).await.unwrap().is_empty(), "old index entry must go");
    assert_eq!(store.find_by_index(&f("email"), &[bi(3)]).await.unwrap(), vec![id]);
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
    assert!(store.find_by_index(&f("phone"), &[bi(5)]).await.unwrap().is_empty());
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
    // Listing never shows a token (only its id and metadata); revoking is logged once.
    let listed = store.tokens().await.unwrap();
    assert!(listed.iter().any(|t| t.id == "tok-1"), "{listed:?}");
    // Creating a token leaves the revocation epoch alone (servers may keep what they read);
    // revoking one changes it, and only a revocation that changed something does.
    let before = store.token_epoch().await.unwrap();
    let revoked = store.revoke_token("tok-1", 9, log("revoke", None)).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(9));
    let after = store.token_epoch().await.unwrap();
    assert_ne!(after, before, "a revocation changes the token epoch");
    let again = store.revoke_token("tok-1", 10, log("revoke-again", None)).await.unwrap().unwrap();
    assert_eq!(again.revoked_at, Some(9));
    assert!(store.revoke_token("nope", 9, log("revoke-ghost", None)).await.unwrap().is_none());
    assert_eq!(store.token_epoch().await.unwrap(), after, "nothing was revoked");
    let second = NewToken {
        id: "tok-2".into(),
        hash: [7; 32],
        role: "support_agent".into(),
        description: String::new(),
        created_at: 11,
        expires_at: None,
    };
    store.insert_token(second, log("token-2", None)).await.unwrap();
    assert_eq!(store.token_epoch().await.unwrap(), after);
    store.revoke_token("tok-2", 11, log("revoke-2", None)).await.unwrap().unwrap();
    assert_ne!(store.token_epoch().await.unwrap(), after, "every revocation changes it");
}

/// A crash between "key destroyed" and "data deleted" (the first step run alone): the intent
/// says the erasure is under way, and completing it leaves exactly what an erasure leaves.
async fn an_erasure_interrupted_after_the_key_was_destroyed_is_completed_from_its_intent(store: &dyn Store) {
    use crate::rights::PendingErasure;
    use crate::{Erasure, StoreError, Toggle};
    let a = new_subject(store, 140).await;
    let other = new_subject(store, 141).await;
    let event = NewEvent {
        id: EventId::random(),
        subject: a,
        event_type: f("purchase"),
        recorded_at: 1_100,
        payload: ct(b"e"),
    };
    store.append_event(event, log("event", Some(a))).await.unwrap();
    assert!(store.pending_erasures().await.unwrap().is_empty());

    // A held customer: nothing begins.
    assert_eq!(store.place_hold(other, ct(b"sealed"), 1_200, log("hold", Some(other))).await.unwrap(), Toggle::Changed);
    assert_eq!(store.begin_erasure(other, 1_300, request("c-other")).await.unwrap(), Erasure::Held);
    assert!(store.pending_erasures().await.unwrap().is_empty());

    let size = store.log_head().await.unwrap().0;
    assert_eq!(store.begin_erasure(a, 10_000, request("c-1")).await.unwrap(), Erasure::Erased);
    // The crash: the key is gone (reads answer "erased"), the data is still there.
    assert!(matches!(store.load_subject(a, &[f("email")]).await, Err(StoreError::Erased { at: 10_000 })));
    assert_eq!(store.find_by_index(&f("email"), &[bi(140)]).await.unwrap(), [a]);
    assert_eq!(store.log_head().await.unwrap().0, size, "nothing logged yet");
    let pending = PendingErasure { subject: a, requested_at: 10_000, request: Some(request("c-1")) };
    assert_eq!(store.pending_erasures().await.unwrap(), std::slice::from_ref(&pending));
    // Beginning again keeps the first intent.
    assert_eq!(store.begin_erasure(a, 10_500, request("c-2")).await.unwrap(), Erasure::Erased);
    assert_eq!(store.pending_erasures().await.unwrap(), [pending]);

    // The completion (what the vault runs at start-up).
    let inventory = store.inventory(a).await.unwrap().unwrap();
    assert_eq!(inventory.fields, [f("email"), f("name")], "what the certificate lists is still known");
    let certify: crate::Certify = Box::new(|told| format!("completed, told {}", told.len()));
    let erased = store.finish_erasure(a, certify, log("erase completed", Some(a))).await.unwrap();
    assert_eq!(erased, Erasure::Erased);
    assert_eq!(store.log_head().await.unwrap().0, size + 1, "logged once");
    let last = store.log_entries(size, size + 1).await.unwrap();
    assert_eq!(last[0].1, log("erase completed", None).entry);
    assert!(store.pending_erasures().await.unwrap().is_empty(), "the intent is cleared");
    assert!(store.load_subject(a, &[f("email")]).await.unwrap().is_none());
    assert!(store.inventory(a).await.unwrap().is_none());
    assert!(store.find_by_index(&f("email"), &[bi(140)]).await.unwrap().is_empty(), "lookup finds nothing");
    assert!(store.list_events(a, &[f("purchase")], None, 10).await.unwrap().is_empty());
    let kept = Erasure::AlreadyErased { erased_at: 10_000, certificate: Some("completed, told 0".into()) };
    assert_eq!(store.erase_subject(a, 11_000, "again".into(), log("erase again", Some(a))).await.unwrap(), kept);
    // Completing twice (two servers starting together) does nothing more.
    let certify: crate::Certify = Box::new(|_| "twice".into());
    assert_eq!(store.finish_erasure(a, certify, log("erase twice", Some(a))).await.unwrap(), kept);
    assert_eq!(store.log_head().await.unwrap().0, size + 1);
    // Nothing is under way for a customer nobody erases.
    let certify: crate::Certify = Box::new(|_| "never".into());
    assert_eq!(store.finish_erasure(other, certify, log("never", Some(other))).await.unwrap(), Erasure::NotFound);
    assert!(store.load_subject(other, &[f("email")]).await.unwrap().is_some());
    assert_eq!(store.find_by_index(&f("email"), &[bi(141)]).await.unwrap(), [other]);
    assert_eq!(store.log_head().await.unwrap().0, size + 1);
    // Leave nothing behind for the checks that follow.
    assert_eq!(store.lift_hold(other, log("lift", Some(other))).await.unwrap(), Toggle::Changed);
    assert_eq!(
        store.erase_subject(other, 12_000, "c".into(), log("erase", Some(other))).await.unwrap(),
        Erasure::Erased
    );
}

async fn an_idempotency_key_is_stored_with_its_change_once(store: &dyn Store) {
    use crate::{IdempotencyRecord, IdempotentOutcome, StoreError};
    let id = new_subject(store, 40).await;
    let key = |outcome: &str| IdempotencyRecord { key: [4; 32], request: [5; 32], outcome: outcome.into(), at: 1_000 };
    let event = || NewEvent {
        id: EventId::random(),
        subject: id,
        event_type: f("purchase"),
        recorded_at: 1,
        payload: ct(&[1]),
    };
    assert_eq!(store.idempotent_outcome(&[4; 32]).await.unwrap(), None);
    let first = LogRecord { idempotency: Some(key("first")), ..log("event", Some(id)) };
    assert!(store.append_event(event(), first).await.unwrap());
    let stored = IdempotentOutcome { request: [5; 32], outcome: b"first".to_vec() };
    assert_eq!(store.idempotent_outcome(&[4; 32]).await.unwrap(), Some(stored.clone()));
    // A second change under the same key fails as a whole: no event, no entry.
    let (size, _) = store.log_head().await.unwrap();
    let second = LogRecord { idempotency: Some(key("second")), ..log("event", Some(id)) };
    let again = store.append_event(event(), second).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(store.log_head().await.unwrap().0, size, "nothing logged");
    assert_eq!(store.list_events(id, &[f("purchase")], None, 10).await.unwrap().len(), 1, "one event");
    assert_eq!(store.idempotent_outcome(&[4; 32]).await.unwrap(), Some(stored));
    // Pruned by age; the probe write works on a healthy store.
    assert_eq!(store.prune_idempotency_keys(1_000).await.unwrap(), 0);
    assert_eq!(store.prune_idempotency_keys(1_001).await.unwrap(), 1);
    assert_eq!(store.idempotent_outcome(&[4; 32]).await.unwrap(), None);
    store.probe_write(2_000).await.unwrap();
    store.probe_write(3_000).await.unwrap();
}

async fn an_import_batch_stores_each_customer_with_its_entry_and_never_a_taken_unique_value(store: &dyn Store) {
    let existing = new_subject(store, 150).await;
    let row = |name: &str, tokens: Vec<BlindIndex>| {
        let id = SubjectId::random();
        let row = ImportRow {
            subject: NewSubject {
                id,
                dek: dek(),
                values: vec![(f("email"), ct(b"c-email")), (f("name"), ct(name.as_bytes()))],
                index: vec![(f("email"), tokens[0].clone())],
                now: 2_000,
            },
            log: log(&format!("import {name}"), Some(id)),
            unique: vec![(f("email"), tokens)],
        };
        (id, row)
    };
    let other_key = BlindIndex::new(2, vec![153; 32]);
    let (a, row_a) = row("a", vec![bi(150)]); // held by an existing customer
    let (b, row_b) = row("b", vec![bi(151)]);
    let (c, row_c) = row("c", vec![bi(151)]); // the same value as b, later in the batch
    let (d, row_d) = row("d", vec![bi(152), other_key.clone()]); // under two index keys
    let (e, row_e) = row("e", vec![bi(154), bi(150)]); // its value under the older key is held
    let (size_before, _) = store.log_head().await.unwrap();
    let outcome = store.import_subjects(vec![row_a, row_b, row_c, row_d, row_e]).await.unwrap();
    assert_eq!(outcome, vec![Some(f("email")), None, Some(f("email")), None, Some(f("email"))]);
    let (size_after, _) = store.log_head().await.unwrap();
    assert_eq!(size_after, size_before + 2, "one entry per customer stored, none for the others");
    let logged = entries(store).await;
    assert!(logged[logged.len() - 2].contains("import b") && logged[logged.len() - 1].contains("import d"));
    for (id, stored) in [(a, false), (b, true), (c, false), (d, true), (e, false)] {
        let record = store.load_subject(id, &[f("email"), f("name")]).await.unwrap();
        assert_eq!(record.is_some(), stored, "{id}");
        assert_eq!(store.subject_log_indices(id).await.unwrap().len(), usize::from(stored));
    }
    assert_eq!(store.load_subject(d, &[f("name")]).await.unwrap().unwrap().values, vec![(f("name"), ct(b"d"))]);
    assert_eq!(store.find_by_index(&f("email"), &[bi(151)]).await.unwrap(), vec![b]);
    assert_eq!(store.find_by_index(&f("email"), &[bi(150)]).await.unwrap(), vec![existing]);
    // Many entries looked up at once: each position answered with its holders, in order.
    let found = store.find_many_by_index(&f("email"), &[bi(150), bi(151), bi(155), bi(151), bi(152)]).await.unwrap();
    assert_eq!(found, vec![(0, existing), (1, b), (3, b), (4, d)]);
    assert!(store.find_many_by_index(&f("name"), &[bi(150)]).await.unwrap().is_empty());
    assert_eq!(store.import_subjects(Vec::new()).await.unwrap(), Vec::new());
}
