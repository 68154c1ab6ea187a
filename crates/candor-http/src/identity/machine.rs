//! Machine identities from the company's identity provider: a service presents an access token
//! (a JWT, RFC 9068) that the configured provider issued for Candor's API instead of a Candor
//! token.
//!
//! Checked here, before anything else reads the token: the header's `alg` is one of the pinned
//! asymmetric algorithms (never `none`, never an HMAC — the provider's keys are public), `crit`
//! is absent, the signature verifies under a key of the provider's JWKS (the same cached
//! metadata as sign-in; fetched again when the token names a key the cache lacks), `iss` is the
//! configured issuer exactly, `aud` names `[staff.oidc] api_audience`, `exp` is in the future
//! and `nbf` (if any) in the past, both on Candor's clock with [`LEEWAY_SECONDS`] of leeway.
//! The client is the token's `client_id` (or `azp`) claim; its role is the one value of
//! `api_roles_claim` that `[staff.clients]` maps. From then on the service is a
//! [`crate::vault::Principal`] (actor `client:<client id>`) and authorization is the catalog's.

use openidconnect::core::{CoreJsonWebKeyUse, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKey, JsonWebKeyId};

use super::NoRole;
use super::oidc::{ALGORITHMS, RelyingParty, claim_strings};

/// How far `exp` and `nbf` may be off, for clocks that differ a little.
pub const LEEWAY_SECONDS: i64 = 30;
/// The longest access token read (a JWT far larger is not one of the provider's).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a service's access token was refused. Messages never hold the token or its claims'
/// values, apart from the client id of a token whose signature verified.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the identity provider could not be reached to check this access token: {0}")]
    Provider(String),
    #[error("this access token is not one Candor accepts: {0}")]
    Invalid(String),
    #[error("this access token has expired; ask the identity provider for a new one")]
    Expired,
    #[error("client `{0}` has no role in Candor: {1}")]
    NoRole(String, String),
}

/// A service the provider vouched for, with the role `[staff.clients]` gives it.
#[derive(Debug, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub role: String,
}

/// Whether `token` has the shape of a JWT (three base64url parts), not of a Candor token.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.split('.').count() == 3
}

fn b64(part: &str) -> Result<Vec<u8>, TokenError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Invalid("it is not a compact JWT (base64url parts)".into()))
}

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

impl RelyingParty {
    /// The service a provider-issued access token names, after every check in the module
    /// comment; `now_seconds` is Candor's clock.
    pub async fn verify_access_token(&self, token: &str, now_seconds: i64) -> Result<Client, TokenError> {
        let config = self.config();
        let Some(audience) = config.api_audience.as_deref() else {
            return Err(TokenError::Invalid("this installation accepts no access tokens from the provider".into()));
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid("it is larger than 16 KiB".into()));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Invalid("it is not a compact JWT".into()));
        };
        let header: Header = serde_json::from_slice(&b64(h)?)
            .map_err(|_| TokenError::Invalid("its header is not a JWS header".into()))?;
        // The algorithm is pinned before any key is looked at: `none` and HMAC are refused here.
        let alg: CoreJwsSigningAlgorithm = serde_json::from_value(serde_json::Value::String(header.alg.clone()))
            .ok()
            .filter(|a| ALGORITHMS.contains(a))
            .ok_or_else(|| {
                TokenError::Invalid(format!(
                    "it is signed with `{}`; only RS256, PS256, ES256, ES384 and EdDSA signatures by the provider are accepted",
                    header.alg.chars().filter(|c| c.is_ascii_alphanumeric()).take(16).collect::<String>()
                ))
            })?;
        if header.crit.is_some() {
            return Err(TokenError::Invalid("its header has critical extensions Candor does not know".into()));
        }
        let signature = b64(s)?;
        let message = &token.as_bytes()[..h.len() + 1 + p.len()];
        let kid = header.kid.map(JsonWebKeyId::new);
        let mut verified = false;
        for refresh in [false, true] {
            let metadata = self.metadata(refresh).await.map_err(|e| TokenError::Provider(e.to_string()))?;
            let keys = metadata.jwks().keys().iter().filter(|k| {
                (kid.is_none() || k.key_id() == kid.as_ref())
                    && k.key_use().is_none_or(|u| *u == CoreJsonWebKeyUse::Signature)
            });
            let mut named = false;
            for key in keys {
                named = true;
                if key.verify_signature(&alg, message, &signature).is_ok() {
                    verified = true;
                    break;
                }
            }
            // A key the cached set names but that does not verify: a forgery, not a rotation.
            if verified || named {
                break;
            }
        }
        if !verified {
            return Err(TokenError::Invalid("its signature is not the identity provider's".into()));
        }
        // Signed by the provider: now its claims.
        let claims: serde_json::Value = serde_json::from_slice(&b64(p)?)
            .map_err(|_| TokenError::Invalid("its payload is not a JSON object".into()))?;
        check_claims(&claims, &config.issuer, audience, now_seconds)?;
        let client_id = ["client_id", "azp"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(|v| v.as_str()))
            .filter(|c| !c.is_empty() && c.len() <= 128 && c.chars().all(|ch| ch.is_ascii_graphic()))
            .ok_or_else(|| TokenError::Invalid("it names no client (`client_id` or `azp`)".into()))?
            .to_string();
        let values = claim_strings(&claims, &config.api_roles_claim);
        match config.client_role_for(&values) {
            Ok(role) => Ok(Client { client_id, role }),
            Err(NoRole::None) => Err(TokenError::NoRole(
                client_id,
                format!("none of the values of its `{}` claim is mapped in [staff.clients]", config.api_roles_claim),
            )),
            Err(NoRole::Several(roles)) => Err(TokenError::NoRole(
                client_id,
                format!(
                    "its `{}` claim maps to several roles ({}); a client acts in exactly one",
                    config.api_roles_claim,
                    roles.join(", ")
                ),
            )),
        }
    }
}

