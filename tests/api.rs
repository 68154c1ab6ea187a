//! The HTTP API, driven over loopback against the real binary on a real SQLite file.

mod common;

on_both_backends!(
    an_app_stores_finds_reads_corrects_and_records_events_for_a_customer,
    every_request_needs_a_valid_unexpired_token,
    the_purpose_must_be_declared_known_and_allowed_for_the_role,
    bad_writes_name_the_field_never_echo_the_value_and_leave_nothing_behind,
    malformed_requests_get_clear_errors_and_the_server_keeps_serving,
    events_are_limited_to_declared_types_the_purpose_covers,
    the_catalog_and_the_openapi_document_are_served,
    tokens_are_listed_without_secrets_and_revocation_takes_effect_on_the_next_request,
    the_last_admin_token_in_force_cannot_be_revoked,
    identifiers_have_one_spelling_hide_nothing_and_a_unique_one_belongs_to_one_customer,
);

use std::time::Duration;

use common::Install;
use serde_json::{Value, json};

/// Sends only the headers of a POST declaring `length` body bytes and returns the status.
fn raw_post_status(client: &common::Client, path: &str, length: usize) -> u16 {
    use std::io::{Read, Write};
    let addr = client.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nCandor-Purpose: account\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        client.token.as_deref().unwrap()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn ada() -> Value {
    json!({"email": "Ada@Example.com", "full_name": "Ada Lovelace", "date_of_birth": "1990-12-10", "loyalty_points": 120})
}

async fn an_app_stores_finds_reads_corrects_and_records_events_for_a_customer(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let support = server.client(&install.token("support_agent"), Some("customer_support"));

    // Store.
    let r = backend.post("/v1/subjects", json!({ "fields": ada() })).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.headers["location"], format!("/v1/subjects/{id}").as_str());

    // Find again by e-mail, whatever the case and surrounding spaces.
    for q in ["ada@example.com", "ADA@EXAMPLE.COM", "%20ada@example.com%20"] {
        let r = backend.get(&format!("/v1/subjects?email={q}")).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["ids"], json!([id]), "query {q}");
    }
    assert_eq!(backend.get("/v1/subjects?email=bob@example.com").await.body["ids"], json!([]));

    // Read back exactly what the purpose may see.
    let r = backend.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["purpose"], "account");
    assert_eq!(
        r.body["fields"],
        json!({"email": "Ada@Example.com", "full_name": "Ada Lovelace", "date_of_birth": "1990-12-10", "loyalty_points": 120})
    );
    assert_eq!(r.body["withheld"], json!(["phone", "shipping_address"]));
    assert_eq!(r.headers["cache-control"], "no-store");

    // Correct under another purpose of the same role: add phone and address, change e-mail.
    let fulfilment = backend.with_purpose("order_fulfilment");
    let r = fulfilment
        .patch(
            &format!("/v1/subjects/{id}"),
            json!({"fields": {"email": "ada@lovelace.example", "phone": "+44 20 7946 0101",
                              "shipping_address": {"street": "12 Demo St", "city": "London", "country": "GB"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["updated"], json!(["email", "phone", "shipping_address"]));
    assert!(backend.get("/v1/subjects?email=ada@example.com").await.body["ids"].as_array().unwrap().is_empty());
    assert_eq!(backend.get("/v1/subjects?email=ada@lovelace.example").await.body["ids"], json!([id]));
    assert_eq!(
        support.get("/v1/subjects?phone=0044%2020%207946%200101").await.body["ids"],
        json!([id]),
        "phone lookups are normalised"
    );

    // Support sees its fields only: phone and e-mail masked (the catalog says so), address and
    // date of birth not at all.
    let r = support.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["fields"]["phone"], "***01");
    assert_eq!(r.body["fields"]["email"], "a***@lovelace.example");
    assert_eq!(r.body["masked"], json!(["email", "phone"]));
    assert_eq!(r.body["break_glass"], false);
    assert!(r.body["fields"].get("shipping_address").is_none());
    assert!(r.body["fields"].get("date_of_birth").is_none());
    assert!(r.body["withheld"].as_array().unwrap().contains(&json!("shipping_address")));

    // Remove an optional field with null.
    let r = backend.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"date_of_birth": null}})).await;
    assert_eq!(r.body["removed"], json!(["date_of_birth"]));
    assert!(backend.get(&format!("/v1/subjects/{id}")).await.body["fields"].get("date_of_birth").is_none());

    // Behavioural events: recorded, listed in order, paged.
    for (item, when) in
        [("Notebook", "2026-11-01T10:00:00Z"), ("Pen", "2026-11-02T10:00:00Z"), ("Ink", "2026-11-03T10:00:00Z")]
    {
        let r = fulfilment
            .post(
                &format!("/v1/subjects/{id}/events"),
                json!({"type": "purchase", "data": {"item": item}, "occurred_at": when}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let r = fulfilment.get(&format!("/v1/subjects/{id}/events?limit=2")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let items: Vec<_> = r.body["events"].as_array().unwrap().iter().map(|e| e["data"]["item"].clone()).collect();
    assert_eq!(items, [json!("Notebook"), json!("Pen")]);
    assert_eq!(r.body["events"][0]["occurred_at"], "2026-11-01T10:00:00Z");
    assert_eq!(r.body["withheld_types"], json!(["page_view"]));
    let next = r.body["next"].as_str().expect("a next cursor").to_string();
    let r = fulfilment.get(&format!("/v1/subjects/{id}/events?after={next}&limit=2")).await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["events"][0]["data"]["item"], "Ink");
    assert!(r.body.get("next").is_none());
}

async fn every_request_needs_a_valid_unexpired_token(install: Install) {
    let server = install.serve();
    let anon = server.anonymous().with_purpose("account");
    let r = anon.get("/v1/subjects?email=a@b.io").await;
    assert_eq!((r.status, r.code()), (401, "unauthenticated"));
    assert_eq!(r.headers["www-authenticate"], "Bearer");

    let r = anon
        .send(anon.request(reqwest::Method::GET, "/v1/catalog").header("authorization", "Basic Zm9vOmJhcg=="))
        .await;
    assert_eq!((r.status, r.code()), (401, "unauthenticated"));

    let forged = server.client("cnd_not-a-real-token", Some("account"));
    assert_eq!(forged.get("/v1/catalog").await.code(), "invalid_token");

    let short = server.client(&install.token_with(&["--role", "shop_backend", "--expires", "1h"]), Some("account"));
    assert_eq!(short.get("/v1/catalog").await.status, 200);
    install.advance_clock(Duration::from_secs(3601)); // time moves; nothing waits for it
    let r = short.get("/v1/catalog").await;
    assert_eq!((r.status, r.code()), (401, "token_expired"));

    // Health needs no token.
    assert_eq!(server.anonymous().get("/healthz").await.body, json!({"status": "ok"}));
}

async fn the_purpose_must_be_declared_known_and_allowed_for_the_role(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), None);
    let id = backend.with_purpose("account").create(ada()).await;
    let path = format!("/v1/subjects/{id}");

    let r = backend.get(&path).await;
    assert_eq!((r.status, r.code(), r.field()), (400, "purpose_required", "Candor-Purpose"));
    let r = backend.with_purpose("resale").get(&path).await;
    assert_eq!((r.status, r.code()), (400, "unknown_purpose"));
    let r = backend.with_purpose("customer_support").get(&path).await;
    assert_eq!((r.status, r.code()), (403, "purpose_not_allowed"));

    // Consent purposes are off until the customer grants them.
    let marketing = server.client(&install.token("marketing_tool"), Some("marketing"));
    let r = marketing.get(&path).await;
    assert_eq!((r.status, r.code()), (403, "consent_required"));

    // The admin token manages the installation and sees no personal data.
    let admin = server.client(&install.admin_token, Some("account"));
    assert_eq!(admin.get(&path).await.code(), "purpose_not_allowed");
    assert_eq!(admin.get("/v1/catalog").await.status, 200);
}

