//! Customer-facing pages in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/browser/pages.mjs`). `scripts/test.sh` installs Chromium and the npm packages and sets
//! `CANDOR_BROWSER_TESTS=1`, which makes a missing browser a failure; elsewhere the test says
//! loudly that it was skipped.

mod common;

use std::path::Path;
use std::process::Command;

use common::Install;

/// Whether the browser and the npm packages are there; without them, skip (or fail in CI).
fn browser_ready(dir: &Path) -> bool {
    let ready = Path::new("/usr/bin/chromium").exists()
        && dir.join("node_modules/playwright-core").exists()
        && dir.join("node_modules/axe-core").exists()
        && Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ready {
        assert!(
            std::env::var("CANDOR_BROWSER_TESTS").is_err(),
            "CANDOR_BROWSER_TESTS is set but Chromium, node or tests/browser/node_modules is missing"
        );
        eprintln!(
            "SKIPPED: browser tests need /usr/bin/chromium, node and `npm ci --prefix tests/browser` \
             (scripts/test.sh installs them)"
        );
    }
    ready
}

#[test]
fn the_privacy_notice_works_without_script_or_third_parties_and_passes_axe_at_both_widths() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !browser_ready(&dir) {
        return;
    }
    let install = Install::new();
    let server = install.serve();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let out = Command::new("node")
        .arg(dir.join("pages.mjs"))
        .args([server.url.as_str(), shots.to_str().unwrap(), "/privacy"])
        .output()
        .expect("run node");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser checks failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("/privacy (phone)"), "{stdout}");
    for width in ["desktop", "phone"] {
        assert!(shots.join(format!("privacy-{width}.png")).exists(), "screenshot privacy-{width}.png");
    }
}

/// Signs in with a fresh link over plain HTTP and returns the session cookie (`name=value`).
async fn session_cookie(server: &common::Server, backend: &common::Client, id: &str) -> String {
    let r = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{id}/privacy-center-links"), serde_json::json!({}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let secret = r.body["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = http.post(format!("{}/privacy/sign-in", server.url)).form(&[("link", secret)]).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn a_customer_signs_in_reads_chooses_downloads_corrects_and_deletes_in_a_real_browser() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !browser_ready(&dir) {
        return;
    }
    let install = Install::new();
    let server = install.serve();
    let token = install.token("shop_backend");
    let backend = server.client(&token, Some("account"));
    let id = backend
        .create(
            serde_json::json!({"email": "ada@example.com", "full_name": "Ada Lovelace", "date_of_birth": "1990-01-02"}),
        )
        .await;
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let reason = "Customer disputes a chargeback dispute by phone and we must confirm the address on file";
    let r = support.post(&format!("/v1/subjects/{id}/break-glass"), serde_json::json!({"reason": reason})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(support.get(&format!("/v1/subjects/{id}")).await.status, 200);
    let message = serde_json::json!({
        "subject_id": id, "channel": "email", "subject_line": "Your order 1042 has shipped",
        "body_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    });
    let r = backend.with_purpose("order_fulfilment").post("/v1/messages", message).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let code = r.body["code"].as_str().unwrap().to_string();

    // Every signed-in page: no script needed, nothing from other hosts, axe clean, screenshots.
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let cookie = session_cookie(&server, &backend, &id).await;
    let r = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{id}/privacy-center-links"), serde_json::json!({}))
        .await;
    let continue_page = r.body["path"].as_str().unwrap().to_string();
    let pages = [
        continue_page.as_str(),
        "/privacy/me",
        "/privacy/me/choices",
        "/privacy/me/access",
        "/privacy/me/download",
        "/privacy/me/correct",
        "/privacy/me/delete",
        "/privacy/me/requests",
        "/privacy/me/messages",
    ];
    let out = Command::new("node")
        .arg(dir.join("pages.mjs"))
        .args([server.url.as_str(), shots.to_str().unwrap()])
        .args(pages)
        .env("CANDOR_PAGES_COOKIE", &cookie)
        .output()
        .expect("run node");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "signed-in page checks failed:\n{stdout}\n{stderr}");
    for page in pages {
        assert!(stdout.contains(&format!("{page} (phone)")), "{page} checked: {stdout}");
    }
    assert!(shots.join("privacy-me-choices-phone.png").exists());

    // The story, from the link the customer receives.
    let r = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{id}/privacy-center-links"), serde_json::json!({}))
        .await;
    let link = r.body["path"].as_str().unwrap().to_string();
    let out = Command::new("node")
        .arg(dir.join("story.mjs"))
        .args([server.url.as_str(), link.as_str(), id.as_str(), shots.to_str().unwrap()])
        .env("CANDOR_STORY_TOKEN", &token)
        .env("CANDOR_STORY_CODE", &code)
        .output()
        .expect("run node");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the customer's story failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok - opening the used link again says it cannot be used"), "{stdout}");
}
