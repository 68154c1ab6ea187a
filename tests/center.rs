//! The signed-in privacy center over real HTTP: one-time sign-in links, sessions (cookie flags,
//! sign-out, idle timeout), anti-forgery tokens, rate limiting, and each page's effect through
//! the API. (The same story in a real browser is in `tests/browser.rs`.)

mod common;

use common::visitor::Visitor;
use common::{Install, Server};
use serde_json::{Value, json};

const CUSTOMER: &str = "ada@example.com";

/// A customer, a shop backend token, and a sign-in link path for them.
async fn setup(install: &Install, server: &Server) -> (common::Client, String, String) {
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": CUSTOMER, "full_name": "Ada Lovelace"})).await;
    let r = backend
        .with_purpose("order_fulfilment")
        .patch(&format!("/v1/subjects/{id}"), json!({"fields": {"phone": "+442079460000"}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let link = new_link(&backend, &id).await;
    (backend, id, link)
}

async fn new_link(backend: &common::Client, id: &str) -> String {
    let r = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{id}/privacy-center-links"), json!({}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let path = r.body["path"].as_str().unwrap().to_string();
    assert!(r.body["url"].as_str().unwrap().ends_with(&path));
    assert!(path.starts_with("/privacy/sign-in/cndl_"));
    path
}

#[tokio::test]
async fn a_sign_in_link_works_once_and_only_as_a_post_and_the_session_cookie_is_locked_down() {
    let install = Install::new();
    let server = install.serve();
    let (backend, id, link) = setup(&install, &server).await;

    // Only under a customer_requests purpose; only for an existing customer; only with a token.
    let r = backend.post(&format!("/v1/subjects/{id}/privacy-center-links"), json!({})).await;
    assert_eq!((r.status, r.code()), (403, "purpose_not_allowed"), "{:?}", r.body);
    let r = backend
        .with_purpose("privacy_requests")
        .post("/v1/subjects/7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70/privacy-center-links", json!({}))
        .await;
    assert_eq!(r.status, 404);
    let r = server.anonymous().post(&format!("/v1/subjects/{id}/privacy-center-links"), json!({})).await;
    assert_eq!(r.status, 401);

    // Opening the link (a mail scanner prefetching it, say) does not use it up.
    let mut visitor = Visitor::new(&server);
    for _ in 0..2 {
        let page = visitor.get(&link).await;
        assert_eq!(page.status, 200);
        assert!(page.html.contains("Continue to your privacy center"));
        assert!(visitor.cookie.is_none());
    }
    let page = visitor.sign_in(&link).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.headers["location"], "/privacy/me");
    let set = page.headers["set-cookie"].to_str().unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP here: {set}");
    let me = visitor.get("/privacy/me").await;
    assert_eq!(me.status, 200, "{}", me.html);
    assert!(me.html.contains(CUSTOMER) && me.html.contains("Ada Lovelace"));
    assert!(me.html.contains("aria-current=\"page\""));

    // A second use of the same link is refused, from anyone: opening it says so at once, and
    // an unknown link looks just the same.
    let mut other = Visitor::new(&server);
    let opened = other.get(&link).await;
    assert_eq!(opened.status, 410);
    assert_eq!(opened.h1(), "This sign-in link cannot be used");
    assert!(opened.html.contains("already used") && opened.html.contains("new sign-in link"), "{}", opened.html);
    assert!(!opened.html.contains("Continue to your privacy center"));
    let unknown = other.get("/privacy/sign-in/cndl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!((unknown.status, &unknown.html), (410, &opened.html), "no difference between spent and unknown");
    let again = other.post("/privacy/sign-in", &[("link", link.rsplit('/').next().unwrap())]).await;
    assert_eq!(again.status, 410);
    assert_eq!(again.h1(), "This sign-in link cannot be used");
    assert!(other.cookie.is_none());
    let forged = other.post("/privacy/sign-in", &[("link", "cndl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]).await;
    assert_eq!(forged.status, 410);
    assert_eq!(other.get("/privacy/me").await.status, 401);

    // The log tells the customer (and an auditor) about the link, the sign-in and the refusal.
    let log = backend.with_purpose("privacy_requests").get(&format!("/v1/subjects/{id}/access-log")).await;
    let entries: Vec<&Value> = log.body["entries"].as_array().unwrap().iter().map(|e| &e["entry"]).collect();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["decision"].as_str().unwrap_or("")))
        .filter(|(a, _)| a.starts_with("privacy_center."))
        .collect();
    assert_eq!(
        actions,
        [
            ("privacy_center.link", ""),
            ("privacy_center.link", "denied"),
            ("privacy_center.sign_in", "full"),
            ("privacy_center.sign_in", "denied")
        ]
    );
    let sign_in = entries.iter().find(|e| e["action"] == "privacy_center.sign_in").unwrap();
    assert_eq!(sign_in["actor"]["role"], "customer");
    assert!(sign_in["actor"]["token"].as_str().unwrap().starts_with("session:"));
    let log = server.log();
    assert!(!log.contains(CUSTOMER), "no personal value in the server log");
    assert!(!log.contains("cndl_") && !log.contains("cnds_"), "no link or session secret in the server log");
}

#[tokio::test]
async fn opening_a_link_says_at_once_whether_it_still_works_and_never_uses_it_up() {
    let install = Install::new();
    let server = install.serve();
    let (backend, id, link) = setup(&install, &server).await;
    let secret = link.rsplit('/').next().unwrap().to_string();

    // A live link: the "Continue" page however often it is opened (mail scanners), then it works.
    let mut visitor = Visitor::new(&server);
    for _ in 0..3 {
        let page = visitor.get(&link).await;
        assert_eq!(page.status, 200, "{}", page.html);
        assert!(page.html.contains("Continue to your privacy center"));
    }
    let used = visitor.post("/privacy/sign-in", &[("link", &secret)]).await;
    assert_eq!(used.status, 303, "opening the link did not use it up: {}", used.html);
    assert_eq!(visitor.get("/privacy/me").await.status, 200);

    // Used: the first page says so (410), with how to get a new one.
    let mut later = Visitor::new(&server);
    let page = later.get(&link).await;
    assert_eq!(page.status, 410);
    assert_eq!(page.h1(), "This sign-in link cannot be used");
    assert!(page.html.contains("already used, has expired"), "{}", page.html);
    assert!(page.html.contains("Ask Example Shop Ltd for a new sign-in link"), "{}", page.html);
    assert!(!page.html.contains("name=\"link\""), "no form to press on: {}", page.html);

    // Expired (the test clock moves past its 15 minutes): the same, before anyone presses on.
    let expiring = new_link(&backend, &id).await;
    assert_eq!(later.get(&expiring).await.status, 200);
    install.advance_clock(std::time::Duration::from_secs(16 * 60));
    let page = later.get(&expiring).await;
    assert_eq!((page.status, page.h1()), (410, "This sign-in link cannot be used"), "{}", page.html);
    let expired_secret = expiring.rsplit('/').next().unwrap();
    assert_eq!(later.post("/privacy/sign-in", &[("link", expired_secret)]).await.status, 410);
    assert!(later.cookie.is_none());

    // Opening links is not logged (nothing was used); pressing on with a spent one is, as before.
    let log = backend.with_purpose("privacy_requests").get(&format!("/v1/subjects/{id}/access-log")).await;
    let sign_ins: Vec<(&str, &str)> = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["action"] == "privacy_center.sign_in")
        .map(|e| (e["decision"].as_str().unwrap_or(""), e["detail"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(sign_ins, [("full", ""), ("denied", "link expired")], "{}", log.body);
}

/// A zip entry's last-modified time: year, month, day, hour, minute, second.
type ZipTime = (u16, u8, u8, u8, u8, u8);

/// The zip's entries with their last-modified times, and its manifest.
fn zip_entry_times(bytes: &[u8]) -> (Vec<(String, ZipTime)>, Value) {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a zip");
    let mut times = Vec::new();
    for i in 0..zip.len() {
        let file = zip.by_index(i).unwrap();
        let t = file.last_modified().expect("a last-modified time");
        times
            .push((file.name().unwrap().to_string(), (t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second())));
    }
    let manifest: Value = serde_json::from_reader(zip.by_name("manifest.json").unwrap()).unwrap();
    (times, manifest)
}

/// A zip entry's time as the export's RFC 3339 time would be written (UTC, even seconds).
fn as_zip_time(rfc3339: &str) -> ZipTime {
    let t: jiff::Timestamp = rfc3339.parse().unwrap();
    let d = t.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    (d.year() as u16, d.month() as u8, d.day() as u8, d.hour() as u8, d.minute() as u8, (d.second() as u8) & !1)
}

/// The files of a zip export, as text.
fn zip_texts(bytes: &[u8]) -> Vec<(String, String)> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a zip");
    (0..zip.len())
        .map(|i| {
            let mut file = zip.by_index(i).unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut file, &mut text).unwrap();
            (file.name().unwrap().to_string(), text)
        })
        .collect()
}

/// The privacy center's Download as bytes (the visitor reads pages as text).
async fn download_zip(server: &Server, visitor: &Visitor, csrf: &str) -> Vec<u8> {
    let r = reqwest::Client::new()
        .post(format!("{}/privacy/me/download", server.url))
        .header("cookie", visitor.cookie.clone().expect("signed in"))
        .form(&[("csrf", csrf), ("format", "csv")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn export_zips_are_dated_when_the_export_was_made() {
    let install = Install::new();
    let server = install.serve();
    let (backend, id, link) = setup(&install, &server).await;
    let mut visitor = Visitor::new(&server);
    visitor.sign_in(&link).await;
    let csrf = visitor.get("/privacy/me/download").await.csrf();

    // The privacy center's Download: every file dated with the export's time (today, not 1980).
    let (times, manifest) = zip_entry_times(&download_zip(&server, &visitor, &csrf).await);
    let made = as_zip_time(manifest["generated_at"].as_str().expect("the manifest says when the export was made"));
    let names: Vec<&str> = times.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["fields.csv", "events.csv", "consents.csv", "manifest.json"]);
    for (name, t) in &times {
        assert_eq!(*t, made, "{name}");
    }
    let this_year = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).year() as u16;
    assert!(made.0 >= this_year - 1, "{made:?}");

    // The API's export, on a clock moved 40 days on: its time, from the one clock.
    install.advance_clock(std::time::Duration::from_secs(40 * 24 * 3600));
    let r = backend
        .with_purpose("privacy_requests")
        .request(reqwest::Method::GET, &format!("/v1/subjects/{id}/export?format=csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (times, manifest) = zip_entry_times(&r.bytes().await.unwrap());
    let generated = manifest["generated_at"].as_str().unwrap();
    let at: jiff::Timestamp = generated.parse().unwrap();
    assert!(at > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(39 * 24), "{generated}");
    assert!(times.iter().all(|(_, t)| *t == as_zip_time(generated)), "{times:?} vs {generated}");
}

#[tokio::test]
async fn every_page_and_file_for_the_customer_speaks_the_public_notices_words() {
    let install = Install::new();
    let server = install.serve();
    let (backend, id, link) = setup(&install, &server).await;
    let r = backend
        .with_purpose("order_fulfilment")
        .post(&format!("/v1/subjects/{id}/events"), json!({"type": "purchase", "data": {"item": "pen"}}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut visitor = Visitor::new(&server);
    visitor.sign_in(&link).await;
    // Machine words a customer should never have to read.
    let jargon = ["P30D", "P10Y", "ISO 8601", "Purpose: marketing", "`", "(contact)", "page_view"];
    let no_jargon = |what: &str, text: &str| {
        for j in jargon {
            assert!(!text.contains(j), "{what} says {j:?}:\n{text}");
        }
    };

    // The public notice's words for the e-mail address.
    let notice = server.anonymous().get("/v1/notice").await.body;
    let email = notice["notice"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["items"].as_array().unwrap())
        .find(|i| i["name"] == "email")
        .unwrap()
        .clone();
    let kept = email["kept"].as_str().unwrap();
    assert_eq!(kept, "while your account exists, then 30 days after you close it");
    assert_eq!(email["label"], "E-mail address");

    // My data.
    let page = visitor.get("/privacy/me").await;
    assert_eq!(page.status, 200);
    no_jargon("My data", &page.html);
    assert!(page.html.contains(kept) && page.html.contains("<th scope=\"row\">E-mail address</th>"), "{}", page.html);
    assert!(page.html.contains("Legal basis: our contract with you."), "{}", page.html);
    assert!(
        page.html.contains("Purchase history: 1 record, each kept 10 years after it is recorded."),
        "{}",
        page.html
    );

    // Choices: the purpose by its description, its notice in words, no raw ids.
    let page = visitor.get("/privacy/me/choices").await;
    no_jargon("Choices", &page.html);
    assert!(!page.html.contains("email (") && !page.html.contains("Channels: email"), "{}", page.html);
    assert!(page.html.contains("<legend>Send you offers and news, only if you asked for them.</legend>"));
    assert!(page.html.contains("How we would contact you: e-mail, text message (SMS)."), "{}", page.html);
    assert!(page.html.contains("- E-mail address (how to reach you)"), "{}", page.html);
    assert!(page.html.contains("- Page view history (how you use our services): Pages you viewed in the shop."));
    let csrf = page.csrf();
    let saved = visitor
        .post("/privacy/me/choices", &[("csrf", &csrf), ("shown", "marketing.email"), ("on", "marketing.email")])
        .await;
    assert!(saved.html.contains("1 choice changed"), "{}", saved.html);

    // Who accessed my data, Correct, Download, Delete, Check a message.
    for path in ["/privacy/me/access", "/privacy/me/correct", "/privacy/me/download", "/privacy/me/delete"] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        no_jargon(path, &page.html);
    }
    let access = visitor.get("/privacy/me/access").await;
    assert!(
        access.html.contains(">E-mail address, Full name<") && access.html.contains(">Purchase history<"),
        "{}",
        access.html
    );
    let correct = visitor.get("/privacy/me/correct").await;
    assert!(correct.html.contains(">E-mail address (required)</label>"), "{}", correct.html);
    let r = backend
        .with_purpose("order_fulfilment")
        .post(
            "/v1/messages",
            json!({"subject_id": id, "channel": "email", "subject_line": "Your order", "body_sha256": "a".repeat(64)}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let code = r.body["code"].as_str().unwrap();
    let page = visitor.get(&format!("/privacy/me/messages?code={code}")).await;
    no_jargon("Check a message", &page.html);
    assert!(page.html.contains("by e-mail on") && page.html.contains("<td data-label=\"How\">e-mail</td>"));

    // The download: the same words beside the catalog's names, in every file.
    let zip = download_zip(&server, &visitor, &csrf).await;
    let files = zip_texts(&zip);
    let file = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone()).unwrap();
    let fields = file("fields.csv");
    for j in ["P30D", "ISO 8601"] {
        assert!(!fields.contains(j), "{fields}");
    }
    assert!(fields.starts_with("field,label,value,category,category_label,why,kept,delete_after\n"), "{fields}");
    assert!(fields.contains(&format!("email,E-mail address,{CUSTOMER},contact,How to reach you,")), "{fields}");
    assert!(fields.contains(kept), "{fields}");
    assert!(file("events.csv").contains(",purchase,Purchase,"), "{}", file("events.csv"));
    let consents = file("consents.csv");
    assert!(
        consents.contains("marketing,\"Send you offers and news, only if you asked for them.\",email,e-mail,grant,")
    );
    let json_file = visitor.post("/privacy/me/download", &[("csrf", &csrf), ("format", "json")]).await;
    let export: Value = serde_json::from_str(&json_file.html).unwrap();
    let email = export["fields"].as_array().unwrap().iter().find(|f| f["field"] == "email").unwrap();
    assert_eq!((email["label"].as_str(), email["kept"].as_str()), (Some("E-mail address"), Some(kept)));
    assert_eq!(email["category_label"], "How to reach you");
    assert_eq!(email["retention"], json!({"kind": "while_account_exists", "grace": "P30D"}), "kept for programs");
    assert_eq!(export["event_types"][0]["label"], "Purchase history");
    assert_eq!(export["events"][0]["label"], "Purchase");
    assert!(!export.to_string().contains("ISO 8601"));
}

#[tokio::test]
async fn forms_need_the_session_token_and_signing_out_or_idling_ends_the_session() {
    let install = Install::new();
    let server = install.serve();
    let (backend, id, link) = setup(&install, &server).await;
    let mut visitor = Visitor::new(&server);
    visitor.sign_in(&link).await;
    let choices = visitor.get("/privacy/me/choices").await;
    let csrf = choices.csrf();

    // Without (or with another session's) token nothing changes.
    for token in ["", "not-the-token"] {
        let r = visitor
            .post("/privacy/me/choices", &[("csrf", token), ("shown", "marketing.email"), ("on", "marketing.email")])
            .await;
        assert_eq!(r.status, 403, "{}", r.html);
    }
    let consents = backend.with_purpose("privacy_requests").get(&format!("/v1/subjects/{id}/consents")).await;
    assert!(consents.body.to_string().contains("not_given"), "{}", consents.body);

    // Sign out: the cookie is cleared and the old cookie no longer works.
    let old = visitor.cookie.clone();
    let out = visitor.post("/privacy/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 200);
    assert!(out.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    visitor.cookie = old;
    assert_eq!(visitor.get("/privacy/me").await.status, 401);

    // Idle too long: the next request finds the session ended (and logs why).
    let mut idle = Visitor::new(&server);
    idle.sign_in(&new_link(&backend, &id).await).await;
    assert_eq!(idle.get("/privacy/me").await.status, 200);
    install.advance_clock(std::time::Duration::from_secs(21 * 60)); // past the 20-minute idle limit
    let page = idle.get("/privacy/me").await;
    assert_eq!(page.status, 401);
    assert_eq!(page.h1(), "You are not signed in");
    let log = backend.with_purpose("privacy_requests").get(&format!("/v1/subjects/{id}/access-log")).await;
    assert!(log.body.to_string().contains("idle timeout"));
}

#[tokio::test]
async fn choices_corrections_and_downloads_in_the_privacy_center_show_through_the_api() {
    let install = Install::new();
    let server = install.serve();
    let (backend, id, link) = setup(&install, &server).await;
    let mut visitor = Visitor::new(&server);
    visitor.sign_in(&link).await;

    // Consent on, recorded with method privacy_center and the customer as actor.
    let choices = visitor.get("/privacy/me/choices").await;
    assert!(choices.html.contains("Send you offers and news"), "the notice text is shown at the moment of choice");
    let csrf = choices.csrf();
    let saved = visitor
        .post(
            "/privacy/me/choices",
            &[("csrf", &csrf), ("shown", "marketing.email"), ("shown", "marketing.sms"), ("on", "marketing.email")],
        )
        .await;
    assert_eq!(saved.status, 200);
    assert!(saved.html.contains("1 choice changed"), "{}", saved.html);
    let marketing = server.client(&install.token("marketing_tool"), Some("marketing"));
    let r = marketing.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(r.status, 200, "marketing may now use the e-mail address: {:?}", r.body);
    assert_eq!(r.body["fields"]["email"], CUSTOMER);
    let history = backend.with_purpose("privacy_requests").get(&format!("/v1/subjects/{id}/consents/history")).await;
    let entry = &history.body["entries"][0];
    assert_eq!(
        (entry["method"].as_str(), entry["action"].as_str()),
        (Some("privacy_center"), Some("grant")),
        "{}",
        history.body
    );

    // Analytics on; then a save from a browser sending Global Privacy Control turns it off.
    let on = visitor.post("/privacy/me/choices", &[("csrf", &csrf), ("shown", "analytics"), ("on", "analytics")]).await;
    assert!(on.html.contains("1 choice changed"));
    let both = [
        ("csrf", csrf.as_str()),
        ("shown", "analytics"),
        ("on", "analytics"),
        ("shown", "marketing.email"),
        ("on", "marketing.email"),
    ];
    let gpc = visitor.post_with_gpc("/privacy/me/choices", &both).await;
    assert_eq!(gpc.status, 200);
    let history = backend.with_purpose("privacy_requests").get(&format!("/v1/subjects/{id}/consents/history")).await;
    let last = history.body["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["purpose"].as_str(), last["action"].as_str(), last["method"].as_str()),
        (Some("analytics"), Some("withdraw"), Some("gpc"))
    );
    assert_eq!(marketing.get(&format!("/v1/subjects/{id}")).await.status, 200, "marketing is not a gpc purpose");

    // Corrections: only what changed is written; an invalid value is named by its label; fields
    // the customer may not correct themself are ignored even when forged into the form.
    let form = visitor.get("/privacy/me/correct").await;
    assert!(form.html.contains("value=\"+442079460000\""));
    assert!(!form.html.contains("name=\"loyalty_points\""));
    let bad = visitor
        .post("/privacy/me/correct", &[("csrf", &csrf), ("email", "not an address"), ("full_name", "Ada Lovelace")])
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.html.contains("E-mail address:") && bad.html.contains("aria-invalid=\"true\""), "{}", bad.html);
    let ok = visitor
        .post(
            "/privacy/me/correct",
            &[
                ("csrf", &csrf),
                ("email", CUSTOMER),
                ("full_name", "Ada King"),
                ("phone", ""),
                ("loyalty_points", "99999"),
                ("shipping_address.city", "London"),
                ("shipping_address.country", "GB"),
            ],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.html);
    assert!(ok.html.contains("Saved: Full name, Shipping address, Phone number."), "{}", ok.html);
    let report = backend.with_purpose("privacy_requests").get(&format!("/v1/subjects/{id}/report")).await;
    let fields = report.body["fields"].to_string();
    assert!(fields.contains("Ada King") && fields.contains("London") && !fields.contains("+442079460000"), "{fields}");
    assert!(!fields.contains("99999"));
    let corrected = report.body["access_history"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["action"] == "subject.correct" && e["entry"]["actor"]["role"] == "customer")
        .map(|e| e["entry"]["fields"].clone())
        .collect::<Vec<_>>();
    assert_eq!(corrected, [json!(["full_name", "shipping_address", "phone"])]);

    // Download: a file, with the customer's data.
    let json_file = visitor.post("/privacy/me/download", &[("csrf", &csrf), ("format", "json")]).await;
    assert_eq!(json_file.status, 200);
    assert!(json_file.headers["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let export: Value = serde_json::from_str(&json_file.html).unwrap();
    assert_eq!(export["subject_id"], id.as_str());
    let zip = visitor.post("/privacy/me/download", &[("csrf", &csrf), ("format", "csv")]).await;
    assert_eq!(zip.headers["content-type"], "application/zip");

    // Who accessed: the marketing read is there, by role, with its purpose.
    let access = visitor.get("/privacy/me/access").await;
    assert!(access.html.contains("The newsletter and campaign tool"), "{}", access.html);
    assert!(access.html.contains("Looked at your details"));
}

#[tokio::test]
async fn deleting_the_account_shows_the_certificate_and_ends_every_way_back_in() {
    let install = Install::new();
    let server = install.serve();
    let (backend, id, link) = setup(&install, &server).await;
    let spare_link = new_link(&backend, &id).await;
    let mut visitor = Visitor::new(&server);
    visitor.sign_in(&link).await;
    let page = visitor.get("/privacy/me/delete").await;
    assert!(page.html.contains("cannot be undone"));
    let csrf = page.csrf();
    let unconfirmed = visitor.post("/privacy/me/delete", &[("csrf", &csrf)]).await;
    assert_eq!(unconfirmed.status, 422);
    assert_eq!(backend.get(&format!("/v1/subjects/{id}")).await.status, 200, "nothing was deleted");

    let done = visitor.post("/privacy/me/delete", &[("csrf", &csrf), ("confirm", "yes")]).await;
    assert_eq!(done.status, 200, "{}", done.html);
    assert_eq!(done.h1(), "Your account was deleted");
    assert!(done.html.contains("candor-erasure-certificate/1") && done.html.contains("ParcelCo GmbH"));
    assert!(
        done.html.contains("<dd>E-mail address, Full name, Phone number</dd>"),
        "the summary names what was deleted: {}",
        done.html
    );
    assert!(done.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(backend.get(&format!("/v1/subjects/{id}")).await.status, 404, "nothing left to find");
    let mut again = Visitor::new(&server);
    assert_eq!(again.get(&spare_link).await.status, 410, "links die with the account");
    let secret = spare_link.rsplit('/').next().unwrap();
    assert_eq!(again.post("/privacy/sign-in", &[("link", secret)]).await.status, 410);
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited_and_tls_deployments_get_host_only_secure_cookies() {
    let install = Install::new();
    let config = std::fs::read_to_string(install.config()).unwrap();
    let config = config
        .replace("sign_in_attempts_per_minute = 10", "sign_in_attempts_per_minute = 3")
        .replace("[privacy_center]\n", "[privacy_center]\npublic_url = \"https://privacy.shop.example\"\n");
    std::fs::write(install.config(), config).unwrap();
    let server = install.serve();
    let (backend, id, link) = setup(&install, &server).await;
    let r = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{id}/privacy-center-links"), json!({}))
        .await;
    assert!(r.body["url"].as_str().unwrap().starts_with("https://privacy.shop.example/privacy/sign-in/cndl_"));

    let mut visitor = Visitor::new(&server);
    let page = visitor.sign_in(&link).await;
    let set = page.headers["set-cookie"].to_str().unwrap();
    assert!(set.starts_with("__Host-candor_session=") && set.contains("; Secure"), "{set}");
    // Opening the live link cost nothing, using it one attempt; opening an unknown link costs one.
    assert_eq!(visitor.get("/privacy/sign-in/cndl_x").await.status, 410);
    assert_eq!(visitor.post("/privacy/sign-in", &[("link", "cndl_x")]).await.status, 410);
    let limited = visitor.post("/privacy/sign-in", &[("link", "cndl_x")]).await;
    assert_eq!(limited.status, 429);
    assert!(limited.headers.contains_key("retry-after"));
    // Even a good link waits, opened or used.
    let fresh = new_link(&backend, &id).await;
    let mut late = Visitor::new(&server);
    assert_eq!(late.get(&fresh).await.status, 429);
    let secret = fresh.rsplit('/').next().unwrap();
    assert_eq!(late.post("/privacy/sign-in", &[("link", secret)]).await.status, 429);
}

/// Login CSRF: a sign-in posted from another website is refused (and does not use the link up);
/// message checks count apart from sign-in attempts, so checking codes locks nobody out.
#[tokio::test]
async fn a_sign_in_from_another_site_is_refused_and_message_checks_do_not_lock_sign_in() {
    let install = Install::new();
    let config = std::fs::read_to_string(install.config()).unwrap();
    std::fs::write(
        install.config(),
        config.replace("sign_in_attempts_per_minute = 10", "sign_in_attempts_per_minute = 3"),
    )
    .unwrap();
    let server = install.serve();
    let (_backend, _id, link) = setup(&install, &server).await;
    let secret = link.rsplit('/').next().unwrap().to_string();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let post = |headers: Vec<(&'static str, String)>| {
        let mut r = http.post(format!("{}/privacy/sign-in", server.url)).form(&[("link", secret.as_str())]);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    let r = post(vec![("sec-fetch-site", "cross-site".into())]).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = post(vec![("origin", "https://evil.example".into())]).await.unwrap();
    assert_eq!(r.status(), 403);
    // Checking message codes uses its own allowance.
    for _ in 0..5 {
        let r = server.anonymous().get("/v1/messages/verify?code=ABCD-EFGH-JKLM").await;
        assert!(r.status == 200 || r.status == 400 || r.status == 429, "{:?}", r.body);
    }
    // The link still works, from our own page.
    let host = server.url.trim_start_matches("http://").to_string();
    let r = post(vec![("sec-fetch-site", "same-origin".into()), ("origin", format!("http://{host}"))]).await.unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
}

#[tokio::test]
async fn without_a_customer_requests_purpose_no_link_is_made() {
    let install = Install::new();
    let catalog = install.config().with_file_name("catalog.toml");
    let text = std::fs::read_to_string(&catalog).unwrap().replace("customer_requests = true", "");
    std::fs::write(&catalog, text).unwrap();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": CUSTOMER, "full_name": "Ada Lovelace"})).await;
    let r = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{id}/privacy-center-links"), json!({}))
        .await;
    assert_eq!((r.status, r.code()), (409, "privacy_center_unavailable"), "{:?}", r.body);
}

#[tokio::test]
async fn customers_see_their_own_requests_and_why_one_was_refused() {
    let install = Install::new();
    let server = install.serve();
    let (backend, id, link) = setup(&install, &server).await;
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let other = backend.create(json!({"email": "grace@example.com", "full_name": "Grace Hopper"})).await;
    let mut opened = Vec::new();
    for (subject, kind) in [(&id, "erasure"), (&id, "access"), (&other, "objection")] {
        let r = privacy.post("/v1/requests", json!({"subject_id": subject, "kind": kind})).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        opened.push(r.body["id"].as_str().unwrap().to_string());
    }
    let r = privacy
        .patch(&format!("/v1/requests/{}", opened[0]), json!({"status": "rejected", "reason": "legal_obligation"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = privacy.patch(&format!("/v1/requests/{}", opened[1]), json!({"identity": "requested"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Nobody signed in: no requests are shown.
    let stranger = Visitor::new(&server).get("/privacy/me/requests").await;
    assert!(
        matches!(stranger.status, 401 | 403) && !stranger.html.contains("Deleting your data"),
        "{}",
        stranger.status
    );

    let mut visitor = Visitor::new(&server);
    visitor.sign_in(&link).await;
    let page = visitor.get("/privacy/me/requests").await;
    assert_eq!(page.status, 200);
    let html = &page.html;
    // Her two, in plain words: the refusal with its reason and her right to complain, the
    // access request waiting for her proof of identity. Not Grace's objection.
    assert!(html.contains("Deleting your data") && html.contains("Refused on"), "{html}");
    assert!(html.contains("The law obliges us to keep the data concerned"), "{html}");
    assert!(html.contains("lodge a complaint with a data protection supervisory authority"), "{html}");
    assert!(html.contains("A copy of everything we hold about you") && html.contains("confirm who you are"), "{html}");
    assert!(!html.contains("objection") && !html.contains(&other), "{html}");
    assert!(!html.contains("legal_obligation"), "the customer reads words, not codes");
    assert!(html.contains("href=\"/privacy/me/requests\" aria-current=\"page\""), "in the menu, marked current");

    // Her look is in the log as hers (`request.list` by her session, naming only her).
    let admin = server.client(&install.admin_token, None);
    let log = admin.get("/v1/log/entries?start=0&end=1000").await;
    let listed: Vec<&Value> = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entry"])
        .filter(|e| e["action"] == "request.list" && e["actor"]["role"] == "customer")
        .collect();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["subjects"], json!([id]));
}
