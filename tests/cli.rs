//! The `candor` command line: init, catalog check, token create, quickstart, key safety.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Install, candor};

#[test]
fn init_prints_the_admin_token_once_and_writes_owner_only_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = candor(&["init", "--dir", "shop"], dir.path());
    assert!(ok, "{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("admin token: cnd_")).count(), 1, "{out}");
    let shop = dir.path().join("shop");
    for f in ["candor.toml", "catalog.toml", "keys/kek.key", "keys/index.key", "data/candor.db"] {
        assert!(shop.join(f).exists(), "{f} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["keys/kek.key", "keys/index.key"] {
            assert_eq!(std::fs::metadata(shop.join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
        }
        assert_eq!(std::fs::metadata(shop.join("keys")).unwrap().permissions().mode() & 0o777, 0o700);
    }
    // A second init refuses and leaves the keys alone.
    let key_before = std::fs::read(shop.join("keys/kek.key")).unwrap();
    let (ok, _, err) = candor(&["init", "--dir", "shop"], dir.path());
    assert!(!ok);
    assert!(err.contains("Refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(shop.join("keys/kek.key")).unwrap(), key_before);
    // The token is stored only as a hash.
    let token = out.lines().find_map(|l| l.strip_prefix("admin token: ")).unwrap();
    let db = std::fs::read(shop.join("data/candor.db")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));
}

#[test]
fn catalog_check_reports_each_problem_with_its_line_and_a_fix() {
    let install = Install::new();
    let cwd = install.dir.path();
    let (ok, out, _) = candor(&["catalog", "check"], cwd);
    assert!(ok);
    assert!(out.contains("catalog OK — 8 purposes, 7 fields, 2 event types, 2 recipients, 6 roles"), "{out}");

    let catalog = cwd.join("catalog.toml");
    let original = std::fs::read_to_string(&catalog).unwrap();
    let broken = original.replacen("legal_basis = \"legitimate_interests\"\n", "", 1).replacen(
        "purposes = [\"account\"]\nretention",
        "purposes = [\"acount\"]\nretention",
        1,
    ) + "\n[[purposes]]\nid = \"partner_data_sales\"\ndescription = \"We sell purchase histories.\"\nlegal_basis = \"consent\"\n";
    std::fs::write(&catalog, &broken).unwrap();
    let (ok, _, err) = candor(&["catalog", "check", "--config", "candor.toml"], cwd);
    assert!(!ok);
    let lines: Vec<&str> = err.lines().collect();
    let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        lines.iter().any(|l| l.contains(&format!("catalog.toml:{}:", line_of("id = \"fraud_prevention\"") - 1))
            && l.contains("purpose `fraud_prevention` has no legal basis. Add legal_basis")),
        "{err}"
    );
    assert!(
        lines.iter().any(|l| l.contains(&format!("catalog.toml:{}:", line_of("\"acount\"")))
            && l.contains("purpose `acount`, which is not declared")),
        "{err}"
    );
    assert!(lines.iter().any(|l| l.contains("sells or monetises customer data")), "{err}");
    assert!(err.contains("the catalog has 3 problems"), "{err}");

    // The server refuses to start on it, with the same message.
    let (ok, _, err) = candor(&["serve", "--listen", "127.0.0.1:0"], cwd);
    assert!(!ok);
    assert!(err.contains("has no legal basis"), "{err}");
}

#[test]
fn token_create_refuses_undeclared_roles_and_bad_expiry() {
    let install = Install::new();
    let cwd = install.dir.path();
    let (ok, _, err) = candor(&["token", "create", "--role", "intern"], cwd);
    assert!(!ok);
    assert!(err.contains("role `intern` is not declared") && err.contains("support_agent"), "{err}");
    let (ok, _, err) = candor(&["token", "create", "--role", "support_agent", "--expires", "soon"], cwd);
    assert!(!ok);
    assert!(err.contains("--expires `soon` is not a duration"), "{err}");
    let (ok, out, _) = candor(&["token", "create", "--role", "support_agent", "--expires", "30d"], cwd);
    assert!(ok);
    assert!(out.trim().starts_with("cnd_") && out.trim().lines().count() == 1, "prints only the token: {out}");
}

#[test]
fn keys_readable_by_others_or_missing_stop_the_server() {
    let install = Install::new();
    let cwd = install.dir.path();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let kek = cwd.join("keys/kek.key");
        std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (ok, _, err) = candor(&["serve", "--listen", "127.0.0.1:0"], cwd);
        assert!(!ok);
        assert!(err.contains("can be read by group or others") && err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::remove_file(cwd.join("keys/index.key")).unwrap();
    let (ok, _, err) = candor(&["serve", "--listen", "127.0.0.1:0"], cwd);
    assert!(!ok);
    assert!(err.contains("index.key"), "{err}");
}

#[tokio::test]
async fn quickstart_serves_demo_customers_and_prints_urls_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["quickstart", "--dir", "qs", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = common::lines_until_listening(&mut child, Duration::from_secs(60)).expect("quickstart starts");
    let value = |label: &str| lines.iter().find_map(|l| l.strip_prefix(label)).map(|s| s.trim().to_string()).unwrap();
    let url = value("listening on ");
    let backend = value("shop_backend token:");
    assert!(value("admin token:").starts_with("cnd_"));

    let http = reqwest::Client::new();
    let found: serde_json::Value = http
        .get(format!("{url}/v1/subjects?email=ada@example.com"))
        .bearer_auth(&backend)
        .header("Candor-Purpose", "account")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["ids"].as_array().map(Vec::len), Some(1), "{found}");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn copy_moves_an_installation_to_postgresql_and_it_keeps_working() {
    let Some(db) = candor_store::pgtest::TestDatabase::create("copy_moves_an_installation_to_postgresql").await else {
        return;
    };
    let install = Install::new();
    let cwd = install.dir.path();
    let (id, token, access_before) = {
        let server = install.serve();
        let token = install.token("shop_backend");
        let backend = server.client(&token, Some("account"));
        let id = backend.create(serde_json::json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
        let r = backend
            .with_purpose("order_fulfilment")
            .post(
                &format!("/v1/subjects/{id}/events"),
                serde_json::json!({"type": "purchase", "data": {"item": "pen"}}),
            )
            .await;
        assert_eq!(r.status, 201);
        reqwest::get(format!("{}/v1/log/checkpoint", server.url)).await.unwrap();
        let access = backend.get(&format!("/v1/subjects/{id}/access-log")).await;
        assert_eq!(access.status, 200, "{:?}", access.body);
        (id, token, log_indices(&access.body))
    };
    assert!(access_before.len() >= 2, "the create and the event at least: {access_before:?}");
    let (ok, out, err) = candor(&["migrate"], cwd);
    assert!(ok && out.contains("migrations applied"), "{err}");

    let (ok, out, err) = candor(&["copy", "--from", "sqlite:data/candor.db", "--to", &db.url], cwd);
    assert!(ok, "copy failed: {err}");
    assert!(out.contains("copy verified") && out.contains("subjects: 1 rows"), "{out}");
    let (ok, _, err) = candor(&["copy", "--from", "sqlite:data/candor.db", "--to", &db.url], cwd);
    assert!(!ok && err.contains("not empty"), "a second copy is refused: {err}");

    // Point the installation at PostgreSQL: same keys, same data, same log.
    let config = std::fs::read_to_string(install.config()).unwrap().replace("data/candor.db", &db.url);
    std::fs::write(install.config(), config).unwrap();
    let server = install.serve();
    let backend = server.client(&token, Some("account"));
    assert_eq!(backend.get("/v1/subjects?email=ada@example.com").await.body["ids"], serde_json::json!([id]));
    assert_eq!(backend.get(&format!("/v1/subjects/{id}")).await.body["fields"]["full_name"], "Ada Lovelace");
    // The customer's access log came along (SQLite keeps its links by the customer's internal
    // number, PostgreSQL by id): every entry listed before the copy, then the reads since.
    let access_after = log_indices(&backend.get(&format!("/v1/subjects/{id}/access-log")).await.body);
    assert!(
        access_after.starts_with(&access_before) && access_after.len() > access_before.len(),
        "before the copy {access_before:?}, after {access_after:?}"
    );
    let events = backend.with_purpose("order_fulfilment").get(&format!("/v1/subjects/{id}/events")).await.body;
    assert_eq!(events["events"][0]["data"]["item"], "pen");
    let r = backend
        .with_purpose("order_fulfilment")
        .post(&format!("/v1/subjects/{id}/events"), serde_json::json!({"type": "purchase", "data": {"item": "ink"}}))
        .await;
    assert_eq!(r.status, 201, "new events get fresh sequence numbers");
    reqwest::get(format!("{}/v1/log/checkpoint", server.url)).await.unwrap();
    let (ok, out, err) = candor(&["log", "verify"], cwd);
    assert!(ok && out.contains("log OK"), "{err}");
    drop(server);
    db.drop_database().await;
}

/// The log indices of an access-log page.
fn log_indices(page: &serde_json::Value) -> Vec<u64> {
    page["entries"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect()
}

/// Starts `candor quickstart --listen ADDR` with its temporary directory under `tmp`; returns the
/// child and its stdout lines up to `listening on` (or everything, if it exits first).
fn quickstart_in(tmp: &std::path::Path, listen: &str) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["quickstart", "--listen", listen])
        .env("TMPDIR", tmp)
        .env_remove("CANDOR_LOG")
        .current_dir(tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let done = line.starts_with("listening on ");
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines)
}

fn quickstart_dirs(tmp: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("candor-quickstart-"))
        .collect()
}

#[test]
fn quickstart_without_dir_removes_its_installation_when_stopped_and_prints_tokens_first() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, lines) = quickstart_in(tmp.path(), "127.0.0.1:0");
    assert!(lines.last().is_some_and(|l| l.starts_with("listening on ")), "{lines:?}");
    assert!(lines[0].contains("temporary: removed when you stop it"), "{lines:?}");
    assert!(lines[1].starts_with("admin token: cnd_"), "the tokens come first: {lines:?}");
    assert_eq!(quickstart_dirs(tmp.path()).len(), 1, "the installation exists while it runs");
    // Ctrl-C or SIGTERM: a graceful stop, after which nothing is left behind.
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(quickstart_dirs(tmp.path()).is_empty(), "keys and database removed: {stderr}");
    assert!(stderr.contains("removed the quickstart installation"), "{stderr}");
    assert!(!stderr.contains("logged"), "no per-entry log noise at the default level: {stderr}");
}

