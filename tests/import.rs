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
);

const HEADER: &str = "E-mail,Name,Phone,Street,City,Postcode,Country,shoe size,religion,Newsletter,Date of birth\n";

/// Line 2 and 3: a plus-address is another address (no guessing). Line 4: a bad phone and
/// "Germany". Line 6 repeats line 2 (case differs). Line 7: an existing customer. Line 8: no name.
const ROWS: &str = "\
ada+shop@example.com,Ada Lovelace,+44 20 3860 0001,1 Analytical Way,London,N1 9GU,GB,EU-44-wide,Pastafarian,yes,1815-12-10
ada@example.com,Augusta Byron,+44 20 3860 0002,2 Engine Row,London,N1 9GV,gb,,,,
bob@example.com,Bob Brokenphone,0171 555 1234,3 Hochstrasse,Berlin,10115,Germany,EU-45-narrow,Jedi-Order,,
carol@example.com,Carol Cleanrow,+49 30 1234567,4 Ringbahnweg,Berlin,10117,DE,,,no,
ADA+shop@example.com,Ada Again-Twice,+44 20 3860 0003,5 Copy Lane,London,N1 9GW,GB,EU-46-extra,,,
existing@example.com,Existing Renamed,+49 30 7654321,6 Altbau,Hamburg,20095,DE,,,,
dave@example.com,,+49 30 1111111,,,,,,,,
";

