//! For tests of this crate and of the crates above it (feature `test-support`, off by default):
//! a vault of the example catalog over a real SQLite store, with keys made for the test and the
//! clock the test gives it.

use std::path::Path;
use std::sync::Arc;

use candor_core::catalog::{Catalog, EXAMPLE_CATALOG};
use candor_crypto::keyfile::{self, INDEX_LABEL, KEK_LABEL};
use candor_crypto::{KeyRing, LOG_KEY_LABEL, LogSigner};
use candor_policy::PolicyEngine;
use candor_store::sqlite::SqliteStore;

use crate::audit::LogContext;
use crate::clock::Clock;
use crate::{Authorized, Principal, Vault};

fn keys(label: &'static str) -> Vec<keyfile::KeyMaterial> {
    let line = keyfile::generate_key_line(label, 1).expect("random key");
    keyfile::parse_keys(&line, label, "test").expect("a key line just made")
}

/// A vault of the example catalog whose database and key store are files in `dir`.
pub async fn example_vault(dir: &Path, clock: Arc<dyn Clock>) -> Vault {
    let catalog = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").expect("the example catalog");
    let policy = PolicyEngine::new(&catalog, None).expect("the example catalog's policies");
    let ring = KeyRing::new(keys(KEK_LABEL), keys(INDEX_LABEL)).expect("a key ring");
    let signer = LogSigner::new(&keys(LOG_KEY_LABEL)).expect("a log key");
    let store = SqliteStore::open(dir.join("candor.db"), dir.join("keystore.db")).await.expect("a SQLite store");
    let log = Arc::new(LogContext::new("test.example/log", signer));
    Vault::new(Arc::new(catalog), Arc::new(policy), Arc::new(ring), Arc::new(store), log).with_clock(clock)
}

/// `role` acting under `purpose`, as if it had presented a token.
pub async fn acting_as(vault: &Vault, role: &str, purpose: &str) -> Authorized {
    let principal = Principal { token_id: format!("test-{role}"), role: role.into(), origin: None };
    vault.authorize(principal, Some(purpose), None).await.expect("a declared role and purpose")
}
