//! The consent ledger over HTTP against the real binary, on SQLite and on PostgreSQL:
//! enforcement, receipts, history, the audience query, Global Privacy Control and import.

mod common;

on_both_backends!(
    the_enforcement_matrix_follows_the_ledger_on_the_very_next_request,
    a_changed_notice_asks_for_renewal_unless_the_purpose_keeps_consents,
    receipts_are_signed_and_verify_with_the_cli_until_altered,
    the_audience_lists_exactly_who_may_be_contacted_now,
    bad_consent_changes_are_refused_with_the_field_and_change_nothing,
    a_gpc_signal_withdraws_the_gpc_purposes_only,
    import_is_all_or_nothing_with_line_numbers_and_keeps_original_times,
);

use std::collections::BTreeSet;

use common::{Client, Install, Server, candor};
use serde_json::{Value, json};

struct Shop {
    server: Server,
    backend: Client,
    marketing: Client,
    analytics: Client,
}

fn shop(install: &Install) -> Shop {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let marketing = server.client(&install.token("marketing_tool"), Some("marketing"));
    let analytics = server.client(&install.token("analytics_service"), Some("analytics"));
    Shop { server, backend, marketing, analytics }
}

/// A customer with an e-mail address and a phone number.
async fn customer(shop: &Shop, n: u32) -> String {
    let id =
        shop.backend.create(json!({"email": format!("c{n}@example.com"), "full_name": format!("Customer {n}")})).await;
    let r = shop
        .backend
        .with_purpose("order_fulfilment")
        .patch(&format!("/v1/subjects/{id}"), json!({"fields": {"phone": "+44 20 7946 0958"}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    id
}

/// Records `changes` as the shop's own form collected them (evidence named, as a grant recorded on
/// the customer's behalf must).
async fn change(client: &Client, id: &str, changes: Value) -> common::Resp {
    let body = json!({ "changes": changes, "evidence": "account settings form, checkbox" });
    client.post(&format!("/v1/subjects/{id}/consents"), body).await
}

fn status_of(consents: &Value, purpose: &str, channel: Option<&str>) -> String {
    consents
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["purpose"] == purpose && c["channel"].as_str() == channel)
        .map(|c| c["status"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no slot {purpose}/{channel:?} in {consents}"))
}

/// What each caller gets, given the ledger so far. `expected` rows: (what, status, code).
async fn check(shop: &Shop, id: &str, expected: &[(&str, u16, &str)], when: &str) {
    for (what, status, code) in expected {
        let r = match *what {
            "marketing reads" => shop.marketing.get(&format!("/v1/subjects/{id}")).await,
            "analytics records a page view" => {
                shop.analytics
                    .post(
                        &format!("/v1/subjects/{id}/events"),
                        json!({"type": "page_view", "data": {"path": "/shoes"}}),
                    )
                    .await
            }
            "analytics lists events" => shop.analytics.get(&format!("/v1/subjects/{id}/events")).await,
            "marketing corrects the phone" => {
                shop.marketing
                    .patch(&format!("/v1/subjects/{id}"), json!({"fields": {"phone": "+44 20 7946 0000"}}))
                    .await
            }
            "marketing looks up by e-mail" => {
                let r = shop.marketing.get("/v1/subjects?email=c1@example.com").await;
                let found = r.body["ids"].as_array().is_some_and(|ids| ids.iter().any(|i| i == id));
                common::Resp { status: if found { 200 } else { 404 }, body: r.body, headers: r.headers }
            }
            other => panic!("unknown row {other}"),
        };
        assert_eq!(
            (r.status, if r.status >= 400 && r.status != 404 { r.code() } else { "" }),
            (*status, *code),
            "{when}: {what}: {:?}",
            r.body
        );
    }
}

async fn the_enforcement_matrix_follows_the_ledger_on_the_very_next_request(install: Install) {
    let shop = shop(&install);
    let id = customer(&shop, 1).await;

    // Never given: every use under a consent purpose is refused. Nobody is created under one.
    check(
        &shop,
        &id,
        &[
            ("marketing reads", 403, "consent_required"),
            ("marketing corrects the phone", 403, "consent_required"),
            ("marketing looks up by e-mail", 404, ""),
            ("analytics records a page view", 403, "consent_required"),
            ("analytics lists events", 403, "consent_required"),
        ],
        "never given",
    )
    .await;
    let r =
        shop.marketing.post("/v1/subjects", json!({"fields": {"email": "new@example.com", "full_name": "N"}})).await;
    assert_eq!((r.status, r.code()), (403, "consent_required"));
    let r = shop.backend.get(&format!("/v1/subjects/{id}/consents")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for (p, ch) in [("marketing", Some("email")), ("marketing", Some("sms")), ("analytics", None)] {
        assert_eq!(status_of(&r.body["consents"], p, ch), "not_given");
    }
    assert!(r.body["notices"][0]["text"].as_str().unwrap().contains("Why: Send you offers"));

    // Granted on e-mail only: marketing sees the e-mail address, not the phone number.
    let r = change(&shop.backend, &id, json!([{"purpose": "marketing", "channel": "email", "action": "grant"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(status_of(&r.body["consents"], "marketing", Some("email")), "granted");
    assert_eq!(status_of(&r.body["consents"], "marketing", Some("sms")), "not_given");
    let read = shop.marketing.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(read.body["fields"], json!({"email": "c1@example.com"}));
    assert!(read.body["withheld"].as_array().unwrap().contains(&json!("phone")));
    check(
        &shop,
        &id,
        &[
            ("marketing corrects the phone", 403, "consent_required"),
            ("marketing looks up by e-mail", 200, ""),
            ("analytics records a page view", 403, "consent_required"),
        ],
        "email granted",
    )
    .await;

    // Granted on every channel and for analytics, in one atomic request.
    let r = change(
        &shop.backend,
        &id,
        json!([{"purpose": "marketing", "action": "grant"}, {"purpose": "analytics", "action": "grant"}]),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["receipts"].as_array().unwrap().len(), 1);
    let read = shop.marketing.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(read.body["fields"]["phone"], "+44 20 7946 0958");
    check(
        &shop,
        &id,
        &[
            ("marketing corrects the phone", 200, ""),
            ("analytics records a page view", 201, ""),
            ("analytics lists events", 200, ""),
        ],
        "all granted",
    )
    .await;

    // Withdrawn by the marketing tool itself (an unsubscribe link): refused on the next request.
    let r = change(&shop.marketing, &id, json!([{"purpose": "marketing", "action": "withdraw"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = change(&shop.analytics, &id, json!([{"purpose": "analytics", "action": "withdraw"}])).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    check(
        &shop,
        &id,
        &[
            ("marketing reads", 403, "consent_required"),
            ("marketing looks up by e-mail", 404, ""),
            ("analytics records a page view", 403, "consent_required"),
            ("analytics lists events", 403, "consent_required"),
        ],
        "withdrawn",
    )
    .await;
    // ... and it can never subscribe anyone.
    let r =
        change(&shop.marketing, &id, json!([{"purpose": "marketing", "channel": "email", "action": "grant"}])).await;
    assert_eq!((r.status, r.code(), r.field()), (403, "consent_self_grant", "changes[0].purpose"));

    // The history keeps every entry; the customer's access log shows the changes and refusals.
    let r = shop.backend.get(&format!("/v1/subjects/{id}/consents/history")).await;
    let entries = r.body["entries"].as_array().unwrap();
    let actions: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{} {}{}",
                e["action"].as_str().unwrap(),
                e["purpose"].as_str().unwrap(),
                e["channel"].as_str().map(|c| format!("/{c}")).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "grant marketing/email",
            "grant marketing/email",
            "grant marketing/sms",
            "grant analytics",
            "withdraw marketing/email",
            "withdraw marketing/sms",
            "withdraw analytics"
        ]
    );
    assert!(entries.iter().all(|e| e["method"] == "api" && e["actor"] == "subject"));
    let support = shop.server.client(&install.token("support_agent"), Some("customer_support"));
    let log = support.get(&format!("/v1/subjects/{id}/access-log")).await;
    let logged: Vec<&Value> = log.body["entries"].as_array().unwrap().iter().map(|e| &e["entry"]).collect();
    let changes: Vec<&&Value> = logged.iter().filter(|e| e["action"] == "consent.change").collect();
    assert_eq!(changes.len(), 4);
    assert!(changes[0]["detail"].as_str().unwrap().starts_with("grant marketing/email; method api; receipt "));
    assert!(logged.iter().any(|e| e["decision"] == "denied" && e["detail"] == "consent_required"));
}

async fn a_changed_notice_asks_for_renewal_unless_the_purpose_keeps_consents(install: Install) {
    let shop = shop(&install);
    let id = customer(&shop, 1).await;
    let r = change(
        &shop.backend,
        &id,
        json!([{"purpose": "marketing", "action": "grant"}, {"purpose": "analytics", "action": "grant"}]),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let old_version = r.body["consents"][0]["notice_version"].as_str().unwrap().to_string();
    drop(shop);

    // The operator changes what marketing means, and declares an analytics change not material.
    let path = install.dir.path().join("catalog.toml");
    let catalog = std::fs::read_to_string(&path).unwrap();
    let changed = catalog
        .replace(
            "Send you offers and news, only if you asked for them.",
            "Send you offers, news and partner deals, only if you asked for them.",
        )
        .replace("\ngpc = true\n", "\ngpc = true\nmaterial_change = \"keep\"\n")
        .replace("so we can improve it, only if you agree.", "so we can improve it and plan stock, only if you agree.");
    assert_ne!(catalog, changed);
    std::fs::write(&path, changed).unwrap();

    let shop = self::shop(&install);
    let r = shop.backend.get(&format!("/v1/subjects/{id}/consents")).await;
    assert_eq!(status_of(&r.body["consents"], "marketing", Some("email")), "renewal_needed");
    assert_eq!(status_of(&r.body["consents"], "analytics", None), "granted");
    let email = &r.body["consents"][0];
    assert_eq!(email["notice_version"], old_version.as_str());
    assert_ne!(email["current_notice_version"], old_version.as_str());
    let r = shop.marketing.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!((r.status, r.code()), (403, "consent_required"), "given on an old notice: does not count");
    let r = shop.analytics.post(&format!("/v1/subjects/{id}/events"), json!({"type": "page_view", "data": {}})).await;
    assert_eq!(r.status, 201, "material_change = keep: still counts");

    // Renewed on the new notice: counts again.
    let r = change(&shop.backend, &id, json!([{"purpose": "marketing", "channel": "email", "action": "grant"}])).await;
    assert_eq!(r.status, 201);
    assert_eq!(shop.marketing.get(&format!("/v1/subjects/{id}")).await.status, 200);
}

async fn receipts_are_signed_and_verify_with_the_cli_until_altered(install: Install) {
    let shop = shop(&install);
    let id = customer(&shop, 1).await;
    let r = shop
        .backend
        .post(
            &format!("/v1/subjects/{id}/consents"),
            json!({
                "changes": [{"purpose": "marketing", "channel": "sms", "action": "grant"}],
                "actor": "staff", "method": "paper",
                "reason": "Customer signed the paper form at the Leeds shop",
                "evidence": "FORM-2026-0042"
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let receipt = &r.body["receipts"][0];
    assert_eq!(receipt["subject_id"], id.as_str());
    assert_eq!(receipt["method"], "paper");
    assert_eq!(receipt["actor"]["kind"], "staff");
    assert_eq!(
        receipt["recorded_by"], "Recorded on the customer's behalf by: The shop's own backend (role shop_backend)",
        "the receipt says who put it on record, never that the customer acted themself"
    );
    assert_eq!(receipt["controller"]["name"], "Example Shop Ltd");
    assert_eq!(receipt["purposes"][0]["purpose"], "marketing");
    assert_eq!(receipt["purposes"][0]["legal_basis"], "consent");
    assert!(receipt["purposes"][0]["notice_version"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(receipt["signature"]["alg"], "Ed25519");
    let text = receipt.to_string();
    assert!(!text.contains("Leeds") && !text.contains("FORM-2026"), "reason and evidence stay sealed");

    // The same receipt, exactly as issued, from its route.
    let receipt_id = receipt["receipt_id"].as_str().unwrap();
    let r = shop.backend.get(&format!("/v1/subjects/{id}/consents/receipts/{receipt_id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body, receipt);
    let other = customer(&shop, 2).await;
    let r = shop.backend.get(&format!("/v1/subjects/{other}/consents/receipts/{receipt_id}")).await;
    assert_eq!((r.status, r.code()), (404, "receipt_not_found"));

    // Verified offline: with the installation's key, and with the published verifier key.
    let file = install.dir.path().join("receipt.json");
    std::fs::write(&file, serde_json::to_string_pretty(receipt).unwrap()).unwrap();
    let dir = install.dir.path();
    let (ok, out, err) =
        candor(&["receipt", "verify", file.to_str().unwrap(), "--config", install.config().to_str().unwrap()], dir);
    assert!(ok, "{out}{err}");
    assert!(out.contains("receipt valid") && out.contains("grant marketing/sms"), "{out}");
    let key = reqwest::get(format!("{}/v1/log/key", shop.server.url)).await.unwrap().text().await.unwrap();
    let key = serde_json::from_str::<Value>(&key).unwrap()["verifier_key"].as_str().unwrap().to_string();
    let (ok, out, err) = candor(&["receipt", "verify", file.to_str().unwrap(), "--key", key.trim()], dir);
    assert!(ok, "{out}{err}");

    // Altered: refused, exit non-zero.
    let altered = serde_json::to_string(receipt).unwrap().replace("\"grant\"", "\"withdraw\"");
    std::fs::write(&file, altered).unwrap();
    let (ok, _, err) = candor(&["receipt", "verify", file.to_str().unwrap(), "--key", key.trim()], dir);
    assert!(!ok);
    assert!(err.contains("NOT valid") && err.contains("altered"), "{err}");
}

async fn audience(client: &Client, query: &str) -> (u16, BTreeSet<String>, Value) {
    let resp = client.request(reqwest::Method::GET, &format!("/v1/consents/audience{query}")).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    if status != 200 {
        return (status, BTreeSet::new(), serde_json::from_str(&text).unwrap_or(Value::Null));
    }
    (status, text.lines().map(str::to_string).collect(), Value::Null)
}

async fn the_audience_lists_exactly_who_may_be_contacted_now(install: Install) {
    let shop = shop(&install);
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(customer(&shop, n).await);
    }
    // 0: email; 1: email then withdrawn; 2: sms only; 3: everything; 4: email withdrawn then granted; 5: nothing.
    change(&shop.backend, &ids[0], json!([{"purpose": "marketing", "channel": "email", "action": "grant"}])).await;
    change(&shop.backend, &ids[1], json!([{"purpose": "marketing", "channel": "email", "action": "grant"}])).await;
    change(&shop.marketing, &ids[1], json!([{"purpose": "marketing", "channel": "email", "action": "withdraw"}])).await;
    change(&shop.backend, &ids[2], json!([{"purpose": "marketing", "channel": "sms", "action": "grant"}])).await;
    change(
        &shop.backend,
        &ids[3],
        json!([{"purpose": "marketing", "action": "grant"}, {"purpose": "analytics", "action": "grant"}]),
    )
    .await;
    change(&shop.marketing, &ids[4], json!([{"purpose": "marketing", "channel": "email", "action": "withdraw"}])).await;
    change(&shop.backend, &ids[4], json!([{"purpose": "marketing", "channel": "email", "action": "grant"}])).await;

    let set = |which: &[usize]| which.iter().map(|i| ids[*i].clone()).collect::<BTreeSet<_>>();
    let (status, email, _) = audience(&shop.marketing, "?channel=email").await;
    assert_eq!(status, 200);
    assert_eq!(email, set(&[0, 3, 4]));
    assert_eq!(audience(&shop.marketing, "?channel=sms").await.1, set(&[2, 3]));
    assert_eq!(audience(&shop.analytics, "").await.1, set(&[3]));

    // Unclear questions get clear errors.
    let (status, _, body) = audience(&shop.marketing, "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), body["error"]["field"].as_str()),
        (400, Some("invalid_audience_query"), Some("channel"))
    );
    assert_eq!(audience(&shop.marketing, "?channel=post").await.0, 400);
    assert_eq!(audience(&shop.analytics, "?channel=email").await.0, 400);
    let (status, _, body) = audience(&shop.backend, "").await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("Candor-Purpose")),
        "account is not consent-based"
    );
    let (status, _, body) = audience(&shop.backend.with_purpose("marketing"), "?channel=email").await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("purpose_not_allowed")));

    // The query is logged, without the ids.
    let (ok, out, err) = candor(&["log", "verify", "--config", install.config().to_str().unwrap()], install.dir.path());
    assert!(ok, "{out}{err}");
}

async fn bad_consent_changes_are_refused_with_the_field_and_change_nothing(install: Install) {
    let shop = shop(&install);
    let id = customer(&shop, 1).await;
    let staff = shop.server.client(&install.token("support_agent"), Some("customer_support"));
    let cases: Vec<(Client, Value, u16, &str, &str)> = vec![
        (shop.backend.clone(), json!({"changes": []}), 422, "invalid_changes", "changes"),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "resale", "action": "grant"}], "evidence": "account settings form, checkbox"}),
            422,
            "unknown_purpose",
            "changes[0].purpose",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "account", "action": "grant"}], "evidence": "account settings form, checkbox"}),
            422,
            "not_consent_based",
            "changes[0].purpose",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "marketing", "channel": "fax", "action": "grant"}], "evidence": "account settings form, checkbox"}),
            422,
            "invalid_channel",
            "changes[0].channel",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "analytics", "channel": "email", "action": "grant"}], "evidence": "account settings form, checkbox"}),
            422,
            "invalid_channel",
            "changes[0].channel",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "analytics", "action": "maybe"}]}),
            422,
            "invalid_changes",
            "changes[0].action",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "analytics", "action": "grant"}, {"purpose": "marketing", "action": "grant"}, {"purpose": "marketing", "channel": "sms", "action": "withdraw"}], "evidence": "account settings form, checkbox"}),
            422,
            "duplicate_change",
            "changes[2].channel",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "analytics", "action": "grant"}], "actor": "staff", "evidence": "account settings form, checkbox"}),
            422,
            "invalid_value",
            "reason",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "analytics", "action": "grant"}], "actor": "staff", "reason": "n/a", "evidence": "account settings form, checkbox"}),
            422,
            "invalid_value",
            "reason",
        ),
        // Recording a grant on the customer's behalf is a power of its own (record_consent), and
        // it names its evidence.
        (
            staff.clone(),
            json!({"changes": [{"purpose": "analytics", "action": "grant"}], "actor": "staff", "reason": "Customer asked on the phone, call 4411", "evidence": "call 4411"}),
            403,
            "consent_recording_not_allowed",
            "Authorization",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "analytics", "action": "grant"}]}),
            422,
            "invalid_value",
            "evidence",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "analytics", "action": "grant"}], "method": "gpc", "evidence": "account settings form, checkbox"}),
            422,
            "invalid_value",
            "method",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "analytics", "action": "grant"}], "method": "privacy_center", "evidence": "account settings form, checkbox"}),
            422,
            "invalid_value",
            "method",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "analytics", "action": "grant"}], "actor": "robot", "evidence": "account settings form, checkbox"}),
            422,
            "invalid_value",
            "actor",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "analytics", "action": "grant"}], "evidence": "x".repeat(201)}),
            422,
            "invalid_value",
            "evidence",
        ),
        (
            shop.backend.clone(),
            json!({"changes": [{"purpose": "analytics", "action": "grant"}], "colour": "red", "evidence": "account settings form, checkbox"}),
            400,
            "invalid_body",
            "",
        ),
        (
            shop.backend.with_purpose("marketing"),
            json!({"changes": [{"purpose": "analytics", "action": "grant"}], "evidence": "account settings form, checkbox"}),
            403,
            "purpose_not_allowed",
            "Candor-Purpose",
        ),
    ];
    for (client, body, status, code, field) in cases {
        let r = client.post(&format!("/v1/subjects/{id}/consents"), body.clone()).await;
        assert_eq!((r.status, r.code()), (status, code), "{body}: {:?}", r.body);
        if !field.is_empty() {
            assert_eq!(r.field(), field, "{body}");
        }
    }
    let ghost = "7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70";
    let r = change(&shop.backend, ghost, json!([{"purpose": "analytics", "action": "grant"}])).await;
    assert_eq!((r.status, r.code()), (404, "subject_not_found"));
    assert_eq!(shop.backend.get(&format!("/v1/subjects/{ghost}/consents")).await.status, 404);

    // Nothing was recorded.
    let r = shop.backend.get(&format!("/v1/subjects/{id}/consents/history")).await;
    assert_eq!(r.body["entries"], json!([]));
    let log = staff.get(&format!("/v1/subjects/{id}/access-log")).await;
    assert!(!log.body["entries"].as_array().unwrap().iter().any(|e| e["entry"]["action"] == "consent.change"));
}

