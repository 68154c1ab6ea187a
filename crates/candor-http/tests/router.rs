//! The router in process (`router().oneshot`), over a real SQLite vault with a clock the test
//! moves: no process, no port, no sleep.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use candor_http::settings::{BrandingSettings, ServerLimits, SignInConfig, WitnessSettings};
use candor_http::{AppState, Settings, router};
use candor_vault::Vault;
use candor_vault::clock::{Clock, ManualClock};
use candor_vault::testing::example_vault;
use serde_json::{Value, json};
use tower::ServiceExt;

fn settings() -> Settings {
    Settings {
        max_body_bytes: 1 << 20,
        branding: BrandingSettings { name: None, accent_colour: "#0b4f9c".into(), logo: None },
        sign_in: SignInConfig { public_url: None, settings: Default::default(), attempts_per_minute: 10 },
        webhook_secrets: Default::default(),
        trusted_proxies: Vec::new(),
        record_callers: false,
        limits: ServerLimits {
            max_connections: None,
            header_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            database_timeout: Duration::from_secs(5),
        },
        staff: None,
        witnesses: WitnessSettings::default(),
    }
}

async fn call(vault: &Vault, request: Request<Body>) -> (StatusCode, Value, header::HeaderMap) {
    let app = router(AppState::new(vault.clone(), settings()).unwrap());
    let response = app.oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers)
}

fn get(path: &str, token: &str, purpose: &str) -> Request<Body> {
    Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("Candor-Purpose", purpose)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_create_and_a_read_are_each_logged_and_an_expired_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at("2026-12-03T10:00:00Z".parse().unwrap()));
    let vault = example_vault(dir.path(), clock.clone()).await;
    let expires = clock.now_millis() + 3_600_000;
    let token = vault.create_token("shop_backend", "router test", Some(expires)).await.unwrap();

    let (status, body, _) = call(&vault, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));

    let (status, body, headers) = call(&vault, Request::get("/v1/catalog").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthenticated");
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");

    let create = Request::post("/v1/subjects")
        .header(header::AUTHORIZATION, format!("Bearer {}", token.as_str()))
        .header("Candor-Purpose", "account")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"fields": {"email": "ada@example.com", "full_name": "Ada Lovelace"}}).to_string()))
        .unwrap();
    let before = vault.log_size().await.unwrap();
    let (status, body, _) = call(&vault, create).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(vault.log_size().await.unwrap(), before + 1, "the create and its entry, together");

    let (status, body, _) = call(&vault, get(&format!("/v1/subjects/{id}"), &token, "account")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fields"]["email"], "ada@example.com");
    assert_eq!(vault.log_size().await.unwrap(), before + 2, "the read is logged before it is answered");

    clock.advance(Duration::from_secs(3600));
    let (status, body, _) = call(&vault, get(&format!("/v1/subjects/{id}"), &token, "account")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("token_expired")));
    assert_eq!(vault.log_size().await.unwrap(), before + 2, "nothing was read");
}
