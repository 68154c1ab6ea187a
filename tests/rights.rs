//! Customer rights over HTTP against the real binary: erasure by crypto-shredding (with the
//! backup test), legal holds, restriction.

mod common;

on_both_backends!(
    erasure_removes_everything_returns_a_signed_certificate_and_is_idempotent,
    a_legal_hold_blocks_erasure_until_lifted,
    a_restricted_customer_is_kept_but_not_used_except_for_legal_obligations,
    the_report_explains_everything_held_and_the_export_carries_it_all,
    retention_deletes_what_is_due_when_the_clock_moves_and_skips_held_customers,
    requests_are_tracked_against_their_deadline_and_overdue_ones_show_in_metrics,
    requests_are_assigned_paused_for_proof_of_identity_and_refused_with_a_reason,
    the_certificate_names_exactly_the_recipients_that_received_the_data_and_are_told,
);

use common::{Client, Install, candor};
use serde_json::{Value, json};

fn ada() -> Value {
    json!({"email": "ada@example.com", "full_name": "Ada Lovelace", "date_of_birth": "1990-12-10"})
}

async fn customer_with_history(backend: &Client) -> String {
    let id = backend.create(ada()).await;
    let fulfilment = backend.with_purpose("order_fulfilment");
    let r = fulfilment.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"phone": "+44 20 7946 0101"}})).await;
    assert_eq!(r.status, 200);
    let r = fulfilment
        .post(&format!("/v1/subjects/{id}/events"), json!({"type": "purchase", "data": {"item": "pen"}}))
        .await;
    assert_eq!(r.status, 201);
    let r = backend
        .post(&format!("/v1/subjects/{id}/consents"), json!({"changes": [{"purpose": "marketing", "action": "grant"}], "evidence": "account settings form, checkbox"}))
        .await;
    assert_eq!(r.status, 201);
    id
}

async fn erasure_removes_everything_returns_a_signed_certificate_and_is_idempotent(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = customer_with_history(&backend).await;
    let other = backend.create(json!({"email": "bob@example.com", "full_name": "Bob"})).await;

    // Erasure is a power of its own: neither a consent purpose's tool nor the shop's backend has
    // it; the privacy team (erase = true), answering the customer's request, does.
    let marketing = server.client(&install.token("marketing_tool"), Some("marketing"));
    let r = marketing.send(marketing.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}"))).await;
    assert_eq!((r.status, r.code()), (403, "erase_not_allowed"));
    let r = backend.send(backend.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}"))).await;
    assert_eq!((r.status, r.code()), (403, "erase_not_allowed"), "{:?}", r.body);
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));

    let r = privacy.send(privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let certificate = r.body.clone();
    assert_eq!(certificate["subject_id"], id.as_str());
    let fields: Vec<&str> =
        certificate["erased"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["date_of_birth", "email", "full_name", "phone"]);
    assert_eq!(certificate["erased"]["events"], json!([{"type": "purchase", "count": 1}]));
    assert_eq!(certificate["erased"]["consent_entries"], 2);
    // Never shared with anyone: nobody to tell (see the test of the recipients below).
    assert_eq!(certificate["recipients_to_notify"], json!([]));
    assert!(!certificate.to_string().contains("ada@"), "no values in the certificate");

    // Gone: reads, lookups, events, consents.
    assert_eq!(backend.get(&format!("/v1/subjects/{id}")).await.status, 404);
    assert_eq!(backend.get("/v1/subjects?email=ada@example.com").await.body["ids"], json!([]));
    assert_eq!(backend.get(&format!("/v1/subjects/{id}/consents")).await.status, 404);
    assert_eq!(backend.with_purpose("order_fulfilment").get(&format!("/v1/subjects/{id}/events")).await.status, 404);
    assert_eq!(backend.get(&format!("/v1/subjects/{other}")).await.status, 200, "others are untouched");

    // Idempotent: the same certificate again.
    let again = privacy.send(privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}"))).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, certificate);
    let ghost = "7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70";
    let r = privacy.send(privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{ghost}"))).await;
    assert_eq!((r.status, r.code()), (404, "subject_not_found"));

    // The certificate verifies offline; altered, it does not.
    let file = install.dir.path().join("certificate.json");
    std::fs::write(&file, serde_json::to_string_pretty(&certificate).unwrap()).unwrap();
    let config = install.config();
    let verify =
        |dir| candor(&["receipt", "verify", file.to_str().unwrap(), "--config", config.to_str().unwrap()], dir);
    let (ok, out, err) = verify(install.dir.path());
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("erasure certificate") && out.contains("recipients: No company received this customer's data"),
        "{out}"
    );
    std::fs::write(&file, certificate.to_string().replace("\"count\":1", "\"count\":0")).unwrap();
    assert!(!verify(install.dir.path()).0);

    // The erasure is in the log (names and counts only), and the log still verifies.
    let (ok, out, err) = candor(&["log", "verify", "--config", config.to_str().unwrap()], install.dir.path());
    assert!(ok, "{out}{err}");
    // An erased customer's access log stays answerable to their own requests (customer_requests).
    let log = privacy.get(&format!("/v1/subjects/{id}/access-log")).await;
    let erasures: Vec<&Value> =
        log.body["entries"].as_array().unwrap().iter().filter(|e| e["entry"]["action"] == "subject.erase").collect();
    assert_eq!(erasures.len(), 3, "the two refused attempts and the erasure: {:?}", log.body);
    assert_eq!(erasures[0]["entry"]["decision"], "denied");
    assert_eq!(erasures[1]["entry"]["decision"], "denied");
    assert_eq!(erasures[2]["entry"]["fields"], json!(["date_of_birth", "email", "full_name", "phone"]));
    assert!(
        erasures[2]["entry"]["detail"].as_str().unwrap().starts_with("crypto-shredded; events 1; consent entries 2")
    );
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|r| r["recipient"].as_str().unwrap()).collect()
}

