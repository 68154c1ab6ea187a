//! Sharing with recipients over HTTP: grants checked against the catalog, the policy and
//! consent; recipients reading with the grant's credential until revocation, expiry or their
//! last read; consent withdrawal, restriction and erasure taking customers out at once; and the
//! customer seeing every share.

mod common;

use std::time::Duration;

use common::visitor::Visitor;
use common::{Client, Install, Server};
use serde_json::{Value, json};

on_both_backends!(
    a_role_shares_only_what_it_reads_in_full_never_what_it_sees_masked,
    a_grant_follows_the_catalog_in_force_and_can_always_be_revoked,
);

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
    let eraser = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let r = eraser.send(eraser.request(reqwest::Method::DELETE, &format!("/v1/subjects/{}", ids[0]))).await;
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
            json!({"changes": [{"purpose": "marketing", "channel": "email", "action": "grant"}], "evidence": "account settings form, checkbox"}),
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
            json!({"changes": [{"purpose": "marketing", "channel": "email", "action": "grant"}], "evidence": "account settings form, checkbox"}),
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

/// Rewrites the installation's catalog: each `from` (which must be there) becomes `to`, each
/// table starting with `cut` (up to the next table) is removed, and `append` is added.
fn edit_catalog(install: &Install, edits: &[(&str, &str)], cut: &[&str], append: &str) {
    let path = install.config().with_file_name("catalog.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "the catalog no longer holds {from:?}");
        text = text.replacen(from, to, 1);
    }
    for start in cut {
        let at = text.find(start).unwrap_or_else(|| panic!("the catalog no longer holds {start:?}"));
        let end = text[at + start.len()..].find("\n[[").map_or(text.len(), |i| at + start.len() + i + 1);
        text.replace_range(at..end, "");
    }
    text.push_str(append);
    std::fs::write(&path, text).unwrap();
}

/// The log entries (admin's view).
async fn log_entries(server: &Server, install: &Install) -> Vec<Value> {
    let r = server.client(&install.admin_token, None).get("/v1/log/entries?start=0&end=1000").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["entries"].as_array().unwrap().iter().map(|e| e["entry"].clone()).collect()
}

fn grant_list(install: &Install) -> String {
    let config = install.config();
    let (ok, out, err) = common::candor(&["grants", "list", "--config", config.to_str().unwrap()], install.dir.path());
    assert!(ok, "{out}{err}");
    out
}

/// Issue 19, finding 5: a role that sees a field masked may not hand it over in full through
/// a grant (nor may the recipient then read it as its own).
async fn a_role_shares_only_what_it_reads_in_full_never_what_it_sees_masked(install: Install) {
    // The fraud service sees shipping addresses masked (city only); here it may also share.
    edit_catalog(
        &install,
        &[("mask = [\"shipping_address\"]\n", "mask = [\"shipping_address\"]\nshare = true\n")],
        &[],
        "\n[[recipients]]\nid = \"fraud_bureau\"\nname = \"RiskCheck AG\"\ncountry = \"DE\"\n\
         purposes = [\"fraud_prevention\"]\nfields = [\"email\", \"shipping_address\"]\nagreement = \"DPA-2026-031\"\n",
    );
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ids = customers(&backend, 1).await;
    let fraud = server.client(&install.token("fraud_service"), Some("fraud_prevention"));
    let r = fraud.get(&format!("/v1/subjects/{}", ids[0])).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["masked"], json!(["shipping_address"]), "{:?}", r.body);

    let body = |fields: Value| json!({"recipient": "fraud_bureau", "subjects": ids, "fields": fields, "expires_at": in_days(7)});
    let r = fraud.post("/v1/grants", body(json!(["email", "shipping_address"]))).await;
    assert_eq!((r.status, r.code(), r.field()), (403, "share_not_allowed", "shipping_address"), "{:?}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("masked") && message.contains("fraud_service"), "{message}");
    assert!(!message.contains("Leeds") && !message.contains("c0@"), "no value in the error: {message}");
    assert!(!grant_list(&install).contains("fraud_bureau"), "no grant was made");
    let refused: Vec<Value> = log_entries(&server, &install)
        .await
        .into_iter()
        .filter(|e| e["action"] == "grant.create" && e["decision"] == "denied")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (&refused[0]["detail"], &refused[0]["fields"], &refused[0]["actor"]["role"]),
        (&json!("share_not_allowed"), &json!(["shipping_address"]), &json!("fraud_service"))
    );

    // What it reads in full it may share, and the recipient gets exactly that.
    let r = fraud.post("/v1/grants", body(json!(["email"]))).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let page = read(&server, &r.body, r.body["credential"].as_str().unwrap()).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(page.body["records"][0]["fields"], json!({"email": "c0@example.com"}));
    assert_eq!(page.body["withheld"], json!([]));
    assert!(!server.log().contains("Leeds"), "no value in the server log");
}

