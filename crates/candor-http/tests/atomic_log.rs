//! "Every change commits with its log entry", route by route, on both backends: each mutating
//! API route is driven through the real router in process (`router().oneshot`), once so that it
//! succeeds and once or more so that it is refused or invalid. A success adds its entry (the
//! right action, naming the customer) and its change is visible; a refusal changes nothing and
//! adds at most its refusal entry (`decision: denied`), never a success entry.
//!
//! SQLite always; PostgreSQL when `CANDOR_TEST_DATABASE_URL` names a server (otherwise the test
//! says SKIPPED). No sleeps: the vault's clock is a `ManualClock` the test moves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use candor_core::SubjectId;
use candor_http::settings::{BrandingSettings, ServerLimits, SignInConfig, WitnessSettings};
use candor_http::{AppState, Settings, router};
use candor_log::entry::LogEntry;
use candor_vault::clock::{Clock, ManualClock};
use candor_vault::testing::{acting_as, example_vault, example_vault_on_postgres};
use candor_vault::{Document, Principal, Vault, head_json};
use serde_json::{Map, Value, json};
use tower::ServiceExt;
use zeroize::Zeroizing;

/// The webhook secret of the recipient `parcel_carrier` (signs its confirmations of notices).
const PARCEL_SECRET: &str = "parcel-carrier-webhook-secret-for-the-test";

fn settings() -> Settings {
    Settings {
        max_body_bytes: 1 << 20,
        branding: BrandingSettings { name: None, accent_colour: "#0b4f9c".into(), logo: None },
        sign_in: SignInConfig { public_url: None, settings: Default::default(), attempts_per_minute: 10 },
        webhook_secrets: [("parcel_carrier".to_string(), Zeroizing::new(PARCEL_SECRET.to_string()))].into(),
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

/// One installation under test: its vault, clock, a token per role and the customers known.
struct Fixture {
    vault: Vault,
    clock: Arc<ManualClock>,
    admin: String,
    shop: String,
    privacy: String,
    support: String,
    marketing: String,
    customers: Mutex<Vec<SubjectId>>,
    /// The headers of the last answer (a session cookie).
    last_headers: Mutex<header::HeaderMap>,
}

/// What a case expects of the log and of the data.
enum Expect {
    /// Succeeds: exactly `entries` new entries (one, or the parts of one entry), none denied,
    /// one of them `action` naming `subject`; and, when `in_snapshot`, the data as
    /// [`Fixture::snapshot`] shows it changed (otherwise the case checks the change itself).
    Done { action: &'static str, subject: Subject, entries: usize, in_snapshot: bool },
    /// Refused or invalid: the data is unchanged, and the log holds at most one new entry, a
    /// refusal (`decision: denied`).
    Refused,
    /// A retry with the same `Idempotency-Key`: the first answer again, with no change and no
    /// entry.
    Replayed,
}

#[derive(Clone, Copy)]
enum Subject {
    Is(SubjectId),
    /// The `id` of the response body (a customer just created).
    InResponse,
    /// The entry names no customer (a token revoked).
    None,
}

struct Case {
    name: &'static str,
    request: Request<Body>,
    status: StatusCode,
    expect: Expect,
}

fn request(method: &str, path: &str, token: &str, purpose: Option<&str>, body: Option<&str>) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(path).header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(p) = purpose {
        r = r.header("Candor-Purpose", p);
    }
    match body {
        Some(b) => r.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())).unwrap(),
        None => r.body(Body::empty()).unwrap(),
    }
}

fn done(action: &'static str, subject: Subject) -> Expect {
    Expect::Done { action, subject, entries: 1, in_snapshot: true }
}

/// A change the per-customer snapshot does not show (checked by the case itself afterwards).
fn done_elsewhere(action: &'static str, subject: Subject) -> Expect {
    Expect::Done { action, subject, entries: 1, in_snapshot: false }
}

