//! What the backup and durability tests share: a `candor backup` held between its two copies,
//! a fresh place to restore into, and checks that nobody is half-written or half-erased.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::common::{BIN, CLOCK_FILE, Client, Install, candor};

/// The longest any step waits for a process (a bound against a hang, not a timing).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The brake on bulk erasure would refuse many erasures in a row: turned off.
pub fn without_the_erasure_brake(install: &Install) {
    let config = install.config();
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("erasures_per_hour = 60"), "the installation's candor.toml sets the brake");
    std::fs::write(&config, text.replace("erasures_per_hour = 60", "erasures_per_hour = 0")).unwrap();
}

/// Runs `candor` in the installation's directory, with its config.
pub fn run(install: &Install, command: &[&str], extra: &[&str]) -> (bool, String, String) {
    let config = install.config();
    let mut args = command.to_vec();
    args.extend(["--config", config.to_str().unwrap()]);
    args.extend_from_slice(extra);
    candor(&args, install.dir.path())
}

/// `candor backup --to DIR`, which must succeed; its output.
pub fn backup(install: &Install, to: &Path) -> String {
    let (ok, out, err) = run(install, &["backup"], &["--to", to.to_str().unwrap()]);
    assert!(ok, "backup failed: {out}{err}");
    out
}

/// A `candor backup` stopped after its copy of the data store, before its copy of the key store
/// (the debug build's test hook), until released or killed.
pub struct HeldBackup {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl HeldBackup {
    /// Starts the backup of the installation in `dir` and returns once it holds (blocking: call
    /// it from `spawn_blocking` while clients keep writing).
    pub fn start(dir: &Path, to: &Path) -> Self {
        let config = dir.join("candor.toml");
        let mut child = Command::new(BIN)
            .args(["backup", "--config", config.to_str().unwrap(), "--to", to.to_str().unwrap()])
            .current_dir(dir)
            .env("CANDOR_TEST_BACKUP_HOLD", "1")
            .env("CANDOR_TEST_CLOCK_FILE", dir.join(CLOCK_FILE))
            .env_remove("CANDOR_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn candor backup");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stdin = child.stdin.take();
        let mut held = Self { child, stdin, lines };
        loop {
            match held.lines.recv_timeout(PATIENCE) {
                Ok(line) if line.starts_with("backup: holding") => return held,
                Ok(_) => {}
                Err(_) => {
                    let _ = held.child.kill();
                    let out = held.child.wait_with_output().unwrap();
                    panic!("the backup did not reach its hold: {}", String::from_utf8_lossy(&out.stderr));
                }
            }
        }
    }

    /// Lets it copy the key store and finish; (success, stdout after the hold, stderr).
    pub fn release(mut self) -> (bool, String, String) {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"\n").unwrap();
        drop(stdin);
        let out = self.child.wait_with_output().unwrap();
        let rest: Vec<String> = self.lines.iter().collect();
        (out.status.success(), rest.join("\n"), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// SIGKILL, mid-backup.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A new installation place for a restore: the backup's config and catalog, and the key files
/// the operator kept apart (the original installation's), with the database pointed at
/// `database` when given (a new PostgreSQL database).
pub fn fresh_place(install: &Install, backup: &Path, database: Option<&str>) -> tempfile::TempDir {
    let place = tempfile::tempdir().unwrap();
    let keys = place.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for d in [place.path(), keys.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
    }
    for name in ["candor.toml", "catalog.toml"] {
        std::fs::copy(backup.join("installation").join(name), place.path().join(name)).unwrap();
    }
    for name in ["kek.key", "index.key", "log.key"] {
        std::fs::copy(install.dir.path().join("keys").join(name), keys.join(name)).unwrap();
    }
    if let Some(url) = database {
        let config = place.path().join("candor.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        let text: Vec<String> = text
            .lines()
            .map(|l| if l.starts_with("database = ") { format!("database = \"{url}\"") } else { l.to_string() })
            .collect();
        std::fs::write(&config, text.join("\n") + "\n").unwrap();
    }
    place
}

/// `candor restore --config PLACE/candor.toml --from DIR [extra]`.
pub fn restore(place: &Path, from: &Path, extra: &[&str]) -> (bool, String, String) {
    let config = place.join("candor.toml");
    let mut args = vec!["restore", "--config", config.to_str().unwrap(), "--from", from.to_str().unwrap()];
    args.extend_from_slice(extra);
    candor(&args, place)
}

/// Every customer id the installation's database holds (SQLite through `sqlite3`, PostgreSQL
/// through `psql`).
pub fn stored_ids(data: &Path, postgres: Option<&str>) -> Vec<String> {
    let out = match postgres {
        Some(url) => Command::new("psql").args([url, "-At", "-c", "SELECT id FROM subjects"]).output().unwrap(),
        None => Command::new("sqlite3").arg(data).arg("SELECT id FROM subjects").output().unwrap(),
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// What a customer looks like through the API.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// Reads back with this e-mail, and a lookup by it finds them.
    Whole(String),
    /// Unreadable (404/410) and not found by their e-mail.
    Erased,
}

/// Reads customer `id` back and looks them up by `email`; panics on anything half-done
/// (readable but not found, found but unreadable, a half-written record).
pub async fn seen(client: &Client, id: &str, email: &str) -> Seen {
    let read = client.get(&format!("/v1/subjects/{id}")).await;
    let found = client.get(&format!("/v1/subjects?email={email}")).await;
    assert_eq!(found.status, 200, "lookup of {id}: {:?}", found.body);
    match read.status {
        200 => {
            assert!(read.body["fields"]["full_name"].is_string(), "{id} is whole: {:?}", read.body);
            assert_eq!(found.body["ids"], json!([id]), "{id} reads, so a lookup finds them");
            Seen::Whole(read.body["fields"]["email"].as_str().unwrap_or_default().to_string())
        }
        404 | 410 => {
            assert_eq!(found.body["ids"], json!([]), "{id} is unreadable, so no lookup may find them");
            Seen::Erased
        }
        other => panic!("customer {id} reads {other}: {:?}", read.body),
    }
}

/// `candor log verify` on an installation's config must pass; its output.
pub fn log_verifies(config: &Path, cwd: &Path) -> String {
    let (ok, out, err) = candor(&["log", "verify", "--config", config.to_str().unwrap()], cwd);
    assert!(ok, "log verify: {out}{err}");
    out
}

/// The data file of a place restored on SQLite.
pub fn data_file(place: &Path) -> PathBuf {
    place.join("data/candor.db")
}
