//! For tests of this crate and of the crates above it (feature `test-support`, off by default):
//! a vault of the example catalog over a real SQLite store (or a fresh PostgreSQL database, when
//! `CANDOR_TEST_DATABASE_URL` names a server), with keys made for the test and the clock the test
//! gives it.

use std::path::Path;
use std::sync::Arc;

use candor_core::catalog::{Catalog, EXAMPLE_CATALOG};
use candor_crypto::keyfile::{self, INDEX_LABEL, KEK_LABEL};
use candor_crypto::{KeyRing, LOG_KEY_LABEL, LogSigner};
use candor_policy::PolicyEngine;
use candor_store::Store;
use candor_store::postgres::PgStore;
use candor_store::sqlite::SqliteStore;

/// A PostgreSQL database made for one test (drop it with `drop_database` at the end).
pub use candor_store::pgtest::TestDatabase;

use crate::audit::LogContext;
use crate::clock::Clock;
use crate::{Authorized, Principal, Vault};

fn keys(label: &'static str) -> Vec<keyfile::KeyMaterial> {
    let line = keyfile::generate_key_line(label, 1).expect("random key");
    keyfile::parse_keys(&line, label, "test").expect("a key line just made")
}

/// A vault of the example catalog whose database and key store are files in `dir`.
pub async fn example_vault(dir: &Path, clock: Arc<dyn Clock>) -> Vault {
    let store = SqliteStore::open(dir.join("candor.db"), dir.join("keystore.db")).await.expect("a SQLite store");
    example_vault_over(Arc::new(store), clock)
}

/// A vault of the example catalog over a fresh PostgreSQL database on the server named by
/// `CANDOR_TEST_DATABASE_URL`, with that database (for the test to drop when it ends); `None`,
/// after printing that `test` was SKIPPED, when the variable is not set.
pub async fn example_vault_on_postgres(test: &str, clock: Arc<dyn Clock>) -> Option<(Vault, TestDatabase)> {
    let db = TestDatabase::create(test).await?;
    let store = PgStore::connect(&db.url).await.expect("a PostgreSQL store on the test database");
    Some((example_vault_over(Arc::new(store), clock), db))
}

fn example_vault_over(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Vault {
    let catalog = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").expect("the example catalog");
    let policy = PolicyEngine::new(&catalog, None).expect("the example catalog's policies");
    let ring = KeyRing::new(keys(KEK_LABEL), keys(INDEX_LABEL)).expect("a key ring");
    let signer = LogSigner::new(&keys(LOG_KEY_LABEL)).expect("a log key");
    let log = Arc::new(LogContext::new("test.example/log", signer));
    Vault::new(Arc::new(catalog), Arc::new(policy), Arc::new(ring), store, log).with_clock(clock)
}

/// `role` acting under `purpose`, as if it had presented a token.
pub async fn acting_as(vault: &Vault, role: &str, purpose: &str) -> Authorized {
    let principal = Principal { token_id: format!("test-{role}"), role: role.into(), origin: None };
    vault.authorize(principal, Some(purpose), None).await.expect("a declared role and purpose")
}
