//! Sharing with recipients over HTTP: grants checked against the catalog, the policy and
//! consent; recipients reading with the grant's credential until revocation, expiry or their
//! last read; consent withdrawal, restriction and erasure taking customers out at once; and the
//! customer seeing every share.

mod common;

use std::time::Duration;

use common::visitor::Visitor;
use common::{Client, Install, Server};
use serde_json::{Value, json};

fn in_days(days: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days)).to_string()
}

/// The example catalog plus a newsletter service that receives e-mail addresses for marketing
/// (a consent purpose), which the marketing tool may share when `share`.
fn install_with_newsletter_recipient(share: bool) -> Install {
    let install = Install::new();
    let catalog = install.config().with_file_name("catalog.toml");
    let text = std::fs::read_to_string(&catalog).unwrap().replace(
        "description = \"The newsletter and campaign tool.\"\npurposes = [\"marketing\"]\n",
        &format!("description = \"The newsletter and campaign tool.\"\npurposes = [\"marketing\"]\nshare = {share}\n"),
    ) + "\n[[recipients]]\nid = \"newsletter_service\"\nname = \"MailOut BV\"\ncountry = \"NL\"\n\
         purposes = [\"marketing\"]\nfields = [\"email\"]\nagreement = \"DPA-2026-020\"\n";
    std::fs::write(&catalog, text).unwrap();
    install
}

async fn customers(backend: &Client, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id =
            backend.create(json!({"email": format!("c{i}@example.com"), "full_name": format!("Customer {i}")})).await;
        let r = backend
            .with_purpose("order_fulfilment")
            .patch(
                &format!("/v1/subjects/{id}"),
                json!({"fields": {"shipping_address": {"city": "Leeds", "country": "GB"}}}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        ids.push(id);
    }
    ids
}

async fn read(server: &Server, grant: &Value, credential: &str) -> common::Resp {
    server.client(credential, None).get(&format!("/v1/grants/{}/records", grant["id"].as_str().unwrap())).await
}

#[tokio::test]
async fn a_grant_gives_one_recipient_named_fields_until_revoked_expired_or_used_up() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ids = customers(&backend, 2).await;
    let shop = backend.with_purpose("order_fulfilment");
    let nobody = "7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70";
    let body = json!({
        "recipient": "parcel_carrier", "subjects": [ids[0], ids[1], nobody],
        "fields": ["full_name", "shipping_address"], "expires_at": in_days(1), "max_reads": 3,
    });
    let r = shop.post("/v1/grants", body.clone()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let grant = r.body.clone();
    assert_eq!(grant["included"], 2);
    assert_eq!(grant["left_out"]["not_found"], 1);
    let credential = grant["credential"].as_str().unwrap().to_string();
    assert!(credential.starts_with("cndg_"));

    // The recipient reads exactly the granted fields of the granted customers.
    let page = read(&server, &grant, &credential).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    let records = page.body["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    for rec in records {
        let keys: Vec<&String> = rec["fields"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["full_name", "shipping_address"], "{rec}");
    }
    // Paging by cursor.
    let first = server
        .client(&credential, None)
        .get(&format!("/v1/grants/{}/records?limit=1", grant["id"].as_str().unwrap()))
        .await;
    let next = first.body["next"].as_str().unwrap().to_string();
    let second = server
        .client(&credential, None)
        .get(&format!("/v1/grants/{}/records?limit=1&after={next}", grant["id"].as_str().unwrap()))
        .await;
    assert_eq!(second.body["records"].as_array().unwrap().len(), 1);
    assert_ne!(second.body["records"][0]["subject_id"], first.body["records"][0]["subject_id"]);
    // Three reads were allowed; the fourth is refused.
    let r = read(&server, &grant, &credential).await;
    assert_eq!((r.status, r.code()), (403, "grant_exhausted"));

    // Another grant's credential, or a made-up one, opens nothing.
    let other = shop.post("/v1/grants", body.clone()).await.body;
    let r = read(&server, &grant, other["credential"].as_str().unwrap()).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"));
    assert_eq!(read(&server, &grant, "cndg_made_up").await.status, 401);
    assert_eq!(
        server.anonymous().get(&format!("/v1/grants/{}/records", other["id"].as_str().unwrap())).await.status,
        401
    );

    // Revocation takes effect at once.
    let r = shop
        .send(shop.request(reqwest::Method::DELETE, &format!("/v1/grants/{}", other["id"].as_str().unwrap())))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["revoked_at"].is_string());
    let r = read(&server, &other, other["credential"].as_str().unwrap()).await;
    assert_eq!((r.status, r.code()), (401, "grant_revoked"));

    // So does expiry.
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let short = shop
        .post(
            "/v1/grants",
            json!({"recipient": "parcel_carrier", "subjects": [ids[0]], "fields": ["full_name"], "expires_at": soon}),
        )
        .await
        .body;
    assert_eq!(read(&server, &short, short["credential"].as_str().unwrap()).await.status, 200);
    install.advance_clock(Duration::from_secs(2 * 3600)); // time moves; nothing waits for it
    let r = read(&server, &short, short["credential"].as_str().unwrap()).await;
    assert_eq!((r.status, r.code()), (401, "grant_expired"));

    // Erasure takes a customer out of every grant.
    let third = shop.post("/v1/grants", body.clone()).await.body;
    let r = backend.send(backend.request(reqwest::Method::DELETE, &format!("/v1/subjects/{}", ids[0]))).await;
    assert_eq!(r.status, 200);
    let page = read(&server, &third, third["credential"].as_str().unwrap()).await;
    let left: Vec<&Value> = page.body["records"].as_array().unwrap().iter().map(|r| &r["subject_id"]).collect();
    assert_eq!(left, [&json!(ids[1])]);
    assert!(!server.log().contains("Customer 1"), "no value in the server log");
}