/// Every personal value in the fixture: none may appear in a report or on the terminal.
const VALUES: [&str; 30] = [
    "ada+shop",
    "ada@example",
    "bob@example",
    "carol@example",
    "existing@example",
    "dave@example",
    "Lovelace",
    "Augusta",
    "Brokenphone",
    "Cleanrow",
    "Again-Twice",
    "Renamed",
    "3860 000",
    "0171 555",
    "1234567",
    "7654321",
    "1111111",
    "Analytical",
    "Engine Row",
    "Hochstrasse",
    "Ringbahnweg",
    "Copy Lane",
    "Altbau",
    "N1 9G",
    "Germany",
    "EU-44",
    "EU-45",
    "Pastafarian",
    "Jedi-Order",
    "1815-12-10",
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
        std::fs::write(&file, format!("{HEADER}{ROWS}")).unwrap();
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

async fn a_messy_export_is_reported_exactly_and_stored_as_reported(install: Install) {
    let (shop, existing) = shop(&install).await;

    // A dry run writes the report and stores nothing.
    let (ok, out, err, report, md) = import(&install, &["--dry-run"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("dry run: nothing was stored"), "{out}");
    assert_eq!(report["dry_run"], true);
    assert!(ids(&shop.fulfil, "carol@example.com").await.is_empty(), "a dry run stores nothing");

    assert_eq!(report["rows"], 7);
    assert_eq!(report["role"], "shop_backend", "the first role acting under the purpose");
    let expect_column = |name: &str, field: Value, status: &str, n: u64| {
        let c = column(&report, name);
        assert_eq!(
            (&c["field"], c["status"].as_str().unwrap(), c["rows_with_value"].as_u64().unwrap()),
            (&field, status, n),
            "{name}"
        );
    };
    expect_column("E-mail", json!("email"), "imported", 7);
    expect_column("Name", json!("full_name"), "imported", 6);
    expect_column("Phone", json!("phone"), "imported", 7);
    expect_column("Country", json!("shipping_address.country"), "imported", 6);
    expect_column("shoe size", Value::Null, "undeclared", 3);
    expect_column("religion", Value::Null, "undeclared", 2);
    expect_column("Newsletter", Value::Null, "consent", 2);
    expect_column("Date of birth", json!("date_of_birth"), "not_writable", 1);
    assert!(
        md.contains("consent columns are imported with `candor import consents`, which records their evidence"),
        "{md}"
    );
    assert!(out.contains("column `religion`: 2 with a value, not imported"), "{out}");

    let invalid = report["invalid_values"].as_array().unwrap();
    assert_eq!(invalid.len(), 2, "{invalid:?}");
    let phone = invalid.iter().find(|i| i["field"] == "phone").unwrap();
    assert_eq!((&phone["count"], &phone["lines"]), (&json!(1), &json!([4])));
    assert!(phone["reason"].as_str().unwrap().contains("international form"));
    let address = invalid.iter().find(|i| i["field"] == "shipping_address").unwrap();
    assert_eq!((&address["count"], &address["lines"]), (&json!(1), &json!([4])));
    assert!(address["reason"].as_str().unwrap().contains("ISO 3166-1"));
    let field = |name: &str| report["fields"].as_array().unwrap().iter().find(|f| f["field"] == name).unwrap().clone();
    assert_eq!(field("phone"), json!({"field": "phone", "values": 7, "valid": 6, "invalid": 1}));
    assert_eq!(field("shipping_address"), json!({"field": "shipping_address", "values": 6, "valid": 5, "invalid": 1}));

    assert_eq!(report["duplicates_in_file"], json!([{"line": 6, "field": "email", "first_line": 2}]));
    let existing_rows = report["existing_customers"].as_array().unwrap();
    assert_eq!(existing_rows.len(), 1);
    assert_eq!((&existing_rows[0]["line"], &existing_rows[0]["field"]), (&json!(7), &json!("email")));
    assert!(existing_rows[0].get("subject_id").is_none(), "skip does not list ids");
    assert_eq!(report["incomplete_rows"][0]["line"], 8);
    assert_eq!(report["incomplete_rows"][0]["field"], "full_name");
    assert_eq!(
        report["plan"],
        json!({"create": 4, "update": 0, "skip_existing": 1, "skip_duplicate_in_file": 1, "skip_incomplete": 1, "skip_empty": 0})
    );

    // The import stores exactly what the report said.
    let (ok, out, err, report, _) = import(&install, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("imported: 4 created, 0 updated, 0 unchanged, 0 failed"), "{out}");
    assert_eq!(report["outcome"]["created"], 4);
    let state = state(&shop).await;
    let by = |email: &str| state.iter().find(|s| s.0 == email).unwrap();
    let (_, ids_ada, fulfil, account) = by("ada+shop@example.com");
    assert_eq!(ids_ada.len(), 1);
    assert_eq!(
        fulfil,
        &json!({"email": "ada+shop@example.com", "full_name": "Ada Lovelace", "phone": "+44 20 3860 0001",
            "shipping_address": {"street": "1 Analytical Way", "city": "London", "postal_code": "N1 9GU", "country": "GB"}})
    );
    assert!(account.get("date_of_birth").is_none(), "not written under order_fulfilment: {account}");
    let (_, _, fulfil, _) = by("ada@example.com");
    assert_eq!(fulfil["email"], "ada@example.com", "a plus-address is another customer");
    assert_eq!(fulfil["shipping_address"]["country"], "GB", "lower case is stored in capitals");
    let (_, _, fulfil, _) = by("bob@example.com");
    assert_eq!(fulfil, &json!({"email": "bob@example.com", "full_name": "Bob Brokenphone"}), "invalid values left out");
    let (_, _, fulfil, _) = by("carol@example.com");
    assert_eq!(fulfil["phone"], "+49 30 1234567");
    let (_, ids_existing, fulfil, _) = by("existing@example.com");
    assert_eq!(ids_existing, &vec![existing.clone()], "never doubled");
    assert_eq!(fulfil, &json!({"email": "existing@example.com", "full_name": "Existing Customer"}), "skipped");
    let (_, ids_dave, _, _) = by("dave@example.com");
    assert!(ids_dave.is_empty(), "a row without its required name is not imported");
}

async fn a_rerun_continues_without_doubling_anyone(install: Install) {
    let (shop, _) = shop(&install).await;
    // A first run "crashes" after part of the file: simulated by importing its first lines only.
    let dir = install.dir.path();
    let partial: String = ROWS.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("crm.csv"), format!("{HEADER}{partial}")).unwrap();
    let (ok, out, err, _, _) = import(&install, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("imported: 2 created"), "{out}");

    std::fs::write(dir.join("crm.csv"), format!("{HEADER}{ROWS}")).unwrap();
    let (ok, out, err, report, _) = import(&install, &[]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(report["plan"]["create"], 2, "only what the first run did not store");
    assert_eq!(report["plan"]["skip_existing"], 3);
    let first = state(&shop).await;

    let (ok, out, err, report, _) = import(&install, &[]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(report["plan"]["create"], 0);
    assert_eq!(report["outcome"]["created"], 0);
    assert_eq!(state(&shop).await, first, "running again changes nothing");
    for (email, ids, _, _) in &first {
        assert!(ids.len() <= 1, "{email} doubled");
    }
}

async fn existing_customers_are_updated_or_reported_when_asked(install: Install) {
    let (shop, existing) = shop(&install).await;
    let (ok, out, err, report, md) = import(&install, &["--on-duplicate", "report"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(report["existing_customers"][0]["subject_id"], existing.as_str(), "listed for a decision");
    assert!(md.contains(&existing), "{md}");
    let fields = shop.fulfil.get(&format!("/v1/subjects/{existing}")).await.body["fields"].clone();
    assert_eq!(fields, json!({"email": "existing@example.com", "full_name": "Existing Customer"}));

    let (ok, out, err, report, _) = import(&install, &["--on-duplicate", "update"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(report["plan"]["update"], 5, "the existing customer and the four created before");
    assert_eq!(report["plan"]["create"], 0);
    let fields = shop.fulfil.get(&format!("/v1/subjects/{existing}")).await.body["fields"].clone();
    assert_eq!(fields["full_name"], "Existing Renamed");
    assert_eq!(fields["phone"], "+49 30 7654321");
    assert_eq!(fields["shipping_address"]["city"], "Hamburg");
    assert_eq!(ids(&shop.fulfil, "existing@example.com").await, vec![existing.clone()]);
    // Each update is a logged correction.
    let log = shop.fulfil.get(&format!("/v1/subjects/{existing}/access-log")).await;
    let text = log.body.to_string();
    assert!(text.contains("subject.correct"), "{text}");
    assert_no_values(&text);
    assert!(Path::new(&install.dir.path().join("reports/report.md")).exists());
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
