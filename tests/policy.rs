//! The policy engine over HTTP: the full decision matrix of the example catalog, operator
//! policies, and the ways a caller can get access wrong.

mod common;

use common::{Client, Install, candor};

// The powers and the customer's records, on SQLite and on PostgreSQL.
on_both_backends!(
    each_power_is_held_only_by_the_roles_the_catalog_gives_it,
    a_customers_records_follow_the_same_decision_as_reading_them_and_the_access_log_is_paged,
);
use std::str::FromStr;

use serde_json::{Value, json};

const MATRIX: &str = include_str!("data/decision_matrix.csv");

fn all_fields() -> Value {
    json!({
        "email": "grace@hopper.example",
        "full_name": "Grace Hopper",
        "phone": "+1 202 555 0143",
        "shipping_address": {"street": "1 Navy Way", "city": "Arlington", "postal_code": "22202", "country": "US"},
        "date_of_birth": "1906-12-09",
        "loyalty_points": 1200,
        "shop_preferences": {"size": "M"}
    })
}

/// What the response says about `name`: full, masked or withheld.
fn outcome_of(subject: &Value, events: &Value, name: &str) -> String {
    if events["withheld_types"].as_array().is_some_and(|a| a.contains(&json!(name))) {
        return "withheld".into();
    }
    if name == "page_view" || name == "purchase" {
        return "full".into();
    }
    if subject["withheld"].as_array().unwrap().contains(&json!(name)) {
        "withheld".into()
    } else if subject["masked"].as_array().unwrap().contains(&json!(name)) {
        "masked".into()
    } else {
        assert!(subject["fields"].get(name).is_some(), "{name} neither returned nor withheld: {subject}");
        "full".into()
    }
}

#[tokio::test]
async fn every_role_purpose_and_consent_state_gets_exactly_the_expected_fields() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let mut ids = std::collections::HashMap::new();
    for consent in ["yes", "no"] {
        // Fields of several purposes: create with some, add the rest under their own purposes.
        let all = all_fields();
        // One customer per consent state, each with an address of their own (e-mail is unique).
        let email = format!("grace+{consent}@hopper.example");
        let id = backend.create(json!({"email": email, "full_name": all["full_name"], "date_of_birth": all["date_of_birth"], "loyalty_points": all["loyalty_points"], "shop_preferences": all["shop_preferences"]})).await;
        let r = backend
            .with_purpose("order_fulfilment")
            .patch(
                &format!("/v1/subjects/{id}"),
                json!({"fields": {"phone": all["phone"], "shipping_address": all["shipping_address"]}}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let grants = json!({"changes": [{"purpose": "marketing", "action": "grant"}, {"purpose": "analytics", "action": "grant"}], "evidence": "account settings form, checkbox"});
        let r = backend.post(&format!("/v1/subjects/{id}/consents"), grants).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        if consent == "no" {
            let withdrawals = json!({"changes": [{"purpose": "marketing", "action": "withdraw"}, {"purpose": "analytics", "action": "withdraw"}]});
            let r = backend.post(&format!("/v1/subjects/{id}/consents"), withdrawals).await;
            assert_eq!(r.status, 201, "{:?}", r.body);
        }
        ids.insert(consent, id);
    }

    let mut lines = MATRIX.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..3], ["role", "purpose", "consent"]);
    let mut tokens = std::collections::HashMap::new();
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for (n, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let (role, purpose, consent) = (cells[0], cells[1], cells[2]);
        let token = tokens
            .entry(role)
            .or_insert_with(|| if role == "admin" { install.admin_token.clone() } else { install.token(role) })
            .clone();
        let client = server.client(&token, Some(purpose));
        let id = &ids[consent];
        let subject = client.get(&format!("/v1/subjects/{id}")).await;
        let events = client.get(&format!("/v1/subjects/{id}/events")).await;
        for (name, expected) in header[3..].iter().zip(&cells[3..]) {
            checked += 1;
            let actual = if subject.status == 403 {
                assert_eq!(events.status, 403, "line {}: events answered {:?}", n + 2, events.body);
                "denied".to_string()
            } else {
                assert_eq!(subject.status, 200, "line {}: {:?}", n + 2, subject.body);
                assert_eq!(events.status, 200, "line {}: {:?}", n + 2, events.body);
                outcome_of(&subject.body, &events.body, name)
            };
            if actual != *expected {
                mismatches.push(format!(
                    "line {}: {role} under {purpose} (consent {consent}): {name} expected {expected}, got {actual}",
                    n + 2
                ));
            }
        }
    }
    assert_eq!(checked, 112 * 9);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // Masked values keep only their recognisable part.
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let r = support.get(&format!("/v1/subjects/{}", ids["yes"])).await;
    assert_eq!(r.body["fields"]["email"], "g***@hopper.example");
    assert_eq!(r.body["fields"]["phone"], "***43");
    let fraud = server.client(&install.token("fraud_service"), Some("fraud_prevention"));
    let r = fraud.get(&format!("/v1/subjects/{}", ids["yes"])).await;
    assert_eq!(r.body["fields"]["shipping_address"], json!({"city": "Arlington"}));
    // The log says the read was masked, and which fields; never a value.
    let log = support.get(&format!("/v1/subjects/{}/access-log", ids["yes"])).await;
    let masked_read = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .find(|e| e["action"] == "subject.read" && e["decision"] == "masked")
        .expect("a masked read is logged");
    assert_eq!(masked_read["detail"], "masked: email, phone");
    assert!(!log.body.to_string().contains("hopper.example"));
}