async fn bad_writes_name_the_field_never_echo_the_value_and_leave_nothing_behind(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));

    let cases = [
        (
            json!({"email": "leak-check@example.com", "full_name": "A", "shoe_size": 42}),
            422,
            "undeclared_field",
            "shoe_size",
        ),
        (
            json!({"email": "leak-check@example.com", "full_name": "A", "phone": "+442079460000"}),
            403,
            "field_not_allowed",
            "phone",
        ),
        (
            json!({"email": "leak-check@example.com", "full_name": "A", "date_of_birth": "leak-check-date"}),
            422,
            "invalid_value",
            "date_of_birth",
        ),
        (json!({"email": "leak-check@example.com", "full_name": 7}), 422, "invalid_value", "full_name"),
        (json!({"email": "leak-check@example.com"}), 422, "missing_field", "full_name"),
        (json!({"email": "leak-check-not-an-email", "full_name": "A"}), 422, "invalid_value", "email"),
        (json!({}), 400, "no_fields", "fields"),
    ];
    for (fields, status, code, field) in cases {
        let r = backend.post("/v1/subjects", json!({ "fields": fields })).await;
        assert_eq!((r.status, r.code(), r.field()), (status, code, field), "{fields}");
        assert!(!r.body.to_string().contains("leak-check"), "a value was echoed: {}", r.body);
    }
    // None of the refused writes left anything behind.
    assert_eq!(backend.get("/v1/subjects?email=leak-check@example.com").await.body["ids"], json!([]));

    let id = backend.create(ada()).await;
    let path = format!("/v1/subjects/{id}");
    // A correction with one bad field changes nothing, not even the good fields.
    let r = backend.patch(&path, json!({"fields": {"full_name": "Ada King", "date_of_birth": "not a date"}})).await;
    assert_eq!((r.status, r.code(), r.field()), (422, "invalid_value", "date_of_birth"));
    assert_eq!(backend.get(&path).await.body["fields"]["full_name"], "Ada Lovelace");
    let r = backend.patch(&path, json!({"fields": {"email": null}})).await;
    assert_eq!((r.status, r.code(), r.field()), (422, "required_field", "email"));

    // Unknown subjects: 404, and nothing gets created.
    let ghost = "7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70";
    let r = backend.patch(&format!("/v1/subjects/{ghost}"), json!({"fields": {"full_name": "X"}})).await;
    assert_eq!((r.status, r.code()), (404, "subject_not_found"));
    assert_eq!(backend.get(&format!("/v1/subjects/{ghost}")).await.status, 404);
}

