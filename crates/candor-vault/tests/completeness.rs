//! The completeness map a server keeps (`completeness::MapState`), advanced over a real SQLite
//! store's log: which checkpoints' maps it keeps for customers' proofs.

use candor_core::SubjectId;
use candor_crypto::keyfile::{generate_key_line, parse_keys};
use candor_crypto::{LOG_KEY_LABEL, LogSigner};
use candor_log::Action;
use candor_store::Store;
use candor_store::sqlite::SqliteStore;
use candor_vault::audit::{Audit, system_actor};
use candor_vault::completeness::MapState;

#[tokio::test]
async fn a_checkpoint_after_many_changed_histories_lets_the_older_maps_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("candor.db"), dir.path().join("keystore.db")).await.unwrap();
    let line = generate_key_line(LOG_KEY_LABEL, 1).unwrap();
    let signer = LogSigner::new(&parse_keys(&line, LOG_KEY_LABEL, "test").unwrap()).unwrap();
    let state = MapState::keeping(10);
    let customer = SubjectId::random();
    let reads = |n: usize| {
        (0..n).map(|_| Audit::new(&system_actor(), Action::SubjectRead).subjects(&[customer]).record()).collect()
    };
    store.append_log(reads(3)).await.unwrap();
    assert_eq!(state.advance_to_head(&store, &signer).await.unwrap().0, 3);
    store.append_log(reads(5)).await.unwrap();
    state.advance_to_head(&store, &signer).await.unwrap();
    assert_eq!(state.kept_sizes().await, [3, 8], "5 histories changed after the first");
    // Two entries naming nobody change no history.
    store.append_log(vec![Audit::new(&system_actor(), Action::CatalogChanged).record(); 2]).await.unwrap();
    state.advance_to_head(&store, &signer).await.unwrap();
    assert_eq!(state.kept_sizes().await, [3, 8, 10]);
    store.append_log(reads(6)).await.unwrap();
    state.advance_to_head(&store, &signer).await.unwrap();
    assert_eq!(state.kept_sizes().await, [8, 10, 16], "11 changes after the first, 6 after the second");
    store.append_log(reads(20)).await.unwrap();
    state.advance_to_head(&store, &signer).await.unwrap();
    assert_eq!(state.kept_sizes().await, [36], "only the newest is kept");
    let id = customer.to_string();
    assert!(state.prove(36, &id, &signer).await.is_some(), "a proof against the newest map");
    assert!(state.prove(16, &id, &signer).await.is_none(), "none against a map let go");
}
