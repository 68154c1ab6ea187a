//! Managing API tokens: listing (ids, roles, lifetimes — a token itself is never stored) and
//! revocation, effective on the very next request (tokens are looked up on every request).

use candor_store::StoredToken;

use super::{Principal, Vault, VaultError, now_millis};
use crate::audit::Audit;

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

    /// Revokes a token: the next request carrying it is refused with `token_revoked`.
    pub async fn revoke_token(&self, by: &Principal, id: &str) -> Result<StoredToken, VaultError> {
        self.require_admin(by)?;
        let log = Audit::new(by, "token.revoke")
            .detail(format!("token {}", id.chars().take(64).collect::<String>()))
            .record();
        self.store.revoke_token(id, now_millis(), log).await?.ok_or(VaultError::TokenNotFound)
    }
}