#[test]
fn the_same_table_passes_candor_policy_test_and_a_wrong_expectation_fails_it() {
    let install = Install::new();
    let cwd = install.dir.path();
    let table = cwd.join("matrix.csv");
    std::fs::write(&table, MATRIX).unwrap();
    let (ok, out, err) = candor(&["policy", "test", table.to_str().unwrap()], cwd);
    assert!(ok, "{out}{err}");
    assert!(out.contains("1008 decisions in 112 rows, all as expected"), "{out}");

    let wrong =
        MATRIX.replacen("support_agent,customer_support,yes,masked", "support_agent,customer_support,yes,full", 1);
    std::fs::write(&table, wrong).unwrap();
    let (ok, out, err) = candor(&["policy", "test", table.to_str().unwrap()], cwd);
    assert!(!ok);
    assert!(out.contains("support_agent under customer_support: email expected full, got masked"), "{out}");
    assert!(err.contains("1 of 1008 decisions differ"), "{err}");
}

#[test]
fn explain_names_the_deciding_policies() {
    let install = Install::new();
    let cwd = install.dir.path();
    let explain = |extra: &[&str]| {
        let mut args = vec!["policy", "explain", "--role", "support_agent", "--purpose", "customer_support"];
        args.extend_from_slice(extra);
        candor(&args, cwd)
    };
    let (ok, out, err) = explain(&["--field", "phone"]);
    assert!(ok, "{err}");
    assert!(out.contains("decision: masked (last 2 digits)"), "{out}");
    assert!(out.contains("forbidden by catalog.role.support_agent.mask"), "{out}");
    let (_, out, _) = explain(&["--field", "phone", "--break-glass"]);
    assert!(out.contains("decision: full"), "{out}");
    let (_, out, _) = explain(&["--field", "date_of_birth"]);
    assert!(out.contains("decision: withheld"), "{out}");
    let (ok, _, err) = explain(&["--field", "shoe_size"]);
    assert!(!ok && err.contains("`shoe_size` is not declared"), "{err}");
    let (_, out, _) = candor(
        &[
            "policy",
            "explain",
            "--role",
            "marketing_tool",
            "--purpose",
            "marketing",
            "--field",
            "email",
            "--consent",
            "no",
        ],
        cwd,
    );
    assert!(out.contains("decision: denied") && out.contains("forbidden by catalog.consent"), "{out}");
}

