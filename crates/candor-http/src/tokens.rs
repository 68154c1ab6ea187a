//! `/v1/tokens`: the admin lists and revokes API tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use candor_vault::StoredToken;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::{AppState, rfc3339};
use crate::vault::Principal;

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub role: String,
    pub description: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

fn view(t: StoredToken) -> TokenView {
    TokenView {
        id: t.id,
        role: t.role,
        description: t.description,
        created_at: rfc3339(t.created_at),
        expires_at: t.expires_at.map(rfc3339),
        revoked_at: t.revoked_at.map(rfc3339),
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// Every token (id, role, description, lifetime; never the token itself). Admin only.
#[utoipa::path(get, path = "/v1/tokens", tag = "meta",
    responses((status = 200, body = TokenList), (status = 403, description = "`admin_only`", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Principal) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(TokenList { tokens: state.vault.tokens(&caller).await?.into_iter().map(view).collect() }))
}

/// Revoke a token: the next request carrying it gets 401 `token_revoked`. Admin only. The last
/// admin token in force cannot be revoked (409 `last_admin_token`): create another first.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "meta",
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 200, body = TokenView),
        (status = 403, description = "`admin_only`", body = ErrorBody),
        (status = 404, description = "`token_not_found`", body = ErrorBody),
        (status = 409, description = "`last_admin_token`: the only admin token in force; create another first", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let revoked = state.vault.revoke_token(&caller, &id).await.map_err(|e| match e.into_vault() {
        Ok(e) => ApiError::from(e),
        Err(last) => ApiError::new(StatusCode::CONFLICT, "last_admin_token", last.to_string()).with_field("id"),
    })?;
    Ok(Json(view(revoked)))
}
