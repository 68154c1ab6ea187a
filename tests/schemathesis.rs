//! The OpenAPI document is the API: schemathesis (the version pinned in
//! `tests/schemathesis/requirements.txt`) generates requests from `/openapi.json` of a real
//! server and checks every answer against the document, with every check on (`--checks all`):
//! no 5xx, every status, content type, header and body as documented, schema-valid requests
//! accepted and invalid ones refused, authentication not ignored, undeclared methods answered
//! 405, deleted resources gone. A real token, real customers, a grant, a request and a message
//! code are made first, so most operations reach their 2xx answer;
//! `tests/schemathesis/schemathesis.toml` says which customer and purpose each operation uses and
//! why some answers are right for this API. `scripts/test.sh` installs schemathesis into
//! `target/schemathesis` and sets `CANDOR_SCHEMATHESIS_TESTS=1`, which makes a missing
//! schemathesis a failure; elsewhere the test says loudly that it was skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Client, Install};
use serde_json::{Value, json};

/// Test cases per operation and phase: enough to find what is wrong, bounded so the run takes
/// a couple of minutes on two cores.
const MAX_EXAMPLES: &str = "100";

/// A fixed seed: the same requests every run (`CANDOR_SCHEMATHESIS_SEED` picks another).
const SEED: &str = "20208";

fn pinned_version() -> String {
    let pins =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/requirements.txt"))
            .expect("tests/schemathesis/requirements.txt");
    pins.lines().find_map(|l| l.strip_prefix("schemathesis==")).expect("schemathesis is pinned").trim().to_string()
}

/// The `st` program of the pinned schemathesis: `CANDOR_SCHEMATHESIS` or the one
/// `scripts/test.sh` installs in `target/schemathesis`; `None` (skipped, or a failure in CI)
/// when it is missing or another version.
fn schemathesis() -> Option<PathBuf> {
    let st = std::env::var_os("CANDOR_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis/bin/st"));
    let pinned = pinned_version();
    let found = Command::new(&st).arg("--version").output().ok().filter(|o| o.status.success());
    let version = found.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if version.as_deref().is_some_and(|v| v.ends_with(&format!(" {pinned}"))) {
        return Some(st);
    }
    let why = match version {
        Some(v) => format!("{} is `{v}`, not the pinned {pinned}", st.display()),
        None => format!("{} is missing", st.display()),
    };
    assert!(
        std::env::var("CANDOR_SCHEMATHESIS_TESTS").is_err(),
        "CANDOR_SCHEMATHESIS_TESTS is set but schemathesis cannot run: {why}"
    );
    eprintln!(
        "\n=====================================================================\n\
         SKIPPED: the schemathesis run of the OpenAPI document: {why}.\n\
         scripts/test.sh installs it (python3 -m venv target/schemathesis &&\n\
         target/schemathesis/bin/pip install -r tests/schemathesis/requirements.txt)\n\
         =====================================================================\n"
    );
    None
}

/// A role under every purpose with every power, so one token reaches every operation.
const TESTER_ROLE: &str = r#"
[[roles]]
id = "api_tester"
description = "schemathesis: every purpose and every power, to reach every operation."
purposes = ["account", "order_fulfilment", "customer_support", "fraud_prevention", "legal_accounting", "privacy_requests", "marketing", "analytics"]
share = true
record_consent = true
break_glass = true
erase = true
audit = true
"#;

