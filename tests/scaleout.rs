//! Several stateless servers on one PostgreSQL database (issue: scale-out), and PostgreSQL going
//! away and coming back under load. Skipped, loudly, without CANDOR_TEST_DATABASE_URL.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Install, candor};
use serde_json::json;

#[tokio::test]
async fn two_servers_on_one_database_agree_on_every_acknowledged_write() {
    let Some(install) = Install::postgres("two_servers_on_one_database_agree_on_every_acknowledged_write").await else {
        return;
    };
    let a = install.serve_logging_to("a.log");
    let b = install.serve_logging_to("b.log");
    let token = install.token("shop_backend");
    let clients = [a.client(&token, Some("account")), b.client(&token, Some("account"))];

    // 8 workers, alternating servers: create on one, correct on the other, read on both.
    let mut tasks = Vec::new();
    for w in 0..8usize {
        let (here, there) = (clients[w % 2].clone(), clients[(w + 1) % 2].clone());
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for i in 0..10 {
                let email = format!("w{w}-c{i}@example.com");
                let id = here.create(json!({"email": email, "full_name": format!("Worker {w} customer {i}")})).await;
                let r = there
                    .patch(
                        &format!("/v1/subjects/{id}"),
                        json!({"fields": {"full_name": format!("Corrected {w}/{i}")}}),
                    )
                    .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                for c in [&here, &there] {
                    assert_eq!(
                        c.get(&format!("/v1/subjects/{id}")).await.body["fields"]["full_name"],
                        format!("Corrected {w}/{i}")
                    );
                }
                made.push((id, email, format!("Corrected {w}/{i}")));
            }
            made
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 80);
    let unique: BTreeMap<_, _> = all.iter().map(|(id, ..)| (id.clone(), ())).collect();
    assert_eq!(unique.len(), 80, "no id was handed out twice");

    // Every acknowledged write is visible from both servers; lookups agree and find exactly one.
    for (id, email, name) in &all {
        for c in &clients {
            let r = c.get(&format!("/v1/subjects/{id}")).await;
            assert_eq!(r.body["fields"]["full_name"], name.as_str());
            assert_eq!(c.get(&format!("/v1/subjects?email={email}")).await.body["ids"], json!([id]));
        }
    }

    // The log is one gap-free sequence holding every write, and verifies.
    reqwest::get(format!("{}/v1/log/checkpoint", a.url)).await.unwrap();
    let (ok, out, err) = candor(&["log", "verify"], install.dir.path());
    assert!(ok, "log verify: {err}");
    assert!(out.contains("log OK"), "{out}");
    let admin = a.client(&install.admin_token, None);
    let mut creates = 0;
    let mut start = 0;
    loop {
        let page = admin.get(&format!("/v1/log/entries?start={start}&end={}", start + 1000)).await.body;
        let entries = page["entries"].as_array().unwrap().clone();
        if entries.is_empty() {
            break;
        }
        creates += entries.iter().filter(|e| e["entry"]["action"] == "subject.create").count();
        start += entries.len() as u64;
    }
    assert_eq!(creates, 80, "each create logged exactly once");
}

fn pg_bin(tool: &str) -> Option<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<_> = std::fs::read_dir(root).ok()?.filter_map(Result::ok).map(|e| e.path()).collect();
    versions.sort();
    versions.into_iter().rev().map(|v| v.join("bin").join(tool)).find(|p| p.exists())
}

/// A throwaway PostgreSQL cluster owned by the `postgres` user, on its own port.
struct Cluster {
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn run(&self, args: &[&str]) -> bool {
        Command::new("runuser").args(["-u", "postgres", "--"]).args(args).status().map(|s| s.success()).unwrap_or(false)
    }

    fn create() -> Option<Self> {
        let (initdb, _) = (pg_bin("initdb")?, pg_bin("pg_ctl")?);
        let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let dir = std::env::temp_dir().join(format!("candor-pg-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        Command::new("chown").args(["-R", "postgres", dir.to_str()?]).status().ok()?.success().then_some(())?;
        let cluster = Self { dir, port };
        let data = cluster.dir.join("data");
        cluster
            .run(&[initdb.to_str()?, "-D", data.to_str()?, "-A", "trust", "-U", "postgres", "--no-sync"])
            .then_some(())?;
        cluster.start().then_some(cluster)
    }

    fn start(&self) -> bool {
        let (Some(pg_ctl), data) = (pg_bin("pg_ctl"), self.dir.join("data")) else { return false };
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.display());
        self.run(&[
            pg_ctl.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            self.dir.join("log").to_str().unwrap(),
            "-w",
            "start",
        ])
    }

    fn stop(&self) -> bool {
        let Some(pg_ctl) = pg_bin("pg_ctl") else { return false };
        self.run(&[
            pg_ctl.to_str().unwrap(),
            "-D",
            self.dir.join("data").to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ])
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn when_postgres_goes_away_requests_get_503_and_recover_when_it_returns() {
    if candor_store::pgtest::server_url("when_postgres_goes_away_requests_get_503_and_recover_when_it_returns")
        .is_none()
    {
        return;
    }
    let Some(cluster) = Cluster::create() else {
        panic!("could not start a throwaway PostgreSQL cluster (needs root, runuser and PostgreSQL's initdb/pg_ctl)");
    };
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = candor(&["init", "--dir", ".", "--database", &cluster.url()], dir.path());
    assert!(ok, "{err}");
    let _ = out;
    let install_config = dir.path().join("candor.toml");
    let server = common::Server::start(&install_config, &dir.path().join("server.log"));
    let (ok, token, err) = candor(&["token", "create", "--role", "shop_backend"], dir.path());
    assert!(ok, "{err}");
    let client = server.client(token.trim(), Some("account"));
    let id = client.create(json!({"email": "ada@example.com", "full_name": "Ada"})).await;

    assert!(cluster.stop(), "stop PostgreSQL");
    let started = Instant::now();
    let r = client.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!((r.status, r.code()), (503, "unavailable"), "{:?}", r.body);
    assert!(started.elapsed() < Duration::from_secs(15), "answered without hanging");
    let r = client.post("/v1/subjects", json!({"fields": {"email": "bob@example.com", "full_name": "Bob"}})).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(server.anonymous().get("/healthz").await.status, 503);

    assert!(cluster.start(), "start PostgreSQL again");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = client.get(&format!("/v1/subjects/{id}")).await;
        if r.status == 200 {
            assert_eq!(r.body["fields"]["full_name"], "Ada");
            break;
        }
        assert!(Instant::now() < deadline, "the server did not recover: {:?}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.anonymous().get("/healthz").await.status, 200);
    // The refused create left nothing behind; a new one works.
    assert_eq!(client.get("/v1/subjects?email=bob@example.com").await.body["ids"], json!([]));
    client.create(json!({"email": "bob@example.com", "full_name": "Bob"})).await;
}
