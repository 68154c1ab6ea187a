//! The public privacy notice over HTTP: generated from the catalog, public, self-contained, and
//! with a history of what changed.

mod common;

use common::Install;

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = reqwest::get(url).await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

#[tokio::test]
async fn the_notice_is_public_generated_from_the_catalog_and_keeps_its_history() {
    let install = Install::new();
    let server = install.serve();
    let (status, headers, html) = get(&format!("{}/privacy", server.url)).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    for expected in [
        "<html lang=\"en\">",
        "How Example Shop Ltd uses your personal data",
        "How to reach you",
        "E-mail address",
        "while your account exists, then 30 days after you close it",
        "PayFast Ltd (IE)",
        "Only if you agree",
        "European Union (Frankfurt, Germany)",
        "Delete your data",
        "privacy@shop.example",
        "First published version.",
    ] {
        assert!(html.contains(expected), "missing `{expected}`");
    }
    // Nothing is loaded from anywhere else; no script at all.
    assert!(!html.contains("<script"));
    for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!html.contains(attr), "external reference `{attr}`");
    }
    let (status, headers, css) = get(&format!("{}/assets/candor.css", server.url)).await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (200, "text/css; charset=utf-8"));
    assert!(!css.contains("url("), "the stylesheet loads nothing either");

    let json: serde_json::Value =
        reqwest::get(format!("{}/v1/notice", server.url)).await.unwrap().json().await.unwrap();
    let first_version = json["version"].as_str().unwrap().to_string();
    assert!(first_version.starts_with("sha256:"));
    assert_eq!(json["history"].as_array().unwrap().len(), 1);
    assert_eq!(json["notice"]["controller"]["privacy_contact"], "privacy@shop.example");
    drop(server);

    // Restarting with the same catalog publishes nothing new; a changed catalog does, with what changed.
    let server = install.serve();
    let json: serde_json::Value =
        reqwest::get(format!("{}/v1/notice", server.url)).await.unwrap().json().await.unwrap();
    assert_eq!(json["history"].as_array().unwrap().len(), 1);
    drop(server);
    let catalog_path = install.dir.path().join("catalog.toml");
    let catalog = std::fs::read_to_string(&catalog_path).unwrap();
    std::fs::write(&catalog_path, catalog.replace("retention = \"P13M\"", "retention = \"P2Y\"")).unwrap();
    let server = install.serve();
    let json: serde_json::Value =
        reqwest::get(format!("{}/v1/notice", server.url)).await.unwrap().json().await.unwrap();
    let history = json["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_ne!(json["version"], first_version.as_str());
    assert_eq!(history[0]["version"], json["version"], "newest first");
    assert_eq!(
        history[0]["changes"],
        serde_json::json!([
            "Page view history: now kept 2 years after it is recorded (was 13 months after it is recorded)."
        ])
    );
    let (_, _, html) = get(&format!("{}/privacy", server.url)).await;
    assert!(html.contains("Page view history: now kept 2 years after it is recorded"), "the page shows the change");
}

#[test]
fn the_record_of_processing_activities_comes_from_the_same_catalog() {
    let install = Install::new();
    let cwd = install.dir.path();
    let (ok, out, err) = common::candor(&["catalog", "ropa", "--out", "records"], cwd);
    assert!(ok, "{err}");
    assert!(out.contains("8 processing activities"), "{out}");
    let md = std::fs::read_to_string(cwd.join("records/ropa.md")).unwrap();
    assert!(md.contains("# Record of processing activities — Example Shop Ltd"));
    assert!(md.contains("## Activity: marketing") && md.contains("## Security measures"));
    let csv = std::fs::read_to_string(cwd.join("records/ropa.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap().split(',').next(), Some("activity"));
    assert!(csv.contains("order_fulfilment"));
}

#[tokio::test]
async fn the_operator_brands_the_pages_within_accessible_limits() {
    let install = Install::new();
    let cwd = install.dir.path();
    let config = std::fs::read_to_string(install.config()).unwrap();
    std::fs::create_dir_all(cwd.join("branding")).unwrap();
    std::fs::write(
        cwd.join("branding/logo.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"32\" height=\"32\"><rect width=\"32\" height=\"32\" fill=\"#7a1f5c\"/></svg>",
    )
    .unwrap();
    // Too light an accent colour is refused at start-up, with the reason.
    std::fs::write(install.config(), config.replace("accent_colour = \"#0b4f9c\"", "accent_colour = \"#ffcc00\""))
        .unwrap();
    let (ok, _, err) = common::candor(&["serve"], cwd);
    assert!(!ok && err.contains("contrast of 1.") && err.contains("4.5:1"), "{err}");

    let branded = config
        .replace("accent_colour = \"#0b4f9c\"", "accent_colour = \"#7A1F5C\"")
        .replace("# name = \"Example Shop\"", "name = \"Example Shop\"")
        .replace("# logo = \"branding/logo.svg\"", "logo = \"branding/logo.svg\"");
    std::fs::write(install.config(), branded).unwrap();
    let server = install.serve();
    let (_, _, html) = get(&format!("{}/privacy", server.url)).await;
    assert!(html.contains("<img src=\"/assets/logo\" alt=\"\" class=\"logo\"> Example Shop</p>"), "{html}");
    assert!(html.contains("<title>Privacy notice — Example Shop</title>"));
    let (_, _, css) = get(&format!("{}/assets/brand.css", server.url)).await;
    assert_eq!(css, ":root { --accent: #7a1f5c; }\n");
    let (status, headers, svg) = get(&format!("{}/assets/logo", server.url)).await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (200, "image/svg+xml"));
    assert!(svg.starts_with("<svg"));
}
