//! `candor import subjects` against the real binary, on SQLite and on PostgreSQL: a messy CRM
//! export, its minimisation report (exact counts, line numbers, never a value), what is stored
//! (read back over HTTP), duplicates inside the file and against existing customers, re-runs.

mod common;

use std::path::Path;

use common::{Client, Install, candor};
use serde_json::{Value, json};

on_both_backends!(
    a_messy_export_is_reported_exactly_and_stored_as_reported,
    a_rerun_continues_without_doubling_anyone,
    existing_customers_are_updated_or_reported_when_asked,
    the_api_imports_under_the_same_decisions_and_refuses_what_it_must,
    a_streamed_api_import_runs_in_the_background_for_its_caller_only,
    a_killed_import_and_its_rerun_end_as_one_clean_run,
);

/// The messy CRM export (tests/data/crm_messy.csv). Line 2: a plus-address with a newsletter
/// consent and its evidence; 3: its alias without the plus (another customer: no guessing); 4: a
/// bad phone, "Germany" and a consent without its date; 5: a national phone (DE by default); 6:
/// line 2 again in capitals; 7: an existing customer, with a consent; 8: no name; 9: a country
/// that is none and a consent dated in the future. "shoe size" and "religion" are undeclared; "SMS
/// opt-in" is mapped to a consent but has no date column; "Date of birth" is not written under
/// order_fulfilment.
const FIXTURE: &str = include_str!("data/crm_messy.csv");

/// Consent columns mapped to their slots.
const MAP: &str = "Newsletter=consent:marketing/email,SMS opt-in=consent:marketing/sms";

/// Every personal value in the fixture: none may appear in a report, on the terminal or in a log.
const VALUES: [&str; 36] = [
    "ada+shop",
    "ada@example",
    "bob@example",
    "carol@example",
    "existing@example",
    "dave@example",
    "erin@example",
    "Lovelace",
    "Augusta",
    "Brokenphone",
    "Cleanrow",
    "Again-Twice",
    "Renamed",
    "Futuredate",
    "3860 000",
    "203860",
    "1234567",
    "7654321",
    "1111111",
    "Analytical",
    "Engine Row",
    "Hochstrasse",
    "Ringbahnweg",
    "Copy Lane",
    "Altbau",
    "Later Street",
    "N1 9G",
    "Germany",
    "Atlantis",
    "EU-44",
    "EU-45",
    "Pastafarian",
    "Jedi-Order",
    "1815-12-10",
    "signup-form",
    "paper form",
];

struct Shop {
    fulfil: Client,
    account: Client,
    _server: common::Server,
}

async fn shop(install: &Install) -> (Shop, String) {
    let server = install.serve();
    let token = install.token("shop_backend");
    let account = server.client(&token, Some("account"));
    let existing = account.create(json!({"email": "existing@example.com", "full_name": "Existing Customer"})).await;
    (Shop { fulfil: account.with_purpose("order_fulfilment"), account, _server: server }, existing)
}

fn import(install: &Install, extra: &[&str]) -> (bool, String, String, Value, String) {
    let dir = install.dir.path();
    let file = dir.join("crm.csv");
    if !file.exists() {
        std::fs::write(&file, FIXTURE).unwrap();
    }
    let config = install.config();
    let reports = dir.join("reports");
    let mut args = vec![
        "import",
        "subjects",
        file.to_str().unwrap(),
        "--purpose",
        "order_fulfilment",
        "--config",
        config.to_str().unwrap(),
        "--report",
        reports.to_str().unwrap(),
        "--default-region",
        "DE",
        "--map",
        MAP,
        "--consent-notice",
        "current",
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = candor(&args, dir);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap_or_default())
        .unwrap_or(Value::Null);
    let md = std::fs::read_to_string(reports.join("report.md")).unwrap_or_default();
    for text in [&out, &err, &json.to_string(), &md] {
        assert_no_values(text);
    }
    (ok, out, err, json, md)
}

fn assert_no_values(text: &str) {
    for v in VALUES {
        assert!(!text.to_lowercase().contains(&v.to_lowercase()), "a value ({v}) leaked into:\n{text}");
    }
}