impl Fixture {
    async fn new(vault: Vault, clock: Arc<ManualClock>) -> Self {
        let token = |role: &'static str| {
            let vault = vault.clone();
            async move { vault.create_token(role, "atomic log test", None).await.unwrap().to_string() }
        };
        let (admin, shop, privacy, support, marketing) = (
            token("admin").await,
            token("shop_backend").await,
            token("privacy_team").await,
            token("support_agent").await,
            token("marketing_tool").await,
        );
        Fixture {
            vault,
            clock,
            admin,
            shop,
            privacy,
            support,
            marketing,
            customers: Mutex::new(Vec::new()),
            last_headers: Mutex::default(),
        }
    }

    async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let app = router(AppState::new(self.vault.clone(), settings()).unwrap());
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        *self.last_headers.lock().unwrap() = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn admin_principal(&self) -> Principal {
        Principal { token_id: "atomic-log-test".into(), role: "admin".into(), origin: None }
    }

    /// Everything a case could change, as the vault shows it to the privacy team and the admin:
    /// each known customer's export head (fields, consents and their ledger, restriction, hold,
    /// event counts, break-glass overrides, shares) or why it cannot be read, look-ups of the
    /// e-mail addresses the cases use, every request, token, grant and unconfirmed notice.
    async fn snapshot(&self) -> Value {
        let v = &self.vault;
        let privacy = acting_as(v, "privacy_team", "privacy_requests").await;
        let account = acting_as(v, "shop_backend", "account").await;
        let ids: Vec<SubjectId> = self.customers.lock().unwrap().clone();
        let mut customers = Map::new();
        for id in ids {
            let state = match v.report_head(&privacy, id, Document::Export).await {
                Ok((head, _events)) => {
                    let mut m = head_json(v, &head, Document::Export);
                    m.remove("generated_at");
                    Value::Object(m)
                }
                Err(e) => json!({"error": e.code()}),
            };
            customers.insert(id.to_string(), state);
        }
        let mut lookups = Map::new();
        for email in ["carol@example.com", "dave@example.com", "erin@example.com"] {
            let found = v.lookup(&account, "email", email).await.unwrap();
            lookups.insert(email.into(), json!(found.iter().map(ToString::to_string).collect::<Vec<_>>()));
        }
        let requests: Vec<String> =
            v.list_requests(&privacy, None).await.unwrap().iter().map(|r| format!("{r:?}")).collect();
        let tokens: Vec<String> =
            v.tokens(&self.admin_principal()).await.unwrap().iter().map(|t| format!("{t:?}")).collect();
        let grants: Vec<String> = v.all_grants().await.unwrap().iter().map(|g| format!("{g:?}")).collect();
        let notices: Vec<String> =
            v.unconfirmed_notices(&privacy).await.unwrap().iter().map(|n| format!("{n:?}")).collect();
        json!({
            "customers": customers, "lookups": lookups, "requests": requests, "tokens": tokens, "grants": grants,
            "notices": notices,
        })
    }

    async fn entries_since(&self, from: u64) -> Vec<LogEntry> {
        let size = self.vault.log_size().await.unwrap();
        let entries = self.vault.log_entries(from, size).await.unwrap();
        entries.iter().map(|e| LogEntry::from_bytes(&e.bytes).expect("a log entry")).collect()
    }

    /// Runs one case and checks it; returns the response body.
    async fn run(&self, case: Case) -> Value {
        let Case { name, request, status: expected_status, expect } = case;
        let before = self.snapshot().await;
        let size = self.vault.log_size().await.unwrap();
        let (status, body) = self.call(request).await;
        let entries = self.entries_since(size).await;
        let shown =
            || entries.iter().map(|e| String::from_utf8(e.to_bytes()).unwrap()).collect::<Vec<_>>().join("\n    ");
        assert_eq!(status, expected_status, "{name}: {body}");
        match expect {
            Expect::Done { action, subject, entries: count, in_snapshot } => {
                assert_eq!(entries.len(), count, "{name}: the change and its entries, together:\n    {}", shown());
                assert!(
                    entries.iter().all(|e| e.decision.as_deref() != Some("denied")),
                    "{name}: a success logs no refusal:\n    {}",
                    shown()
                );
                let subject = match subject {
                    Subject::Is(id) => Some(id.to_string()),
                    Subject::InResponse => Some(body["id"].as_str().expect("an id in the response").to_string()),
                    Subject::None => None,
                };
                let found = entries.iter().any(|e| {
                    e.action == action
                        && match &subject {
                            Some(s) => e.subjects.contains(s),
                            None => e.subjects.is_empty(),
                        }
                });
                assert!(found, "{name}: an entry `{action}` naming {subject:?}:\n    {}", shown());
                if in_snapshot {
                    let after = self.snapshot().await;
                    assert_ne!(before, after, "{name}: the change is visible");
                }
            }
            Expect::Replayed => {
                assert!(entries.is_empty(), "{name}: a replay logs nothing:\n    {}", shown());
                let after = self.snapshot().await;
                assert_eq!(before, after, "{name}: nothing changed");
            }
            Expect::Refused => {
                assert!(entries.len() <= 1, "{name}: at most the refusal is logged:\n    {}", shown());
                assert!(
                    entries.iter().all(|e| e.decision.as_deref() == Some("denied")),
                    "{name}: a refusal logs no success entry:\n    {}",
                    shown()
                );
                let after = self.snapshot().await;
                assert_eq!(before, after, "{name}: nothing changed");
            }
        }
        body
    }
}

fn json_body(v: Value) -> String {
    v.to_string()
}

