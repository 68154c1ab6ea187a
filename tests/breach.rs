//! Breach assessment with the real binary: a staff token leaks and is used during a window; the
//! assessment names exactly the customers whose data that token read (and no others), with the
//! categories read; a leaked KEK version names everyone whose data key it wraps.

mod common;

use common::{Install, candor};
use serde_json::{Value, json};

fn assess(install: &Install, args: &[&str]) -> Value {
    let config = install.config();
    let mut all = vec!["breach", "assess"];
    all.extend_from_slice(args);
    all.extend(["--config", config.to_str().unwrap()]);
    let (ok, out, err) = candor(&all, install.config().parent().unwrap());
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn token_id(install: &Install, description: &str) -> String {
    let config = install.config();
    let (ok, out, err) =
        candor(&["token", "list", "--config", config.to_str().unwrap()], install.config().parent().unwrap());
    assert!(ok, "{err}");
    out.lines()
        .find(|l| l.trim_end().ends_with(description))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_leaked_staff_token_exposes_exactly_the_customers_it_read() {
    let install = Install::new();
    let leaked = install.token_with(&["--role", "support_agent", "--description", "laptop-of-j-doe"]);
    let honest = install.token_with(&["--role", "support_agent", "--description", "desk-2"]);
    let backend_token = install.token("shop_backend");
    let server = install.serve();
    let backend = server.client(&backend_token, Some("account"));
    let mut ids = Vec::new();
    let fulfilment = backend.with_purpose("order_fulfilment");
    for i in 0..6 {
        let id =
            backend.create(json!({"email": format!("c{i}@example.com"), "full_name": format!("Customer {i}")})).await;
        if i != 2 {
            let country = if i % 2 == 0 { "de" } else { "GB" };
            let address = json!({"street": format!("{i} Canary Lane"), "city": "Cdon", "country": country});
            let r =
                fulfilment.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"shipping_address": address}})).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
        ids.push(id);
    }
    let before = jiff::Timestamp::now().to_string();
    let thief = server.client(&leaked, Some("customer_support"));
    for id in &ids[0..3] {
        assert_eq!(thief.get(&format!("/v1/subjects/{id}")).await.status, 200);
    }
    let colleague = server.client(&honest, Some("customer_support"));
    for id in &ids[3..5] {
        assert_eq!(colleague.get(&format!("/v1/subjects/{id}")).await.status, 200);
    }
    // A refused attempt discloses nothing.
    assert_eq!(server.client(&leaked, Some("account")).get(&format!("/v1/subjects/{}", ids[5])).await.status, 403);
    let after = jiff::Timestamp::now().to_string();

    let leaked_id = token_id(&install, "laptop-of-j-doe");
    let out = tempfile::tempdir().unwrap();
    let result = assess(
        &install,
        &[
            "--token",
            &leaked_id,
            "--from",
            &before,
            "--to",
            &after,
            "--countries-from",
            "shipping_address",
            "--out",
            out.path().to_str().unwrap(),
        ],
    );
    assert_eq!(result["customers"], 3, "{result}");
    assert_eq!(result["matching_accesses"], 3);
    assert_eq!(result["by_category"], json!({"contact": 3, "identity": 3}), "support sees e-mail (masked) and name");
    let csv = std::fs::read_to_string(out.path().join("customers.csv")).unwrap();
    let mut listed: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    listed.sort();
    let mut expected: Vec<&str> = ids[0..3].iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(listed, expected, "exactly the customers the token read");
    assert!(!csv.contains("@example.com") && !csv.contains("Customer"), "ids and categories only");
    // Countries from the shipping address (customer 2 has none); nothing else of it leaves.
    assert_eq!(result["by_country"], json!({"DE": 1, "GB": 1, "unknown": 1}), "{result}");
    let written = std::fs::read_to_string(out.path().join("assessment.json")).unwrap();
    assert!(!written.contains("Canary") && !written.contains("Cdon"), "no address is written out");

    // Outside the window: nothing.
    let none = assess(&install, &["--token", &leaked_id, "--to", &before]);
    assert_eq!(none["customers"], 0);
    // By category across all staff: everyone read.
    let contact = assess(&install, &["--role", "support_agent", "--category", "contact"]);
    assert_eq!(contact["customers"], 5);
    // A leaked key: everyone whose data key it wraps.
    let by_key = assess(&install, &["--kek-version", "1"]);
    assert_eq!(by_key["customers_exposed_by_key"], 6);
    assert_eq!(by_key["customers"], 6);
    // Record it: the authority summary, the customer notice, a checkable notice per customer.
    let files = tempfile::tempdir().unwrap();
    let config_s = install.config();
    let assessment = out.path().join("assessment.json");
    let (ok, printed, err) = candor(
        &[
            "breach",
            "record",
            "--assessment",
            assessment.to_str().unwrap(),
            "--nature",
            "A support agent's access token was used from an unknown laptop.",
            "--consequences",
            "Names and e-mail addresses may be used for phishing in our name.",
            "--measures",
            "The token was revoked; all support tokens were replaced.",
            "--out",
            files.path().to_str().unwrap(),
            "--config",
            config_s.to_str().unwrap(),
        ],
        install.config().parent().unwrap(),
    );
    assert!(ok, "{err}");
    assert!(printed.contains("3 customer(s)") && printed.contains("72 hours"), "{printed}");
    let summary = std::fs::read_to_string(files.path().join("authority-summary.md")).unwrap();
    assert!(summary.contains("data subjects concerned: 3") && summary.contains("How to reach you"), "{summary}");
    assert!(summary.contains("per country: DE 1, GB 1, unknown 1"), "{summary}");
    let notices = std::fs::read_to_string(files.path().join("notices.csv")).unwrap();
    let codes: Vec<(String, String)> = notices
        .lines()
        .skip(1)
        .map(|l| {
            let (id, code) = l.split_once(',').unwrap();
            (id.to_string(), code.to_string())
        })
        .collect();
    assert_eq!(codes.len(), 3);
    for (_, code) in &codes {
        let r = server.anonymous().get(&format!("/v1/messages/verify?code={code}")).await;
        assert_eq!(r.body["result"], "genuine", "{:?}", r.body);
    }
    let link = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{}/privacy-center-links", codes[0].0), json!({}))
        .await;
    let mut visitor = common::visitor::Visitor::new(&server);
    visitor.sign_in(link.body["path"].as_str().unwrap()).await;
    let page = visitor.get("/privacy/me").await;
    assert!(page.html.contains("Security incident notice") && page.html.contains("unknown laptop"), "{}", page.html);
    let link = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{}/privacy-center-links", ids[4]), json!({}))
        .await;
    let mut other = common::visitor::Visitor::new(&server);
    other.sign_in(link.body["path"].as_str().unwrap()).await;
    assert!(!other.get("/privacy/me").await.html.contains("Security incident notice"), "only the affected see it");
    let list = |install: &Install| {
        let c = install.config();
        candor(&["breach", "list", "--config", c.to_str().unwrap()], install.config().parent().unwrap()).1
    };
    assert!(list(&install).contains("hours left to notify the authority"));
    let id = printed.split_whitespace().next().unwrap().to_string();
    let (ok, _, err) = candor(
        &["breach", "update", &id, "--authority-notified", "--config", config_s.to_str().unwrap()],
        install.config().parent().unwrap(),
    );
    assert!(ok, "{err}");
    assert!(list(&install).contains("authority notified"));

    // Bad filters are named.
    let config = install.config();
    let (ok, _, err) = candor(
        &["breach", "assess", "--category", "shoes", "--config", config.to_str().unwrap()],
        install.config().parent().unwrap(),
    );
    assert!(!ok && err.contains("`shoes` is not a data category"), "{err}");
    let (ok, _, err) = candor(
        &["breach", "assess", "--countries-from", "email", "--config", config.to_str().unwrap()],
        install.config().parent().unwrap(),
    );
    assert!(!ok && err.contains("`email` is neither a postal address nor a text field"), "{err}");
}