async fn malformed_requests_get_clear_errors_and_the_server_keeps_serving(install: Install) {
    let mut server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(ada()).await;

    let r = backend.post_raw("/v1/subjects", "application/json", b"{\"fields\": {\"email\": ".to_vec()).await;
    assert_eq!((r.status, r.code()), (400, "malformed_json"));
    let r = backend
        .post_raw("/v1/subjects", "application/json", b"{\"fields\": {\"full_name\": \"\xff\xfe\"}}".to_vec())
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_utf8"));
    let r = backend
        .post_raw("/v1/subjects", "application/json", b"{\"fields\": \"secret-shape@example.com\"}".to_vec())
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_body"));
    assert!(!r.body.to_string().contains("secret-shape"));
    let r = backend.post_raw("/v1/subjects", "application/json", b"[1, 2]".to_vec()).await;
    assert_eq!((r.status, r.code()), (400, "invalid_body"));
    let r = backend.post_raw("/v1/subjects", "text/plain", b"email=x".to_vec()).await;
    assert_eq!((r.status, r.code()), (415, "unsupported_media_type"));
    // A huge body is refused from its declared length, before any of it is read.
    assert_eq!(raw_post_status(&backend, "/v1/subjects", 2 * 1024 * 1024), 413);
    let deep = format!("{{\"fields\": {{\"shop_preferences\": {}{}}}}}", "[".repeat(5000), "]".repeat(5000));
    let r = backend.post_raw("/v1/subjects", "application/json", deep.into_bytes()).await;
    assert_eq!(r.status, 400, "deeply nested JSON is refused: {:?}", r.body);

    let r = backend.get("/v1/subjects/not-a-uuid").await;
    assert_eq!((r.status, r.code(), r.field()), (400, "invalid_id", "id"));
    assert_eq!(backend.get("/v1/nothing-here").await.code(), "not_found");
    let r = backend.send(backend.request(reqwest::Method::PUT, &format!("/v1/subjects/{id}"))).await;
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));

    assert_eq!(backend.get("/v1/subjects").await.code(), "invalid_query");
    assert_eq!(backend.get("/v1/subjects?email=a@b.io&phone=1").await.code(), "invalid_query");
    assert_eq!(backend.get("/v1/subjects?email=").await.code(), "invalid_query");
    let r = backend.get("/v1/subjects?full_name=Ada").await;
    assert_eq!((r.status, r.code(), r.field()), (422, "not_a_lookup_field", "full_name"));
    let r = backend.get("/v1/subjects?shoe_size=42").await;
    assert_eq!((r.status, r.code()), (422, "undeclared_field"));
    let r =
        server.client(&install.token("support_agent"), Some("customer_support")).get("/v1/subjects?email=a@b.io").await;
    assert_eq!(r.status, 200, "support may look up by e-mail: {:?}", r.body);
    let r = server
        .client(&install.token("fraud_service"), Some("fraud_prevention"))
        .get("/v1/subjects?phone=%2B442079460000")
        .await;
    assert_eq!((r.status, r.code()), (403, "field_not_allowed"));

    let fulfilment = backend.with_purpose("order_fulfilment");
    for q in ["limit=0", "limit=5000", "limit=x", "after=-1", "sort=desc"] {
        let r = fulfilment.get(&format!("/v1/subjects/{id}/events?{q}")).await;
        assert_eq!((r.status, r.code()), (400, "invalid_query"), "{q}");
    }

    // Still serving, and the subject is intact.
    assert!(server.is_running());
    assert_eq!(server.anonymous().get("/healthz").await.status, 200);
    assert_eq!(backend.get(&format!("/v1/subjects/{id}")).await.body["fields"]["full_name"], "Ada Lovelace");
}

