//! Faults produced for real: more idle and half-sent connections than the server may hold, a
//! PostgreSQL server frozen with SIGSTOP (a throwaway cluster of this test's own), a full disk (a
//! small tmpfs mounted for the test), and retries of writes with an `Idempotency-Key`. No test
//! here measures speed: bounds are generous, and what is checked is what the server answered.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, CLOCK_FILE, Install, Server};
use serde_json::{Value, json};

/// Sets `[server]` keys in an installation's config.
fn set_server_options(install: &Install, options: &[(&str, &str)]) {
    let path = install.config();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim().trim_start_matches("# ");
        if options.iter().any(|(k, _)| *k == key) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[server]" {
            for (k, v) in options {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
    }
    std::fs::write(&path, out).unwrap();
}

/// `candor serve` started through `sh` with the open-file limit set to `nofile` (soft and hard).
fn serve_with_open_file_limit(install: &Install, nofile: u32) -> (Child, String) {
    let log = std::fs::File::create(install.dir.path().join("server.log")).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" serve --config \"$1\" --listen 127.0.0.1:0"))
        .arg(BIN)
        .arg(install.config())
        .env("CANDOR_LOG", "info")
        .env("CANDOR_TEST_CLOCK_FILE", install.dir.path().join(CLOCK_FILE))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn candor serve");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("no address: {line}")).to_string();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
    });
    (child, url)
}

fn address(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// One plain HTTP/1.1 GET on a fresh connection; the status, or the error.
fn get_status(addr: &str, path: &str, wait: Duration) -> Result<u16, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: candor\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&head[9..12]).parse().map_err(|e| format!("{e}"))
}

#[test]
fn idle_and_half_sent_connections_beyond_the_open_file_limit_do_not_lock_out_a_normal_client() {
    let install = Install::new();
    // Nobody is cut off by the header deadline during this test: only the cap can make room.
    set_server_options(&install, &[("header_timeout_seconds", "3600")]);
    // 256 descriptors: the server keeps 128 of them for clients.
    let (mut child, url) = serve_with_open_file_limit(&install, 256);
    let addr = address(&url);
    assert_eq!(get_status(&addr, "/healthz", Duration::from_secs(60)), Ok(200));

    // 300 idle connections and 100 that send half a request head and stop: more than the
    // server's whole open-file limit.
    let mut hogs = Vec::new();
    for i in 0..400 {
        let mut s = TcpStream::connect(&addr).expect("connect");
        if i % 4 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: candor\r\nX-Slow: ").unwrap();
        }
        hogs.push(s);
    }
    // A normal client is still served, several times over.
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(get_status(&addr, "/healthz", Duration::from_secs(60)), Ok(200), "a normal client was not served");
    }
    println!("5 requests served in {:?} next to 400 idle and half-sent connections", started.elapsed());
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(install.dir.path().join("server.log")).unwrap();
    assert!(log.contains("connection limit reached"), "shedding is logged:\n{log}");
    assert!(log.contains("max_connections=128"), "the cap follows the open-file limit:\n{log}");
    drop(hogs);
}

#[test]
fn a_connection_that_sends_no_request_is_closed_after_the_header_timeout() {
    let install = Install::new();
    set_server_options(&install, &[("header_timeout_seconds", "1")]);
    let server = install.serve();
    let addr = address(&server.url);
    let mut silent = TcpStream::connect(&addr).unwrap();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: candor\r\n").unwrap();
    for s in [&mut silent, &mut slow] {
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut buf = Vec::new();
        // The server closes it (end of stream, or a reset): never a wait for the 120 s bound.
        let closed = match s.read_to_end(&mut buf) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
        };
        assert!(closed, "the connection was left open");
    }
}

// ---------------------------------------------------------------------------------------------
// Idempotency-Key

