//! Servers remember the tokens they have seen (issue 24: no token lookup per request), yet a
//! revocation made anywhere — on another server, or by the command line — refuses the token on
//! the very next request on every server, and an expired token is refused although remembered.
//! Two real server processes on one installation (one SQLite file, or one PostgreSQL database).

mod common;

on_both_backends!(
    a_token_revoked_on_one_server_is_refused_on_the_next_request_on_the_other,
    a_token_revoked_by_the_command_line_is_refused_by_every_running_server,
    a_remembered_token_is_refused_once_it_expires,
);

use std::time::Duration;

use common::{Client, Install};
use serde_json::json;

/// The id `GET /v1/tokens` lists for the token created with `description`.
async fn token_id(admin: &Client, description: &str) -> String {
    let r = admin.get("/v1/tokens").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let tokens = r.body["tokens"].as_array().unwrap();
    let found = tokens.iter().find(|t| t["description"] == description).unwrap_or_else(|| panic!("{tokens:?}"));
    found["id"].as_str().unwrap().to_string()
}

/// Reads the customer a few times on each client, so every server has looked the token up.
async fn read_on_each(clients: &[&Client], id: &str) {
    for c in clients {
        for _ in 0..3 {
            let r = c.get(&format!("/v1/subjects/{id}")).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    }
}

fn refused(r: &common::Resp, code: &str) {
    assert_eq!((r.status, r.code()), (401, code), "{:?}", r.body);
    assert!(r.body["fields"].is_null(), "nothing of the customer comes back: {:?}", r.body);
}

async fn a_token_revoked_on_one_server_is_refused_on_the_next_request_on_the_other(install: Install) {
    let (a, b) = (install.serve_logging_to("a.log"), install.serve_logging_to("b.log"));
    let creator = a.client(&install.token("shop_backend"), Some("account"));
    let id = creator.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    let support = install.token_with(&["--role", "support_agent", "--description", "support desk"]);
    let (on_a, on_b) = (a.client(&support, Some("customer_support")), b.client(&support, Some("customer_support")));
    read_on_each(&[&on_a, &on_b], &id).await;

    let admin = a.client(&install.admin_token, None);
    let support_id = token_id(&admin, "support desk").await;
    let r = admin.send(admin.request(reqwest::Method::DELETE, &format!("/v1/tokens/{support_id}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Server b remembered the token; its very next request is refused all the same.
    refused(&on_b.get(&format!("/v1/subjects/{id}")).await, "token_revoked");
    refused(&on_a.get(&format!("/v1/subjects/{id}")).await, "token_revoked");
    // Other tokens are unaffected (looked up again, still valid), on both servers.
    read_on_each(&[&a.client(&install.token("support_agent"), Some("customer_support")), &creator], &id).await;
    let r = b.client(&install.token("shop_backend"), Some("account")).get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    refused(&on_b.get(&format!("/v1/subjects/{id}")).await, "token_revoked");

    // Each refusal was answered without touching the customer: the log holds reads by the
    // support token only from before the revocation (3 per server).
    let entries = admin.get("/v1/log/entries?start=0&end=1000").await.body;
    let reads_by_support = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["action"] == "subject.read" && e["entry"]["actor"]["token"] == support_id.as_str())
        .count();
    assert_eq!(reads_by_support, 6, "{entries}");
}

async fn a_token_revoked_by_the_command_line_is_refused_by_every_running_server(install: Install) {
    let (a, b) = (install.serve_logging_to("a.log"), install.serve_logging_to("b.log"));
    let backend = install.token_with(&["--role", "shop_backend", "--description", "web shop"]);
    let (on_a, on_b) = (a.client(&backend, Some("account")), b.client(&backend, Some("account")));
    let id = on_a.create(json!({"email": "grace@example.com", "full_name": "Grace Hopper"})).await;
    read_on_each(&[&on_a, &on_b], &id).await;

    let admin = b.client(&install.admin_token, None);
    let backend_id = token_id(&admin, "web shop").await;
    let config = install.config();
    let (ok, out, err) =
        common::candor(&["token", "revoke", &backend_id, "--config", config.to_str().unwrap()], install.dir.path());
    assert!(ok && out.contains("is revoked"), "{out}{err}");

    refused(&on_a.get(&format!("/v1/subjects/{id}")).await, "token_revoked");
    refused(&on_b.get(&format!("/v1/subjects/{id}")).await, "token_revoked");
    // A write is refused too, and leaves nothing behind.
    let r = on_b.post("/v1/subjects", json!({"fields": {"email": "late@example.com", "full_name": "Too Late"}})).await;
    refused(&r, "token_revoked");
    let fresh = a.client(&install.token("shop_backend"), Some("account"));
    assert_eq!(fresh.get("/v1/subjects?email=late@example.com").await.body["ids"], json!([]));
}

async fn a_remembered_token_is_refused_once_it_expires(install: Install) {
    let server = install.serve();
    let short = install.token_with(&["--role", "shop_backend", "--expires", "1h"]);
    let client = server.client(&short, Some("account"));
    let id = client.create(json!({"email": "edsger@example.com", "full_name": "Edsger Dijkstra"})).await;
    read_on_each(&[&client], &id).await;
    install.advance_clock(Duration::from_secs(3600 + 60));
    refused(&client.get(&format!("/v1/subjects/{id}")).await, "token_expired");
}