#[test]
fn quickstart_on_a_taken_port_names_listen_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (mut child, lines) = quickstart_in(tmp.path(), &addr);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{lines:?}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")) && stderr.contains("--listen"), "{stderr}");
    assert!(quickstart_dirs(tmp.path()).is_empty(), "nothing created: {:?}", quickstart_dirs(tmp.path()));
}

#[test]
fn cli_commands_say_logged_only_of_what_they_append_and_token_list_columns_align() {
    let install = Install::new();
    let config = install.config();
    install.token_with(&["--role", "support_agent", "--expires", "30d", "--description", "help desk"]);
    let (ok, out, err) = candor(&["token", "list", "--config", config.to_str().unwrap()], install.dir.path());
    assert!(ok, "{err}");
    assert!(!err.contains("logged") && !err.contains("catalog.changed"), "quiet at the default level: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for column in ["role", "created", "expires", "revoked", "description"] {
        let at = lines[0].find(column).unwrap();
        for row in &lines[1..] {
            assert!(at == 0 || row.as_bytes()[at - 1] == b' ', "{column} starts a column in every row:\n{out}");
            assert_ne!(row.as_bytes()[at], b' ', "{column} lines up:\n{out}");
        }
    }
    let (ok, _, err) = candor(&["catalog", "check", "--config", config.to_str().unwrap()], install.dir.path());
    assert!(ok && !err.contains("logged"), "{err}");
}