async fn a_gpc_signal_withdraws_the_gpc_purposes_only(install: Install) {
    let shop = shop(&install);
    let id = customer(&shop, 1).await;
    change(&shop.backend, &id, json!([{"purpose": "marketing", "channel": "email", "action": "grant"}, {"purpose": "analytics", "action": "grant"}])).await;
    let path = format!("/v1/subjects/{id}/consents");
    let r = shop
        .backend
        .send(shop.backend.request(reqwest::Method::POST, &path).header("Sec-GPC", "1").json(&json!({})))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["receipts"][0]["method"], "gpc");
    assert_eq!(status_of(&r.body["consents"], "analytics", None), "withdrawn");
    assert_eq!(status_of(&r.body["consents"], "marketing", Some("email")), "granted", "marketing is not declared gpc");
    // Nothing left to withdraw: no new entry. An explicit choice in the same request wins.
    let r = shop
        .backend
        .send(
            shop.backend
                .request(reqwest::Method::POST, &path)
                .header("Sec-GPC", "1")
                .json(&json!({"changes": [{"purpose": "analytics", "action": "grant"}], "evidence": "account settings form, checkbox"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["receipts"].as_array().unwrap().len(), 1);
    assert_eq!(status_of(&r.body["consents"], "analytics", None), "granted");
    let history = shop.backend.get(&format!("{path}/history")).await;
    let methods: Vec<&str> =
        history.body["entries"].as_array().unwrap().iter().map(|e| e["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["api", "api", "gpc", "api"]);
}

async fn import_is_all_or_nothing_with_line_numbers_and_keeps_original_times(install: Install) {
    let shop = shop(&install);
    let (a, b) = (customer(&shop, 1).await, customer(&shop, 2).await);
    let dir = install.dir.path();
    let config = install.config();
    let file = dir.join("consents.csv");
    let import = |extra: &[&str]| {
        let mut args = vec!["import", "consents", file.to_str().unwrap(), "--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        candor(&args, dir)
    };
    let good = format!(
        "subject_id,purpose,channel,action,given_at,evidence,notice_version\n\
         {a},marketing,email,grant,2024-03-01T09:30:00Z,NEWSLETTER-FORM-17,\n\
         {b},analytics,,grant,2024-05-02T10:00:00Z,,\n"
    );
    std::fs::write(&file, format!("{good}{b},marketing,fax,grant,2024-05-02T10:00:00Z,,\n7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70,analytics,,grant,2024-05-02T10:00:00Z,,\n{a},analytics,,grant,yesterday,,\n")).unwrap();
    let (ok, out, err) = import(&["--notice-version", "current"]);
    assert!(!ok, "{out}");
    assert!(err.contains("3 lines cannot be imported; nothing was imported"), "{err}");
    assert!(err.contains("line 4: channel: `fax` is not a channel"), "{err}");
    assert!(err.contains("line 5: subject_id: no subject"), "{err}");
    assert!(err.contains("line 6: given_at: must be an RFC 3339 time"), "{err}");
    let history = |id: &str| {
        let (id, backend) = (id.to_string(), shop.backend.clone());
        async move { backend.get(&format!("/v1/subjects/{id}/consents/history")).await.body["entries"].clone() }
    };
    assert_eq!(history(&a).await, json!([]), "all or nothing");

    // Without a notice version for the lines that lack one: refused, with how to fix it.
    std::fs::write(&file, &good).unwrap();
    let (ok, _, err) = import(&[]);
    assert!(!ok);
    assert!(err.contains("line 2: notice_version: is empty") && err.contains("--notice-version current"), "{err}");

    let (ok, out, err) = import(&["--notice-version", "current"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("imported 2 consent lines"), "{out}");
    let entries = history(&a).await;
    assert_eq!(entries[0]["given_at"], "2024-03-01T09:30:00Z");
    assert_eq!(entries[0]["method"], "import");
    assert_eq!(entries[0]["actor"], "operator");
    let r = shop.backend.get(&format!("/v1/subjects/{a}/consents")).await;
    assert_eq!(status_of(&r.body["consents"], "marketing", Some("email")), "granted");
    assert_eq!(shop.marketing.get(&format!("/v1/subjects/{a}")).await.status, 200);
    assert_eq!(
        shop.analytics.post(&format!("/v1/subjects/{b}/events"), json!({"type": "page_view", "data": {}})).await.status,
        201
    );

    // A later withdrawal wins over an older imported grant, whatever the order of recording.
    change(&shop.marketing, &a, json!([{"purpose": "marketing", "channel": "email", "action": "withdraw"}])).await;
    std::fs::write(
        &file,
        format!("subject_id,purpose,channel,action,given_at\n{a},marketing,email,grant,2024-01-01T00:00:00Z\n"),
    )
    .unwrap();
    let (ok, out, err) = import(&["--notice-version", "current"]);
    assert!(ok, "{out}{err}");
    assert_eq!(shop.marketing.get(&format!("/v1/subjects/{a}")).await.status, 403);
}