/// Issue 19, finding 6: a grant is read against the catalog in force (a field it no longer
/// declares for the recipient is withheld, and said so), and revoking it works whatever the
/// catalog now says, over the API and from the command line.
async fn a_grant_follows_the_catalog_in_force_and_can_always_be_revoked(install: Install) {
    let server = install.serve();
    let token = install.token("shop_backend");
    let backend = server.client(&token, Some("account"));
    let ids = customers(&backend, 2).await;
    let shop = backend.with_purpose("order_fulfilment");
    for id in &ids {
        let r = shop.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"phone": "+44 20 7946 0102"}})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let grant = |fields: Value| json!({"recipient": "parcel_carrier", "subjects": ids, "fields": fields, "expires_at": in_days(7)});
    let all = shop.post("/v1/grants", grant(json!(["full_name", "shipping_address", "phone"]))).await.body;
    let addresses = shop.post("/v1/grants", grant(json!(["shipping_address"]))).await.body;
    let (all_key, addresses_key) = (all["credential"].as_str().unwrap(), addresses["credential"].as_str().unwrap());
    let page = read(&server, &all, all_key).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(page.body["records"][0]["fields"].as_object().unwrap().len(), 3);
    drop(server);

    // The catalog stops declaring shipping addresses at all, and phone numbers for the carrier.
    edit_catalog(
        &install,
        &[
            ("fields = [\"full_name\", \"shipping_address\", \"phone\"]", "fields = [\"full_name\"]"),
            ("mask = [\"shipping_address\"]\n", ""),
        ],
        &["[[fields]]\nname = \"shipping_address\"\n"],
        "",
    );
    let server = install.serve_logging_to("server-2.log");
    let shop = server.client(&token, Some("order_fulfilment"));
    let page = read(&server, &all, all_key).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(page.body["withheld"], json!(["shipping_address", "phone"]), "{:?}", page.body);
    let records = page.body["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    for rec in records {
        assert_eq!(rec["fields"].as_object().unwrap().keys().collect::<Vec<_>>(), ["full_name"], "{rec}");
    }
    // Nothing of the grant is still declared for the carrier: refused, and logged.
    let r = read(&server, &addresses, addresses_key).await;
    assert_eq!((r.status, r.code()), (403, "field_not_shared"), "{:?}", r.body);

    // Revocation over the API (it used to fail with a 500 here).
    let r =
        shop.send(shop.request(reqwest::Method::DELETE, &format!("/v1/grants/{}", all["id"].as_str().unwrap()))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["revoked_at"].is_string());
    assert_eq!(read(&server, &all, all_key).await.code(), "grant_revoked");

    // And from the command line, by id.
    let config = install.config();
    let config = config.to_str().unwrap();
    let id = addresses["id"].as_str().unwrap();
    let listed = grant_list(&install);
    let line = listed.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains("parcel_carrier") && line.contains("shipping_address") && line.ends_with("shipping_address"));
    let (ok, out, err) = common::candor(&["grants", "revoke", id, "--config", config], install.dir.path());
    assert!(ok && out.contains("is revoked"), "{out}{err}");
    assert_eq!(read(&server, &addresses, addresses_key).await.code(), "grant_revoked");
    let (ok, out, err) = common::candor(&["grants", "revoke", id, "--config", config], install.dir.path());
    assert!(ok && out.contains("is revoked since"), "revoking again changes nothing: {out}{err}");
    let (ok, _, err) = common::candor(&["grants", "revoke", "no-such-grant", "--config", config], install.dir.path());
    assert!(!ok && err.contains("no grant with id"), "{err}");

    // Both revocations are logged alike, against every customer the grant held.
    let entries = log_entries(&server, &install).await;
    let mut sorted = ids.clone();
    sorted.sort();
    for (grant, role) in [(&all, "shop_backend"), (&addresses, "system")] {
        let detail = json!(format!("grant {}", grant["id"].as_str().unwrap()));
        let revoked: Vec<&Value> =
            entries.iter().filter(|e| e["action"] == "grant.revoke" && e["detail"] == detail).collect();
        assert_eq!(revoked.len(), 1, "{revoked:?}");
        let mut subjects: Vec<String> =
            revoked[0]["subjects"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        subjects.sort();
        assert_eq!(
            (&revoked[0]["actor"]["role"], &revoked[0]["purpose"], subjects),
            (&json!(role), &json!("order_fulfilment"), sorted.clone())
        );
    }
    let refused = entries.iter().find(|e| e["action"] == "grant.read" && e["decision"] == "denied").unwrap();
    assert_eq!(
        (&refused["detail"], &refused["actor"]["role"]),
        (&json!("field_not_shared"), &json!("recipient:parcel_carrier"))
    );
    let last_read = entries.iter().rev().find(|e| e["action"] == "grant.read" && e["decision"] == "full").unwrap();
    assert_eq!(last_read["fields"], json!(["full_name"]), "the log names what was read: {last_read}");
    let logs = server.log() + &std::fs::read_to_string(install.dir.path().join("server.log")).unwrap_or_default();
    for value in ["Leeds", "7946 0102", "2079460102"] {
        let line = logs.lines().find(|l| l.contains(value));
        assert!(line.is_none(), "no value in the server logs: {line:?}");
    }
}

