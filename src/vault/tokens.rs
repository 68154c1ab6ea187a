//! Managing API tokens: listing (ids, roles, lifetimes — a token itself is never stored) and
//! revocation, effective on the very next request (tokens are looked up on every request). The
//! last live token of a role that manages the installation cannot be revoked: that would lock
//! the API out until someone runs the command line on the server.

use candor_store::StoredToken;

use super::{Principal, Vault, VaultError, now_millis};
use crate::audit::Audit;

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

impl Vault {
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
            .append_log(vec![Audit::new(by, "token.list").detail(format!("{} tokens", list.len())).record()])
            .await?;
        Ok(list)
    }

    /// Revokes a token: the next request carrying it is refused with `token_revoked`. Refused
    /// (and logged) for the last unrevoked, unexpired token of a role that manages the
    /// installation, whoever asks (the command line too).
    pub async fn revoke_token(&self, by: &Principal, id: &str) -> Result<StoredToken, RevokeError> {
        self.require_admin(by)?;
        let _one_at_a_time = REVOKING.lock().await;
        let now = now_millis();
        let manages = |t: &StoredToken| {
            t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now) && self.policy.may_manage(&t.role)
        };
        let tokens = self.store.tokens().await?;
        if tokens.iter().any(|t| t.id == id && manages(t)) && !tokens.iter().any(|t| t.id != id && manages(t)) {
            let log = Audit::new(by, "token.revoke").decision("denied").detail("last_admin_token").record();
            self.store.append_log(vec![log]).await?;
            return Err(RevokeError::LastAdminToken(id.to_string()));
        }
        let log = Audit::new(by, "token.revoke")
            .detail(format!("token {}", id.chars().take(64).collect::<String>()))
            .record();
        Ok(self.store.revoke_token(id, now, log).await?.ok_or(VaultError::TokenNotFound)?)
    }
}