async fn every_mutating_route_commits_its_change_with_its_entry(vault: Vault, clock: Arc<ManualClock>) {
    let fx = Fixture::new(vault, clock).await;
    let v = &fx.vault;
    let account = acting_as(v, "shop_backend", "account").await;
    let fulfil = acting_as(v, "shop_backend", "order_fulfilment").await;
    let new = |email: &str, name: &str| {
        let mut m = Map::new();
        m.insert("email".into(), json!(email));
        m.insert("full_name".into(), json!(name));
        m
    };
    let alice = v.create_subject(&account, &new("alice@example.com", "Alice Example")).await.unwrap();
    let bob = v.create_subject(&account, &new("bob@example.com", "Bob Example")).await.unwrap();
    let mut phone = Map::new();
    phone.insert("phone".into(), json!("+4915112345678"));
    v.correct_subject(&fulfil, alice, &phone).await.unwrap();
    fx.customers.lock().unwrap().extend([alice, bob]);
    let unknown = SubjectId::random();
    let (shop, privacy, support, marketing, admin) = (&fx.shop, &fx.privacy, &fx.support, &fx.marketing, &fx.admin);
    let subject = |id: SubjectId| format!("/v1/subjects/{id}");

    // ---- POST /v1/subjects
    let carol_body = json_body(json!({"fields": {"email": "carol@example.com", "full_name": "Carol Example"}}));
    let created = fx
        .run(Case {
            name: "create",
            request: request("POST", "/v1/subjects", shop, Some("account"), Some(&carol_body)),
            status: StatusCode::CREATED,
            expect: done("subject.create", Subject::InResponse),
        })
        .await;
    let carol = SubjectId::parse(created["id"].as_str().unwrap()).unwrap();
    fx.customers.lock().unwrap().push(carol);
    let dave = |fields: Value| json_body(json!({ "fields": fields }));
    let refusals = [
        (
            "create under a purpose the role does not act under",
            request(
                "POST",
                "/v1/subjects",
                shop,
                Some("marketing"),
                Some(&dave(json!({"email": "dave@example.com", "full_name": "Dave"}))),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "create with a body that is not JSON",
            request("POST", "/v1/subjects", shop, Some("account"), Some(r#"{"fields": {"email": "dave@exa"#)),
            StatusCode::BAD_REQUEST,
        ),
        (
            "create without a required field",
            request("POST", "/v1/subjects", shop, Some("account"), Some(&dave(json!({"email": "dave@example.com"})))),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "create with a field the purpose may not write",
            request(
                "POST",
                "/v1/subjects",
                shop,
                Some("account"),
                Some(&dave(json!({"email": "dave@example.com", "full_name": "Dave", "phone": "+4915112345679"}))),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "create with another customer's unique e-mail",
            request(
                "POST",
                "/v1/subjects",
                shop,
                Some("account"),
                Some(&dave(json!({"email": "alice@example.com", "full_name": "Dave"}))),
            ),
            StatusCode::CONFLICT,
        ),
    ];
    for (name, request, status) in refusals {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }

    // ---- PATCH /v1/subjects/{id}
    let rename = json_body(json!({"fields": {"full_name": "Alice Renamed"}}));
    fx.run(Case {
        name: "correct",
        request: request("PATCH", &subject(alice), shop, Some("account"), Some(&rename)),
        status: StatusCode::OK,
        expect: done("subject.correct", Subject::Is(alice)),
    })
    .await;
    let cases = [
        (
            "correct under a purpose the role does not act under",
            request("PATCH", &subject(alice), support, Some("account"), Some(&rename)),
            StatusCode::FORBIDDEN,
        ),
        (
            "correct an unknown customer",
            request("PATCH", &subject(unknown), shop, Some("account"), Some(&rename)),
            StatusCode::NOT_FOUND,
        ),
        (
            "correct with an invalid value",
            request(
                "PATCH",
                &subject(alice),
                shop,
                Some("account"),
                Some(&json_body(json!({"fields": {"email": "not an address"}}))),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "correct a field the purpose may not write",
            request(
                "PATCH",
                &subject(alice),
                shop,
                Some("account"),
                Some(&json_body(json!({"fields": {"phone": "+4915100000000"}}))),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "correct to another customer's unique e-mail",
            request(
                "PATCH",
                &subject(alice),
                shop,
                Some("account"),
                Some(&json_body(json!({"fields": {"email": "bob@example.com"}}))),
            ),
            StatusCode::CONFLICT,
        ),
        (
            "correct with an unknown body member",
            request(
                "PATCH",
                &subject(alice),
                shop,
                Some("account"),
                Some(&json_body(json!({"fields": {"full_name": "X"}, "extra": 1}))),
            ),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }

    // ---- POST /v1/subjects/{id}/events
    let events = |id: SubjectId| format!("/v1/subjects/{id}/events");
    let purchase = json_body(json!({"type": "purchase", "data": {"item": "Notebook", "price_eur": 12.5}}));
    fx.run(Case {
        name: "event",
        request: request("POST", &events(alice), shop, Some("order_fulfilment"), Some(&purchase)),
        status: StatusCode::CREATED,
        expect: done("event.append", Subject::Is(alice)),
    })
    .await;
    let cases = [
        (
            "event of a type the purpose may not record",
            request(
                "POST",
                &events(alice),
                shop,
                Some("order_fulfilment"),
                Some(&json_body(json!({"type": "page_view", "data": {}}))),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "event of an undeclared type",
            request(
                "POST",
                &events(alice),
                shop,
                Some("order_fulfilment"),
                Some(&json_body(json!({"type": "teleport", "data": {}}))),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "event with an invalid time",
            request(
                "POST",
                &events(alice),
                shop,
                Some("order_fulfilment"),
                Some(&json_body(json!({"type": "purchase", "data": {}, "occurred_at": "yesterday"}))),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "event of an unknown customer",
            request("POST", &events(unknown), shop, Some("order_fulfilment"), Some(&purchase)),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }

    // A retry with the same Idempotency-Key applies the change once and logs it once.
    let keyed = |key: &str, body: &str| {
        let mut r = request("POST", &events(alice), shop, Some("order_fulfilment"), Some(body));
        r.headers_mut().insert("Idempotency-Key", key.parse().unwrap());
        r
    };
    let first = fx
        .run(Case {
            name: "event with an idempotency key",
            request: keyed("evt-1", &purchase),
            status: StatusCode::CREATED,
            expect: done("event.append", Subject::Is(alice)),
        })
        .await;
    let again = fx
        .run(Case {
            name: "the same event retried with its idempotency key",
            request: keyed("evt-1", &purchase),
            status: StatusCode::CREATED,
            expect: Expect::Replayed,
        })
        .await;
    assert_eq!(first, again, "the retry gets the first answer");
    fx.run(Case {
        name: "another event under a used idempotency key",
        request: keyed("evt-1", &json_body(json!({"type": "purchase", "data": {"item": "Pen"}}))),
        status: StatusCode::UNPROCESSABLE_ENTITY,
        expect: Expect::Refused,
    })
    .await;

    // ---- POST /v1/subjects/{id}/consents
    let consents = |id: SubjectId| format!("/v1/subjects/{id}/consents");
    let grant_email = json_body(
        json!({"changes": [{"purpose": "marketing", "channel": "email", "action": "grant"}], "evidence": "signup-form v3, checkbox"}),
    );
    fx.run(Case {
        name: "consent",
        request: request("POST", &consents(alice), shop, Some("account"), Some(&grant_email)),
        status: StatusCode::CREATED,
        expect: done("consent.change", Subject::Is(alice)),
    })
    .await;
    let cases = [
        (
            "consent granted under the consent purpose itself",
            request("POST", &consents(bob), marketing, Some("marketing"), Some(&grant_email)),
            StatusCode::FORBIDDEN,
        ),
        (
            "consent to an undeclared purpose",
            request(
                "POST",
                &consents(bob),
                shop,
                Some("account"),
                Some(&json_body(json!({"changes": [{"purpose": "astrology", "action": "grant"}]}))),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "consent with a malformed change list",
            request("POST", &consents(bob), shop, Some("account"), Some(&json_body(json!({"changes": "grant"})))),
            StatusCode::BAD_REQUEST,
        ),
        (
            "consent of an unknown customer",
            request("POST", &consents(unknown), shop, Some("account"), Some(&grant_email)),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }

    // ---- POST and DELETE /v1/subjects/{id}/hold
    let hold = |id: SubjectId| format!("/v1/subjects/{id}/hold");
    let hold_reason = json_body(json!({"reason": "Court order 2026/123 requires keeping these records"}));
    fx.run(Case {
        name: "hold",
        request: request("POST", &hold(alice), privacy, Some("privacy_requests"), Some(&hold_reason)),
        status: StatusCode::OK,
        expect: done("hold.place", Subject::Is(alice)),
    })
    .await;
    let cases = [
        (
            "hold under a purpose that is no legal obligation",
            request("POST", &hold(bob), shop, Some("account"), Some(&hold_reason)),
            StatusCode::FORBIDDEN,
        ),
        (
            "hold with too short a reason",
            request(
                "POST",
                &hold(bob),
                privacy,
                Some("privacy_requests"),
                Some(&json_body(json!({"reason": "court"}))),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "hold on an unknown customer",
            request("POST", &hold(unknown), privacy, Some("privacy_requests"), Some(&hold_reason)),
            StatusCode::NOT_FOUND,
        ),
        (
            "lift a hold under a purpose that is no legal obligation",
            request("DELETE", &hold(alice), shop, Some("account"), None),
            StatusCode::FORBIDDEN,
        ),
        (
            "erase a customer under a legal hold",
            request("DELETE", &subject(alice), privacy, Some("privacy_requests"), None),
            StatusCode::CONFLICT,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }
    fx.run(Case {
        name: "lift hold",
        request: request("DELETE", &hold(alice), privacy, Some("privacy_requests"), None),
        status: StatusCode::OK,
        expect: done("hold.lift", Subject::Is(alice)),
    })
    .await;

    // ---- POST and DELETE /v1/subjects/{id}/restriction
    let restriction = |id: SubjectId| format!("/v1/subjects/{id}/restriction");
    let restrict_reason = json_body(json!({"reason": "The customer contests the accuracy of their data"}));
    fx.run(Case {
        name: "restrict",
        request: request("POST", &restriction(bob), privacy, Some("privacy_requests"), Some(&restrict_reason)),
        status: StatusCode::OK,
        expect: done("subject.restrict", Subject::Is(bob)),
    })
    .await;
    let cases = [
        (
            "restrict with too short a reason",
            request(
                "POST",
                &restriction(alice),
                privacy,
                Some("privacy_requests"),
                Some(&json_body(json!({"reason": "no"}))),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "restrict an unknown customer",
            request("POST", &restriction(unknown), privacy, Some("privacy_requests"), Some(&restrict_reason)),
            StatusCode::NOT_FOUND,
        ),
        (
            "lift a restriction without the power to erase",
            request("DELETE", &restriction(bob), shop, Some("privacy_requests"), None),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }
    fx.run(Case {
        name: "lift restriction",
        request: request("DELETE", &restriction(bob), privacy, Some("privacy_requests"), None),
        status: StatusCode::OK,
        expect: done("subject.unrestrict", Subject::Is(bob)),
    })
    .await;

    // ---- POST /v1/subjects/{id}/break-glass
    let glass = |id: SubjectId| format!("/v1/subjects/{id}/break-glass");
    let emergency = json_body(
        json!({"reason": "The customer called about a lost parcel and the courier needs the full phone number today"}),
    );
    fx.run(Case {
        name: "break-glass",
        request: request("POST", &glass(alice), support, Some("customer_support"), Some(&emergency)),
        status: StatusCode::CREATED,
        expect: done("break_glass.open", Subject::Is(alice)),
    })
    .await;
    let cases = [
        (
            "break-glass by a role without the power",
            request("POST", &glass(bob), shop, Some("order_fulfilment"), Some(&emergency)),
            StatusCode::FORBIDDEN,
        ),
        (
            "break-glass with a boilerplate reason",
            request(
                "POST",
                &glass(bob),
                support,
                Some("customer_support"),
                Some(&json_body(json!({"reason": "emergency emergency emergency emergency"}))),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "break-glass on an unknown customer",
            request("POST", &glass(unknown), support, Some("customer_support"), Some(&emergency)),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }

    // ---- POST /v1/grants
    let until =
        |days: i64| jiff::Timestamp::from_millisecond(fx.clock.now_millis() + days * 86_400_000).unwrap().to_string();
    let grant_body = |fields: Value, recipient: &str, expires: String| {
        json_body(
            json!({"recipient": recipient, "subjects": [alice.to_string()], "fields": fields, "expires_at": expires}),
        )
    };
    let made = fx
        .run(Case {
            name: "grant",
            request: request(
                "POST",
                "/v1/grants",
                shop,
                Some("order_fulfilment"),
                Some(&grant_body(json!(["full_name", "phone"]), "parcel_carrier", until(7))),
            ),
            status: StatusCode::CREATED,
            expect: done("grant.create", Subject::Is(alice)),
        })
        .await;
    let grant_id = made["id"].as_str().unwrap().to_string();
    let cases = [
        (
            "grant of a field the recipient does not receive",
            request(
                "POST",
                "/v1/grants",
                shop,
                Some("order_fulfilment"),
                Some(&grant_body(json!(["email"]), "parcel_carrier", until(7))),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "grant to an undeclared recipient",
            request(
                "POST",
                "/v1/grants",
                shop,
                Some("order_fulfilment"),
                Some(&grant_body(json!(["full_name"]), "data_broker", until(7))),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "grant beyond the longest a grant may run",
            request(
                "POST",
                "/v1/grants",
                shop,
                Some("order_fulfilment"),
                Some(&grant_body(json!(["full_name"]), "parcel_carrier", until(400))),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "grant by a role without the power to share",
            request(
                "POST",
                "/v1/grants",
                support,
                Some("customer_support"),
                Some(&grant_body(json!(["full_name"]), "parcel_carrier", until(7))),
            ),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }

    // ---- A correction of a shared customer: its notice to the recipient, in the same commit.
    fx.run(Case {
        name: "correct a shared customer (notice to the recipient)",
        request: request(
            "PATCH",
            &subject(alice),
            shop,
            Some("order_fulfilment"),
            Some(&json_body(json!({"fields": {"phone": "+4915199999999"}}))),
        ),
        status: StatusCode::OK,
        expect: done("subject.correct", Subject::Is(alice)),
    })
    .await;
    let privacy_auth = acting_as(v, "privacy_team", "privacy_requests").await;
    let notices = v.unconfirmed_notices(&privacy_auth).await.unwrap();
    assert_eq!(notices.len(), 1, "the correction's notice to parcel_carrier");
    let notice_id = notices[0].id.clone();

    // ---- POST /v1/notices/{id}/retry
    fx.clock.advance(Duration::from_secs(60));
    let retry = |id: &str| format!("/v1/notices/{id}/retry");
    let cases = [
        (
            "retry a notice under a purpose that is not customer_requests",
            request("POST", &retry(&notice_id), shop, Some("account"), None),
            StatusCode::FORBIDDEN,
        ),
        (
            "retry an unknown notice",
            request("POST", &retry("no-such-notice"), privacy, Some("privacy_requests"), None),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }
    fx.run(Case {
        name: "retry a notice",
        request: request("POST", &retry(&notice_id), privacy, Some("privacy_requests"), None),
        status: StatusCode::OK,
        expect: done("recipient_notice.retry", Subject::Is(alice)),
    })
    .await;

    // ---- POST /v1/notices/{id}/confirm (the recipient's signature; the webhook check reads the
    // time of day, not the vault's clock)
    let confirm = |id: &str, signature: &str, at: i64| {
        Request::post(format!("/v1/notices/{id}/confirm"))
            .header("Candor-Timestamp", at.to_string())
            .header("Candor-Signature", signature)
            .body(Body::empty())
            .unwrap()
    };
    let now = candor_vault::clock::now().as_second();
    let signed = candor_crypto::webhook::sign_webhook(PARCEL_SECRET, now, notice_id.as_bytes());
    let forged = candor_crypto::webhook::sign_webhook("not the secret", now, notice_id.as_bytes());
    fx.run(Case {
        name: "confirm a notice with a wrong signature",
        request: confirm(&notice_id, &forged, now),
        status: StatusCode::UNAUTHORIZED,
        expect: Expect::Refused,
    })
    .await;
    fx.run(Case {
        name: "confirm a notice",
        request: confirm(&notice_id, &signed, now),
        status: StatusCode::OK,
        expect: done("recipient.confirmed", Subject::Is(alice)),
    })
    .await;

    // ---- DELETE /v1/grants/{id}
    let grant_path = format!("/v1/grants/{grant_id}");
    let cases = [
        (
            "revoke a grant under another purpose",
            request("DELETE", &grant_path, shop, Some("account"), None),
            StatusCode::NOT_FOUND,
        ),
        (
            "revoke an unknown grant",
            request("DELETE", "/v1/grants/no-such-grant", shop, Some("order_fulfilment"), None),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }
    fx.run(Case {
        name: "revoke a grant",
        request: request("DELETE", &grant_path, shop, Some("order_fulfilment"), None),
        status: StatusCode::OK,
        expect: done("grant.revoke", Subject::Is(alice)),
    })
    .await;

    // ---- POST /v1/requests and PATCH /v1/requests/{id}
    let open_body = |id: String, kind: &str| json_body(json!({"subject_id": id, "kind": kind}));
    let opened = fx
        .run(Case {
            name: "open a request",
            request: request(
                "POST",
                "/v1/requests",
                privacy,
                Some("privacy_requests"),
                Some(&open_body(alice.to_string(), "access")),
            ),
            status: StatusCode::CREATED,
            expect: done("request.open", Subject::Is(alice)),
        })
        .await;
    let request_path = format!("/v1/requests/{}", opened["id"].as_str().unwrap());
    let cases = [
        (
            "open a request under a purpose that is not customer_requests",
            request("POST", "/v1/requests", shop, Some("account"), Some(&open_body(alice.to_string(), "access"))),
            StatusCode::FORBIDDEN,
        ),
        (
            "open a request of an unknown kind",
            request(
                "POST",
                "/v1/requests",
                privacy,
                Some("privacy_requests"),
                Some(&open_body(alice.to_string(), "teleport")),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "open a request of an unknown customer",
            request(
                "POST",
                "/v1/requests",
                privacy,
                Some("privacy_requests"),
                Some(&open_body(unknown.to_string(), "access")),
            ),
            StatusCode::NOT_FOUND,
        ),
        (
            "reject a request without a reason",
            request(
                "PATCH",
                &request_path,
                privacy,
                Some("privacy_requests"),
                Some(&json_body(json!({"status": "rejected"}))),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "change a request under a purpose that is not customer_requests",
            request("PATCH", &request_path, shop, Some("account"), Some(&json_body(json!({"status": "completed"})))),
            StatusCode::FORBIDDEN,
        ),
        (
            "change an unknown request",
            request(
                "PATCH",
                "/v1/requests/no-such-request",
                privacy,
                Some("privacy_requests"),
                Some(&json_body(json!({"status": "completed"}))),
            ),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }
    fx.run(Case {
        name: "pause a request for proof of identity",
        request: request(
            "PATCH",
            &request_path,
            privacy,
            Some("privacy_requests"),
            Some(&json_body(json!({"identity": "requested"}))),
        ),
        status: StatusCode::OK,
        expect: done("request.update", Subject::Is(alice)),
    })
    .await;
    fx.run(Case {
        name: "close a request",
        request: request(
            "PATCH",
            &request_path,
            privacy,
            Some("privacy_requests"),
            Some(&json_body(json!({"status": "completed"}))),
        ),
        status: StatusCode::OK,
        expect: done("request.close", Subject::Is(alice)),
    })
    .await;

    // ---- POST /v1/messages
    let message = |id: SubjectId, channel: &str, hash: &str| {
        json_body(
            json!({"subject_id": id.to_string(), "channel": channel, "subject_line": "Your order has shipped", "body_sha256": hash}),
        )
    };
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let registered = fx
        .run(Case {
            name: "register a message",
            request: request(
                "POST",
                "/v1/messages",
                shop,
                Some("order_fulfilment"),
                Some(&message(alice, "email", hash)),
            ),
            status: StatusCode::CREATED,
            expect: done_elsewhere("message.register", Subject::Is(alice)),
        })
        .await;
    let code = registered["code"].as_str().unwrap();
    assert!(
        matches!(v.verify_message_code(code).await.unwrap(), candor_vault::Verification::Genuine { .. }),
        "the registered message is there"
    );
    let cases = [
        (
            "register a message without consent",
            request("POST", "/v1/messages", marketing, Some("marketing"), Some(&message(bob, "email", hash))),
            StatusCode::FORBIDDEN,
        ),
        (
            "register a message with a malformed body hash",
            request("POST", "/v1/messages", shop, Some("order_fulfilment"), Some(&message(alice, "email", "abc"))),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "register a message to an unknown customer",
            request("POST", "/v1/messages", shop, Some("order_fulfilment"), Some(&message(unknown, "email", hash))),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }

    // ---- POST /v1/subjects/{id}/privacy-center-links
    let links = |id: SubjectId| format!("/v1/subjects/{id}/privacy-center-links");
    let link = fx
        .run(Case {
            name: "make a privacy-center link",
            request: request("POST", &links(alice), shop, Some("privacy_requests"), None),
            status: StatusCode::CREATED,
            expect: done_elsewhere("privacy_center.link", Subject::Is(alice)),
        })
        .await;
    let secret = link["path"].as_str().unwrap().trim_start_matches("/privacy/sign-in/");
    assert!(v.sign_in_link_usable(secret).await.unwrap(), "the link is stored");
    let cases = [
        (
            "make a link under a purpose that is not customer_requests",
            request("POST", &links(alice), shop, Some("account"), None),
            StatusCode::FORBIDDEN,
        ),
        (
            "make a link for an unknown customer",
            request("POST", &links(unknown), shop, Some("privacy_requests"), None),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }

    // ---- POST /v1/imports
    let import = |token: &str, purpose: &str, content_type: &str, csv: &str| {
        Request::post("/v1/imports")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("Candor-Purpose", purpose)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(csv.to_string()))
            .unwrap()
    };
    let cases = [
        (
            "import by a role that may not create customers",
            import(marketing, "marketing", "text/csv", "email,full_name\nerin@example.com,Erin\n"),
            StatusCode::FORBIDDEN,
        ),
        (
            "import of a body that is no CSV or JSON Lines",
            import(shop, "account", "application/pdf", "email,full_name\nerin@example.com,Erin\n"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }
    let size = v.log_size().await.unwrap();
    let (status, report) =
        fx.call(import(shop, "account", "text/csv", "email,full_name\nerin@example.com,Erin\n")).await;
    assert_eq!(status, StatusCode::OK, "import: {report}");
    let erin = v.lookup(&account, "email", "erin@example.com").await.unwrap();
    assert_eq!(erin.len(), 1, "import: the imported customer is there: {report}");
    let entries = fx.entries_since(size).await;
    let erin_id = erin[0].to_string();
    assert!(
        entries.iter().any(|e| e.action == "subject.create" && e.subjects.contains(&erin_id)),
        "import: a `subject.create` entry naming the customer imported: {:?}",
        entries.iter().map(|e| String::from_utf8(e.to_bytes()).unwrap()).collect::<Vec<_>>()
    );
    assert!(entries.iter().all(|e| e.decision.as_deref() != Some("denied")), "import: no refusal logged");
    fx.customers.lock().unwrap().push(erin[0]);

    // ---- A grant of more customers than one entry names: every part of its entry commits
    // with it (and with its revocation).
    let many: Vec<SubjectId> = futures_util::future::join_all((0..candor_vault::audit::MAX_ENTRY_SUBJECTS).map(|i| {
        let fields = new(&format!("bulk{i}@example.com"), "Bulk Customer");
        let account = &account;
        async move { v.create_subject(account, &fields).await.unwrap() }
    }))
    .await;
    let mut everyone: Vec<String> = many.iter().map(ToString::to_string).collect();
    everyone.push(alice.to_string());
    let big = json_body(
        json!({"recipient": "parcel_carrier", "subjects": everyone, "fields": ["full_name"], "expires_at": until(7)}),
    );
    let made = fx
        .run(Case {
            name: "grant of more customers than one entry names",
            request: request("POST", "/v1/grants", shop, Some("order_fulfilment"), Some(&big)),
            status: StatusCode::CREATED,
            expect: Expect::Done { action: "grant.create", subject: Subject::Is(alice), entries: 2, in_snapshot: true },
        })
        .await;
    assert_eq!(made["included"], json!(candor_vault::audit::MAX_ENTRY_SUBJECTS + 1), "{made}");
    fx.run(Case {
        name: "revoke a grant of more customers than one entry names",
        request: request(
            "DELETE",
            &format!("/v1/grants/{}", made["id"].as_str().unwrap()),
            shop,
            Some("order_fulfilment"),
            None,
        ),
        status: StatusCode::OK,
        expect: Expect::Done { action: "grant.revoke", subject: Subject::Is(alice), entries: 2, in_snapshot: true },
    })
    .await;

    // ---- DELETE /v1/tokens/{id}
    let listed = v.tokens(&fx.admin_principal()).await.unwrap();
    let marketing_token = listed.iter().find(|t| t.role == "marketing_tool").unwrap().id.clone();
    let admin_token = listed.iter().find(|t| t.role == "admin").unwrap().id.clone();
    let cases = [
        (
            "revoke a token without being the admin",
            request("DELETE", &format!("/v1/tokens/{marketing_token}"), shop, None, None),
            StatusCode::FORBIDDEN,
        ),
        (
            "revoke an unknown token",
            request("DELETE", "/v1/tokens/no-such-token", admin, None, None),
            StatusCode::NOT_FOUND,
        ),
        (
            "revoke the last admin token",
            request("DELETE", &format!("/v1/tokens/{admin_token}"), admin, None, None),
            StatusCode::CONFLICT,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }
    fx.run(Case {
        name: "revoke a token",
        request: request("DELETE", &format!("/v1/tokens/{marketing_token}"), admin, None, None),
        status: StatusCode::OK,
        expect: done("token.revoke", Subject::None),
    })
    .await;

    // ---- DELETE /v1/subjects/{id}
    let cases = [
        (
            "erase without the power to erase",
            request("DELETE", &subject(carol), shop, Some("privacy_requests"), None),
            StatusCode::FORBIDDEN,
        ),
        (
            "erase under a purpose the role does not act under",
            request("DELETE", &subject(carol), privacy, Some("account"), None),
            StatusCode::FORBIDDEN,
        ),
        (
            "erase an unknown customer",
            request("DELETE", &subject(unknown), privacy, Some("privacy_requests"), None),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }
    fx.run(Case {
        name: "erase",
        request: request("DELETE", &subject(carol), privacy, Some("privacy_requests"), None),
        status: StatusCode::OK,
        expect: done("subject.erase", Subject::Is(carol)),
    })
    .await;
    // After the erasure, a change to the customer finds nobody (410 is for a restored old copy
    // of an erased customer) and logs no success.
    let cases = [
        (
            "correct an erased customer",
            request("PATCH", &subject(carol), shop, Some("account"), Some(&rename)),
            StatusCode::NOT_FOUND,
        ),
        (
            "record an event of an erased customer",
            request("POST", &events(carol), shop, Some("order_fulfilment"), Some(&purchase)),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }

    privacy_center_forms(&fx, alice, bob).await;
}

/// The privacy center's forms (a signed-in customer acting on themself), after the API's routes.
async fn privacy_center_forms(fx: &Fixture, alice: SubjectId, bob: SubjectId) {
    let v = &fx.vault;
    let links = acting_as(v, "shop_backend", "privacy_requests").await;
    let form = |path: &str, cookie: Option<&str>, fields: &[(&str, &str)]| {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| {
                format!("{k}={}", v.replace('%', "%25").replace(' ', "+").replace('@', "%40").replace('&', "%26"))
            })
            .collect();
        let mut r = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.join("&")))
            .unwrap();
        if let Some(c) = cookie {
            r.headers_mut().insert(header::COOKIE, format!("candor_session={c}").parse().unwrap());
        }
        r
    };
    let sign_in = async |id: SubjectId, name: &'static str| -> String {
        let link = v.create_sign_in_link(&links, id).await.unwrap();
        fx.run(Case {
            name,
            request: form("/privacy/sign-in", None, &[("link", link.secret.as_str())]),
            status: StatusCode::SEE_OTHER,
            expect: done_elsewhere("privacy_center.sign_in", Subject::Is(id)),
        })
        .await;
        let cookie = fx.last_headers.lock().unwrap()[header::SET_COOKIE].to_str().unwrap().to_string();
        let secret = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
        fx.run(Case {
            name: "sign in again with a used link",
            request: form("/privacy/sign-in", None, &[("link", link.secret.as_str())]),
            status: StatusCode::GONE,
            expect: Expect::Refused,
        })
        .await;
        secret
    };

    let session = sign_in(bob, "sign in to the privacy center").await;
    let csrf = candor_crypto::csrf_token(&session);
    fx.run(Case {
        name: "sign out with a forged form",
        request: form("/privacy/sign-out", Some(&session), &[("csrf", "forged")]),
        status: StatusCode::FORBIDDEN,
        expect: Expect::Refused,
    })
    .await;
    fx.run(Case {
        name: "sign out",
        request: form("/privacy/sign-out", Some(&session), &[("csrf", &csrf)]),
        status: StatusCode::OK,
        expect: done_elsewhere("privacy_center.sign_out", Subject::Is(bob)),
    })
    .await;

    let session = sign_in(alice, "sign in to the privacy center (to correct and delete)").await;
    let csrf = candor_crypto::csrf_token(&session);
    fx.run(Case {
        name: "correct one's own name",
        request: form("/privacy/me/correct", Some(&session), &[("csrf", &csrf), ("full_name", "Alice Herself")]),
        status: StatusCode::OK,
        expect: done("subject.correct", Subject::Is(alice)),
    })
    .await;
    let cases = [
        (
            "correct one's own data with a forged form",
            form("/privacy/me/correct", Some(&session), &[("csrf", "forged"), ("full_name", "Mallory")]),
            StatusCode::FORBIDDEN,
        ),
        (
            "correct one's own e-mail to an invalid one",
            form("/privacy/me/correct", Some(&session), &[("csrf", &csrf), ("email", "not an address")]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "correct without a session",
            form("/privacy/me/correct", None, &[("csrf", &csrf), ("full_name", "Mallory")]),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "delete oneself without confirming",
            form("/privacy/me/delete", Some(&session), &[("csrf", &csrf)]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (name, request, status) in cases {
        fx.run(Case { name, request, status, expect: Expect::Refused }).await;
    }
    fx.run(Case {
        name: "delete oneself",
        request: form("/privacy/me/delete", Some(&session), &[("csrf", &csrf), ("confirm", "yes")]),
        status: StatusCode::OK,
        expect: done("subject.erase", Subject::Is(alice)),
    })
    .await;
}

#[tokio::test]
async fn every_mutating_route_commits_its_change_with_its_entry_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at("2026-12-03T10:00:00Z".parse().unwrap()));
    let vault = example_vault(dir.path(), clock.clone()).await;
    every_mutating_route_commits_its_change_with_its_entry(vault, clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_route_commits_its_change_with_its_entry_on_postgresql() {
    let clock = Arc::new(ManualClock::at("2026-12-03T10:00:00Z".parse().unwrap()));
    let test = "every_mutating_route_commits_its_change_with_its_entry_on_postgresql";
    let Some((vault, db)) = example_vault_on_postgres(test, clock.clone()).await else { return };
    every_mutating_route_commits_its_change_with_its_entry(vault, clock).await;
    db.drop_database().await;
}