/// The ids found for an e-mail address (through the API's lookup).
async fn ids(c: &Client, email: &str) -> Vec<String> {
    let r = c.get(&format!("/v1/subjects?email={}", email.replace('+', "%2B"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut ids: Vec<String> = r.body["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
    ids.sort();
    ids
}

/// Everything stored about the customers of the fixture, by e-mail: what each purpose reads.
async fn state(shop: &Shop) -> Vec<(String, Vec<String>, Value, Value)> {
    let mut out = Vec::new();
    for email in [
        "ada+shop@example.com",
        "ada@example.com",
        "bob@example.com",
        "carol@example.com",
        "existing@example.com",
        "dave@example.com",
        "erin@example.com",
    ] {
        let found = ids(&shop.fulfil, email).await;
        let (mut fulfil, mut account) = (Value::Null, Value::Null);
        if let [id] = found.as_slice() {
            fulfil = shop.fulfil.get(&format!("/v1/subjects/{id}")).await.body["fields"].clone();
            account = shop.account.get(&format!("/v1/subjects/{id}")).await.body["fields"].clone();
        }
        out.push((email.to_string(), found, fulfil, account));
    }
    out
}

fn column<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["columns"].as_array().unwrap().iter().find(|c| c["column"] == name).unwrap_or_else(|| panic!("{name}"))
}

/// The marketing/email consent of a customer, as the ledger derives it.
async fn newsletter(c: &Client, id: &str) -> Value {
    let r = c.get(&format!("/v1/subjects/{id}/consents")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["consents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["purpose"] == "marketing" && s["channel"] == "email")
        .cloned()
        .unwrap()
}

async fn history_len(c: &Client, id: &str) -> usize {
    let r = c.get(&format!("/v1/subjects/{id}/consents/history")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["entries"].as_array().map_or(0, Vec::len)
}

/// The report of the fixture imported under order_fulfilment (same from the CLI and the API).
fn assert_fixture_report(report: &Value) {
    assert_eq!(report["rows"], 8);
    assert_eq!(report["role"], "shop_backend");
    assert_eq!(report["default_region"], "DE");
    let expect_column = |name: &str, field: Value, status: &str, n: u64| {
        let c = column(report, name);
        assert_eq!(
            (&c["field"], c["status"].as_str().unwrap(), c["rows_with_value"].as_u64().unwrap()),
            (&field, status, n),
            "{name}: {c}"
        );
    };
    expect_column("E-mail", json!("email"), "imported", 8);
    expect_column("Name", json!("full_name"), "imported", 7);
    expect_column("Phone", json!("phone"), "imported", 8);
    expect_column("Country", json!("shipping_address.country"), "imported", 7);
    expect_column("shoe size", Value::Null, "undeclared", 3);
    expect_column("religion", Value::Null, "undeclared", 2);
    expect_column("Newsletter", json!("consent:marketing/email"), "consent", 6);
    expect_column("Newsletter date", Value::Null, "consent_evidence", 4);
    expect_column("Newsletter source", Value::Null, "consent_evidence", 5);
    expect_column("SMS opt-in", Value::Null, "consent_refused", 2);
    expect_column("Date of birth", json!("date_of_birth"), "not_writable", 1);
    assert!(column(report, "SMS opt-in")["note"].as_str().unwrap().contains("no date column"));

    let invalid = report["invalid_values"].as_array().unwrap();
    assert_eq!(invalid.len(), 2, "{invalid:?}");
    let phone = invalid.iter().find(|i| i["field"] == "phone").unwrap();
    assert_eq!((&phone["count"], &phone["lines"]), (&json!(1), &json!([4])), "12345 is no number; 030… is (DE)");
    let address = invalid.iter().find(|i| i["field"] == "shipping_address").unwrap();
    assert_eq!((&address["count"], &address["lines"]), (&json!(1), &json!([9])), "Germany is DE; Atlantis is none");
    assert!(address["reason"].as_str().unwrap().contains("ISO 3166-1"));
    let field = |name: &str| report["fields"].as_array().unwrap().iter().find(|f| f["field"] == name).unwrap().clone();
    assert_eq!(field("phone"), json!({"field": "phone", "values": 8, "valid": 7, "invalid": 1}));
    assert_eq!(field("shipping_address"), json!({"field": "shipping_address", "values": 7, "valid": 6, "invalid": 1}));
    assert_eq!(field("email"), json!({"field": "email", "values": 8, "valid": 8, "invalid": 0}));

    let consents = report["consents"].as_array().unwrap();
    assert_eq!(consents.len(), 1, "the SMS column is refused: {consents:?}");
    let c = &consents[0];
    assert_eq!((&c["purpose"], &c["channel"]), (&json!("marketing"), &json!("email")));
    assert_eq!((&c["grants"], &c["not_given"]), (&json!(3), &json!(3)), "lines 2, 6, 7; lines 3, 5, 8");
    assert_eq!(c["given_at_from"], "column `Newsletter date`");
    assert_eq!(c["source_from"], "column `Newsletter source`");
    assert_eq!(c["notice_version_from"], "--consent-notice");
    let reasons: Vec<(String, Value)> = c["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["reason"].as_str().unwrap().into(), i["lines"].clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("date is empty: a consent needs the time it was given".to_string(), json!([4])),
            ("date is in the future".to_string(), json!([9])),
        ]
    );

    assert_eq!(report["duplicates_in_file"], json!([{"line": 6, "field": "email", "first_line": 2}]));
    let existing_rows = report["existing_customers"].as_array().unwrap();
    assert_eq!(existing_rows.len(), 1);
    assert_eq!((&existing_rows[0]["line"], &existing_rows[0]["field"]), (&json!(7), &json!("email")));
    assert_eq!(
        report["incomplete_rows"],
        json!([{"line": 8, "field": "full_name", "reason": "required field empty or invalid: row not imported"}])
    );
    assert_eq!(
        report["plan"],
        json!({"create": 5, "update": 0, "skip_existing": 1, "skip_duplicate_in_file": 1, "skip_incomplete": 1,
               "skip_empty": 0, "done_earlier": 0, "consents": 2})
    );
}

async fn a_messy_export_is_reported_exactly_and_stored_as_reported(install: Install) {
    let (shop, existing) = shop(&install).await;

    // A dry run writes the report and stores nothing.
    let (ok, out, err, report, md) = import(&install, &["--dry-run"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("dry run: nothing was stored"), "{out}");
    assert_eq!(report["dry_run"], true);
    assert!(ids(&shop.fulfil, "carol@example.com").await.is_empty(), "a dry run stores nothing");
    assert_fixture_report(&report);
    assert!(md.contains("## Consents"), "{md}");
    assert!(out.contains("column `religion`: 2 with a value, not imported"), "{out}");

    // The import stores exactly what the report said.
    let (ok, out, err, report, _) = import(&install, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("imported: 5 created, 0 updated, 1 unchanged, 0 failed; 2 consents recorded"), "{out}");
    assert_fixture_report(&report);
    assert_eq!(report["outcome"]["created"], 5);
    assert_eq!(report["outcome"]["consents_recorded"], 2);
    let state = state(&shop).await;
    let by = |email: &str| state.iter().find(|s| s.0 == email).unwrap();
    let (_, ids_ada, fulfil, account) = by("ada+shop@example.com");
    assert_eq!(ids_ada.len(), 1);
    assert_eq!(
        fulfil,
        &json!({"email": "ada+shop@example.com", "full_name": "Ada Lovelace", "phone": "+442038600001",
            "shipping_address": {"street": "1 Analytical Way", "city": "London", "postal_code": "N1 9GU", "country": "GB"}})
    );
    assert!(account.get("date_of_birth").is_none(), "not written under order_fulfilment: {account}");
    let ada = &ids_ada[0];
    let consent = newsletter(&shop.account, ada).await;
    assert_eq!(consent["status"], "granted", "{consent}");
    assert_eq!(consent["since"], "2024-03-01T09:30:00Z");
    let (_, _, fulfil, _) = by("ada@example.com");
    assert_eq!(fulfil["email"], "ada@example.com", "a plus-address is another customer");
    assert_eq!(fulfil["shipping_address"]["country"], "GB", "lower case is stored in capitals");
    let (_, ids_bob, fulfil, _) = by("bob@example.com");
    assert_eq!(
        fulfil,
        &json!({"email": "bob@example.com", "full_name": "Bob Brokenphone",
            "shipping_address": {"street": "3 Hochstrasse", "city": "Berlin", "postal_code": "10115", "country": "DE"}}),
        "the invalid phone left out, Germany stored as DE"
    );
    assert_eq!(newsletter(&shop.account, &ids_bob[0]).await["status"], "not_given", "no date, no consent");
    let (_, ids_carol, fulfil, _) = by("carol@example.com");
    assert_eq!(fulfil["phone"], "+49301234567", "national form with the default region, in E.164");
    assert_eq!(history_len(&shop.account, &ids_carol[0]).await, 0, "no is no record");
    let (_, ids_existing, fulfil, _) = by("existing@example.com");
    assert_eq!(ids_existing, &vec![existing.clone()], "never doubled");
    assert_eq!(fulfil, &json!({"email": "existing@example.com", "full_name": "Existing Customer"}), "skipped");
    let consent = newsletter(&shop.account, &existing).await;
    assert_eq!((&consent["status"], &consent["since"]), (&json!("granted"), &json!("2023-01-15T00:00:00Z")));
    let (_, ids_dave, _, _) = by("dave@example.com");
    assert!(ids_dave.is_empty(), "a row without its required name is not imported");
    let (_, ids_erin, fulfil, _) = by("erin@example.com");
    assert_eq!(fulfil, &json!({"email": "erin@example.com", "full_name": "Erin Futuredate", "phone": "+442038600004"}));
    assert_eq!(history_len(&shop.account, &ids_erin[0]).await, 0, "a consent dated in the future is not recorded");

    // The audit log holds names, ids and counts, never a value.
    let auditor = shop._server.client(&install.token("privacy_team"), None);
    let log = auditor.get("/v1/log/entries?start=0&end=1000").await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    let text = log.body.to_string();
    assert!(text.contains("consent.change") && text.contains("subject.create"), "{text}");
    assert_no_values(&text);
}

async fn a_rerun_continues_without_doubling_anyone(install: Install) {
    let (shop, _) = shop(&install).await;
    // A first run "crashes" after part of the file: simulated by importing its first lines only.
    let dir = install.dir.path();
    let partial: String = FIXTURE.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("crm.csv"), partial).unwrap();
    let (ok, out, err, _, _) = import(&install, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("imported: 2 created"), "{out}");

    std::fs::write(dir.join("crm.csv"), FIXTURE).unwrap();
    let (ok, out, err, report, _) = import(&install, &[]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(report["plan"]["create"], 3, "only what the first run did not store");
    assert_eq!(report["plan"]["skip_existing"], 3);
    assert_eq!(report["outcome"]["consents_already_recorded"], 1, "line 2's consent is not recorded twice");
    let first = state(&shop).await;

    let (ok, out, err, report, _) = import(&install, &[]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(report["plan"]["create"], 0);
    assert_eq!(report["outcome"]["created"], 0);
    assert_eq!(report["outcome"]["consents_recorded"], 0);
    assert_eq!(report["outcome"]["consents_already_recorded"], 2);
    assert_eq!(state(&shop).await, first, "running again changes nothing");
    for (email, ids, _, _) in &first {
        assert!(ids.len() <= 1, "{email} doubled");
    }
    let ada = &first.iter().find(|s| s.0 == "ada+shop@example.com").unwrap().1[0];
    assert_eq!(history_len(&shop.account, ada).await, 1, "one grant, however often imported");
}

async fn existing_customers_are_updated_or_reported_when_asked(install: Install) {
    let (shop, existing) = shop(&install).await;
    let (ok, out, err, report, md) = import(&install, &["--on-duplicate", "report"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(report["existing_customers"][0]["subject_id"], existing.as_str(), "listed for a decision");
    assert!(md.contains(&existing), "{md}");
    let fields = shop.fulfil.get(&format!("/v1/subjects/{existing}")).await.body["fields"].clone();
    assert_eq!(fields, json!({"email": "existing@example.com", "full_name": "Existing Customer"}));
    assert_eq!(history_len(&shop.account, &existing).await, 0, "left as it is, consent included");

    let (ok, out, err, report, _) = import(&install, &["--on-duplicate", "update"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(report["plan"]["update"], 6, "the existing customer and the five created before");
    assert_eq!(report["plan"]["create"], 0);
    let fields = shop.fulfil.get(&format!("/v1/subjects/{existing}")).await.body["fields"].clone();
    assert_eq!(fields["full_name"], "Existing Renamed");
    assert_eq!(fields["phone"], "+49307654321");
    assert_eq!(fields["shipping_address"]["city"], "Hamburg");
    assert_eq!(ids(&shop.fulfil, "existing@example.com").await, vec![existing.clone()]);
    assert_eq!(newsletter(&shop.account, &existing).await["status"], "granted");
    // Each update is a logged correction.
    let log = shop.fulfil.get(&format!("/v1/subjects/{existing}/access-log")).await;
    let text = log.body.to_string();
    assert!(text.contains("subject.correct"), "{text}");
    assert_no_values(&text);
    assert!(Path::new(&install.dir.path().join("reports/report.md")).exists());
}

async fn the_api_imports_under_the_same_decisions_and_refuses_what_it_must(install: Install) {
    let server = install.serve_logging_to("server.log");
    let shop = server.client(&install.token("shop_backend"), Some("order_fulfilment"));
    let query = format!(
        "/v1/imports?default_region=DE&consent_notice=current&map={}",
        MAP.replace('=', "%3D").replace(',', "%2C").replace(':', "%3A").replace('/', "%2F").replace(' ', "%20")
    );
    let csv = FIXTURE.as_bytes().to_vec();
    let existing = shop
        .with_purpose("account")
        .create(json!({"email": "existing@example.com", "full_name": "Existing Customer"}))
        .await;
    let nothing_stored = || async { ids(&shop, "carol@example.com").await.is_empty() };

    // Refusals, each before anything is stored: who asks, where, what, the status and code.
    type Refusal<'a> = (Client, String, &'a str, Vec<u8>, u16, &'a str);
    let refusals: Vec<Refusal> = vec![
        (server.client(&install.token("shop_backend"), None), query.clone(), "text/csv", csv.clone(), 400, ""),
        (
            server.client(&install.token("marketing_tool"), Some("marketing")),
            query.clone(),
            "text/csv",
            csv.clone(),
            403,
            "consent_required",
        ),
        (
            server.client(&install.token("fraud_service"), Some("fraud_prevention")),
            query.clone(),
            "text/csv",
            csv.clone(),
            403,
            "field_not_allowed",
        ),
        (
            server.client(&install.token("shop_backend"), Some("customer_support")),
            query.clone(),
            "text/csv",
            csv.clone(),
            403,
            "purpose_not_allowed",
        ),
        (
            server.client(&install.token("support_agent"), Some("customer_support")),
            query.clone(),
            "text/csv",
            csv.clone(),
            403,
            "consent_recording_not_allowed",
        ),
        (shop.clone(), query.clone(), "application/pdf", csv.clone(), 415, "unsupported_media_type"),
        (shop.clone(), "/v1/imports?map=Nope%3Demail".into(), "text/csv", csv.clone(), 422, "invalid_value"),
        (shop.clone(), "/v1/imports?default_region=Narnia".into(), "text/csv", csv.clone(), 422, "invalid_value"),
        (shop.clone(), "/v1/imports?colour=blue".into(), "text/csv", csv.clone(), 400, "invalid_query"),
        (
            shop.clone(),
            "/v1/imports".into(),
            "text/csv",
            b"ada.canary@example.com,Ada\n".to_vec(),
            422,
            "invalid_value",
        ),
        (
            shop.clone(),
            "/v1/imports?format=jsonl".into(),
            "text/csv",
            b"{\"email\": \"x\"}\nnot json\n".to_vec(),
            422,
            "invalid_value",
        ),
    ];
    for (client, path, content_type, body, status, code) in refusals {
        let r = client.post_raw(&path, content_type, body).await;
        assert_eq!(r.status, status, "{path}: {:?}", r.body);
        if !code.is_empty() {
            assert_eq!(r.code(), code, "{path}: {:?}", r.body);
        }
        assert_no_values(&r.body.to_string());
    }
    assert!(nothing_stored().await);
    // A body declared bigger than an import takes is refused before it is read.
    let token = install.token("shop_backend");
    let (status, _, body) = raw_request(
        &server.url,
        &format!(
            "POST /v1/imports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nCandor-Purpose: \
             order_fulfilment\r\nContent-Type: text/csv\r\nContent-Length: 2000000000\r\nConnection: close\r\n\r\n"
        ),
        None,
    );
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("payload_too_large")), "{body}");

    // Least privilege: a role that may create customers under its purpose may import there.
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let r = support.post_raw("/v1/imports?dry_run=true&default_region=DE", "text/csv", csv.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["dry_run"], true);
    assert_eq!(column(&r.body, "Street")["status"], "not_writable");

    // A dry run over the API answers the same report as the CLI, and stores nothing.
    let r = shop.post_raw(&format!("{query}&dry_run=true"), "text/csv", csv.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut report = r.body.clone();
    assert_eq!(report["file"], "request body");
    assert_fixture_report(&report);
    assert!(nothing_stored().await);

    // The import.
    let r = shop.post_raw(&query, "text/csv; charset=utf-8", csv.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_fixture_report(&r.body);
    assert_eq!(r.body["outcome"]["created"], 5);
    assert_eq!(r.body["outcome"]["consents_recorded"], 2);
    assert_no_values(&r.body.to_string());
    assert_eq!(ids(&shop, "carol@example.com").await.len(), 1);
    assert_eq!(ids(&shop, "existing@example.com").await, vec![existing]);

    // JSON Lines, the same way.
    let jsonl =
        b"{\"E-mail\": \"frank@example.com\", \"Name\": \"Frank Jsonline\", \"Phone\": \"0301234568\"}\n".to_vec();
    let r = shop.post_raw("/v1/imports?default_region=DE", "application/x-ndjson", jsonl).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!((&r.body["format"], &r.body["outcome"]["created"]), (&json!("jsonl"), &json!(1)));
    report["plan"] = Value::Null;

    let log = server.stop();
    for v in VALUES.iter().chain(["frank@", "Jsonline"].iter()) {
        assert!(!log.to_lowercase().contains(&v.to_lowercase()), "a value ({v}) leaked into the server log");
    }
}

/// A large file, each row a new customer, every third with a consent.
fn big_file(rows: usize) -> String {
    big_file_of("c", rows)
}

/// [`big_file`] with e-mail addresses starting with `prefix`.
fn big_file_of(prefix: &str, rows: usize) -> String {
    let mut s = String::from("E-mail,Name,Phone,Newsletter,Newsletter date,Newsletter source\n");
    for i in 0..rows {
        let consent = if i % 3 == 0 { "yes,2024-01-02,signup-form v3" } else { ",," };
        s.push_str(&format!("{prefix}{i}@example.com,Customer {i},+44 20 3860 {:04},{consent}\n", i % 10_000));
    }
    s
}

/// Sends `head` (request line and headers) over a new connection, then `chunks` as a chunked
/// body if given, and reads the answer to the end: status, headers (lower case) and JSON body.
fn raw_request(url: &str, head: &str, chunks: Option<&[&[u8]]>) -> (u16, String, Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    for c in chunks.unwrap_or_default() {
        s.write_all(format!("{:x}\r\n", c.len()).as_bytes()).unwrap();
        s.write_all(c).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    if chunks.is_some() {
        s.write_all(b"0\r\n\r\n").unwrap();
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, mut body) = text.split_once("\r\n\r\n").map(|(h, b)| (h.to_lowercase(), b.to_string())).unwrap();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if head.contains("transfer-encoding: chunked") {
        let mut plain = String::new();
        let mut rest = body.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            plain.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        body = plain;
    }
    (status, head, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The background import at `location`, once it has ended (`Prefer: wait`, asked again while
/// it runs).
async fn ended(c: &Client, location: &str) -> Value {
    for _ in 0..30 {
        let r = c.send(c.request(reqwest::Method::GET, location).header("Prefer", "wait=20")).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        if r.body["state"] == "done" || r.body["state"] == "failed" {
            return r.body;
        }
    }
    panic!("the import at {location} did not end");
}

async fn a_streamed_api_import_runs_in_the_background_for_its_caller_only(install: Install) {
    const ROWS: usize = 5000;
    let mut server = install.serve();
    let token = install.token("shop_backend");
    let shop = server.client(&token, Some("account"));
    let query = "/v1/imports?consent_notice=current&map=Newsletter%3Dconsent%3Amarketing%2Femail,Phone%3D";

    // A streamed body (chunked, no length, cut at odd places) is imported as a file is.
    let file = big_file_of("s", ROWS);
    let pieces: Vec<&[u8]> = file.as_bytes().chunks(7919).collect();
    let head = format!(
        "POST {query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nCandor-Purpose: account\r\n\
         Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let (status, _, report) = raw_request(&server.url, &head, Some(&pieces));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["rows"], ROWS);
    assert_eq!(report["outcome"]["created"], ROWS, "{}", report["outcome"]);
    assert_eq!(report["outcome"]["consents_recorded"], ROWS.div_ceil(3));
    assert_eq!(ids(&shop, "s4999@example.com").await.len(), 1);

    // In the background: 202, where to ask, and the same report once done.
    let r = post_async(&shop, query, big_file_of("b", ROWS)).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.headers["preference-applied"], "respond-async");
    let location = r.headers["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("/v1/imports/{}", r.body["id"].as_str().unwrap()));
    assert!(["checking", "importing"].contains(&r.body["state"].as_str().unwrap()), "{:?}", r.body);
    assert_eq!((&r.body["purpose"], &r.body["role"]), (&json!("account"), &json!("shop_backend")));

    // While it runs, a server takes two background imports at most.
    let second = post_async(&shop, query, big_file_of("d", ROWS)).await;
    assert_eq!(second.status, 202, "{:?}", second.body);
    let third = post_async(&shop, query, big_file_of("e", 10)).await;
    assert_eq!((third.status, third.code()), (429, "too_many_imports"), "{:?}", third.body);

    // Only its caller may read it: not another token of the same role, not the same token under
    // another purpose, not another role; an unknown or malformed id is not found either.
    let other_token = server.client(&install.token("shop_backend"), Some("account"));
    let other_purpose = server.client(&token, Some("order_fulfilment"));
    let other_role = server.client(&install.token("support_agent"), Some("customer_support"));
    let unknown = format!("/v1/imports/{}", uuid_like());
    for (c, path) in [
        (&other_token, location.as_str()),
        (&other_purpose, location.as_str()),
        (&other_role, location.as_str()),
        (&shop, unknown.as_str()),
        (&shop, "/v1/imports/not-an-id"),
    ] {
        let r = c.get(path).await;
        assert_eq!((r.status, r.code(), r.field()), (404, "import_not_found", "id"), "{path}: {:?}", r.body);
    }
    let r = server.client(&install.token("support_agent"), Some("account")).get(&location).await;
    assert_eq!((r.status, r.code()), (403, "purpose_not_allowed"), "{:?}", r.body);
    let r = server.client(&token, None).get(&location).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = server.anonymous().get(&location).await;
    assert_eq!(r.status, 401, "{:?}", r.body);

    let done = ended(&shop, &location).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        (&done["rows"], &done["rows_checked"], &done["rows_imported"]),
        (&json!(ROWS), &json!(ROWS), &json!(ROWS))
    );
    assert_eq!(done["report"]["outcome"]["created"], ROWS, "{}", done["report"]["outcome"]);
    assert!(done["ended_at"].is_string() && done["kept_until"].is_string(), "{done}");
    assert_eq!(ids(&shop, "b4999@example.com").await.len(), 1);
    let second = ended(&shop, &format!("/v1/imports/{}", second.body["id"].as_str().unwrap())).await;
    assert_eq!(second["report"]["outcome"]["created"], ROWS, "{second}");

    // A file the import refuses ends the job with the error the request would have answered,
    // and stores nothing; a dry run ends with the report alone.
    let r = post_async(&shop, "/v1/imports", "ada.canary@example.com,Ada Canarywing\n".into()).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let failed = ended(&shop, r.headers["location"].to_str().unwrap()).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!((&failed["error"]["status"], &failed["error"]["code"]), (&json!(422), &json!("invalid_value")));
    assert_eq!(failed["error"]["field"], "file");
    assert!(!failed.to_string().contains("canary"), "{failed}");

    // Ended imports are kept 24 hours, and not across a restart.
    install.advance_clock(std::time::Duration::from_secs(23 * 3600));
    assert_eq!(shop.get(&location).await.status, 200);
    let r = post_async(&shop, &format!("{query}&dry_run=true"), big_file_of("f", 10)).await;
    let dry = ended(&shop, r.headers["location"].to_str().unwrap()).await;
    assert_eq!(
        (&dry["state"], &dry["dry_run"], &dry["report"]["dry_run"]),
        (&json!("done"), &json!(true), &json!(true))
    );
    assert_eq!(dry["report"]["plan"]["create"], 10);
    assert!(ids(&shop, "f1@example.com").await.is_empty());
    install.advance_clock(std::time::Duration::from_secs(2 * 3600));
    let r = shop.get(&location).await;
    assert_eq!((r.status, r.code()), (404, "import_not_found"), "{:?}", r.body);
    let dry_location = format!("/v1/imports/{}", dry["id"].as_str().unwrap());
    assert_eq!(shop.get(&dry_location).await.status, 200);
    assert!(server.is_running());
    let log = server.stop();
    assert!(
        !log.contains("s4999@") && !log.contains("b4999@") && !log.contains("canary"),
        "a value leaked into the log"
    );
    let server = install.serve();
    let r = server.client(&token, Some("account")).get(&dry_location).await;
    assert_eq!((r.status, r.code()), (404, "import_not_found"), "{:?}", r.body);
}

/// Starts a background import of `body` (CSV).
async fn post_async(c: &Client, path: &str, body: String) -> common::Resp {
    c.send(
        c.request(reqwest::Method::POST, path)
            .header("content-type", "text/csv")
            .header("Prefer", "respond-async")
            .body(body),
    )
    .await
}

/// A well-formed id no import has.
fn uuid_like() -> &'static str {
    "0b7e7c5e-4d1f-4c86-9a43-2f0d1e6c9a10"
}

async fn a_killed_import_and_its_rerun_end_as_one_clean_run(install: Install) {
    // More than two of the import's batches (4,096 rows), so the kill lands after a first one.
    const ROWS: usize = 9000;
    let dir = install.dir.path().to_path_buf();
    let file = dir.join("big.csv");
    std::fs::write(&file, big_file(ROWS)).unwrap();
    let reports = dir.join("reports");
    let config = install.config();
    let base: Vec<String> = [
        "import",
        "subjects",
        file.to_str().unwrap(),
        "--purpose",
        "account",
        "--config",
        config.to_str().unwrap(),
        "--report",
        reports.to_str().unwrap(),
        "--map",
        "Newsletter=consent:marketing/email,Phone=",
        "--consent-notice",
        "current",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let checkpoint = reports.join("import.checkpoint.json");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_candor"))
        .args(&base)
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed as soon as a first batch is committed (its checkpoint written).
    let mid = common::eventually(std::time::Duration::from_secs(120), || {
        checkpoint.exists() || child.try_wait().unwrap().is_some()
    });
    assert!(mid, "the import neither committed a batch nor ended");
    let _ = child.kill(); // SIGKILL
    let status = child.wait().unwrap();
    let killed_mid_import = !status.success() && checkpoint.exists();
    eprintln!("killed mid-import: {killed_mid_import}");

    let refs: Vec<&str> = base.iter().map(String::as_str).collect();
    let (ok, out, err) = candor(&refs, &dir);
    assert!(ok, "{out}\n{err}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap()).unwrap();
    if killed_mid_import {
        assert!(report["resumed_after_line"].as_u64().unwrap() > 1, "{report}");
        assert!(report["plan"]["done_earlier"].as_u64().unwrap() > 0);
    }
    assert!(!checkpoint.exists(), "a finished import leaves no checkpoint");
    let created_or_found = report["plan"]["create"].as_u64().unwrap()
        + report["plan"]["done_earlier"].as_u64().unwrap()
        + report["plan"]["skip_existing"].as_u64().unwrap();
    assert_eq!(created_or_found, ROWS as u64, "{report}");

    // Every row's customer exists exactly once (a doubled one could not be updated), and every
    // consent is held exactly once: as after one clean run.
    let (ok, out, err) =
        candor(&refs.iter().copied().chain(["--on-duplicate", "update", "--dry-run"]).collect::<Vec<_>>(), &dir);
    assert!(ok, "{out}\n{err}");
    let check: Value = serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap()).unwrap();
    assert_eq!((&check["plan"]["update"], &check["plan"]["create"]), (&json!(ROWS), &json!(0)), "{}", check["plan"]);
    let (ok, out, err) = candor(&refs, &dir);
    assert!(ok, "{out}\n{err}");
    let again: Value = serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap()).unwrap();
    assert_eq!(again["outcome"]["consents_recorded"], 0, "{}", again["outcome"]);
    assert_eq!(again["outcome"]["consents_already_recorded"], json!(ROWS.div_ceil(3)));
}

/// A file without a header line: its first customer must not become column names printed in the
/// report or on the terminal.
#[test]
fn a_file_without_a_header_is_refused_before_anything_is_printed() {
    let install = Install::new();
    let dir = install.dir.path();
    let file = dir.join("no-header.csv");
    std::fs::write(&file, "ada.canary@example.com,Ada Canarywing\nbob@example.com,Bob\n").unwrap();
    let reports = dir.join("reports");
    let config = install.config();
    let args = [
        "import",
        "subjects",
        file.to_str().unwrap(),
        "--purpose",
        "order_fulfilment",
        "--config",
        config.to_str().unwrap(),
        "--report",
        reports.to_str().unwrap(),
    ];
    let (ok, out, err) = candor(&args, dir);
    assert!(!ok, "{out}");
    assert!(err.contains("needs a header line"), "{err}");
    assert!(!out.contains("canary") && !err.contains("canary"), "{out}{err}");
    assert!(!reports.join("report.md").exists(), "no report of data as column names");
}