/// `iss`, `aud`, `exp` and `nbf` of a verified payload.
fn check_claims(claims: &serde_json::Value, issuer: &str, audience: &str, now: i64) -> Result<(), TokenError> {
    if claims.get("iss").and_then(|v| v.as_str()) != Some(issuer) {
        return Err(TokenError::Invalid("it was issued by another issuer than [staff.oidc] issuer".into()));
    }
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => a == audience,
        Some(serde_json::Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(TokenError::Invalid("its audience is not this API ([staff.oidc] api_audience)".into()));
    }
    let time = |name: &str| claims.get(name).and_then(|v| v.as_i64());
    let Some(exp) = time("exp") else {
        return Err(TokenError::Invalid("it has no expiry (`exp`)".into()));
    };
    if now >= exp + LEEWAY_SECONDS {
        return Err(TokenError::Expired);
    }
    if claims.get("nbf").is_some() {
        match time("nbf") {
            Some(nbf) if now + LEEWAY_SECONDS >= nbf => {}
            _ => return Err(TokenError::Invalid("it is not valid yet (`nbf`)".into())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_audience_and_times_are_checked_with_leeway() {
        let c = |v: serde_json::Value| check_claims(&v, "https://idp", "api", 1000);
        let ok = serde_json::json!({"iss": "https://idp", "aud": ["x", "api"], "exp": 1100});
        assert_eq!(c(ok), Ok(()));
        assert_eq!(c(serde_json::json!({"iss": "https://idp", "aud": "api", "exp": 980})), Ok(()), "within leeway");
        assert_eq!(c(serde_json::json!({"iss": "https://idp", "aud": "api", "exp": 970})), Err(TokenError::Expired));
        assert!(c(serde_json::json!({"iss": "https://idp", "aud": "api"})).is_err(), "exp is required");
        assert!(c(serde_json::json!({"iss": "https://idp/", "aud": "api", "exp": 1100})).is_err());
        assert!(c(serde_json::json!({"iss": "https://idp", "aud": "apix", "exp": 1100})).is_err());
        assert!(c(serde_json::json!({"iss": "https://idp", "aud": "api", "exp": 1100, "nbf": 1040})).is_err());
        assert_eq!(c(serde_json::json!({"iss": "https://idp", "aud": "api", "exp": 1100, "nbf": 1020})), Ok(()));
        assert!(c(serde_json::json!({"iss": "https://idp", "aud": "api", "exp": 1100, "nbf": "soon"})).is_err());
    }

    #[test]
    fn only_jwts_are_taken_for_access_tokens() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJ9.c2ln"));
        assert!(!looks_like_jwt("Zq3mW1xY_candor-token-without-dots"));
        assert!(!looks_like_jwt("eyJ.a"));
    }
}
