//! Witnesses, black-box: two `candor witness serve` processes cosign Candor's checkpoints, a
//! verifier requires both, and a forked copy of the installation (same log key, different
//! history) is refused by both and reported by Candor.

mod common;

on_both_backends!(
    two_witnesses_cosign_each_new_checkpoint_and_a_verifier_can_require_both,
    a_forked_log_is_refused_by_both_witnesses_and_reported,
);

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candor_log::note::VerifierKey;
use candor_log::witness::{CosignerKey, verify_cosigned};
use common::{BIN, Install, Server, candor};
use serde_json::{Value, json};

/// A running `candor witness serve`; killed on drop.
struct WitnessProcess {
    child: Child,
    url: String,
    key: CosignerKey,
    dir: PathBuf,
}

impl WitnessProcess {
    fn init(dir: &Path, name: &str, log_key: &str) -> PathBuf {
        let (ok, out, err) = candor(&["witness", "init", "--dir", ".", "--name", name, "--log", log_key], dir);
        assert!(ok, "witness init failed: {err}");
        assert!(out.contains("witness key: "), "{out}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("witness.key")).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the witness key is owner-only");
        }
        dir.to_path_buf()
    }

    fn start(dir: &Path) -> Self {
        let log = std::fs::File::create(dir.join("witness.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["witness", "serve", "--config", "witness.toml", "--listen", "127.0.0.1:0"])
            .current_dir(dir)
            .env("CANDOR_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn candor witness serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut key = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(k) = line.strip_prefix("witness key: ") {
                    key = Some(k.trim().to_string());
                }
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send((key.clone().unwrap_or_default(), url.trim().to_string()));
                }
            }
        });
        let (key, url) = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("witness did not start: {}", std::fs::read_to_string(dir.join("witness.log")).unwrap_or_default())
        });
        Self { child, url, key: CosignerKey::parse(&key).expect("the witness prints its key"), dir: dir.to_path_buf() }
    }

    fn stop(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.clone()
    }

    /// The latest checkpoint this witness cosigned for `origin` (its monitoring path).
    async fn view(&self, origin: &str) -> (u16, String) {
        let hash = candor_log::witness::origin_hash(origin);
        let r = reqwest::get(format!("{}/{hash}/checkpoint", self.url)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The installation's log verifier key (a short-lived server answers GET /v1/log/key).
async fn log_key(install: &Install) -> VerifierKey {
    let server = install.serve();
    let r = server.anonymous().get("/v1/log/key").await;
    assert_eq!(r.status, 200);
    VerifierKey::parse(r.body["verifier_key"].as_str().unwrap()).unwrap()
}

/// Points the installation at the witnesses (checkpoints every second, so the test waits little).
fn configure_witnesses(config: &Path, witnesses: &[&WitnessProcess], required: usize) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text = text.replace("checkpoint_interval_seconds = 60", "checkpoint_interval_seconds = 1");
    text = text.replacen("[log]\n", &format!("[log]\nwitnesses_required = {required}\n"), 1);
    for w in witnesses {
        text.push_str(&format!("\n[[log.witnesses]]\nurl = \"{}\"\nkey = \"{}\"\n", w.url, w.key.to_text()));
    }
    std::fs::write(config, text).unwrap();
}

/// Polls the server's witness status until `done` holds (the pusher runs every second).
async fn wait_for(server: &Server, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let status = server.anonymous().get("/v1/log/witnesses").await;
        assert_eq!(status.status, 200);
        if done(&status.body) {
            return status.body;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{what} did not happen: {}\n{}", status.body, server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn log_size(server: &Server) -> u64 {
    let r = reqwest::get(format!("{}/v1/log/checkpoint", server.url)).await.unwrap();
    let note = r.text().await.unwrap();
    note.lines().nth(1).unwrap().parse().unwrap()
}

fn all_ok_at(status: &Value, size: u64) -> bool {
    status["cosigned_size"].as_u64().is_some_and(|s| s >= size)
        && status["witnesses"].as_array().unwrap().iter().all(|w| w["state"] == "ok")
}

async fn two_witnesses_cosign_each_new_checkpoint_and_a_verifier_can_require_both(install: Install) {
    let key = log_key(&install).await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    WitnessProcess::init(d1.path(), "witness.example/w1", &key.to_text());
    WitnessProcess::init(d2.path(), "auditor.example/w2", &key.to_text());
    let (w1, w2) = (WitnessProcess::start(d1.path()), WitnessProcess::start(d2.path()));
    configure_witnesses(&install.config(), &[&w1, &w2], 2);

    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    for i in 0..3 {
        backend.create(json!({"email": format!("w{i}@example.com"), "full_name": "Wit Ness"})).await;
    }
    let size = log_size(&server).await;
    wait_for(&server, "both witnesses cosigning", |s| all_ok_at(s, size)).await;

    // The cosigned checkpoint verifies with the log key and both witnesses' keys.
    let r = reqwest::get(format!("{}/v1/log/checkpoint/cosigned", server.url)).await.unwrap();
    assert_eq!(r.status(), 200);
    let note = r.text().await.unwrap();
    let seen = verify_cosigned(&note, &key, &[w1.key.clone(), w2.key.clone()], 2).unwrap();
    assert!(seen.checkpoint.size >= size);
    assert_eq!(seen.cosignatures.len(), 2);
    // One witness alone does not make two.
    assert!(verify_cosigned(&note, &key, std::slice::from_ref(&w1.key), 2).is_err());

    // More entries: both cosign the larger tree (each checked a consistency proof from the
    // size it held).
    let mut last = String::new();
    for i in 3..6 {
        last = backend.create(json!({"email": format!("w{i}@example.com"), "full_name": "Wit Ness"})).await;
    }
    let bigger = log_size(&server).await;
    assert!(bigger > seen.checkpoint.size);
    wait_for(&server, "cosigning the larger tree", |s| all_ok_at(s, bigger)).await;

    // The customer's "Who accessed my data" page says what the witnesses confirmed.
    let r = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{last}/privacy-center-links"), json!({}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut visitor = common::visitor::Visitor::new(&server);
    visitor.sign_in(r.body["path"].as_str().unwrap()).await;
    let page = visitor.get("/privacy/me/access").await;
    assert_eq!(page.status, 200);
    assert!(
        page.html.contains("2 independent witnesses (witness.example/w1, auditor.example/w2) confirmed that everyone who checks is shown this same log"),
        "{}",
        page.html
    );
    assert!(page.html.contains("That nothing about you was left out"), "{}", page.html);

    // The customer's proof bundle is made against the cosigned checkpoint: checked offline with
    // the witnesses' keys pinned, it says both witnesses confirm the log.
    let csrf = visitor.get("/privacy/me/download").await.csrf();
    let download = visitor.post("/privacy/me/download", &[("csrf", &csrf), ("format", "proof")]).await;
    assert_eq!(download.status, 200, "{}", download.html);
    let bundle_path = install.dir.path().join("history-proof.json");
    std::fs::write(&bundle_path, &download.html).unwrap();
    let (ok, out, err) = candor(
        &[
            "verify",
            "history",
            bundle_path.to_str().unwrap(),
            "--log-key",
            &key.to_text(),
            "--witness",
            &w1.key.to_text(),
            "--witness",
            &w2.key.to_text(),
            "--require",
            "2",
        ],
        install.dir.path(),
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("VERIFIED: all 1 entry about your data"), "{out}");
    assert!(out.contains("2 independent witnesses confirm everyone sees the same log"), "{out}");

    // The verifier's command: enough cosignatures, the current log extends it, and each
    // witness's own view agrees.
    let (ok, out, err) = candor(
        &[
            "log",
            "check-witnesses",
            "--url",
            &server.url,
            "--witness",
            &format!("{}={}", w1.key.to_text(), w1.url),
            "--witness",
            &format!("{}={}", w2.key.to_text(), w2.url),
        ],
        install.dir.path(),
    );
    assert!(ok, "check-witnesses failed: {out}{err}");
    assert!(out.contains("cosigned by 2 of the 2 witnesses you trust"), "{out}");
    assert!(out.contains("witness witness.example/w1 last cosigned"), "{out}");
    // A witness the server never used cannot be counted.
    let stranger = CosignerKey::new("stranger.example/w", [5u8; 32]).to_text();
    let (ok, out, err) = candor(
        &["log", "check-witnesses", "--url", &server.url, "--witness", &w1.key.to_text(), "--witness", &stranger],
        install.dir.path(),
    );
    assert!(!ok, "{out}");
    assert!(err.contains("1 of the required 2 witness cosignatures"), "{err}");

    // The witness's state is durable: after a restart it still holds the tree it cosigned.
    let (_, before) = w1.view(&key.name).await;
    let dir = w1.stop();
    let w1 = WitnessProcess::start(&dir);
    let (status, after) = w1.view(&key.name).await;
    assert_eq!(status, 200);
    assert_eq!(before, after);
    assert!(verify_cosigned(&after, &key, std::slice::from_ref(&w1.key), 1).is_ok());
}

/// A PostgreSQL database copied from an installation's (`CREATE DATABASE … TEMPLATE`), dropped
/// on drop.
struct ForkedDatabase {
    admin_url: String,
    name: String,
}

impl ForkedDatabase {
    fn copy(db: &candor_store::pgtest::TestDatabase, config: &Path) -> Self {
        let admin_url = std::env::var(candor_store::pgtest::TEST_DATABASE_ENV).unwrap();
        let name = format!("{}_fork", db.name);
        Self::psql(&admin_url, &format!("CREATE DATABASE {name} TEMPLATE {}", db.name));
        let fork_url = db.url.replace(&db.name, &name);
        let text = std::fs::read_to_string(config).unwrap().replace(&db.url, &fork_url);
        std::fs::write(config, text).unwrap();
        Self { admin_url, name }
    }

    fn psql(url: &str, sql: &str) {
        let out = Command::new("psql").arg(url).args(["-v", "ON_ERROR_STOP=1", "-c", sql]).output().expect("psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for ForkedDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin_url)
            .args(["-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
            .output();
    }
}

/// A copy of the installation (same log key) that goes on with another history is a fork:
/// both witnesses refuse it, and the forked server says so instead of serving a cosigned
/// checkpoint.
async fn a_forked_log_is_refused_by_both_witnesses_and_reported(install: Install) {
    let key = log_key(&install).await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    WitnessProcess::init(d1.path(), "witness.example/w1", &key.to_text());
    WitnessProcess::init(d2.path(), "auditor.example/w2", &key.to_text());
    let (w1, w2) = (WitnessProcess::start(d1.path()), WitnessProcess::start(d2.path()));
    configure_witnesses(&install.config(), &[&w1, &w2], 2);
    let backend_token = install.token("shop_backend");

    let server = install.serve();
    let backend = server.client(&backend_token, Some("account"));
    backend.create(json!({"email": "before@example.com", "full_name": "Before Fork"})).await;
    let size = log_size(&server).await;
    wait_for(&server, "cosigning before the fork", |s| all_ok_at(s, size)).await;
    server.stop();

    // The fork: a byte copy of the installation taken now (on PostgreSQL, of its database too).
    let fork = tempfile::tempdir().unwrap();
    let copied =
        Command::new("cp").arg("-a").arg(format!("{}/.", install.dir.path().display())).arg(fork.path()).status();
    assert!(copied.unwrap().success());
    let _fork_database = install.postgres.as_ref().map(|db| ForkedDatabase::copy(db, &fork.path().join("candor.toml")));

    // The real log goes on and is cosigned further.
    let server = install.serve();
    let backend = server.client(&backend_token, Some("account"));
    for i in 0..3 {
        backend.create(json!({"email": format!("real{i}@example.com"), "full_name": "Real History"})).await;
    }
    let real = log_size(&server).await;
    wait_for(&server, "cosigning the real history", |s| all_ok_at(s, real)).await;
    server.stop();

    // The fork writes a different history on the same key.
    let forked = Server::start(&fork.path().join("candor.toml"), &fork.path().join("server.log"));
    let backend = forked.client(&backend_token, Some("account"));
    for i in 0..5 {
        backend.create(json!({"email": format!("fork{i}@example.com"), "full_name": "Other History"})).await;
    }
    let forked_size = log_size(&forked).await;
    assert!(forked_size > real, "the fork is longer than the real log: {forked_size} vs {real}");
    // The fork's first push may be its old checkpoint (smaller than what the witnesses hold:
    // "rolled back"); its longer tree then comes with a consistency proof that cannot verify.
    wait_for(&forked, "both witnesses refusing the fork as inconsistent", |s| {
        s["witnesses"].as_array().unwrap().iter().all(|w| {
            w["state"] == "fork" && w["problem"].as_str().is_some_and(|p| p.contains("inconsistent with size"))
        })
    })
    .await;
    // Nothing cosigned is served for the fork, and the server log says what happened.
    let r = forked.anonymous().get("/v1/log/checkpoint/cosigned").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "not_cosigned");
    assert!(forked.log().contains("a witness refused this log's checkpoint"), "{}", forked.log());

    // The witnesses still hold the real history, and said 409 / 422 to the fork.
    for w in [&w1, &w2] {
        let (status, note) = w.view(&key.name).await;
        assert_eq!(status, 200);
        assert_eq!(key.open(&note).unwrap().size, real);
    }
    let witness_log = std::fs::read_to_string(d1.path().join("witness.log")).unwrap();
    assert!(witness_log.contains("refused an inconsistent checkpoint"), "{witness_log}");

    // A verifier pointed at the fork finds no cosigned checkpoint.
    let (ok, _, err) = candor(
        &[
            "log",
            "check-witnesses",
            "--url",
            &forked.url,
            "--witness",
            &w1.key.to_text(),
            "--witness",
            &w2.key.to_text(),
        ],
        fork.path(),
    );
    assert!(!ok);
    assert!(err.contains("no cosigned checkpoint"), "{err}");

    // A witness told the fork directly, by hand, refuses it with the status the spec names.
    let forked_note = reqwest::get(format!("{}/v1/log/checkpoint", forked.url)).await.unwrap().text().await.unwrap();
    let body = format!("old 0\n\n{forked_note}");
    let r = reqwest::Client::new().post(format!("{}/add-checkpoint", w2.url)).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(r.headers()["content-type"], "text/x.tlog.size");
    assert_eq!(r.text().await.unwrap(), format!("{real}\n"));
}
