//! The OpenID Connect relying party: discovery, the authorization request, and the callback's
//! checks (state, code exchange with the PKCE verifier, the ID token's signature against the
//! provider's JWKS with pinned algorithms, issuer, audience, expiry and nonce).
//!
//! A sign-in in progress keeps nothing on the server: the browser holds one random secret in a
//! short-lived cookie, and `state`, `nonce` and the PKCE verifier are each derived from it
//! (`candor_crypto::staff::derive_flow_value`), so any server of the installation can finish
//! it, and a callback in a browser that did not start the sign-in (login CSRF) fails its
//! `state` check. HTTP to the provider goes through Candor's one reqwest client (no redirects
//! followed, timeouts), not a second TLS stack.

use std::sync::Arc;
use std::time::Duration;

use candor_crypto::staff::derive_flow_value;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreTokenResponse};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, LogoutRequest, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse,
};
use zeroize::Zeroizing;

use super::StaffConfig;

/// How long a sign-in may take between leaving for the provider and coming back.
pub const FLOW_MINUTES: i64 = 10;
/// Largest discovery, JWKS or token response read from the provider.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Provider metadata (and its keys) is fetched again after this long, or sooner when an ID
/// token names a key it does not hold (the provider rotated its keys).
const METADATA_MAX_AGE: Duration = Duration::from_secs(3600);
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(10);
/// ID-token signature algorithms accepted: asymmetric only (never `none`, never a MAC keyed by
/// the client secret).
pub(super) const ALGORITHMS: [CoreJwsSigningAlgorithm; 5] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// Why a sign-in failed. Messages never hold a token, code, name or e-mail address.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the identity provider could not be reached or answered wrongly: {0}")]
    Provider(String),
    #[error("this sign-in was not started in this browser, or took longer than {FLOW_MINUTES} minutes")]
    Flow,
    #[error("the identity provider refused the sign-in ({0})")]
    Refused(String),
    #[error("the identity provider's answer did not pass Candor's checks: {0}")]
    Invalid(String),
}

/// A person the provider vouched for.
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    /// The values of the roles claim.
    pub groups: Vec<String>,
    /// How the person signed in, as the ID token says (`amr`, `acr`, `auth_time` in seconds).
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub auth_time: Option<i64>,
}

/// The relying party of one installation.
pub struct RelyingParty {
    config: StaffConfig,
    client_secret: Option<Zeroizing<String>>,
    http: reqwest::Client,
    /// The provider's metadata and keys, and when they were fetched (Candor's clock, ms).
    metadata: tokio::sync::Mutex<Option<(Arc<ProviderMetadataWithLogout>, crate::clock::Millis)>>,
}

