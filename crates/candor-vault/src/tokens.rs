//! Managing API tokens: listing (ids, roles, lifetimes — a token itself is never stored) and
//! revocation, effective on the very next request on every server. The last live token of a
//! role that manages the installation cannot be revoked: that would lock the API out until
//! someone runs the command line on the server.
//!
//! Authentication does not look a token up on every request: each server keeps the tokens it
//! has seen in a bounded cache keyed by the token's hash, each remembered with the store's
//! revocation epoch (see [`candor_store::Store::token_epoch`]) read *before* the token was. A
//! request reads the epoch (one tiny read) and uses the cached token only while it is
//! unchanged; a revocation changes it in the revoking transaction, so the next request on any
//! server looks the token up again and sees it revoked.

use std::collections::HashMap;
use std::sync::Mutex;

use candor_store::StoredToken;

use super::{Principal, Vault, VaultError};

/// Revocations run one at a time in a server, so two admins revoking each other's tokens at
/// the same moment cannot both pass the last-admin check.
static REVOKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Why a token was not revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Already logged when returned.
    #[error(
        "token `{0}` is the last admin token in force: revoking it would leave nobody able to manage the \
         installation. Create another admin token first (`candor token create --role admin`), then revoke this one"
    )]
    LastAdminToken(String),
}

impl From<candor_store::StoreError> for RevokeError {
    fn from(e: candor_store::StoreError) -> Self {
        RevokeError::Vault(e.into())
    }
}

impl RevokeError {
    /// The vault's error, or (`Err`) the refusal to revoke the last admin token.
    pub fn into_vault(self) -> Result<VaultError, Self> {
        match self {
            RevokeError::Vault(e) => Ok(e),
            last => Err(last),
        }
    }
}

/// Tokens a server remembers at most; past that, one is forgotten for each one learned.
const CACHED_TOKENS: usize = 4096;

/// What authentication needs of a token (its description and creation time are not kept).
#[derive(Clone)]
pub(crate) struct KnownToken {
    pub id: String,
    pub role: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// The tokens this server has looked up, by the SHA-256 of the token, with the revocation epoch
/// read before each lookup. Unknown tokens are not remembered (anyone can send those).
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], (u64, KnownToken)>>,
}

impl TokenCache {
    fn get(&self, hash: &[u8; 32], epoch: u64) -> Option<KnownToken> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(hash).filter(|(seen, _)| *seen == epoch).map(|(_, t)| t.clone())
    }

    fn put(&self, hash: [u8; 32], epoch: u64, token: KnownToken) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHED_TOKENS && !entries.contains_key(&hash) {
            // Any one will do: the cache only saves lookups, it never decides anything.
            if let Some(old) = entries.keys().next().copied() {
                entries.remove(&old);
            }
        }
        entries.insert(hash, (epoch, token));
    }
}

impl Vault {
    /// The token with this hash as the store holds it now (revoked and expired ones too), from
    /// the cache while no token has been revoked since it was read.
    pub(crate) async fn known_token(&self, hash: &[u8; 32]) -> Result<KnownToken, VaultError> {
        // The epoch first: a revocation committed after this read changes it, so the next
        // request looks again; one committed before it is seen by the lookup below.
        let epoch = self.store.token_epoch().await?;
        if let Some(token) = self.tokens.get(hash, epoch) {
            return Ok(token);
        }
        let found = self.store.token_by_hash(hash).await?.ok_or(VaultError::InvalidToken)?;
        let token =
            KnownToken { id: found.id, role: found.role, expires_at: found.expires_at, revoked_at: found.revoked_at };
        self.tokens.put(*hash, epoch, token.clone());
        Ok(token)
    }

    /// Managing the installation is the `manage` action; the catalog gives it to the built-in
    /// admin role (the command line acts as `system`).
    fn require_admin(&self, principal: &Principal) -> Result<(), VaultError> {
        if principal.role == "system" || self.policy.may_manage(&principal.role) {
            return Ok(());
        }
        Err(VaultError::AdminOnly)
    }

    /// Every token's id, role, description and lifetime, newest first.
    pub async fn tokens(&self, by: &Principal) -> Result<Vec<StoredToken>, VaultError> {
        self.require_admin(by)?;
        let list = self.store.tokens().await?;
        self.store
            .append_log(vec![
                self.entry(by, candor_log::Action::TokenList).detail(format!("{} tokens", list.len())).record(),
            ])
            .await?;
        Ok(list)
    }

    /// Revokes a token: the next request carrying it is refused with `token_revoked`. Refused
    /// (and logged) for the last unrevoked, unexpired token of a role that manages the
    /// installation, whoever asks (the command line too).
    pub async fn revoke_token(&self, by: &Principal, id: &str) -> Result<StoredToken, RevokeError> {
        self.require_admin(by)?;
        let _one_at_a_time = REVOKING.lock().await;
        let now = self.now_millis();
        let manages = |t: &StoredToken| {
            t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now) && self.policy.may_manage(&t.role)
        };
        let tokens = self.store.tokens().await?;
        if tokens.iter().any(|t| t.id == id && manages(t)) && !tokens.iter().any(|t| t.id != id && manages(t)) {
            let log =
                self.entry(by, candor_log::Action::TokenRevoke).decision("denied").detail("last_admin_token").record();
            self.store.append_log(vec![log]).await?;
            return Err(RevokeError::LastAdminToken(id.to_string()));
        }
        let log = self
            .entry(by, candor_log::Action::TokenRevoke)
            .detail(format!("token {}", id.chars().take(64).collect::<String>()))
            .record();
        Ok(self.store.revoke_token(id, now, log).await?.ok_or(VaultError::TokenNotFound)?)
    }
}