/// Puts `value` in place of the line of `candor.toml` that starts with `key =`.
fn set(config: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key} = ");
    assert!(config.lines().any(|l| l.starts_with(&prefix)), "candor.toml has no `{key}`");
    config
        .lines()
        .map(|l| if l.starts_with(&prefix) { format!("{prefix}{value}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn created(client: &Client, path: &str, body: Value) -> Value {
    let r = client.post(path, body).await;
    assert!(r.status == 201 || r.status == 200, "POST {path}: {} {}", r.status, r.body);
    r.body
}

/// Customers, an event, a consent (and its receipt), two grants, a request and a message: the
/// ids the operations are given (`CANDOR_ST_*`).
async fn seed(server: &common::Server, token: &str, admin: &str) -> Vec<(String, String)> {
    let as_purpose = |p: &str| server.client(token, Some(p));
    let mut ids = Vec::new();
    for (name, email) in [
        ("READ", "ada@example.com"),
        ("RESTRICT", "grace@example.com"),
        ("HOLD", "katherine@example.com"),
        ("ERASE", "mary@example.com"),
    ] {
        let fields = json!({"fields": {"email": email, "full_name": "Ada Lovelace", "date_of_birth": "1990-12-10"}});
        let id = created(&as_purpose("account"), "/v1/subjects", fields).await["id"].as_str().unwrap().to_string();
        ids.push((name.to_string(), id));
    }
    let read = ids[0].1.clone();
    let shipping = json!({"fields": {"phone": "+44 20 7946 0101",
        "shipping_address": {"street": "10 Demo Street", "city": "London", "country": "GB"}}});
    let r = as_purpose("order_fulfilment").patch(&format!("/v1/subjects/{read}"), shipping).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let purchase = json!({"type": "purchase", "data": {"item": "Notebook", "price_eur": 12.5}});
    created(&as_purpose("order_fulfilment"), &format!("/v1/subjects/{read}/events"), purchase).await;
    let consent = json!({"changes": [{"purpose": "marketing", "channel": "email", "action": "grant"}],
        "evidence": "signup-form v3, checkbox"});
    let change = created(&as_purpose("account"), &format!("/v1/subjects/{read}/consents"), consent).await;
    ids.push(("RECEIPT".into(), change["receipts"][0]["receipt_id"].as_str().expect("receipt id").to_string()));
    let expires = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(24 * 7)).unwrap();
    let expires = expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let grant =
        json!({"recipient": "parcel_carrier", "subjects": [read], "fields": ["full_name"], "expires_at": expires});
    let read_grant = created(&as_purpose("order_fulfilment"), "/v1/grants", grant.clone()).await;
    let revoked_grant = created(&as_purpose("order_fulfilment"), "/v1/grants", grant).await;
    ids.push(("GRANT".into(), read_grant["id"].as_str().unwrap().to_string()));
    ids.push(("GRANT_CREDENTIAL".into(), read_grant["credential"].as_str().unwrap().to_string()));
    ids.push(("GRANT_REVOKE".into(), revoked_grant["id"].as_str().unwrap().to_string()));
    ids.push(("EXPIRES".into(), expires));
    let request = json!({"subject_id": read, "kind": "access"});
    let request = created(&as_purpose("privacy_requests"), "/v1/requests", request).await;
    ids.push(("REQUEST".into(), request["id"].as_str().unwrap().to_string()));
    let message = json!({"subject_id": read, "channel": "email", "subject_line": "Your order has shipped",
        "body_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"});
    let message = created(&as_purpose("order_fulfilment"), "/v1/messages", message).await;
    ids.push(("CODE".into(), message["code"].as_str().unwrap().to_string()));
    let tokens = server.client(admin, None).get("/v1/tokens").await.body;
    let spare = tokens["tokens"].as_array().unwrap().iter().find(|t| t["description"] == "spare").expect("spare token");
    ids.push(("SPARE_TOKEN".into(), spare["id"].as_str().unwrap().to_string()));
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_the_api_as_its_openapi_document_describes_it() {
    let Some(st) = schemathesis() else { return };
    let install = Install::new();
    let dir = install.dir.path();
    let catalog = std::fs::read_to_string(dir.join("catalog.toml")).unwrap();
    std::fs::write(dir.join("catalog.toml"), format!("{catalog}\n{TESTER_ROLE}")).unwrap();
    let mut config = std::fs::read_to_string(install.config()).unwrap();
    config = set(&config, "link_senders", r#"["shop_backend", "api_tester"]"#);
    // The run makes far more checks, erasures and restrictions than a person would: the
    // brakes and the rate limit (tested in tests/messages.rs and tests/rights.rs) would answer
    // 429 to most of them.
    config = set(&config, "sign_in_attempts_per_minute", "1000");
    config = set(&config, "erasures_per_hour", "0");
    config = set(&config, "restrictions_per_hour", "0");
    std::fs::write(install.config(), config).unwrap();
    let token = install.token("api_tester");
    install.token_with(&["--role", "admin", "--description", "spare"]);
    let server = install.serve();
    let mut env = seed(&server, &token, &install.admin_token).await;
    env.push(("TOKEN".into(), token));
    env.push(("ADMIN".into(), install.admin_token.clone()));

    let seed = std::env::var("CANDOR_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.to_string());
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/schemathesis.toml");
    let started = std::time::Instant::now();
    let out = Command::new(&st)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/openapi.json", server.url), "--checks", "all", "--max-examples", MAX_EXAMPLES])
        .args(["--seed", &seed, "--generation-database", "none", "--output-truncate", "true", "--no-color"])
        .envs(env.iter().map(|(k, v)| (format!("CANDOR_ST_{k}"), v.clone())))
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(dir)
        .output()
        .expect("run schemathesis");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let requests = server.log().lines().filter(|l| l.contains(" request ") || l.contains("\"request\"")).count();
    let summary: Vec<&str> = stdout.lines().skip_while(|l| !l.contains(" SUMMARY ")).collect();
    println!("{}", summary.join("\n"));
    println!("schemathesis {}: {requests} requests in {:.0?} (seed {seed})", pinned_version(), took);
    assert!(out.status.success(), "schemathesis found failures:\n{stdout}\n{stderr}");
    let last = summary.last().copied().unwrap_or_default();
    assert!(!last.contains("failure") && !last.contains("error"), "{last}");
}

/// What the document says of log positions, which schemathesis cannot tell from a schema: a
/// `start` beyond the end of the log is `400 out_of_range`, the end itself an empty list.
#[tokio::test]
async fn log_positions_beyond_the_log_are_out_of_range_as_documented() {
    let install = Install::new();
    let server = install.serve();
    let admin = server.client(&install.admin_token, None);
    let checkpoint = reqwest::get(format!("{}/v1/log/checkpoint", server.url)).await.unwrap().text().await.unwrap();
    let size: u64 = checkpoint.lines().nth(1).and_then(|l| l.parse().ok()).expect("the checkpoint's size line");
    let all = admin.get(&format!("/v1/log/entries?start=0&end={size}")).await;
    assert_eq!(all.body["entries"].as_array().map(Vec::len), Some(size as usize), "{}", all.body);
    let last = admin.get(&format!("/v1/log/entries?start={}&end={}", size - 1, size + 10)).await;
    assert_eq!(last.body["entries"][0]["index"], size - 1, "{}", last.body);
    assert_eq!(last.body["entries"].as_array().map(Vec::len), Some(1), "the list stops at the log's end");
    let end = admin.get(&format!("/v1/log/entries?start={size}&end={}", size + 10)).await;
    assert_eq!((end.status, end.body["entries"].as_array().map(Vec::len)), (200, Some(0)), "{}", end.body);
    for start in [size + 1, 1 << 40, u64::MAX - 5] {
        let r = admin.get(&format!("/v1/log/entries?start={start}&end={}", start.saturating_add(5))).await;
        assert_eq!((r.status, r.code(), r.field()), (400, "out_of_range", "start"), "start={start}: {}", r.body);
    }
    let r = admin.get(&format!("/v1/log/proofs/inclusion?index={size}&tree_size={}", size + 1)).await;
    assert_eq!((r.status, r.code()), (400, "out_of_range"), "{}", r.body);
    let r = admin.get(&format!("/v1/log/proofs/consistency?from=1&to={}", size + 1)).await;
    assert_eq!((r.status, r.code()), (400, "out_of_range"), "{}", r.body);
}
