//! Managing API tokens: listing (ids, roles, lifetimes — a token itself is never stored) and
//! revocation, effective on the very next request (tokens are looked up on every request).

use candor_core::catalog::ADMIN_ROLE;
use candor_store::StoredToken;

use super::{Principal, Vault, VaultError, now_millis};
use crate::audit::Audit;

impl Vault {
    fn require_admin(principal: &Principal) -> Result<(), VaultError> {
        if principal.role == ADMIN_ROLE || principal.role == "system" {
            return Ok(());
        }
        Err(VaultError::AdminOnly)
    }

    /// Every token's id, role, description and lifetime, newest first.
    pub async fn tokens(&self, by: &Principal) -> Result<Vec<StoredToken>, VaultError> {
        Self::require_admin(by)?;
        let list = self.store.tokens().await?;
        self.store
            .append_log(vec![Audit::new(by, "token.list").detail(format!("{} tokens", list.len())).record()])
            .await?;
        Ok(list)
    }

    /// Revokes a token: the next request carrying it is refused with `token_revoked`.
    pub async fn revoke_token(&self, by: &Principal, id: &str) -> Result<StoredToken, VaultError> {
        Self::require_admin(by)?;
        let log = Audit::new(by, "token.revoke")
            .detail(format!("token {}", id.chars().take(64).collect::<String>()))
            .record();
        self.store.revoke_token(id, now_millis(), log).await?.ok_or(VaultError::TokenNotFound)
    }
}