impl RelyingParty {
    pub fn new(config: StaffConfig, client_secret: Option<Zeroizing<String>>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { config, client_secret, http, metadata: tokio::sync::Mutex::new(None) })
    }

    pub fn config(&self) -> &StaffConfig {
        &self.config
    }

    async fn send(
        http: reqwest::Client,
        request: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, HttpError> {
        let request = reqwest::Request::try_from(request).map_err(|e| HttpError(e.to_string()))?;
        let mut response = http.execute(request).await.map_err(|e| HttpError(e.without_url().to_string()))?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| HttpError(e.without_url().to_string()))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(HttpError("the response is larger than 1 MiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let mut out = openidconnect::http::Response::builder().status(response.status().as_u16());
        for (name, value) in response.headers() {
            out = out.header(name.as_str(), value.as_bytes());
        }
        out.body(body).map_err(|e| HttpError(e.to_string()))
    }

    /// The provider's metadata and keys: cached, fetched again when old or (`refresh`) when a
    /// token names a key the cached set lacks.
    pub(super) async fn metadata(&self, refresh: bool) -> Result<Arc<ProviderMetadataWithLogout>, SignInError> {
        let mut cached = self.metadata.lock().await;
        if let Some((m, at)) = cached.as_ref() {
            let age = Duration::from_millis(crate::clock::now_millis().saturating_sub(*at).max(0) as u64);
            if age < METADATA_MAX_AGE && !(refresh && age >= REFETCH_AT_MOST_EVERY) {
                return Ok(m.clone());
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|e| SignInError::Provider(e.to_string()))?;
        let http = self.http.clone();
        let client = move |r| Self::send(http.clone(), r);
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &client)
            .await
            .map_err(|e| SignInError::Provider(describe(&e)))?;
        let metadata = Arc::new(metadata);
        *cached = Some((metadata.clone(), crate::clock::now_millis()));
        Ok(metadata)
    }

    fn client(
        &self,
        metadata: &ProviderMetadataWithLogout,
        redirect: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        SignInError,
    > {
        let redirect = RedirectUrl::new(redirect.to_string()).map_err(|e| SignInError::Provider(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            self.client_secret.as_ref().map(|s| ClientSecret::new(s.to_string())),
        )
        .set_redirect_uri(redirect))
    }

    /// Where a person also signs out at the provider (RP-initiated logout: its
    /// `end_session_endpoint` with Candor's `client_id`; the provider asks them to confirm), if
    /// its discovery document names one.
    pub async fn logout_url(&self) -> Option<String> {
        let metadata = self.metadata(false).await.ok()?;
        let end = metadata.additional_metadata().end_session_endpoint.clone()?;
        let request = LogoutRequest::from(end).set_client_id(ClientId::new(self.config.client_id.clone()));
        Some(request.http_get_url().to_string())
    }

    /// Where to send the browser to sign in, for the flow whose cookie secret is `flow`. With
    /// `reauth` the provider is asked for a fresh sign-in (`prompt=login`, `max_age=0`) and, if
    /// `[staff.require_mfa] acr` is set, for one of those classes (`acr_values`).
    pub async fn authorization_url(&self, flow: &str, redirect: &str, reauth: bool) -> Result<String, SignInError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata, redirect)?;
        let verifier = PkceCodeVerifier::new(derive_flow_value(flow, "pkce").to_string());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let state = derive_flow_value(flow, "state").to_string();
        let nonce = derive_flow_value(flow, "nonce").to_string();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if reauth {
            request = request.add_prompt(openidconnect::core::CoreAuthPrompt::Login).set_max_age(Duration::ZERO);
            for acr in self.config.require_mfa.iter().flat_map(|m| &m.acr) {
                request = request.add_auth_context_value(openidconnect::AuthenticationContextClass::new(acr.clone()));
            }
        }
        let (url, _, _) = request.url();
        Ok(url.to_string())
    }

    /// Finishes the sign-in whose cookie secret is `flow`, from the callback's `code` and
    /// `state`: the state must be this flow's, the code is exchanged with its PKCE verifier, and
    /// the ID token must be signed by the provider (pinned algorithms), name this installation
    /// as its audience, be in date and carry this flow's nonce.
    pub async fn finish(&self, flow: &str, code: &str, state: &str, redirect: &str) -> Result<Identity, SignInError> {
        if !candor_crypto::secrets_match(state, &derive_flow_value(flow, "state")) {
            return Err(SignInError::Flow);
        }
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata, redirect)?;
        let http = self.http.clone();
        let send = move |r| Self::send(http.clone(), r);
        let response: CoreTokenResponse = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| SignInError::Provider(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(derive_flow_value(flow, "pkce").to_string()))
            .request_async(&send)
            .await
            .map_err(|e| SignInError::Refused(describe(&e)))?;
        let id_token = response.id_token().ok_or_else(|| SignInError::Invalid("no ID token in the answer".into()))?;
        let nonce = Nonce::new(derive_flow_value(flow, "nonce").to_string());
        let verify = |client: &CoreClient<_, _, _, _, _, _>| {
            // Expiry and issue time against Candor's clock (the one every deadline uses), not
            // the library's own reading of the system clock.
            let verifier = client.id_token_verifier().set_allowed_algs(ALGORITHMS).set_time_fn(candor_now);
            id_token.claims(&verifier, &nonce).map(|c| (c.issuer().to_string(), c.subject().to_string())).map_err(|e| {
                (matches!(e, openidconnect::ClaimsVerificationError::SignatureVerification(_)), describe(&e))
            })
        };
        let (issuer, subject) = match verify(&client) {
            Ok(found) => found,
            // An unknown key: the provider may have rotated its keys since they were fetched.
            Err((true, _)) => {
                let metadata = self.metadata(true).await?;
                verify(&self.client(&metadata, redirect)?).map_err(|(_, e)| SignInError::Invalid(e))?
            }
            Err((false, e)) => return Err(SignInError::Invalid(e)),
        };
        // The signature is verified; read the roles claim and how the person signed in from the
        // same payload.
        let payload = payload(&id_token.to_string())
            .ok_or_else(|| SignInError::Invalid("the ID token's payload could not be read".into()))?;
        Ok(Identity {
            issuer,
            subject,
            groups: claim_strings(&payload, &self.config.roles_claim),
            amr: claim_strings(&payload, "amr"),
            acr: payload.get("acr").and_then(|v| v.as_str()).map(str::to_string),
            auth_time: payload.get("auth_time").and_then(|v| v.as_i64()),
        })
    }
}

/// Candor's clock as `openidconnect` reads time.
fn candor_now() -> chrono::DateTime<chrono::Utc> {
    // Out of range cannot happen; if it did, every token would count as expired (fail closed).
    chrono::DateTime::from_timestamp_millis(crate::clock::now_millis())
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// The string values of `claim` in a compact JWT's payload (a list of strings or one string;
/// absent: none). `None` if the payload is not JSON.
#[cfg(test)]
pub fn claim_values(jwt: &str, claim: &str) -> Option<Vec<String>> {
    Some(claim_strings(&payload(jwt)?, claim))
}

/// A compact JWT's payload as JSON (`None` if it is not).
fn payload(jwt: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The string values of `claim` in a JWT payload: a list of strings or one string; absent: none.
pub fn claim_strings(payload: &serde_json::Value, claim: &str) -> Vec<String> {
    match payload.get(claim) {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// An error and its causes on one line.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[derive(Debug)]
pub struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_claim_is_a_list_or_one_value() {
        use base64::Engine;
        let jwt = |json: &str| format!("e30.{}.sig", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json));
        assert_eq!(claim_values(&jwt(r#"{"groups":["a","b",3]}"#), "groups").unwrap(), ["a", "b"]);
        assert_eq!(claim_values(&jwt(r#"{"role":"a"}"#), "role").unwrap(), ["a"]);
        assert!(claim_values(&jwt(r#"{"x":1}"#), "groups").unwrap().is_empty());
        assert!(claim_values("e30.!!.x", "groups").is_none());
    }
}