#[tokio::test]
async fn grants_are_refused_outside_what_the_catalog_declares() {
    let install = Install::new();
    let catalog = install.config().with_file_name("catalog.toml");
    let text = std::fs::read_to_string(&catalog)
        .unwrap()
        .replace("agreement = \"DPA-2025-102\"", "agreement = \"DPA-2025-102\"\nagreement_expires = \"2024-12-31\"");
    std::fs::write(&catalog, text).unwrap();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ids = customers(&backend, 1).await;
    let shop = backend.with_purpose("order_fulfilment");
    let grant = |recipient: &str, fields: Value, expires: Option<String>| {
        let mut b = json!({"recipient": recipient, "subjects": [ids[0]], "fields": fields});
        if let Some(e) = expires {
            b["expires_at"] = json!(e);
        }
        b
    };
    let cases = [
        (grant("parcel_carrier", json!(["email"]), Some(in_days(1))), 403, "field_not_shared", "fields"),
        (grant("parcel_carrier", json!(["shoe_size"]), Some(in_days(1))), 422, "undeclared_field", "shoe_size"),
        (grant("bank", json!(["full_name"]), Some(in_days(1))), 422, "unknown_recipient", "recipient"),
        (grant("payment_provider", json!(["full_name"]), Some(in_days(1))), 403, "agreement_expired", ""),
        (grant("parcel_carrier", json!(["full_name"]), None), 422, "invalid_value", "expires_at"),
        (grant("parcel_carrier", json!(["full_name"]), Some(in_days(400))), 422, "invalid_value", "expires_at"),
        (grant("parcel_carrier", json!([]), Some(in_days(1))), 422, "invalid_value", "fields"),
    ];
    for (body, status, code, field) in cases {
        let r = shop.post("/v1/grants", body.clone()).await;
        assert_eq!((r.status, r.code(), r.field()), (status, code, field), "{body} -> {:?}", r.body);
    }
    // Declared for other purposes only.
    let r = backend.post("/v1/grants", grant("parcel_carrier", json!(["full_name"]), Some(in_days(1)))).await;
    assert_eq!((r.status, r.code()), (403, "recipient_not_declared"));
    let r = server.client(&install.token("shop_backend"), None).get("/v1/recipients").await;
    let payment =
        r.body["recipients"].as_array().unwrap().iter().find(|x| x["id"] == "payment_provider").unwrap().clone();
    assert_eq!((payment["agreement_in_force"].as_bool(), payment["role"].as_str()), (Some(false), Some("processor")));
}

#[tokio::test]
async fn a_role_without_share_in_the_catalog_cannot_make_grants() {
    let install = install_with_newsletter_recipient(false);
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ids = customers(&backend, 1).await;
    let marketing = server.client(&install.token("marketing_tool"), Some("marketing"));
    let r = marketing
        .post(
            "/v1/grants",
            json!({"recipient": "newsletter_service", "subjects": ids, "fields": ["email"], "expires_at": in_days(7)}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "purpose_not_allowed"), "{:?}", r.body);
}