async fn idempotent_writes_are_applied_once(install: Install) {
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let post = |path: &str, key: &str, body: Value| {
        backend.request(reqwest::Method::POST, path).header("Idempotency-Key", key).json(&body)
    };
    let ada = json!({"fields": {"email": "ada@example.com", "full_name": "Ada Lovelace"}});
    let first = backend.send(post("/v1/subjects", "create-ada-1", ada.clone())).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let again = backend.send(post("/v1/subjects", "create-ada-1", ada.clone())).await;
    assert_eq!((again.status, &again.body), (201, &first.body), "a retry returns the first result");
    let id = first.body["id"].as_str().unwrap().to_string();
    assert_eq!(backend.get("/v1/subjects?email=ada@example.com").await.body["ids"], json!([id]), "one customer");

    // The same key for another request is refused; the key is bound to the request.
    let other = json!({"fields": {"email": "bob@example.com", "full_name": "Bob"}});
    let r = backend.send(post("/v1/subjects", "create-ada-1", other)).await;
    assert_eq!((r.status, r.code(), r.field()), (422, "idempotency_key_reused", "Idempotency-Key"));
    // Another token's identical key is another key.
    let second_backend = server.client(&install.token("shop_backend"), Some("account"));
    let r = second_backend
        .send(
            second_backend
                .request(reqwest::Method::POST, "/v1/subjects")
                .header("Idempotency-Key", "create-ada-1")
                .json(&json!({"fields": {"email": "cy@example.com", "full_name": "Cy"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // Events and consents: retried, recorded once.
    let fulfilment = backend.with_purpose("order_fulfilment");
    let event = json!({"type": "purchase", "data": {"item": "Notebook"}});
    let path = format!("/v1/subjects/{id}/events");
    let e1 = fulfilment
        .send(fulfilment.request(reqwest::Method::POST, &path).header("Idempotency-Key", "ev-1").json(&event))
        .await;
    let e2 = fulfilment
        .send(fulfilment.request(reqwest::Method::POST, &path).header("Idempotency-Key", "ev-1").json(&event))
        .await;
    assert_eq!((e1.status, &e1.body), (201, &e2.body), "{:?}", e2.body);
    assert_eq!(fulfilment.get(&path).await.body["events"].as_array().map(Vec::len), Some(1));

    let consent = json!({"changes": [{"purpose": "marketing", "channel": "email", "action": "grant"}],
                         "evidence": "signup form v3, checkbox"});
    let path = format!("/v1/subjects/{id}/consents");
    let c1 = backend.send(post(&path, "consent-1", consent.clone())).await;
    let c2 = backend.send(post(&path, "consent-1", consent.clone())).await;
    assert_eq!(c1.status, 201, "{:?}", c1.body);
    assert_eq!((c2.status, &c2.body["receipts"]), (201, &c1.body["receipts"]), "the same receipt, not a second");
    let history = backend.get(&format!("{path}/history")).await;
    assert_eq!(history.body["entries"].as_array().map(Vec::len), Some(1), "{:?}", history.body);

    // Concurrent retries of one create: one customer.
    let carol = json!({"fields": {"email": "carol@example.com", "full_name": "Carol"}});
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, carol) = (backend.clone(), carol.clone());
        attempts.spawn(async move {
            let r = client
                .send(
                    client
                        .request(reqwest::Method::POST, "/v1/subjects")
                        .header("Idempotency-Key", "create-carol")
                        .json(&carol),
                )
                .await;
            r.body["id"].as_str().unwrap_or_else(|| panic!("{} {:?}", r.status, r.body)).to_string()
        });
    }
    let ids: std::collections::BTreeSet<String> = attempts.join_all().await.into_iter().collect();
    assert_eq!(ids.len(), 1, "concurrent retries made {} customers", ids.len());
    assert_eq!(backend.get("/v1/subjects?email=carol@example.com").await.body["ids"].as_array().map(Vec::len), Some(1));

    // Where the header is not honoured it is refused, not ignored; malformed keys are refused.
    let r = backend
        .send(backend.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}")).header("Idempotency-Key", "k"))
        .await;
    assert_eq!((r.status, r.code()), (400, "idempotency_not_supported"));
    // A method the route does not serve stays a 405.
    let r = backend
        .send(backend.request(reqwest::Method::PUT, "/v1/subjects").header("Idempotency-Key", "k").json(&json!({})))
        .await;
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));
    let r = backend.send(post("/v1/subjects", "not visible ascii é", ada.clone())).await;
    assert_eq!((r.status, r.code()), (400, "invalid_idempotency_key"));
    let r = backend.send(post("/v1/subjects", &"k".repeat(256), ada)).await;
    assert_eq!((r.status, r.code()), (400, "invalid_idempotency_key"));
}

on_both_backends!(idempotent_writes_are_applied_once);

// ---------------------------------------------------------------------------------------------
// A PostgreSQL server that stops answering

/// A PostgreSQL cluster of this test's own, run as the `postgres` user.
struct Cluster {
    dir: PathBuf,
    port: u16,
    postmaster: Child,
}

impl Cluster {
    fn bin(name: &str) -> Option<PathBuf> {
        let root = std::fs::read_dir("/usr/lib/postgresql").ok()?;
        let mut found: Vec<PathBuf> =
            root.filter_map(Result::ok).map(|d| d.path().join("bin").join(name)).filter(|p| p.exists()).collect();
        found.sort();
        found.pop()
    }

    fn start() -> Result<Self, String> {
        let initdb = Self::bin("initdb").ok_or("no initdb under /usr/lib/postgresql")?;
        let postgres = Self::bin("postgres").ok_or("no postgres binary")?;
        let dir = std::env::temp_dir().join(format!("candor-frozen-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let as_postgres =
            |args: &[&str]| Command::new("runuser").arg("-u").arg("postgres").arg("--").args(args).output();
        Command::new("chown").args(["postgres", dir.to_str().unwrap()]).status().map_err(|e| e.to_string())?;
        let data = dir.join("data");
        let out =
            as_postgres(&[initdb.to_str().unwrap(), "-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres"])
                .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // In a session of its own: runuser must not touch this terminal's job control.
        let postmaster = Command::new("setsid")
            .args(["runuser", "-u", "postgres", "--"])
            .arg(&postgres)
            .args(["-D", data.to_str().unwrap(), "-p", &port.to_string(), "-k", dir.to_str().unwrap()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("postgres.log")).unwrap()))
            .spawn()
            .map_err(|e| e.to_string())?;
        let cluster = Cluster { dir, port, postmaster };
        let ready = common::eventually(Duration::from_secs(120), || {
            Command::new(Self::bin("pg_isready").unwrap())
                .args(["-h", "127.0.0.1", "-p", &cluster.port.to_string()])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if !ready {
            return Err(format!(
                "the throwaway cluster did not start: {}",
                std::fs::read_to_string(cluster.dir.join("postgres.log")).unwrap_or_default()
            ));
        }
        Ok(cluster)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Sends `signal` to every process of the cluster: the postmaster (from its pid file) and
    /// its children (backends, writer, checkpointer...).
    fn signal(&self, signal: &str) {
        let pidfile = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap_or_default();
        let Some(postmaster) = pidfile.lines().next().map(str::trim).filter(|p| !p.is_empty()) else { return };
        let children = Command::new("pgrep").args(["-P", postmaster]).output().unwrap();
        let mut pids = vec![postmaster.to_string()];
        pids.extend(String::from_utf8_lossy(&children.stdout).split_whitespace().map(str::to_string));
        let ok = Command::new("kill").arg(format!("-{signal}")).args(&pids).status().unwrap();
        assert!(ok.success(), "kill -{signal} {pids:?}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.signal("CONT");
        self.signal("KILL");
        // runuser stops itself when its child is stopped (job control), and would never exit.
        let _ = self.postmaster.kill();
        let _ = self.postmaster.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_database_gets_a_json_503_and_a_retry_with_the_same_key_applies_the_write_once() {
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED (frozen PostgreSQL): {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = common::candor(&["init", "--dir", ".", "--database", &cluster.url()], dir.path());
    assert!(ok, "init: {err}");
    let admin = out.lines().find_map(|l| l.strip_prefix("admin token: ")).unwrap().trim().to_string();
    let config = dir.path().join("candor.toml");
    let (ok, token, err) = common::candor(
        &["token", "create", "--config", config.to_str().unwrap(), "--role", "shop_backend"],
        dir.path(),
    );
    assert!(ok, "{err}");
    let server = Server::start(&config, &dir.path().join("server.log"));
    let backend = server.client(token.trim(), Some("account"));
    let public = server.anonymous();
    assert_eq!(backend.create(json!({"email": "before@example.com", "full_name": "Before"})).await.len(), 36);
    assert_eq!(public.get("/readyz").await.status, 200);

    cluster.signal("STOP");
    let started = Instant::now();
    let body = json!({"fields": {"email": "frozen@example.com", "full_name": "Frozen"}});
    let create =
        || backend.request(reqwest::Method::POST, "/v1/subjects").header("Idempotency-Key", "frozen-1").json(&body);
    let r = backend.send(create()).await;
    let waited = started.elapsed();
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.code(), "database_unavailable", "answered because the database does not answer: {:?}", r.body);
    assert_eq!(r.body["error"]["write_outcome"], "unknown");
    assert_eq!(r.headers["retry-after"], "1");
    let read = backend.get("/v1/subjects?email=before@example.com").await;
    assert_eq!((read.status, read.code()), (503, "database_unavailable"));
    assert_eq!(read.body["error"]["write_outcome"], "none_requested");
    let ready = public.get("/readyz").await;
    assert_eq!((ready.status, &ready.body["reason"]), (503, &json!("database_unavailable")));
    println!("a write against the frozen database was answered 503 after {waited:?}");

    cluster.signal("CONT");
    // The first attempt may or may not have been applied; the retry settles it: one customer.
    let retried = common::eventually(Duration::from_secs(120), || {
        let r = futures_executor(backend.send(create()));
        r.status == 201
    });
    assert!(retried, "the retry did not succeed after the database came back");
    let first = backend.send(create()).await;
    let id = first.body["id"].as_str().unwrap().to_string();
    assert_eq!(backend.send(create()).await.body["id"], json!(id), "every retry names the same customer");
    let found = backend.get("/v1/subjects?email=frozen@example.com").await;
    assert_eq!(found.body["ids"], json!([id]), "one customer, never two");
    assert!(common::eventually(Duration::from_secs(120), || futures_executor(public.get("/readyz")).status == 200));
    let _ = admin;
    let log = server.stop();
    assert!(log.contains("the database does not answer"), "the cause is logged:\n{log}");
}

/// Runs a future to completion from inside a synchronous closure of an async test.
fn futures_executor<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

// ---------------------------------------------------------------------------------------------
// A full disk

/// A small tmpfs mounted for one test (needs root; the test is skipped, loudly, without).
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!("candor-small-disk-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", path.to_str().unwrap()])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&path);
            return Err(format!("cannot mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Self { path })
    }

    /// Writes a file until the disk is full.
    fn fill(&self, name: &str) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.path.join(name)).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-l", self.path.to_str().unwrap()]).status();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_is_answered_507_and_reported_once_and_writes_resume_when_space_is_freed() {
    let disk = match SmallDisk::mount("48m") {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED (full disk): {why}");
            return;
        }
    };
    let install = Install::new();
    // The data on the small disk; keys and everything else where they are.
    std::fs::copy(install.db_path(), disk.path.join("candor.db")).unwrap();
    for suffix in ["-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", install.db_path().display()));
        if from.exists() {
            std::fs::copy(&from, disk.path.join(format!("candor.db{suffix}"))).unwrap();
        }
    }
    let config = install.config();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("database =") {
                format!("database = \"{}\"", disk.path.join("candor.db").display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, text).unwrap();
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let public = server.anonymous();
    let before = backend.create(json!({"email": "before@example.com", "full_name": "Before"})).await;

    disk.fill("filler");
    // Writes fail once no page is left (SQLite may still reuse some of its own file first).
    let mut full = None;
    for i in 0..5000 {
        let r = backend
            .post("/v1/subjects", json!({"fields": {"email": format!("c{i}@example.com"), "full_name": "C"}}))
            .await;
        match r.status {
            201 => continue,
            507 => {
                full = Some(r);
                break;
            }
            other => panic!("a write on a full disk was answered {other}: {:?}", r.body),
        }
    }
    let full = full.expect("a write on a full disk was refused");
    assert_eq!(full.code(), "storage_full", "{:?}", full.body);
    assert_eq!(full.headers["content-type"], "application/json");
    // While it lasts: reads (each appends its log entry) are refused the same way, never a 500;
    // /healthz (liveness) stays 200 and /readyz says why the server is not ready.
    let mut reported = false;
    for _ in 0..20 {
        let read = backend.get(&format!("/v1/subjects/{before}")).await;
        assert!(matches!(read.status, 200 | 507), "a read on a full disk: {} {:?}", read.status, read.body);
        let ready = public.get("/readyz").await;
        if ready.status == 503 && ready.body["reason"] == "storage_full" {
            reported = true;
            break;
        }
    }
    assert!(reported, "/readyz reports the full disk");
    assert_eq!(public.get("/healthz").await.status, 200);

    std::fs::remove_file(disk.path.join("filler")).unwrap();
    assert!(
        common::eventually(Duration::from_secs(120), || futures_executor(public.get("/readyz")).status == 200),
        "/readyz recovers once space is freed"
    );
    for i in 0..20 {
        let r = backend
            .post("/v1/subjects", json!({"fields": {"email": format!("after{i}@example.com"), "full_name": "After"}}))
            .await;
        assert_eq!(r.status, 201, "writes resume without a restart: {:?}", r.body);
    }
    assert_eq!(backend.get(&format!("/v1/subjects/{before}")).await.status, 200);
    let log = server.stop();
    assert_eq!(log.matches("the storage is full:").count(), 1, "the cause is logged once:\n{log}");
    assert!(log.contains("database or disk is full"), "the cause is named:\n{log}");
    assert!(log.contains("the storage takes writes again"), "{log}");
    let (ok, out, err) = common::candor(&["log", "verify", "--config", config.to_str().unwrap()], install.dir.path());
    assert!(ok, "log verify after a full disk: {out}{err}");
}