async fn events_are_limited_to_declared_types_the_purpose_covers(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("order_fulfilment"));
    let id = backend.with_purpose("account").create(ada()).await;
    let path = format!("/v1/subjects/{id}/events");

    let r = backend.post(&path, json!({"type": "page_view", "data": {"path": "/"}})).await;
    assert_eq!((r.status, r.code(), r.field()), (403, "event_type_not_allowed", "type"));
    let r = backend.post(&path, json!({"type": "mouse_moves", "data": {}})).await;
    assert_eq!((r.status, r.code()), (422, "undeclared_event_type"));
    let r = backend.post(&path, json!({"type": "purchase", "data": "secret-payload"})).await;
    assert_eq!((r.status, r.code(), r.field()), (422, "invalid_value", "data"));
    let r = backend.post(&path, json!({"type": "purchase", "data": {}, "occurred_at": "yesterday"})).await;
    assert_eq!((r.status, r.code(), r.field()), (422, "invalid_value", "occurred_at"));
    let r = backend.post(&path, json!({"type": "purchase", "data": {}, "extra": 1})).await;
    assert_eq!((r.status, r.code()), (400, "invalid_body"));
    let r = backend
        .post("/v1/subjects/7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70/events", json!({"type": "purchase", "data": {}}))
        .await;
    assert_eq!((r.status, r.code()), (404, "subject_not_found"));
    // Nothing was stored by the refused requests.
    assert_eq!(backend.get(&path).await.body["events"], json!([]));
}

async fn the_catalog_and_the_openapi_document_are_served(install: Install) {
    let server = install.serve();
    let admin = server.client(&install.admin_token, None);
    let r = admin.get("/v1/catalog").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["organisation"]["name"], "Example Shop Ltd");
    let email = r.body["fields"].as_array().unwrap().iter().find(|f| f["name"] == "email").unwrap().clone();
    assert_eq!(email["lookup"], true);
    assert_eq!(email["retention"], json!({"kind": "while_account_exists", "grace": "P30D"}));
    assert_eq!(server.anonymous().get("/v1/catalog").await.status, 401);

    let doc = server.anonymous().get("/openapi.json").await.body;
    for path in ["/v1/subjects", "/v1/subjects/{id}", "/v1/subjects/{id}/events", "/v1/catalog", "/healthz"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    assert!(doc["paths"]["/v1/subjects/{id}"].get("patch").is_some());
    assert!(doc["components"]["securitySchemes"].get("bearer").is_some());
}