async fn the_certificate_names_exactly_the_recipients_that_received_the_data_and_are_told(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let erase = |id: String| {
        let privacy = privacy.clone();
        async move { privacy.send(privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}"))).await }
    };
    let erasure_notices = |id: String| {
        let privacy = privacy.clone();
        async move {
            let r = privacy.get("/v1/notices").await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body["notices"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["subject_id"] == id.as_str() && n["kind"] == "erasure")
                .map(|n| n["recipient"].as_str().unwrap().to_string())
                .collect::<Vec<String>>()
        }
    };

    // Never shared: the certificate names nobody as told, says so plainly, and lists the
    // declared recipients as never having received anything; no notice is written.
    let alone = backend.create(ada()).await;
    let r = erase(alone.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["recipients_to_notify"], json!([]));
    assert_eq!(r.body["recipients_notified"]["recipients"], json!([]));
    assert_eq!(
        r.body["recipients_summary"],
        "No company received this customer's data from us, so there is no one else to tell."
    );
    assert_eq!(names(&r.body["recipients_not_told"]["recipients"]), ["parcel_carrier", "payment_provider"]);
    assert!(erasure_notices(alone).await.is_empty());

    // In a grant to the parcel carrier: that recipient only, with what it was given, and the
    // one notice written to it.
    let shared = backend.create(json!({"email": "bob@example.com", "full_name": "Bob Shared"})).await;
    let expires = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let r = backend
        .with_purpose("order_fulfilment")
        .post(
            "/v1/grants",
            json!({"recipient": "parcel_carrier", "subjects": [shared], "fields": ["full_name"], "expires_at": expires}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = erase(shared.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(names(&r.body["recipients_to_notify"]), ["parcel_carrier"]);
    assert_eq!(r.body["recipients_to_notify"][0]["fields"], json!(["full_name"]));
    assert_eq!(r.body["recipients_to_notify"][0]["name"], "ParcelCo GmbH");
    assert_eq!(names(&r.body["recipients_notified"]["recipients"]), ["parcel_carrier"]);
    assert_eq!(names(&r.body["recipients_not_told"]["recipients"]), ["payment_provider"]);
    assert_eq!(
        r.body["recipients_summary"],
        "ParcelCo GmbH received this customer's data from us and is told to delete it too."
    );
    assert_eq!(erasure_notices(shared.clone()).await, ["parcel_carrier"], "the outbox agrees with the certificate");
    // Erasing again returns the same certificate and writes no second notice.
    let again = erase(shared.clone()).await;
    assert_eq!(again.body, r.body);
    assert_eq!(erasure_notices(shared).await.len(), 1);
}

async fn a_legal_hold_blocks_erasure_until_lifted(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let legal = backend.with_purpose("legal_accounting");
    let id = backend.create(ada()).await;
    let hold = format!("/v1/subjects/{id}/hold");

    // Holds are a legal-obligation matter, with a real reason.
    let r = backend.post(&hold, json!({"reason": "Tax audit 2026 for order 4411"})).await;
    assert_eq!((r.status, r.code(), r.field()), (403, "purpose_not_allowed", "Candor-Purpose"));
    let r = legal.post(&hold, json!({})).await;
    assert_eq!((r.status, r.code(), r.field()), (422, "invalid_value", "reason"));
    let r = legal.post(&hold, json!({"reason": "Tax audit 2026 for order 4411"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["changed"], true);
    assert_eq!(legal.post(&hold, json!({"reason": "Tax audit 2026, second request"})).await.body["changed"], false);
    let r = legal.get(&hold).await;
    assert_eq!(
        (r.body["held"].as_bool(), r.body["reason"].as_str()),
        (Some(true), Some("Tax audit 2026 for order 4411"))
    );

    let eraser = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let erase = || eraser.send(eraser.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}")));
    let r = erase().await;
    assert_eq!((r.status, r.code()), (409, "legal_hold"));
    assert_eq!(backend.get(&format!("/v1/subjects/{id}")).await.status, 200, "nothing was erased");

    let r = legal.send(legal.request(reqwest::Method::DELETE, &hold)).await;
    assert_eq!((r.status, r.body["changed"].as_bool()), (200, Some(true)));
    assert_eq!(erase().await.status, 200);
}

async fn a_restricted_customer_is_kept_but_not_used_except_for_legal_obligations(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(ada()).await;
    let restriction = format!("/v1/subjects/{id}/restriction");
    let r = backend.post(&restriction, json!({"reason": "Customer contests the accuracy of their data"})).await;
    assert_eq!((r.status, r.body["changed"].as_bool()), (200, Some(true)));

    let r = backend.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!((r.status, r.code()), (403, "restricted"));
    let fulfilment = backend.with_purpose("order_fulfilment");
    let r = fulfilment.post(&format!("/v1/subjects/{id}/events"), json!({"type": "purchase", "data": {}})).await;
    assert_eq!((r.status, r.code()), (403, "restricted"));
    // Legal obligations still apply (invoices must be kept and produced).
    let r = backend.with_purpose("legal_accounting").get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["fields"]["full_name"], "Ada Lovelace");
    // Correcting contested data stays possible (it is often why processing is restricted).
    let r = backend.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"full_name": "Ada King"}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Lifting it is the erase power's (the privacy team's); the shop's backend may not.
    let r = backend.send(backend.request(reqwest::Method::DELETE, &restriction)).await;
    assert_eq!((r.status, r.code()), (403, "erase_not_allowed"), "{:?}", r.body);
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let r = privacy.send(privacy.request(reqwest::Method::DELETE, &restriction)).await;
    assert_eq!((r.status, r.body["changed"].as_bool()), (200, Some(true)));
    assert_eq!(backend.get(&format!("/v1/subjects/{id}")).await.body["fields"]["full_name"], "Ada King");

    // Every step is in the customer's access log.
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let log = support.get(&format!("/v1/subjects/{id}/access-log")).await;
    let actions: Vec<&str> =
        log.body["entries"].as_array().unwrap().iter().map(|e| e["entry"]["action"].as_str().unwrap()).collect();
    for expected in ["subject.restrict", "subject.unrestrict"] {
        assert!(actions.contains(&expected), "{actions:?}");
    }
    assert!(log.body["entries"].as_array().unwrap().iter().any(|e| e["entry"]["detail"] == "restricted"));
}

/// The backup test: an old copy of the data, restored after an erasure with the current key
/// store, does not bring the customer back — their values cannot be decrypted — while other
/// customers' values still can.
#[tokio::test]
async fn restoring_an_old_copy_of_the_data_does_not_bring_an_erased_customer_back() {
    let install = Install::new();
    let db = install.db_path();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ada = customer_with_history(&backend).await;
    let bob = backend.create(json!({"email": "bob@example.com", "full_name": "Bob Builder"})).await;
    let backup = install.dir.path().join("backup.db");
    let out =
        std::process::Command::new("sqlite3").arg(&db).arg(format!(".backup '{}'", backup.display())).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let eraser = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let r = eraser.send(eraser.request(reqwest::Method::DELETE, &format!("/v1/subjects/{ada}"))).await;
    assert_eq!(r.status, 200);
    drop(server);

    // Put the old data back (the key store stays current, as its own backups are separate).
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&backup, &db).unwrap();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    // Ada's rows were back in the data file, but her key is gone: the start-up pass erases them
    // again, lookup rows included, so the old copy does not even show she was a customer.
    assert_eq!(backend.get("/v1/subjects?email=ada@example.com").await.body["ids"], json!([]));
    let r = backend.get(&format!("/v1/subjects/{ada}")).await;
    assert!(matches!((r.status, r.code()), (404, "subject_not_found") | (410, "subject_erased")), "{:?}", r.body);
    assert!(!r.body.to_string().contains("ada@"));
    let r = backend.with_purpose("order_fulfilment").get(&format!("/v1/subjects/{ada}/events")).await;
    assert!(matches!(r.code(), "subject_erased" | "subject_not_found"), "{:?}", r.body);
    // Bob is fine.
    assert_eq!(backend.get(&format!("/v1/subjects/{bob}")).await.body["fields"]["email"], "bob@example.com");
    // Erasing again cleans the restored rows up.
    let eraser = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let r = eraser.send(eraser.request(reqwest::Method::DELETE, &format!("/v1/subjects/{ada}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(backend.get("/v1/subjects?email=ada@example.com").await.body["ids"], json!([]));
}

async fn the_report_explains_everything_held_and_the_export_carries_it_all(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = customer_with_history(&backend).await;
    // Enough events to span several pages of the stream.
    let fulfilment = backend.with_purpose("order_fulfilment");
    for i in 1..600 {
        let r = fulfilment
            .post(
                &format!("/v1/subjects/{id}/events"),
                json!({"type": "purchase", "data": {"item": format!("item-{i}")}}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let requests = backend.with_purpose("privacy_requests");

    // Only a purpose declared for customer requests may produce them.
    let r = backend.get(&format!("/v1/subjects/{id}/report")).await;
    assert_eq!((r.status, r.code()), (403, "purpose_not_allowed"));

    let r = requests.get(&format!("/v1/subjects/{id}/report")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let report = r.body;
    assert_eq!(report["document"], "candor-access-report/1");
    let email = report["fields"].as_array().unwrap().iter().find(|f| f["field"] == "email").unwrap();
    assert_eq!(email["value"], "ada@example.com");
    assert_eq!(email["category"], "contact");
    // In the public notice's words, with the catalog's names beside them for programs.
    assert_eq!(email["kept"], "while your account exists, then 30 days after you close it");
    assert_eq!(email["retention"], json!({"kind": "while_account_exists", "grace": "P30D"}));
    assert_eq!(
        (email["label"].as_str(), email["category_label"].as_str()),
        (Some("E-mail address"), Some("How to reach you"))
    );
    assert_eq!(report["event_types"][0]["label"], "Purchase history");
    assert_eq!(report["event_types"][0]["kept"], "10 years after it is recorded");
    assert!(report["access_history"]["entries"].as_array().unwrap().iter().all(|e| e["what"].is_string()));
    assert!(
        email["purposes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["purpose"] == "marketing" && p["legal_basis"] == "consent")
    );
    let recipients: Vec<&str> =
        email["recipients"].as_array().unwrap().iter().map(|r| r["recipient"].as_str().unwrap()).collect();
    assert_eq!(recipients, ["payment_provider"]);
    assert_eq!(email["stored_in"], "European Union (Frankfurt, Germany)");
    let events = report["events"].as_array().unwrap();
    assert_eq!(events.len(), 600);
    assert_eq!(events[0]["data"]["item"], "pen");
    assert_eq!(events[599]["data"]["item"], "item-599");
    assert!(events[0]["delete_after"].as_str().unwrap().starts_with("20"), "purchases are kept P10Y");
    assert_eq!(report["event_types"][0]["count"], 600);
    assert_eq!(report["consents"]["history"].as_array().unwrap().len(), 2);
    assert!(report["access_history"]["total"].as_u64().unwrap() >= 600);

    // Export as JSON: the same data.
    let r = requests.get(&format!("/v1/subjects/{id}/export?format=json")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["events"].as_array().unwrap().len(), 600);
    assert!(r.body.get("access_history").is_none());
    let r = requests.get(&format!("/v1/subjects/{id}/export?format=xml")).await;
    assert_eq!((r.status, r.code(), r.field()), (400, "invalid_query", "format"));

    // Export as a zip of CSV files with a signed manifest of counts and SHA-256 sums.
    let resp =
        requests.request(reqwest::Method::GET, &format!("/v1/subjects/{id}/export?format=csv")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/zip");
    let bytes = resp.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let read = |zip: &mut zip::ZipArchive<_>, name: &str| {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_name(name).unwrap(), &mut text).unwrap();
        text
    };
    let manifest: Value = serde_json::from_slice(&read(&mut zip, "manifest.json")).unwrap();
    for file in manifest["files"].as_array().unwrap() {
        let data = read(&mut zip, file["name"].as_str().unwrap());
        let sha: String = candor_crypto::sha256(&data).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(file["sha256"], sha.as_str(), "{}", file["name"]);
        let lines = data.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(file["rows"].as_u64().unwrap() + 1, lines, "{}: rows + header", file["name"]);
    }
    assert_eq!(manifest["files"][1]["rows"], 600);
    let events_csv = String::from_utf8(read(&mut zip, "events.csv")).unwrap();
    assert!(events_csv.contains("item-599"));
    let path = install.dir.path().join("manifest.json");
    std::fs::write(&path, read(&mut zip, "manifest.json")).unwrap();
    let config = install.config();
    let (ok, out, err) = candor(
        &["receipt", "verify", path.to_str().unwrap(), "--config", config.to_str().unwrap()],
        install.dir.path(),
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("export manifest valid") && !out.contains("receipt valid"), "names the document: {out}");
    assert!(out.contains("manifest.json") || out.contains(": 600 rows"), "{out}");
    assert!(!out.contains(" 1 rows"), "{out}");

    // Restricted customers can still see their own data.
    let r = backend.post(&format!("/v1/subjects/{id}/restriction"), json!({})).await;
    assert_eq!(r.status, 200);
    let r = requests.get(&format!("/v1/subjects/{id}/report")).await;
    assert_eq!((r.status, r.body["restricted"].as_bool()), (200, Some(true)));
}

async fn retention_deletes_what_is_due_when_the_clock_moves_and_skips_held_customers(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let analytics = server.client(&install.token("analytics_service"), Some("analytics"));
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = backend.create(json!({"email": format!("r{n}@example.com"), "full_name": "R"})).await;
        let r = backend
            .post(
                &format!("/v1/subjects/{id}/consents"),
                json!({"changes": [{"purpose": "analytics", "action": "grant"}], "evidence": "account settings form, checkbox"}),
            )
            .await;
        assert_eq!(r.status, 201);
        for page in ["/shoes", "/hats"] {
            let r = analytics
                .post(&format!("/v1/subjects/{id}/events"), json!({"type": "page_view", "data": {"path": page}}))
                .await;
            assert_eq!(r.status, 201, "{:?}", r.body);
        }
        let r = backend
            .with_purpose("order_fulfilment")
            .post(&format!("/v1/subjects/{id}/events"), json!({"type": "purchase", "data": {"item": "pen"}}))
            .await;
        assert_eq!(r.status, 201);
        ids.push(id);
    }
    let r = backend
        .with_purpose("legal_accounting")
        .post(&format!("/v1/subjects/{}/hold", ids[2]), json!({"reason": "Dispute over order 5512, lawyer asked"}))
        .await;
    assert_eq!(r.status, 200);

    let config = install.config();
    let run = |extra: &[&str]| {
        let mut args = vec!["retention", "run", "--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        candor(&args, install.dir.path())
    };
    // Today nothing is due.
    let (ok, out, err) = run(&["--dry-run"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("events page_view") && out.contains("due: 0 of 0"), "{out}");
    // Fourteen months on, page views (kept P13M) are due; purchases (P10Y) are not.
    let later = (jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC) + jiff::Span::new().months(14))
        .timestamp()
        .to_string();
    let (ok, out, err) = run(&["--dry-run", "--now", &later]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("due: 4 of 2 customer(s); kept under legal hold: 2"), "{out}");
    assert!(out.contains("dry run: nothing deleted"), "{out}");
    let events = |id: String| {
        let client = backend.with_purpose("privacy_requests");
        async move {
            let r = client.get(&format!("/v1/subjects/{id}/report")).await;
            r.body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["type"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(events(ids[0].clone()).await.len(), 3, "a dry run deletes nothing");

    let (ok, out, err) = run(&["--now", &later]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("deleted 4 event(s) and 0 field value(s) of 2 customer(s)"), "{out}");
    assert_eq!(events(ids[0].clone()).await, ["purchase"]);
    assert_eq!(events(ids[1].clone()).await, ["purchase"]);
    assert_eq!(events(ids[2].clone()).await.len(), 3, "held: kept");
    // Logged with names and counts; a second run finds nothing.
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let log = support.get(&format!("/v1/subjects/{}/access-log", ids[0])).await;
    let entry =
        log.body["entries"].as_array().unwrap().iter().find(|e| e["entry"]["action"] == "retention.delete").unwrap();
    assert_eq!(entry["entry"]["fields"], json!(["page_view"]));
    assert_eq!(entry["entry"]["detail"], "retention passed: events page_view 2");
    let (ok, out, _) = run(&["--now", &later]);
    assert!(ok && out.contains("deleted 0 event(s)"), "{out}");
}

async fn requests_are_tracked_against_their_deadline_and_overdue_ones_show_in_metrics(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let requests = backend.with_purpose("privacy_requests");
    let id = backend.create(ada()).await;
    let metrics = || async {
        let r = backend.request(reqwest::Method::GET, "/metrics").send().await.unwrap();
        r.text().await.unwrap()
    };
    assert!(metrics().await.contains("candor_requests_overdue 0"));

    let r = backend.post("/v1/requests", json!({"subject_id": id, "kind": "access"})).await;
    assert_eq!((r.status, r.code()), (403, "purpose_not_allowed"));
    let r = requests.post("/v1/requests", json!({"subject_id": id, "kind": "gossip"})).await;
    assert_eq!((r.status, r.field()), (422, "kind"));
    let forty_days_ago = (jiff::Timestamp::now() - jiff::Span::new().hours(24 * 40)).to_string();
    let r = requests
        .post("/v1/requests", json!({"subject_id": id, "kind": "erasure", "received_at": forty_days_ago}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let late = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["overdue"], true);
    let r = requests.post("/v1/requests", json!({"subject_id": id, "kind": "access"})).await;
    assert_eq!((r.status, r.body["overdue"].as_bool()), (201, Some(false)));

    let r = requests.get("/v1/requests?status=open").await;
    assert_eq!((r.body["requests"].as_array().unwrap().len(), r.body["overdue"].as_u64()), (2, Some(1)));
    let m = metrics().await;
    assert!(m.contains("candor_requests_overdue 1") && m.contains("candor_requests_open 2"), "{m}");

    let r = requests.patch(&format!("/v1/requests/{late}"), json!({"status": "completed"})).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("completed")));
    assert_eq!(r.body["closed_by"].as_str().map(str::is_empty), Some(false));
    let r = requests.patch("/v1/requests/nope", json!({"status": "completed"})).await;
    assert_eq!((r.status, r.code()), (404, "request_not_found"));
    assert!(metrics().await.contains("candor_requests_overdue 0"));
    assert_eq!(requests.get("/v1/requests?status=completed").await.body["requests"].as_array().unwrap().len(), 1);
}

async fn requests_are_assigned_paused_for_proof_of_identity_and_refused_with_a_reason(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let id = backend.create(ada()).await;
    let forty_days_ago = (jiff::Timestamp::now() - jiff::Span::new().hours(24 * 40)).to_string();
    let r =
        privacy.post("/v1/requests", json!({"subject_id": id, "kind": "erasure", "received_at": forty_days_ago})).await;
    assert_eq!((r.status, r.body["overdue"].as_bool()), (201, Some(true)), "{:?}", r.body);
    let rid = r.body["id"].as_str().unwrap().to_string();
    let path = format!("/v1/requests/{rid}");

    // One request, read on its own; other purposes and roles are refused.
    let r = privacy.get(&path).await;
    assert_eq!((r.status, r.body["kind"].as_str(), r.body["paused_days"].as_i64()), (200, Some("erasure"), Some(0)));
    assert!(r.body.get("assignee").is_none() && r.body.get("reason").is_none(), "{:?}", r.body);
    assert_eq!(backend.get(&path).await.code(), "purpose_not_allowed");
    assert_eq!(support.with_purpose("privacy_requests").get(&path).await.status, 403);
    assert_eq!(support.patch(&path, json!({"assignee": "me"})).await.status, 403);
    assert_eq!(privacy.get("/v1/requests/nope").await.code(), "request_not_found");

    // Assigned to the caller, then to a colleague by pseudonym; a name is not a pseudonym.
    let r = privacy.patch(&path, json!({"assignee": "me"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["assignee"].as_str().is_some_and(|a| !a.is_empty()));
    let colleague = format!("stf_{}", "ab".repeat(16));
    let r = privacy.patch(&path, json!({"assignee": colleague})).await;
    assert_eq!(r.body["assignee"].as_str(), Some(format!("staff:{colleague}").as_str()));
    let r = privacy.patch(&path, json!({"assignee": "Dora Smith"})).await;
    assert_eq!((r.status, r.code(), r.field()), (422, "invalid_value", "assignee"));
    // One change at a time.
    let r = privacy.patch(&path, json!({"assignee": "me", "identity": "requested"})).await;
    assert_eq!((r.status, r.code()), (422, "invalid_value"));

    // Waiting for proof of identity: the clock stops, so it is not overdue meanwhile.
    let r = privacy.patch(&path, json!({"identity": "requested"})).await;
    assert_eq!((r.status, r.body["overdue"].as_bool()), (200, Some(false)), "{:?}", r.body);
    assert!(r.body["waiting_for_identity_since"].is_string());
    let metrics = backend.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("candor_requests_overdue 0"), "{metrics}");
    let due_before = r.body["due_at"].as_str().unwrap().to_string();
    let r = privacy.patch(&path, json!({"identity": "proven"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body.get("waiting_for_identity_since").is_none());
    // Compared as times: RFC 3339 texts with and without fractional seconds do not sort as text.
    let due_after: jiff::Timestamp = r.body["due_at"].as_str().unwrap().parse().unwrap();
    assert!(due_after >= due_before.parse::<jiff::Timestamp>().unwrap(), "the deadline never moves earlier");
    let r = privacy.patch(&path, json!({"identity": "lost"})).await;
    assert_eq!((r.status, r.field()), (422, "identity"));

    // A refusal must give a reason from the list; a completion must not give one.
    let r = privacy.patch(&path, json!({"status": "rejected"})).await;
    assert_eq!((r.status, r.field()), (422, "reason"));
    let r = privacy.patch(&path, json!({"status": "rejected", "reason": "we do not feel like it"})).await;
    assert_eq!((r.status, r.field()), (422, "reason"));
    let r = privacy.patch(&path, json!({"status": "completed", "reason": "excessive"})).await;
    assert_eq!((r.status, r.field()), (422, "reason"));
    let r = privacy.patch(&path, json!({"status": "rejected", "reason": "legal_claims"})).await;
    assert_eq!(
        (r.status, r.body["status"].as_str(), r.body["reason"].as_str()),
        (200, Some("rejected"), Some("legal_claims"))
    );
    // Closed: it no longer changes.
    let r = privacy.patch(&path, json!({"assignee": "nobody"})).await;
    assert_eq!((r.status, r.code()), (409, "conflict"));

    // Every step is in the log, naming the customer, with the reason code and no free text.
    let admin = server.client(&install.admin_token, None);
    let log = admin.get("/v1/log/entries?start=0&end=1000").await;
    let entries: Vec<&Value> = log.body["entries"].as_array().unwrap().iter().map(|e| &e["entry"]).collect();
    let count = |action: &str| entries.iter().filter(|e| e["action"] == action && e["subjects"] == json!([id])).count();
    assert_eq!((count("request.read"), count("request.update"), count("request.close")), (1, 4, 1), "{entries:#?}");
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "request.close"
                && e["detail"].as_str().is_some_and(|d| d.ends_with(": legal_claims")))
    );
}
