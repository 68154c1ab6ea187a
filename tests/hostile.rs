//! Hostile input and requests (issue 20 §7): spreadsheet formulas planted in stored values,
//! duplicate JSON keys, a second `Authorization` header, and error answers that must be JSON
//! whatever went wrong.

mod common;

use common::{Install, Resp};
use reqwest::Method;
use serde_json::{Value, json};

/// A value that a spreadsheet would run as a formula if a cell started with it.
const FORMULA: &str = "=HYPERLINK(\"http://evil.example\",\"x\")";

fn read_zip_file(zip: &mut zip::ZipArchive<std::io::Cursor<Vec<u8>>>, name: &str) -> Vec<u8> {
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut zip.by_name(name).expect(name), &mut data).expect("read");
    data
}

/// The cells of a CSV file, header row first.
fn csv_rows(data: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(data)
        .records()
        .map(|r| r.expect("a CSV row").iter().map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn csv_export_cells_cannot_start_a_formula() {
    let install = Install::new();
    let server = install.serve();
    let token = install.token("shop_backend");
    let backend = server.client(&token, Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    // Planted through the API, as the privacy center's Correct form also could.
    let r = backend.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"full_name": FORMULA}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = backend.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"loyalty_points": -5}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let orders = backend.with_purpose("order_fulfilment");
    let r = orders.patch(&format!("/v1/subjects/{id}"), json!({"fields": {"phone": "+44 20 7946 0958"}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = orders
        .post(&format!("/v1/subjects/{id}/events"), json!({"type": "purchase", "data": {"item": "@SUM(1+1)"}}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    let requests = backend.with_purpose("privacy_requests");
    let resp = requests.request(Method::GET, &format!("/v1/subjects/{id}/export?format=csv")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let bytes = resp.bytes().await.unwrap().to_vec();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");

    let fields = csv_rows(&read_zip_file(&mut zip, "fields.csv"));
    let value_of = |name: &str| {
        fields.iter().find(|row| row[0] == name).unwrap_or_else(|| panic!("{name} row in {fields:?}"))[2].clone()
    };
    assert_eq!(value_of("full_name"), format!("'{FORMULA}"));
    // OWASP's rule quotes every cell starting with + - = @ TAB CR, phone numbers and negative
    // numbers included: a spreadsheet shows them as text.
    assert_eq!(value_of("phone"), "'+44 20 7946 0958");
    assert_eq!(value_of("loyalty_points"), "'-5");
    assert_eq!(value_of("email"), "ada@example.com");
    // No cell of any file starts with a formula character.
    for name in ["fields.csv", "events.csv", "consents.csv"] {
        for row in csv_rows(&read_zip_file(&mut zip, name)) {
            for cell in row {
                assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "{name}: {cell}");
            }
        }
    }

    // The manifest's hashes and counts are those of the bytes written.
    let manifest: Value = serde_json::from_slice(&read_zip_file(&mut zip, "manifest.json")).unwrap();
    for file in manifest["files"].as_array().unwrap() {
        let data = read_zip_file(&mut zip, file["name"].as_str().unwrap());
        let sha: String = candor_crypto::sha256(&data).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(file["sha256"], sha.as_str(), "{}", file["name"]);
        assert_eq!(file["bytes"], data.len() as u64, "{}", file["name"]);
    }
}

#[tokio::test]
async fn duplicate_json_keys_are_refused_at_any_depth() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let raw = |body: &str| backend.post_raw("/v1/subjects", "application/json", body.as_bytes().to_vec());

    let cases = [
        // In the fields object: the last one would have won.
        (r#"{"fields": {"email": "ada@example.com", "full_name": "Ada", "email": "eve@example.com"}}"#, "email"),
        // At the top level.
        (
            r#"{"fields": {"email": "ada@example.com"}, "fields": {"email": "eve@example.com", "full_name": "Eve"}}"#,
            "fields",
        ),
        // Spelt differently, the same key once unescaped.
        (r#"{"fields": {"email": "ada@example.com", "full_name": "Ada", "em\u0061il": "eve@example.com"}}"#, "email"),
        // Deep inside a JSON value.
        (
            r#"{"fields": {"email": "ada@example.com", "full_name": "Ada", "shop_preferences": {"sizes": [{"top": "M", "top": "XL"}]}}}"#,
            "top",
        ),
    ];
    for (body, key) in cases {
        let r = raw(body).await;
        assert_eq!((r.status, r.code()), (400, "invalid_body"), "{body}: {:?}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{key}`")), "names the duplicated key: {message}");
        for value in ["ada@example.com", "eve@example.com", "Eve", "XL"] {
            assert!(!r.body.to_string().contains(value), "echoes a value: {:?}", r.body);
        }
    }
    // Nothing was stored.
    for email in ["ada%40example.com", "eve%40example.com"] {
        let r = backend.get(&format!("/v1/subjects?email={email}")).await;
        assert_eq!((r.status, &r.body["ids"]), (200, &json!([])), "{:?}", r.body);
    }

    // On other routes too: an event's data.
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;
    let orders = backend.with_purpose("order_fulfilment");
    let r = orders
        .post_raw(
            &format!("/v1/subjects/{id}/events"),
            "application/json",
            br#"{"type": "purchase", "data": {"total": 1, "total": 1000}}"#.to_vec(),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_body"), "{:?}", r.body);
    // The same keys in different objects are fine.
    let r = orders
        .post_raw(
            &format!("/v1/subjects/{id}/events"),
            "application/json",
            br#"{"type": "purchase", "data": {"a": {"total": 1}, "b": {"total": 2}, "total": 3}}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn a_second_authorization_header_is_refused() {
    let install = Install::new();
    let server = install.serve();
    let token = install.token("shop_backend");
    let backend = server.client(&token, Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;
    let path = format!("/v1/subjects/{id}");
    assert_eq!(backend.get(&path).await.status, 200);

    // The first is a good token: it must not win silently over the second, nor the second over it.
    let other = install.token("support_agent");
    for second in [format!("Bearer {other}"), format!("Bearer {token}"), "Bearer nonsense".to_string()] {
        let r = backend.send(backend.request(Method::GET, &path).header("authorization", second.as_str())).await;
        assert_eq!((r.status, r.code(), r.field()), (400, "invalid_authorization", "Authorization"), "{:?}", r.body);
        assert!(!r.body.to_string().contains(&other) && !r.body.to_string().contains(&token));
    }
    // Also where no staff token is expected: a recipient's grant read.
    let r = backend
        .send(
            server
                .anonymous()
                .request(Method::GET, "/v1/grants/g/records")
                .header("authorization", "Bearer cndg_a")
                .header("authorization", "Bearer cndg_b"),
        )
        .await;
    assert_eq!((r.status, r.code(), r.field()), (400, "invalid_authorization", "Authorization"), "{:?}", r.body);
}

/// Sends a request declaring a body of `length` bytes without sending it (a client that sent it
/// all could see the connection reset under it once the server has answered), and reads the
/// answer.
fn declared_body(base: &str, method: &str, path: &str, token: &str, content_type: &str, length: usize) -> Resp {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nCandor-Purpose: account\r\n\
         Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let (head, body) = loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed before an answer: {}", String::from_utf8_lossy(&data));
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_none_or(|n| body.len() >= n) {
                break (head.to_string(), body.to_string());
            }
        }
    };
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = reqwest::header::HeaderMap::new();
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            headers.append(
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                value.trim().parse().unwrap(),
            );
        }
    }
    Resp { status, body: serde_json::from_str(&body).unwrap_or(Value::Null), headers }
}

fn assert_json_error(r: &Resp, what: &str) {
    assert!(r.status >= 400, "{what}: status {}", r.status);
    let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("application/json"), "{what}: {} with content type {ct:?}: {:?}", r.status, r.body);
    let code = r.body["error"]["code"].as_str().unwrap_or("");
    assert!(!code.is_empty(), "{what}: {} without error.code: {:?}", r.status, r.body);
    assert!(r.body["error"]["message"].is_string(), "{what}: {:?}", r.body);
}

#[tokio::test]
async fn every_api_error_answer_is_json() {
    let install = Install::new();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let admin = server.client(&install.admin_token, None);
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;

    // Malformed ids: not a UUID, and a segment that is not UTF-8 once decoded.
    for bad in ["not-an-id", "%FF", "%C3%28"] {
        let routes = [
            (Method::GET, format!("/v1/subjects/{bad}")),
            (Method::PATCH, format!("/v1/subjects/{bad}")),
            (Method::DELETE, format!("/v1/subjects/{bad}")),
            (Method::GET, format!("/v1/subjects/{bad}/events")),
            (Method::GET, format!("/v1/subjects/{bad}/consents")),
            (Method::GET, format!("/v1/subjects/{bad}/report")),
            (Method::GET, format!("/v1/subjects/{bad}/access-log")),
            (Method::GET, format!("/v1/subjects/{id}/consents/receipts/{bad}")),
            (Method::GET, format!("/v1/subjects/{bad}/consents/receipts/{bad}")),
            (Method::GET, format!("/v1/grants/{bad}")),
            (Method::DELETE, format!("/v1/grants/{bad}")),
            (Method::GET, format!("/v1/grants/{bad}/records")),
            (Method::POST, format!("/v1/notices/{bad}/confirm")),
            (Method::PATCH, format!("/v1/requests/{bad}")),
            (Method::DELETE, format!("/v1/tokens/{bad}")),
            (Method::GET, format!("/log/tile/{bad}")),
        ];
        for (method, path) in routes {
            let client = if path.starts_with("/v1/tokens") { &admin } else { &backend };
            let r = client.send(client.request(method.clone(), &path).header("content-type", "application/json")).await;
            assert_json_error(&r, &format!("{method} {path}"));
            if bad != "not-an-id" {
                assert_eq!(r.status, 400, "{method} {path}: {:?}", r.body);
            }
        }
    }

    // Wrong methods.
    for (method, path) in [
        (Method::PUT, "/v1/subjects".to_string()),
        (Method::PUT, format!("/v1/subjects/{id}")),
        (Method::POST, format!("/v1/subjects/{id}/report")),
        (Method::DELETE, "/v1/catalog".to_string()),
        (Method::POST, "/healthz".to_string()),
        (Method::POST, "/openapi.json".to_string()),
        (Method::DELETE, "/metrics".to_string()),
        (Method::POST, "/v1/log/checkpoint".to_string()),
        (Method::POST, "/log/checkpoint".to_string()),
        (Method::PUT, "/v1/tokens/x".to_string()),
    ] {
        let r = backend.send(backend.request(method.clone(), &path)).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_json_error(&r, &format!("{method} {path}"));
    }

    // Unknown paths.
    for path in ["/v1/nothing", "/v1/subjects/x/y/z", "/v2/subjects", "/log/nothing", "/metrics/x", "/healthz/"] {
        let r = backend.get(path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_json_error(&r, path);
    }

    // Oversized bodies (the default limit is 64 KiB), refused from their declared length.
    let token = backend.token.clone().unwrap();
    for (method, path, content_type) in [
        ("POST", "/v1/subjects".to_string(), "application/json"),
        ("POST", format!("/v1/subjects/{id}/events"), "application/json"),
        ("POST", "/v1/grants".to_string(), "application/json"),
        ("PATCH", format!("/v1/subjects/{id}"), "text/plain"),
    ] {
        let r = declared_body(&backend.base, method, &path, &token, content_type, 70 * 1024);
        assert_eq!(r.status, 413, "{method} {path}");
        assert_json_error(&r, &path);
    }

    // Wrong content types.
    for ct in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"] {
        let r = backend.post_raw("/v1/subjects", ct, br#"{"fields": {}}"#.to_vec()).await;
        assert_eq!(r.status, 415, "{ct}");
        assert_json_error(&r, ct);
    }

    // Not JSON, the wrong shape, no token, a wrong query.
    let r = backend.post_raw("/v1/subjects", "application/json", b"{".to_vec()).await;
    assert_json_error(&r, "malformed JSON");
    let r = backend.post_raw("/v1/subjects", "application/json", b"[]".to_vec()).await;
    assert_json_error(&r, "wrong shape");
    let r = server.anonymous().get(&format!("/v1/subjects/{id}")).await;
    assert_json_error(&r, "no token");
    let r = backend.get("/v1/log/entries?start=x").await;
    assert_json_error(&r, "bad query");

    // The privacy center keeps its HTML pages.
    let r = server.anonymous().get("/privacy/me").await;
    let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(!ct.starts_with("application/json"), "{} {ct}", r.status);
}

#[tokio::test]
async fn the_openapi_document_is_the_same_bytes_every_time() {
    let install = Install::new();
    let server = install.serve();
    let client = reqwest::Client::new();
    let get = || async {
        let resp = client.get(format!("{}/openapi.json", server.url)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        resp.bytes().await.unwrap()
    };
    let first = get().await;
    let second = get().await;
    assert!(!first.is_empty());
    assert_eq!(first, second);
    let doc: Value = serde_json::from_slice(&first).unwrap();
    assert!(doc["paths"].get("/v1/subjects/{id}").is_some());
}