#[tokio::test]
async fn operator_policies_apply_over_http_and_a_broken_file_stops_start_up() {
    let install = Install::new();
    let cwd = install.dir.path();
    let config = std::fs::read_to_string(install.config()).unwrap();
    std::fs::write(install.config(), config.replace("# file = \"policies.cedar\"", "file = \"policies.cedar\""))
        .unwrap();

    std::fs::write(cwd.join("policies.cedar"), "// Loyalty balances are none of support's business.\n\npermit(principal, action, resource);\nforbid(principal == Candor::Role::\"support_agent\" action, resource);\n").unwrap();
    let (ok, _, err) = candor(&["serve"], cwd);
    assert!(!ok);
    assert!(err.contains("policies.cedar:4:"), "{err}");
    assert!(err.contains("the policy file has 1 problem"), "{err}");
    let (ok, _, err) = candor(&["catalog", "check"], cwd);
    assert!(!ok && err.contains("policies.cedar:4:"), "{err}");

    std::fs::write(
        cwd.join("policies.cedar"),
        "@id(\"support_no_loyalty\")\n@reason(\"support does not handle loyalty points\")\n\
         forbid(principal == Candor::Role::\"support_agent\", action, resource == Candor::Field::\"loyalty_points\");\n\
         @id(\"no_dob_writes\")\nforbid(principal, action == Candor::Action::\"write\", resource == Candor::Field::\"date_of_birth\");\n",
    )
    .unwrap();
    let (ok, out, err) = candor(&["catalog", "check"], cwd);
    assert!(ok, "{err}");
    assert!(out.contains("policies OK — 2 policies"), "{out}");

    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "a@example.com", "full_name": "A", "loyalty_points": 5})).await;
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let r = support.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(r.status, 200);
    assert!(r.body["withheld"].as_array().unwrap().contains(&json!("loyalty_points")), "{:?}", r.body);
    assert!(r.body["fields"].get("loyalty_points").is_none());
    let r = backend.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"date_of_birth": "1990-01-01"}})).await;
    assert_eq!((r.status, r.code()), (403, "policy_forbids"), "{:?}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("no_dob_writes"), "{:?}", r.body);
    let r = backend
        .post(
            "/v1/subjects",
            json!({"fields": {"email": "b@example.com", "full_name": "B", "date_of_birth": "1990-01-01"}}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "policy_forbids"), "{:?}", r.body);
}

#[tokio::test]
async fn misused_credentials_and_purposes_are_refused_with_their_own_codes() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "m@example.com", "full_name": "M"})).await;
    let path = format!("/v1/subjects/{id}");

    let no_purpose = server.client(&install.token("shop_backend"), None);
    let r = no_purpose.get(&path).await;
    assert_eq!((r.status, r.code()), (400, "purpose_required"));
    // A purpose that exists, but belongs to another role.
    let r = backend.with_purpose("customer_support").get(&path).await;
    assert_eq!((r.status, r.code()), (403, "purpose_not_allowed"));
    // A consent purpose without consent.
    let marketing = server.client(&install.token("marketing_tool"), Some("marketing"));
    let r = marketing.get(&path).await;
    assert_eq!((r.status, r.code()), (403, "consent_required"));
    // The admin manages tokens and sees no personal data.
    let admin = server.client(&install.admin_token, Some("account"));
    assert_eq!(admin.get(&path).await.code(), "purpose_not_allowed");
    // Only the admin manages tokens.
    assert_eq!(backend.get("/v1/tokens").await.code(), "admin_only");
    assert_eq!(server.client(&install.admin_token, None).get("/v1/tokens").await.status, 200);
}