#[tokio::test]
async fn the_privacy_team_counts_consent_oversees_every_grant_and_stops_one() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ids = customers(&backend, 3).await;
    let consent = |id: &str, action: &str| {
        let mut body = json!({"changes": [{"purpose": "marketing", "channel": "email", "action": action}]});
        if action == "grant" {
            body["evidence"] = json!("account settings form, checkbox");
        }
        (format!("/v1/subjects/{id}/consents"), body)
    };
    for (id, action) in [(&ids[0], "grant"), (&ids[1], "grant"), (&ids[1], "withdraw"), (&ids[2], "grant")] {
        let (path, body) = consent(id, action);
        assert_eq!(backend.post(&path, body).await.status, 201);
    }
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let r = privacy.get("/v1/consents/counts").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let slot = |purpose: &str, channel: &str| {
        r.body["slots"].as_array().unwrap().iter().find(|s| s["purpose"] == purpose && s["channel"] == channel).cloned()
    };
    let email = slot("marketing", "email").expect("every declared slot is listed");
    assert_eq!(
        (email["granted"].as_u64(), email["withdrawn"].as_u64(), email["renewal_needed"].as_u64()),
        (Some(2), Some(1), Some(0))
    );
    let sms = slot("marketing", "sms").expect("a slot nobody chose on shows zeros");
    assert_eq!(sms["granted"].as_u64(), Some(0));
    assert!(!r.body.to_string().contains(&ids[0]), "counts name no customer");
    // Not under another purpose, nor for a role without one that answers requests.
    assert_eq!(backend.get("/v1/consents/counts").await.code(), "purpose_not_allowed");
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    assert_eq!(support.get("/v1/consents/counts").await.status, 403);

    // Every grant, with how many customers it holds and whether it is in force.
    let fulfilment = backend.with_purpose("order_fulfilment");
    let r = fulfilment
        .post(
            "/v1/grants",
            json!({"recipient": "parcel_carrier", "subjects": ids, "fields": ["full_name"], "expires_at": in_days(7)}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let grant = r.body["id"].as_str().unwrap().to_string();
    let r = privacy.get("/v1/grants").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let listed = r.body["grants"].as_array().unwrap().iter().find(|g| g["id"] == grant.as_str()).unwrap().clone();
    assert_eq!((listed["customers"].as_u64(), listed["state"].as_str()), (Some(3), Some("active")), "{listed}");
    assert!(listed.get("credential").is_none() && !r.body.to_string().contains(&ids[0]), "no credential, no customer");
    assert_eq!(fulfilment.get("/v1/grants").await.code(), "purpose_not_allowed");

    // Stopping it under privacy_requests needs erase = true: the shop's backend (which acts
    // under privacy_requests too, without erase) is refused; the privacy team stops it.
    let shop_oversight = backend.with_purpose("privacy_requests");
    let r = shop_oversight.send(shop_oversight.request(reqwest::Method::DELETE, &format!("/v1/grants/{grant}"))).await;
    assert_eq!((r.status, r.code()), (403, "erase_not_allowed"), "{:?}", r.body);
    let r = privacy.send(privacy.request(reqwest::Method::DELETE, &format!("/v1/grants/{grant}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["revoked_at"].is_string());
    let r = privacy.get("/v1/grants").await;
    let listed = r.body["grants"].as_array().unwrap().iter().find(|g| g["id"] == grant.as_str()).unwrap().clone();
    assert_eq!(listed["state"], "revoked");

    let admin = server.client(&install.admin_token, None);
    let log = admin.get("/v1/log/entries?start=0&end=1000").await;
    let entries: Vec<&Value> = log.body["entries"].as_array().unwrap().iter().map(|e| &e["entry"]).collect();
    let by_privacy =
        |action: &str| entries.iter().filter(|e| e["action"] == action && e["actor"]["role"] == "privacy_team").count();
    assert_eq!((by_privacy("consent.counts"), by_privacy("grant.list"), by_privacy("grant.revoke")), (1, 2, 1));
    assert!(
        entries.iter().any(|e| e["action"] == "grant.revoke"
            && e["decision"] == "denied"
            && e["actor"]["role"] == "shop_backend")
    );
    let revoked =
        entries.iter().find(|e| e["action"] == "grant.revoke" && e["actor"]["role"] == "privacy_team").unwrap();
    assert_eq!(revoked["subjects"].as_array().unwrap().len(), 3, "logged against every customer it held");
}