#[tokio::test]
async fn consent_decides_who_is_shared_and_a_withdrawal_takes_the_customer_out_at_once() {
    let install = install_with_newsletter_recipient(true);
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ids = customers(&backend, 2).await;
    let r = backend
        .post(
            &format!("/v1/subjects/{}/consents", ids[0]),
            json!({"changes": [{"purpose": "marketing", "channel": "email", "action": "grant"}]}),
        )
        .await;
    assert_eq!(r.status, 201);
    let marketing = server.client(&install.token("marketing_tool"), Some("marketing"));
    let r = marketing
        .post(
            "/v1/grants",
            json!({"recipient": "newsletter_service", "subjects": ids, "fields": ["email"], "expires_at": in_days(7)}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!((r.body["included"].as_u64(), r.body["left_out"]["without_consent"].as_u64()), (Some(1), Some(1)));
    let grant = r.body.clone();
    let credential = grant["credential"].as_str().unwrap();
    let page = read(&server, &grant, credential).await;
    assert_eq!(page.body["records"][0]["fields"]["email"], "c0@example.com");

    let r = backend
        .post(
            &format!("/v1/subjects/{}/consents", ids[0]),
            json!({"changes": [{"purpose": "marketing", "channel": "email", "action": "withdraw"}]}),
        )
        .await;
    assert_eq!(r.status, 201);
    let page = read(&server, &grant, credential).await;
    assert_eq!(page.status, 200);
    assert!(page.body["records"].as_array().unwrap().is_empty(), "{:?}", page.body);

    // A grant for the whole audience: everyone who consented on the channel, nobody else.
    let r = backend
        .post(
            &format!("/v1/subjects/{}/consents", ids[1]),
            json!({"changes": [{"purpose": "marketing", "channel": "email", "action": "grant"}]}),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = marketing
        .post("/v1/grants", json!({"recipient": "newsletter_service", "audience": {"channel": "email"}, "fields": ["email"], "expires_at": in_days(7)}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let page = read(&server, &r.body, r.body["credential"].as_str().unwrap()).await;
    let got: Vec<&Value> = page.body["records"].as_array().unwrap().iter().map(|r| &r["subject_id"]).collect();
    assert_eq!(got, [&json!(ids[1])]);
    let r = marketing
        .post(
            "/v1/grants",
            json!({"recipient": "newsletter_service", "audience": {}, "fields": ["email"], "expires_at": in_days(7)}),
        )
        .await;
    assert_eq!((r.status, r.code(), r.field()), (400, "invalid_audience_query", "channel"), "{:?}", r.body);
}

#[tokio::test]
async fn customers_see_every_share_and_each_read_by_the_recipient() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ids = customers(&backend, 1).await;
    let r = backend
        .with_purpose("order_fulfilment")
        .post("/v1/grants", json!({"recipient": "parcel_carrier", "subjects": ids, "fields": ["full_name", "shipping_address"], "expires_at": in_days(2)}))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(read(&server, &r.body, r.body["credential"].as_str().unwrap()).await.status, 200);

    let report = backend.with_purpose("privacy_requests").get(&format!("/v1/subjects/{}/report", ids[0])).await;
    let shares = &report.body["shares"]["grants"];
    assert_eq!(shares[0]["recipient_name"], "ParcelCo GmbH", "{}", report.body["shares"]);
    assert_eq!(shares[0]["fields"], json!(["full_name", "shipping_address"]));
    let log = report.body["access_history"]["entries"].to_string();
    assert!(log.contains("recipient:parcel_carrier") && log.contains("grant.read"), "{log}");

    let link = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{}/privacy-center-links", ids[0]), json!({}))
        .await;
    let mut visitor = Visitor::new(&server);
    visitor.sign_in(link.body["path"].as_str().unwrap()).await;
    let page = visitor.get("/privacy/me/access").await;
    assert!(
        page.html.contains("Shared with other companies") && page.html.contains("ParcelCo GmbH (DE)"),
        "{}",
        page.html
    );
    assert!(page.html.contains("Received your data (shared)"));
    assert!(page.html.contains("Shipping address"));
}