#[tokio::test]
async fn break_glass_unmasks_one_customer_for_one_token_for_a_while_and_everyone_can_see_it() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;
    let other = backend.create(json!({"email": "bob@example.com", "full_name": "Bob"})).await;
    for who in [&id, &other] {
        let r = backend
            .with_purpose("order_fulfilment")
            .patch(&format!("/v1/subjects/{who}"), json!({"fields": {"phone": "+44 20 7946 0958"}}))
            .await;
        assert_eq!(r.status, 200);
    }
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let colleague = server.client(&install.token("support_agent"), Some("customer_support"));
    let glass = format!("/v1/subjects/{id}/break-glass");

    // Misuse first: no reason, boilerplate, a role without break-glass, an unknown customer.
    let r = support.post(&glass, json!({})).await;
    assert_eq!((r.status, r.code(), r.field()), (422, "invalid_value", "reason"), "{:?}", r.body);
    let r = support.post(&glass, json!({"reason": "urgent urgent urgent urgent urgent"})).await;
    assert_eq!((r.status, r.code()), (422, "invalid_value"));
    let fraud = server.client(&install.token("fraud_service"), Some("fraud_prevention"));
    let r = fraud.post(&glass, json!({"reason": "Chargeback dispute needs the full delivery address now"})).await;
    assert_eq!((r.status, r.code()), (403, "break_glass_not_allowed"));
    let r = support
        .post(
            &format!("/v1/subjects/{}/break-glass", uuid_like()),
            json!({"reason": "Caller locked out after a SIM swap, verifying identity"}),
        )
        .await;
    assert_eq!(r.status, 404);

    let reason = "Caller locked out after a SIM swap, verifying identity on ticket 4411";
    let r = support.post(&glass, json!({"reason": reason})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let opened = jiff::Timestamp::from_str(r.body["opened_at"].as_str().unwrap()).unwrap();
    let expires = jiff::Timestamp::from_str(r.body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires.as_millisecond() - opened.as_millisecond(), 15 * 60 * 1000, "the configured 15 minutes");

    // This token sees this customer in full; the colleague's token and the other customer stay masked.
    let r = support.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(
        (r.body["fields"]["phone"].as_str(), r.body["break_glass"].as_bool()),
        (Some("+44 20 7946 0958"), Some(true))
    );
    assert_eq!(r.body["masked"], json!([]));
    assert_eq!(colleague.get(&format!("/v1/subjects/{id}")).await.body["fields"]["phone"], "***58");
    assert_eq!(support.get(&format!("/v1/subjects/{other}")).await.body["fields"]["phone"], "***58");
    // Not past the purpose either: the address is still none of support's business.
    assert!(r.body["withheld"].as_array().unwrap().contains(&json!("shipping_address")));

    // Logged as break-glass (never the reason: it is personal), counted in metrics.
    let log = support.get(&format!("/v1/subjects/{id}/access-log")).await;
    let entries: Vec<&Value> = log.body["entries"].as_array().unwrap().iter().map(|e| &e["entry"]).collect();
    assert!(entries.iter().any(|e| e["action"] == "break_glass.open" && e["decision"] == "break_glass"));
    assert!(entries.iter().any(|e| e["action"] == "subject.read" && e["decision"] == "break_glass"));
    assert!(entries.iter().filter(|e| e["detail"] == "invalid_value").count() == 2, "refused attempts are logged");
    assert!(!log.body.to_string().contains("SIM swap"));
    let metrics = metrics_text(&backend).await;
    assert!(
        metrics.contains("candor_break_glass_total 1\n") && metrics.contains("candor_break_glass_open 1\n"),
        "{metrics}"
    );

    // The customer's access report shows the override with its reason.
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let report = privacy.get(&format!("/v1/subjects/{id}/report")).await;
    assert_eq!(report.status, 200, "{:?}", report.body);
    let overrides = report.body["break_glass"]["overrides"].as_array().unwrap();
    assert_eq!(overrides.len(), 1);
    assert_eq!((overrides[0]["role"].as_str(), overrides[0]["reason"].as_str()), (Some("support_agent"), Some(reason)));

    // An override does not get past a restriction.
    let r = backend
        .post(&format!("/v1/subjects/{other}/restriction"), json!({"reason": "Customer contests the accuracy"}))
        .await;
    assert_eq!(r.status, 200);
    let r = support.post(&format!("/v1/subjects/{other}/break-glass"), json!({"reason": reason})).await;
    assert_eq!((r.status, r.code()), (403, "restricted"));
}

