//! Message authenticity over HTTP: registering messages (purpose, consent per channel, input
//! checks), checking codes publicly and in the privacy center, rate limiting, and erasure.

mod common;

use common::visitor::Visitor;
use common::{Client, Install, Server};
use serde_json::{Value, json};

const BODY_SHA256: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

async fn customer(backend: &Client, email: &str) -> String {
    backend.create(json!({"email": email, "full_name": "Ada Lovelace"})).await
}

async fn register(client: &Client, id: &str, channel: &str, line: &str) -> common::Resp {
    client
        .post(
            "/v1/messages",
            json!({"subject_id": id, "channel": channel, "subject_line": line, "body_sha256": BODY_SHA256}),
        )
        .await
}

async fn verify(server: &Server, code: &str) -> Value {
    let r = server.anonymous().get(&format!("/v1/messages/verify?code={}", code.replace(' ', "%20"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

#[tokio::test]
async fn registered_codes_verify_as_genuine_and_anything_else_as_unknown() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("order_fulfilment"));
    let id = customer(&backend.with_purpose("account"), "ada@example.com").await;
    let r = register(&backend, &id, "email", "Your order 1042 has shipped").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let code = r.body["code"].as_str().unwrap().to_string();
    assert!(r.body["check_url"].as_str().unwrap().ends_with(&format!("/privacy/check?code={code}")));

    let genuine = verify(&server, &code).await;
    assert_eq!((genuine["result"].as_str(), genuine["channel"].as_str()), (Some("genuine"), Some("email")));
    assert!(genuine.get("subject_id").is_none() && !genuine.to_string().contains("shipped"), "{genuine}");
    // Typed loosely: lower case, spaces instead of the dash.
    assert_eq!(verify(&server, &code.to_lowercase().replace('-', " ")).await["result"], "genuine");
    assert_eq!(verify(&server, "ABCDE-FGHJK").await, json!({"result": "unknown"}));
    assert_eq!(verify(&server, "not a code").await, json!({"result": "unknown"}));
    assert_eq!(server.anonymous().get("/v1/messages/verify").await.status, 400);

    // The public check page says the same, in words.
    let mut visitor = Visitor::new(&server);
    let page = visitor.get(&format!("/privacy/check?code={code}")).await;
    assert!(page.html.contains("Genuine.") && !page.html.contains("shipped"), "{}", page.html);
    let page = visitor.get("/privacy/check?code=ABCDE-FGHJK").await;
    assert!(page.html.contains("We do not know this code."));

    // Bad input names the field; nothing is registered for nobody.
    let r = register(&backend, &id, "pigeon", "Hi").await;
    assert_eq!((r.status, r.code(), r.field()), (422, "invalid_value", "channel"));
    let r = backend
        .post("/v1/messages", json!({"subject_id": id, "channel": "email", "subject_line": "Hi", "body_sha256": "abc"}))
        .await;
    assert_eq!((r.status, r.field()), (422, "body_sha256"));
    let r = register(&backend, "7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70", "email", "Hi").await;
    assert_eq!(r.status, 404);

    // The log has the registration and the public check, never the subject line.
    let log = backend.with_purpose("privacy_requests").get(&format!("/v1/subjects/{id}/access-log")).await;
    let actions: Vec<String> = log.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!("{} {}", e["entry"]["action"].as_str().unwrap(), e["entry"]["actor"]["role"].as_str().unwrap())
        })
        .collect();
    assert!(actions.contains(&"message.register shop_backend".to_string()), "{actions:?}");
    assert!(actions.contains(&"message.verify public".to_string()), "{actions:?}");
    assert!(!log.body.to_string().contains("shipped"));
    assert!(!server.log().contains("shipped"), "the subject line is personal: never in the server log");
}