async fn tokens_are_listed_without_secrets_and_revocation_takes_effect_on_the_next_request(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let support_token = install.token("support_agent");
    let support = server.client(&support_token, Some("customer_support"));
    let id = backend.create(ada()).await;
    assert_eq!(support.get(&format!("/v1/subjects/{id}")).await.status, 200);

    // The CLI lists ids, roles and lifetimes, never a token.
    let config = install.config();
    let (ok, out, err) = common::candor(&["token", "list", "--config", config.to_str().unwrap()], install.dir.path());
    assert!(ok, "{out}{err}");
    assert!(!out.contains(&support_token) && !out.contains("cnd_"), "{out}");
    let support_id =
        out.lines().find(|l| l.contains("support_agent")).and_then(|l| l.split_whitespace().next()).unwrap();
    let (ok, out, err) =
        common::candor(&["token", "revoke", support_id, "--config", config.to_str().unwrap()], install.dir.path());
    assert!(ok && out.contains("is revoked"), "{out}{err}");
    let r = support.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!((r.status, r.code()), (401, "token_revoked"));

    // Over the API: admin only.
    let r = backend.get("/v1/tokens").await;
    assert_eq!((r.status, r.code()), (403, "admin_only"));
    let admin = server.client(&install.admin_token, None);
    let r = admin.get("/v1/tokens").await;
    assert_eq!(r.status, 200);
    assert!(!r.body.to_string().contains("cnd_"));
    let listed = r.body["tokens"].as_array().unwrap();
    let backend_id = listed.iter().find(|t| t["role"] == "shop_backend").unwrap()["id"].as_str().unwrap().to_string();
    assert!(listed.iter().any(|t| t["role"] == "support_agent" && t["revoked_at"].is_string()));
    let r = admin.send(admin.request(reqwest::Method::DELETE, &format!("/v1/tokens/{backend_id}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(backend.get(&format!("/v1/subjects/{id}")).await.code(), "token_revoked");
    let r = admin.send(admin.request(reqwest::Method::DELETE, "/v1/tokens/nope")).await;
    assert_eq!((r.status, r.code()), (404, "token_not_found"));
}

#[tokio::test]
async fn an_address_country_must_be_an_iso_code_and_is_stored_in_capitals() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    let fulfilment = backend.with_purpose("order_fulfilment");
    let path = format!("/v1/subjects/{id}");
    for country in ["Germany", "ZZ", "UK"] {
        let r = fulfilment
            .patch(
                &path,
                json!({"fields": {"phone": "+44 20 7946 0101",
                                  "shipping_address": {"street": "Unter den Linden 1", "city": "Berlin", "country": country}}}),
            )
            .await;
        assert_eq!((r.status, r.code(), r.field()), (422, "invalid_value", "shipping_address"), "{:?}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("country must be a two-letter ISO 3166-1 code such as DE"), "{message}");
        assert!(!message.contains(country) && !message.contains("Berlin"), "never echoes the value: {message}");
    }
    // Nothing was stored, not even the valid phone of the same request.
    let r = fulfilment.get(&path).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["fields"].get("shipping_address").is_none() && r.body["fields"].get("phone").is_none());

    let address = json!({"street": "Unter den Linden 1", "city": "Berlin", "country": " de "});
    let r = fulfilment.patch(&path, json!({"fields": {"shipping_address": address}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(fulfilment.get(&path).await.body["fields"]["shipping_address"]["country"], "DE");
}

/// Issue 19, finding 8: the last admin token in force cannot revoke itself (or be revoked from
/// the command line), which would lock the API out until someone runs the CLI on the server.
async fn the_last_admin_token_in_force_cannot_be_revoked(install: Install) {
    let server = install.serve();
    let admin = server.client(&install.admin_token, None);
    let delete = |client: &common::Client, id: &str| {
        let client = client.clone();
        let path = format!("/v1/tokens/{id}");
        async move { client.send(client.request(reqwest::Method::DELETE, &path)).await }
    };
    // The admin tokens in force, as listed.
    let live_admins = |body: &Value| -> Vec<String> {
        let tokens = body["tokens"].as_array().unwrap();
        let live = |t: &&Value| t["role"] == "admin" && t["revoked_at"].is_null() && t["expires_at"].is_null();
        tokens.iter().filter(live).map(|t| t["id"].as_str().unwrap().to_string()).collect()
    };
    let first = live_admins(&admin.get("/v1/tokens").await.body).remove(0);
    let r = delete(&admin, &first).await;
    assert_eq!((r.status, r.code(), r.field()), (409, "last_admin_token", "id"), "{:?}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("candor token create --role admin"), "{message}");
    let config = install.config();
    let config = config.to_str().unwrap();
    let (ok, out, err) = common::candor(&["token", "revoke", &first, "--config", config], install.dir.path());
    assert!(
        !ok && err.contains("Create another admin token first") && err.contains("candor token create --role admin"),
        "{out}{err}"
    );
    assert_eq!(admin.get("/v1/tokens").await.status, 200, "the admin token still works");

    // An admin token that has expired does not count.
    install.token_with(&["--role", "admin", "--expires", "1h"]);
    install.advance_clock(Duration::from_secs(2 * 3600));
    assert_eq!(delete(&admin, &first).await.code(), "last_admin_token");

    // With another admin token in force, either may go, but not both.
    let second_token = install.token("admin");
    let second = server.client(&second_token, None);
    let r = delete(&second, &first).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(admin.get("/v1/tokens").await.code(), "token_revoked");
    let second_id = live_admins(&second.get("/v1/tokens").await.body).remove(0);
    let r = delete(&second, &second_id).await;
    assert_eq!((r.status, r.code()), (409, "last_admin_token"), "{:?}", r.body);

    // Each refusal is in the tamper-evident log.
    let r = second.get("/v1/log/entries?start=0&end=1000").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let refused = r.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["action"] == "token.revoke" && e["entry"]["decision"] == "denied")
        .filter(|e| e["entry"]["detail"] == "last_admin_token")
        .count();
    assert_eq!(refused, 4);
}

async fn identifiers_have_one_spelling_hide_nothing_and_a_unique_one_belongs_to_one_customer(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    // Stored composed; found by its decomposed, upper-case spelling.
    let jose = backend.create(json!({"email": "jos\u{e9}@example.com", "full_name": "Jos\u{e9}"})).await;
    let r = backend.get("/v1/subjects?email=JOSE%CC%81@example.com").await;
    assert_eq!(r.body["ids"], json!([jose]), "{:?}", r.body);
    // Invisible characters are refused in identifiers, without echoing the value.
    let r =
        backend.post("/v1/subjects", json!({"fields": {"email": "ada\u{200b}@example.com", "full_name": "Ada"}})).await;
    assert_eq!((r.status, r.code(), r.field()), (422, "invalid_value", "email"), "{:?}", r.body);
    assert!(!r.body.to_string().contains("ada"), "{:?}", r.body);
    // E-mail is unique in the example catalog: a second customer cannot take it, in any spelling,
    // neither when created nor by a correction.
    let r = backend
        .post("/v1/subjects", json!({"fields": {"email": "JOSE\u{301}@example.com", "full_name": "Other"}}))
        .await;
    assert_eq!((r.status, r.code(), r.field()), (409, "duplicate_value", "email"), "{:?}", r.body);
    let other = backend.create(json!({"email": "other@example.com", "full_name": "Other"})).await;
    let r =
        backend.patch(&format!("/v1/subjects/{other}"), json!({"fields": {"email": "jos\u{e9}@example.com"}})).await;
    assert_eq!((r.status, r.code(), r.field()), (409, "duplicate_value", "email"), "{:?}", r.body);
    // Correcting one's own address to the same value (another spelling) is fine.
    let r = backend.patch(&format!("/v1/subjects/{jose}"), json!({"fields": {"email": "JOS\u{c9}@example.com"}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = backend.get("/v1/subjects?email=jos%C3%A9@example.com").await;
    assert_eq!(r.body["ids"], json!([jose]), "still one customer: {:?}", r.body);
}