async fn metrics_text(client: &Client) -> String {
    let r = client.request(reqwest::Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The value of one metric line.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test]
async fn metrics_need_a_token_and_hold_counts_only() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;

    // Like every route but /healthz and /openapi.json: no token, no metrics.
    let r = server.anonymous().get("/metrics").await;
    assert_eq!((r.status, r.code()), (401, "unauthenticated"), "{:?}", r.body);
    let r = server.client("cnd_not-a-real-token", None).get("/metrics").await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    // Any valid token will do (no purpose needed: it reads nothing personal).
    let monitoring =
        server.client(&install.token_with(&["--role", "privacy_team", "--description", "prometheus"]), None);
    let text = metrics_text(&monitoring).await;
    assert!(text.lines().all(|l| l.starts_with('#') || l.starts_with("candor_")), "{text}");
    assert!(!text.contains("ada") && !text.contains("Lovelace"), "counts only: {text}");
    assert!(metric(&text, "candor_log_entries") > 0);
}

#[tokio::test]
async fn the_break_glass_total_never_goes_down_when_the_customer_is_erased() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let reason = "Caller locked out after a SIM swap, verifying identity on ticket 4411";
    let r = support.post(&format!("/v1/subjects/{id}/break-glass"), json!({"reason": reason})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let before = metrics_text(&backend).await;
    assert_eq!((metric(&before, "candor_break_glass_total"), metric(&before, "candor_break_glass_open")), (1, 1));
    assert!(before.contains("# TYPE candor_break_glass_total counter"), "{before}");

    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let r = privacy.send(privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let after = metrics_text(&backend).await;
    assert_eq!(metric(&after, "candor_break_glass_total"), 1, "a counter never goes down: {after}");
    assert_eq!(metric(&after, "candor_break_glass_open"), 0, "the override went with the customer");

    // Survives a restart too: it is kept in the database, not in memory.
    drop(server.stop());
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    assert_eq!(metric(&metrics_text(&backend).await, "candor_break_glass_total"), 1);
}

fn uuid_like() -> String {
    "7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70".to_string()
}

/// The powers beyond reading and writing, for every role of the example catalog: who may record
/// a consent grant on a customer's behalf, erase, lift a restriction, and read the whole log.
/// Each attack of the authorization review is here: a support, fraud or marketing token can
/// neither subscribe a customer, nor erase one, nor lift their restriction, nor list the log.
async fn each_power_is_held_only_by_the_roles_the_catalog_gives_it(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    // (role, purpose, record consent, erase, lift restriction, audit)
    let matrix = [
        ("shop_backend", "account", true, false, false, false),
        ("privacy_team", "privacy_requests", false, true, true, true),
        ("support_agent", "customer_support", false, false, false, false),
        ("fraud_service", "fraud_prevention", false, false, false, false),
        ("marketing_tool", "marketing", false, false, false, false),
        ("analytics_service", "analytics", false, false, false, false),
        ("admin", "account", false, false, false, true),
    ];
    for (role, purpose, record_consent, erase, lift, audit) in matrix {
        let token = if role == "admin" { install.admin_token.clone() } else { install.token(role) };
        let client = server.client(&token, Some(purpose));
        let id = backend.create(json!({"email": format!("{role}@example.com"), "full_name": "Power Test"})).await;

        let grant =
            json!({"changes": [{"purpose": "analytics", "action": "grant"}], "evidence": "sign-up form, checkbox"});
        let r = client.post(&format!("/v1/subjects/{id}/consents"), grant).await;
        assert_eq!(r.status == 201, record_consent, "{role} records a consent grant: {:?}", r.body);
        if role != "admin" && !record_consent && purpose != "marketing" && purpose != "analytics" {
            assert_eq!(r.code(), "consent_recording_not_allowed", "{role}: {:?}", r.body);
        }
        // Withdrawing only protects the customer: every role acting for them may.
        if !["admin", "marketing_tool", "analytics_service"].contains(&role) {
            let withdraw = json!({"changes": [{"purpose": "analytics", "action": "withdraw"}]});
            let r = client.post(&format!("/v1/subjects/{id}/consents"), withdraw).await;
            assert_eq!(r.status, 201, "{role} withdraws: {:?}", r.body);
        }

        let restrict = backend
            .post(&format!("/v1/subjects/{id}/restriction"), json!({"reason": "The customer contests the address"}))
            .await;
        assert_eq!(restrict.status, 200, "anyone acting for the customer may restrict: {:?}", restrict.body);
        let r = client.send(client.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}/restriction"))).await;
        assert_eq!(r.status == 200, lift, "{role} lifts a restriction: {:?}", r.body);
        if !lift && role != "admin" {
            assert_eq!(r.code(), "erase_not_allowed", "{role}: {:?}", r.body);
        }

        let r = client.send(client.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}"))).await;
        assert_eq!(r.status == 200, erase, "{role} erases: {:?}", r.body);
        if !erase && role != "admin" {
            assert_eq!(r.code(), "erase_not_allowed", "{role}: {:?}", r.body);
        }

        let r = client.get("/v1/log/entries?start=0&end=1").await;
        assert_eq!(r.status == 200, audit, "{role} reads the whole log: {:?}", r.body);
        if !audit {
            assert_eq!(r.code(), "audit_not_allowed", "{role}: {:?}", r.body);
        }
        let bundle = reqwest::Client::new()
            .get(format!("{}/log/tile/entries/000.p/1", server.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(bundle.status() == 200, audit, "{role} reads entry bundles");
    }
    // Hash tiles and checkpoints stay public.
    assert_eq!(server.anonymous().get("/v1/log/checkpoint").await.status, 200);
    let tile = reqwest::get(format!("{}/log/tile/0/000.p/1", server.url)).await.unwrap();
    assert_eq!(tile.status(), 200);
}

/// A customer's own records about their data (access log, consents, history) go only to a caller
/// who may read that customer under its purpose, or under a customer_requests purpose; the access
/// log comes a page at a time.
async fn a_customers_records_follow_the_same_decision_as_reading_them_and_the_access_log_is_paged(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "paged@example.com", "full_name": "Paged"})).await;
    for _ in 0..5 {
        assert_eq!(backend.get(&format!("/v1/subjects/{id}")).await.status, 200);
    }
    // The marketing tool may not read a customer who gave no consent: nor their records.
    let marketing = server.client(&install.token("marketing_tool"), Some("marketing"));
    for path in ["access-log", "consents", "consents/history"] {
        let r = marketing.get(&format!("/v1/subjects/{id}/{path}")).await;
        assert_eq!((r.status, r.code()), (403, "consent_required"), "{path}: {:?}", r.body);
    }
    // A restricted customer's records: refused under an ordinary purpose, answered under the
    // privacy team's customer_requests purpose.
    let r = backend
        .post(&format!("/v1/subjects/{id}/restriction"), json!({"reason": "The customer contests the address"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = backend.get(&format!("/v1/subjects/{id}/access-log")).await;
    assert_eq!((r.status, r.code()), (403, "restricted"), "{:?}", r.body);
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let first = privacy.get(&format!("/v1/subjects/{id}/access-log?limit=2")).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["entries"].as_array().unwrap().len(), 2);
    let after = first.body["next_after"].as_u64().expect("more pages");
    let second = privacy.get(&format!("/v1/subjects/{id}/access-log?limit=1000&after={after}")).await;
    let rest = second.body["entries"].as_array().unwrap();
    assert!(rest.len() >= 5, "{:?}", second.body);
    assert!(rest.iter().all(|e| e["index"].as_u64().unwrap() > after));
    assert!(second.body["next_after"].is_null());
    let r = privacy.get(&format!("/v1/subjects/{id}/access-log?limit=0")).await;
    assert_eq!((r.status, r.code(), r.field()), (400, "invalid_query", "limit"));
}

/// A sign-in link signs its holder in as the customer, so only the operator's mailer role
/// (`[privacy_center] link_senders`) receives one; staff who may answer privacy requests cannot
/// make themselves a link and become the customer.
#[tokio::test]
async fn only_the_mailer_role_receives_sign_in_links() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "linked@example.com", "full_name": "Linked"})).await;
    let path = format!("/v1/subjects/{id}/privacy-center-links");
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let r = privacy.post(&path, json!({})).await;
    assert_eq!((r.status, r.code()), (403, "link_sender_not_allowed"), "{:?}", r.body);
    assert!(r.body.get("url").is_none() && !r.body.to_string().contains("cndl_"), "{:?}", r.body);
    let r = backend.with_purpose("privacy_requests").post(&path, json!({})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(r.body["url"].as_str().unwrap().contains("/privacy/sign-in/cndl_"), "{:?}", r.body);
    assert!(r.body.get("session").is_none() && r.headers.get("set-cookie").is_none(), "never a session");
}

