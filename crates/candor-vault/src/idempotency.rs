//! `Idempotency-Key` on writes, the vault's side. A write sent with a key stores its outcome
//! (the ids its answer names, never a value) with its log entry, in the same transaction. A
//! retry with the same key and the same request gets that outcome back instead of applying the
//! write again; whether the first attempt was applied is therefore always knowable, even when
//! its answer was lost (a timeout, a dropped connection). Keys are bound to the caller's token
//! and kept for [`KEPT_FOR_MS`].

use candor_store::StoreError;
use serde::de::DeserializeOwned;

use super::{Authorized, Vault, VaultError};

/// How long a key is remembered: a retry later than this applies the write again.
pub const KEPT_FOR_MS: i64 = 24 * 60 * 60 * 1000;

/// A request's `Idempotency-Key`, as the vault keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// SHA-256 over the caller's token id and the key it sent: callers never share a key.
    pub key: [u8; 32],
    /// SHA-256 over what was asked (method, path, purpose, body): a retry has the same.
    pub request: [u8; 32],
}

impl IdempotencyKey {
    pub fn new(token_id: &str, sent: &str, request: [u8; 32]) -> Self {
        let mut bound = Vec::with_capacity(token_id.len() + sent.len() + 1);
        bound.extend_from_slice(token_id.as_bytes());
        bound.push(0);
        bound.extend_from_slice(sent.as_bytes());
        Self { key: candor_crypto::sha256(&bound), request }
    }
}

impl Vault {
    /// The outcome stored by the first request sent with `auth`'s key, if that one was applied.
    /// The same key with a different request is refused.
    pub(crate) async fn replay<T: DeserializeOwned>(&self, auth: &Authorized) -> Result<Option<T>, VaultError> {
        let Some(k) = &auth.idempotency else { return Ok(None) };
        match self.store.idempotent_outcome(&k.key).await? {
            None => Ok(None),
            Some(stored) if stored.request != k.request => Err(VaultError::IdempotencyKeyReused),
            Some(stored) => serde_json::from_slice(&stored.outcome).map(Some).map_err(|_| {
                VaultError::Store(StoreError::Corrupt("a stored idempotency outcome is not readable".into()))
            }),
        }
    }

    /// After a write failed: when it lost a race with a request carrying the same key (its key
    /// row conflicted, or a check such as `unique` saw what the winner wrote), the outcome of the
    /// request that won; otherwise the error.
    pub(crate) async fn replay_or<T: DeserializeOwned>(
        &self,
        auth: &Authorized,
        e: VaultError,
    ) -> Result<T, VaultError> {
        if auth.idempotency.is_some()
            && let Some(first) = self.replay(auth).await?
        {
            return Ok(first);
        }
        Err(e)
    }

    /// Forgets keys older than [`KEPT_FOR_MS`] (the retention sweep calls this).
    pub async fn prune_idempotency_keys(&self, now: i64) -> Result<u64, VaultError> {
        Ok(self.store.prune_idempotency_keys(now - KEPT_FOR_MS).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bound_to_the_token() {
        let r = [7; 32];
        assert_eq!(IdempotencyKey::new("tok-a", "k1", r), IdempotencyKey::new("tok-a", "k1", r));
        assert_ne!(IdempotencyKey::new("tok-a", "k1", r).key, IdempotencyKey::new("tok-b", "k1", r).key);
        // No ambiguity between where the token id ends and the key starts.
        assert_ne!(IdempotencyKey::new("tok-a", "bk1", r).key, IdempotencyKey::new("tok-ab", "k1", r).key);
    }
}