#[tokio::test]
async fn marketing_messages_need_consent_on_their_channel() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = customer(&backend, "ada@example.com").await;
    let marketing = server.client(&install.token("marketing_tool"), Some("marketing"));
    let r = register(&marketing, &id, "email", "Our winter sale").await;
    assert_eq!((r.status, r.code()), (403, "consent_required"), "{:?}", r.body);
    let r = backend
        .post(
            &format!("/v1/subjects/{id}/consents"),
            json!({"changes": [{"purpose": "marketing", "channel": "email", "action": "grant"}], "evidence": "account settings form, checkbox"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(register(&marketing, &id, "email", "Our winter sale").await.status, 201);
    let r = register(&marketing, &id, "sms", "Our winter sale").await;
    assert_eq!((r.status, r.code()), (403, "consent_required"), "no consent by text message");
}

#[tokio::test]
async fn customers_see_their_messages_and_check_codes_only_against_their_own() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("order_fulfilment"));
    let ada = customer(&backend.with_purpose("account"), "ada@example.com").await;
    let grace = customer(&backend.with_purpose("account"), "grace@example.com").await;
    let ada_code = register(&backend, &ada, "email", "Your order 1042 has shipped").await.body["code"]
        .as_str()
        .unwrap()
        .to_string();
    let grace_code =
        register(&backend, &grace, "sms", "Your parcel is on its way").await.body["code"].as_str().unwrap().to_string();

    let link = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{ada}/privacy-center-links"), json!({}))
        .await;
    let mut visitor = Visitor::new(&server);
    visitor.sign_in(link.body["path"].as_str().unwrap()).await;
    let page = visitor.get("/privacy/me/messages").await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("Your order 1042 has shipped"), "{}", page.html);
    assert!(!page.html.contains("Your parcel is on its way"));
    let own = visitor.get(&format!("/privacy/me/messages?code={ada_code}")).await;
    assert!(own.html.contains("Genuine.") && own.html.contains("Your order 1042 has shipped"));
    // A pasted check link works too.
    let pasted =
        visitor.get(&format!("/privacy/me/messages?code=https%3A%2F%2Fx%2Fprivacy%2Fcheck%3Fcode%3D{ada_code}")).await;
    assert!(pasted.html.contains("Genuine."), "{}", pasted.html);
    let other = visitor.get(&format!("/privacy/me/messages?code={grace_code}")).await;
    assert!(other.html.contains("No message we sent you has it.") && !other.html.contains("on its way"));

    // The list goes with the customer; the code stays genuine (see the erasure test below).
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let r = privacy.send(privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{ada}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(verify(&server, &ada_code).await["result"], "genuine");
    assert_eq!(verify(&server, &grace_code).await["result"], "genuine");
}

on_both_backends!(a_genuine_message_stays_genuine_after_its_customer_is_erased_and_says_nothing_about_them);

async fn a_genuine_message_stays_genuine_after_its_customer_is_erased_and_says_nothing_about_them(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("order_fulfilment"));
    let ada = customer(&backend.with_purpose("account"), "ada@example.com").await;
    let r = register(&backend, &ada, "email", "Your order 1042 has shipped to Ada Lovelace").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let code = r.body["code"].as_str().unwrap().to_string();
    let before = verify(&server, &code).await;
    assert_eq!(before["result"], "genuine");

    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let r = privacy.send(privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{ada}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // The same answer as before the erasure: genuine, from whom, how and when; nothing about
    // the customer (not even that they were erased).
    let after = verify(&server, &code).await;
    assert_eq!(after, before);
    let text = after.to_string();
    for secret in [ada.as_str(), "Ada", "Lovelace", "1042", "ada@example.com"] {
        assert!(!text.contains(secret), "{text}");
    }
    let mut visitor = Visitor::new(&server);
    let page = visitor.get(&format!("/privacy/check?code={code}")).await;
    assert!(page.html.contains("Genuine."), "{}", page.html);
    assert!(!page.html.contains("Lovelace") && !page.html.contains("1042") && !page.html.contains(&ada));
    assert_eq!(verify(&server, "ABCDE-FGHJK").await, json!({"result": "unknown"}), "others stay unknown");

    // What erasure must destroy is gone: the customer's list of messages and their subject
    // lines. The check after the erasure is logged against nobody.
    let log = privacy.get(&format!("/v1/subjects/{ada}/access-log")).await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    let verifies = log.body["entries"].as_array().unwrap().iter().filter(|e| e["entry"]["action"] == "message.verify");
    assert_eq!(verifies.count(), 1, "only the check made before the erasure is the customer's");
    let entries = privacy.get("/v1/log/entries?start=0&end=1000").await;
    assert_eq!(entries.status, 200, "{:?}", entries.body);
    let last_verify = entries.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["entry"]["action"] == "message.verify")
        .map(|e| e["entry"].clone())
        .expect("the check is logged");
    assert_eq!(last_verify["decision"], "genuine");
    assert!(last_verify.get("subjects").is_none(), "{last_verify}");
    assert!(!entries.body.to_string().contains("Lovelace"));
}

#[tokio::test]
async fn guessing_codes_is_rate_limited() {
    let install = Install::new();
    let config = std::fs::read_to_string(install.config()).unwrap();
    std::fs::write(
        install.config(),
        config.replace("sign_in_attempts_per_minute = 10", "sign_in_attempts_per_minute = 5"),
    )
    .unwrap();
    let server = install.serve();
    for i in 0..5 {
        assert_eq!(verify(&server, &format!("AAAAA-AAAA{i}")).await["result"], "unknown");
    }
    let r = server.anonymous().get("/v1/messages/verify?code=AAAAA-AAAAB").await;
    assert_eq!((r.status, r.code()), (429, "too_many_requests"));
    assert!(r.headers.contains_key("retry-after"));
}