/// `candor policy explain --power` says whether a role holds a power and which policy decided.
#[test]
fn explain_says_who_holds_a_power_and_why() {
    let install = Install::new();
    let config = install.config();
    let explain = |role: &str, purpose: &str, power: &str| {
        let args = [
            "policy",
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--role",
            role,
            "--purpose",
            purpose,
            "--power",
            power,
        ];
        let (ok, out, err) = candor(&args, install.dir.path());
        assert!(ok, "{err}");
        out
    };
    let out = explain("privacy_team", "privacy_requests", "erase");
    assert!(out.contains("decision: allowed") && out.contains("catalog.role.privacy_team.erase"), "{out}");
    let out = explain("shop_backend", "account", "erase");
    assert!(out.contains("decision: refused") && out.contains("catalog.bounds.erase"), "{out}");
    let out = explain("shop_backend", "account", "record_consent");
    assert!(out.contains("decision: allowed") && out.contains("catalog.role.shop_backend.record_consent"), "{out}");
    let out = explain("support_agent", "customer_support", "audit");
    assert!(out.contains("decision: refused"), "{out}");
    let out = explain("privacy_team", "privacy_requests", "audit");
    assert!(out.contains("decision: allowed"), "{out}");
    let (ok, _, err) = candor(
        &[
            "policy",
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--role",
            "shop_backend",
            "--purpose",
            "account",
            "--power",
            "share",
        ],
        install.dir.path(),
    );
    assert!(!ok && err.contains("needs --field"), "{err}");
}

