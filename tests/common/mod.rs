//! Black-box test harness: a real `candor` binary, a real installation in a temp directory
//! (SQLite file, key files), real HTTP over loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod visitor;

pub const BIN: &str = env!("CARGO_BIN_EXE_candor");

/// The file (in an installation's directory) whose number of milliseconds the debug binary
/// adds to its clock (`CANDOR_TEST_CLOCK_FILE`): tests move time instead of sleeping.
pub const CLOCK_FILE: &str = "test-clock-offset-ms";

/// Moves the clock of every `candor` process started in `dir` (servers read it on every
/// question about time) forward by `by`.
pub fn advance_clock(dir: &Path, by: Duration) {
    let file = dir.join(CLOCK_FILE);
    let now: i64 = std::fs::read_to_string(&file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    std::fs::write(&file, (now + by.as_millis() as i64).to_string()).expect("write the test clock");
}

/// Runs `candor` with `args`, returning (success, stdout, stderr).
pub fn candor(args: &[&str], cwd: &Path) -> (bool, String, String) {
    candor_with_env(args, cwd, &[])
}

/// [`candor`] with extra environment variables (such as `SOFTHSM2_CONF`).
pub fn candor_with_env(args: &[&str], cwd: &Path, env: &[(&str, &Path)]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("CANDOR_CONFIG")
        .env_remove("CANDOR_KEK")
        .env_remove("CANDOR_INDEX_KEY")
        .env("CANDOR_TEST_CLOCK_FILE", cwd.join(CLOCK_FILE))
        .envs(env.iter().copied())
        .output()
        .expect("run candor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An initialised installation in a temporary directory, on SQLite or on a fresh PostgreSQL
/// database (dropped with the installation).
pub struct Install {
    pub dir: tempfile::TempDir,
    pub admin_token: String,
    pub postgres: Option<candor_store::pgtest::TestDatabase>,
}

impl Drop for Install {
    fn drop(&mut self) {
        if let Some(db) = &self.postgres {
            db.drop_blocking();
        }
    }
}

impl Install {
    /// On the embedded default, SQLite.
    pub fn new() -> Self {
        Self::init(None)
    }

    /// On a fresh PostgreSQL database, or `None` (printed as skipped) without
    /// `CANDOR_TEST_DATABASE_URL`.
    pub async fn postgres(test: &str) -> Option<Self> {
        let db = candor_store::pgtest::TestDatabase::create(test).await?;
        Some(Self::init(Some(db)))
    }

    fn init(postgres: Option<candor_store::pgtest::TestDatabase>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["init", "--dir", "."];
        if let Some(db) = &postgres {
            args.extend(["--database", db.url.as_str()]);
        }
        let (ok, out, err) = candor(&args, dir.path());
        assert!(ok, "init failed: {err}");
        let admin_token = out
            .lines()
            .find_map(|l| l.strip_prefix("admin token: "))
            .expect("init prints `admin token:`")
            .trim()
            .to_string();
        Self { dir, admin_token, postgres }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("candor.toml")
    }

    pub fn token(&self, role: &str) -> String {
        self.token_with(&["--role", role])
    }

    pub fn token_with(&self, extra: &[&str]) -> String {
        let config = self.config();
        let mut args = vec!["token", "create", "--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (ok, out, err) = candor(&args, self.dir.path());
        assert!(ok, "token create failed: {err}");
        out.trim().to_string()
    }

    /// Moves the clock of this installation's servers and commands forward by `by`.
    pub fn advance_clock(&self, by: Duration) {
        advance_clock(self.dir.path(), by)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data/candor.db")
    }

    pub fn serve(&self) -> Server {
        self.serve_logging_to("server.log")
    }

    /// Another server on the same installation (and database), logging to its own file.
    pub fn serve_logging_to(&self, log: &str) -> Server {
        Server::start(&self.config(), &self.dir.path().join(log))
    }

    /// A server with extra environment variables (such as `SOFTHSM2_CONF`).
    pub fn serve_with_env(&self, env: &[(&str, &Path)]) -> Server {
        Server::start_with_env(&self.config(), &self.dir.path().join("server.log"), env)
    }
}

/// A running `candor serve`; killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
    pub log_path: PathBuf,
}

impl Server {
    pub fn start(config: &Path, log_path: &Path) -> Self {
        Self::start_with_env(config, log_path, &[])
    }

    pub fn start_with_env(config: &Path, log_path: &Path, env: &[(&str, &Path)]) -> Self {
        let log = std::fs::File::create(log_path).expect("log file");
        let mut child = Command::new(BIN)
            .args(["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .env("CANDOR_LOG", "debug")
            .env_remove("CANDOR_KEK")
            .env_remove("CANDOR_INDEX_KEY")
            .env("CANDOR_TEST_CLOCK_FILE", config.parent().unwrap_or(Path::new(".")).join(CLOCK_FILE))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn candor serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("server did not start; log:\n{}", std::fs::read_to_string(log_path).unwrap_or_default())
        });
        Self { child, url, log_path: log_path.to_path_buf() }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn client(&self, token: &str, purpose: Option<&str>) -> Client {
        Client {
            base: self.url.clone(),
            token: Some(token.to_string()),
            purpose: purpose.map(str::to_string),
            http: http_client(),
        }
    }

    pub fn anonymous(&self) -> Client {
        Client { base: self.url.clone(), token: None, purpose: None, http: http_client() }
    }

    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client whose pool drops idle connections well before the server closes them
/// (`[server] header_timeout_seconds`, 60 s by default), as a well-configured client does: a
/// request is never sent on a connection the server is closing at that moment.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(20)).build().expect("HTTP client")
}

/// A caller with a token and a declared purpose.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: Option<String>,
    pub purpose: Option<String>,
    pub http: reqwest::Client,
}

/// A response: status and JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or("")
    }
}

impl Client {
    pub fn with_purpose(&self, purpose: &str) -> Client {
        Client { purpose: Some(purpose.to_string()), ..self.clone() }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(p) = &self.purpose {
            r = r.header("Candor-Purpose", p);
        }
        r
    }

    pub async fn send(&self, r: reqwest::RequestBuilder) -> Resp {
        let resp = r.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        Resp { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::GET, path)).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(reqwest::Method::POST, path).json(&body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(reqwest::Method::PATCH, path).json(&body)).await
    }
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
        self.send(self.request(reqwest::Method::POST, path).header("content-type", content_type).body(body)).await
    }

    /// Creates a subject and returns its id (panics on failure).
    pub async fn create(&self, fields: Value) -> String {
        let r = self.post("/v1/subjects", serde_json::json!({ "fields": fields })).await;
        assert_eq!(r.status, 201, "create failed: {:?}", r.body);
        r.body["id"].as_str().expect("id").to_string()
    }
}

/// Runs each named scenario (an `async fn(Install)`) on SQLite and on PostgreSQL, as tests
/// `sqlite::<name>` and `postgres::<name>`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::common::Install::new()).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() {
                if let Some(install) = super::common::Install::postgres(stringify!($name)).await {
                    super::$name(install).await
                }
            })*
        }
    };
}

/// Waits until `f` holds, up to `timeout` (for log lines written asynchronously).
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// The lines a child process (a `candor quickstart`) prints on stdout up to `listening on …`,
/// read on a thread; `None` if it has not said so within `within`. The child keeps running.
pub fn lines_until_listening(child: &mut Child, within: Duration) -> Option<Vec<String>> {
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.starts_with("listening on ");
            seen.push(line);
            if done {
                let _ = tx.send(seen.clone());
            }
        }
    });
    rx.recv_timeout(within).ok()
}
