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