/// Any role may restrict a customer (it only protects them), but a stolen token cannot restrict
/// the whole customer base: restrictions per token per hour are braked, like erasures.
#[tokio::test]
async fn restricting_many_customers_with_one_token_is_braked_for_an_hour() {
    let install = Install::new();
    let config = std::fs::read_to_string(install.config()).unwrap();
    assert!(config.contains("restrictions_per_hour = 60"), "new installations are braked");
    std::fs::write(install.config(), config.replace("restrictions_per_hour = 60", "restrictions_per_hour = 2"))
        .unwrap();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(backend.create(json!({"email": format!("r{i}@example.com"), "full_name": "Restricted"})).await);
    }
    let restrict = |id: &str| {
        let path = format!("/v1/subjects/{id}/restriction");
        let support = support.clone();
        async move { support.post(&path, json!({})).await }
    };
    assert_eq!(restrict(&ids[0]).await.status, 200);
    assert_eq!(restrict(&ids[1]).await.status, 200);
    let r = restrict(&ids[2]).await;
    assert_eq!((r.status, r.code()), (429, "restriction_rate_limited"), "{:?}", r.body);
    assert_eq!(
        backend.post(&format!("/v1/subjects/{}/restriction", ids[2]), json!({})).await.status,
        200,
        "another token"
    );
    install.advance_clock(std::time::Duration::from_secs(3601)); // time moves; nothing waits for it
    assert_eq!(restrict(&ids[3]).await.status, 200, "a new hour");
}