#[tokio::test]
async fn requests_from_an_address_range_expose_exactly_the_customers_they_read() {
    let install = Install::new();
    let config = std::fs::read_to_string(install.config()).unwrap();
    assert!(config.contains("trusted_proxies = []"), "the default trusts no proxy");
    // Candor sits behind a proxy on this machine; the proxy says who the client is.
    std::fs::write(install.config(), config.replace("trusted_proxies = []", "trusted_proxies = [\"127.0.0.1\"]"))
        .unwrap();
    let support = install.token_with(&["--role", "support_agent"]);
    let backend_token = install.token("shop_backend");
    let server = install.serve();
    let backend = server.client(&backend_token, Some("account"));
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            backend.create(json!({"email": format!("c{i}@example.com"), "full_name": format!("Customer {i}")})).await,
        );
    }
    let staff = server.client(&support, Some("customer_support"));
    let read_via = |id: &str, forwarded: Option<&str>| {
        let mut r = staff.request(reqwest::Method::GET, &format!("/v1/subjects/{id}"));
        if let Some(f) = forwarded {
            r = r.header("X-Forwarded-For", f);
        }
        r
    };
    // The left-most hop is the client's own claim: only the hop the proxy saw counts.
    for id in &ids[0..2] {
        assert_eq!(staff.send(read_via(id, Some("6.6.6.6, 203.0.113.7"))).await.status, 200);
    }
    for id in &ids[2..4] {
        assert_eq!(staff.send(read_via(id, Some("198.51.100.4"))).await.status, 200);
    }
    assert_eq!(staff.send(read_via(&ids[4], None)).await.status, 200);

    let sorted = |v: &Value| {
        let mut ids: Vec<String> = v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
        ids.sort();
        ids
    };
    let expect = |range: &[String]| {
        let mut e = range.to_vec();
        e.sort();
        e
    };
    let out = tempfile::tempdir().unwrap();
    let a = assess(&install, &["--ip-range", "203.0.113.0/24", "--out", out.path().to_str().unwrap()]);
    assert_eq!((a["customers"].as_u64(), a["matching_accesses"].as_u64()), (Some(2), Some(2)), "{a}");
    assert_eq!(a["accesses_without_recorded_address"], 0);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("assessment.json")).unwrap()).unwrap();
    assert_eq!(sorted(&written["customer_ids"]), expect(&ids[0..2]));
    let b = assess(&install, &["--ip-range", "198.51.100.4", "--ip-range", "2001:db8::/32"]);
    assert_eq!(b["customers"], 2, "{b}");
    assert_eq!(assess(&install, &["--ip-range", "6.6.6.6"])["customers"], 0, "a spoofed hop is not believed");
    assert_eq!(assess(&install, &["--ip-range", "127.0.0.1"])["customers"], 1, "no header: the proxy's address");

    // Addresses are kept beside the log, not in what customers and auditors see.
    let admin = server.client(&install.admin_token, None);
    let entries = admin.get("/v1/log/entries?start=0&end=1000").await.body.to_string();
    assert!(entries.contains("subject.read") && !entries.contains("203.0.113.7"), "{entries}");

    // After [log] caller_address_days they are forgotten (the 5 creates and 5 reads); the
    // assessment then says what it cannot see.
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 400)).to_string();
    let config = install.config();
    let (ok, printed, err) = candor(
        &["retention", "run", "--now", &later, "--config", config.to_str().unwrap()],
        install.config().parent().unwrap(),
    );
    assert!(ok, "{err}");
    assert!(printed.contains("forgot 10 staff/recipient request address(es) older than 365 day(s)"), "{printed}");
    let gone = assess(&install, &["--ip-range", "203.0.113.0/24"]);
    assert_eq!(gone["customers"], 0);
    assert_eq!(gone["accesses_without_recorded_address"], 5, "{gone}");

    let (ok, _, err) = candor(
        &["breach", "assess", "--ip-range", "intranet", "--config", config.to_str().unwrap()],
        install.config().parent().unwrap(),
    );
    assert!(!ok && err.contains("--ip-range `intranet` is not a network"), "{err}");
}
