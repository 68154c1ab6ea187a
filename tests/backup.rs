//! `candor backup` and `candor restore` through the real binary: a backup taken under write load
//! (and erasures) restores every write acknowledged before it started, nobody half-written or
//! half-erased, and the log verifies; a damaged or mismatched backup, a live installation and the
//! wrong keys are refused with what is wrong; and the start-up refuses an empty or older data
//! store and an older key store.

mod backup_support;
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use backup_support::{
    HeldBackup, PATIENCE, Seen, backup, data_file, fresh_place, log_verifies, restore, run, seen, stored_ids,
    without_the_erasure_brake,
};
use common::{BIN, CLOCK_FILE, Install};
use serde_json::{Value, json};

fn email(prefix: &str, i: usize) -> String {
    format!("{prefix}{i}@example.com")
}

/// When a write was sent and when it was acknowledged: before the backup (0), while it ran (1),
/// after it finished (2).
#[derive(Clone, Debug)]
struct Write {
    id: String,
    email: String,
    sent: u8,
    acknowledged: u8,
}

/// Waits until the writers have acknowledged `n` more writes in phase `wanted` or later.
async fn wait_for(n: usize, wanted: u8, acks: &mut tokio::sync::mpsc::UnboundedReceiver<u8>) {
    let mut seen = 0;
    while seen < n {
        let ack = tokio::time::timeout(PATIENCE, acks.recv()).await.expect("the writers keep writing");
        if ack.expect("the writers run") >= wanted {
            seen += 1;
        }
    }
}

/// Customers erased before, while and after the backup runs, and who writes meanwhile.
async fn a_backup_under_write_load_restores_every_acknowledged_write(install: Install) {
    const WRITERS: usize = 8;
    const DOOMED: usize = 20;
    without_the_erasure_brake(&install);
    let (backend_token, privacy_token) = (install.token("shop_backend"), install.token("privacy_team"));
    let server = install.serve();
    let backend = server.client(&backend_token, Some("account"));
    let privacy = server.client(&privacy_token, Some("privacy_requests"));
    let erase = move |id: String| {
        let privacy = privacy.clone();
        async move { privacy.send(privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{id}"))).await.status }
    };
    let mut doomed = Vec::new();
    for i in 0..DOOMED {
        let id = backend.create(json!({"email": email("doomed", i), "full_name": format!("Doomed {i}")})).await;
        doomed.push(id);
    }

    // Writers create customers until told to stop, each write stamped with the phase it was
    // sent and acknowledged in.
    let phase = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writes: Arc<Mutex<Vec<Write>>> = Arc::default();
    let (ack_tx, mut acks) = tokio::sync::mpsc::unbounded_channel::<u8>();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (client, phase, stop, writes, ack_tx) =
            (backend.clone(), phase.clone(), stop.clone(), writes.clone(), ack_tx.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let email = email(&format!("w{w}-"), n);
                let sent = phase.load(Ordering::SeqCst);
                let r = client
                    .post("/v1/subjects", json!({"fields": {"email": email, "full_name": format!("W {w} {n}")}}))
                    .await;
                assert_eq!(r.status, 201, "{:?}", r.body);
                let acknowledged = phase.load(Ordering::SeqCst);
                let id = r.body["id"].as_str().unwrap().to_string();
                writes.lock().unwrap().push(Write { id, email, sent, acknowledged });
                let _ = ack_tx.send(acknowledged);
                n += 1;
            }
        }));
    }
    drop(ack_tx);
    wait_for(200, 0, &mut acks).await;
    for id in &doomed[..5] {
        assert_eq!(erase(id.clone()).await, 200);
    }
    // Erasures that run while the backup does (in either store copy, or between them).
    let concurrent = {
        let ids = doomed[6..15].to_vec();
        let erase = erase.clone();
        tokio::spawn(async move {
            for id in ids {
                assert_eq!(erase(id).await, 200);
            }
        })
    };

    phase.store(1, Ordering::SeqCst);
    let to = install.dir.path().join("backup-under-load");
    let started = Instant::now();
    let held = {
        let (dir, to) = (install.dir.path().to_path_buf(), to.clone());
        tokio::task::spawn_blocking(move || HeldBackup::start(&dir, &to)).await.unwrap()
    };
    // Between the two copies: an erasure (the data copy has the customer, the key copy will not
    // have the key) and a new customer (the key copy would have a key without data). On
    // PostgreSQL the backup holds after its one snapshot: both come after the backup.
    assert_eq!(erase(doomed[5].clone()).await, 200);
    let between = backend.create(json!({"email": "between@example.com", "full_name": "Between Copies"})).await;
    wait_for(10, 1, &mut acks).await;
    let (ok, out, err) = tokio::task::spawn_blocking(move || held.release()).await.unwrap();
    assert!(ok, "backup: {out}{err}");
    let backup_seconds = started.elapsed().as_secs_f64();
    phase.store(2, Ordering::SeqCst);
    for id in &doomed[15..] {
        assert_eq!(erase(id.clone()).await, 200);
    }
    wait_for(10, 2, &mut acks).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    concurrent.await.unwrap();
    drop(server);

    let sqlite = install.postgres.is_none();
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(to.join("manifest.json")).unwrap()).unwrap();
    if sqlite {
        assert!(manifest["customers"]["keys_left_out"].as_u64().unwrap() >= 1, "{manifest}");
        assert!(manifest["customers"]["erasures_to_complete"].as_u64().unwrap() >= 1, "{manifest}");
    }
    let bytes: u64 = manifest["files"].as_array().unwrap().iter().map(|f| f["bytes"].as_u64().unwrap()).sum();

    // Restored into a new place (a new database on PostgreSQL), with the key files kept apart.
    let target = match &install.postgres {
        Some(_) => Some(candor_store::pgtest::TestDatabase::create("backup_restore_target").await.unwrap()),
        None => None,
    };
    let url = target.as_ref().map(|db| db.url.clone());
    let place = fresh_place(&install, &to, url.as_deref());
    let (ok, out, err) = restore(place.path(), &to, &[]);
    assert!(ok, "restore: {out}{err}");
    assert!(out.contains("log verified"), "{out}");
    // Restoring again over it is refused: it is a live installation now.
    let (ok, _, err) = restore(place.path(), &to, &[]);
    assert!(!ok, "a second restore over the first is refused");
    assert!(err.contains("already hold"), "{err}");

    let restored = common::Server::start(&place.path().join("candor.toml"), &place.path().join("server.log"));
    let client = restored.client(&backend_token, Some("account"));
    let writes = writes.lock().unwrap().clone();
    let (mut before, mut during_kept, mut during) = (0, 0, 0);
    for w in &writes {
        let now = seen(&client, &w.id, &w.email).await;
        match (w.sent, w.acknowledged) {
            (_, 0) => {
                assert_eq!(now, Seen::Whole(w.email.clone()), "{} was acknowledged before the backup", w.id);
                before += 1;
            }
            (2, _) => assert_eq!(now, Seen::Erased, "{} was written after the backup", w.id),
            _ => {
                during += 1;
                if now == Seen::Whole(w.email.clone()) {
                    during_kept += 1;
                }
            }
        }
    }
    for (i, id) in doomed.iter().enumerate() {
        let now = seen(&client, id, &email("doomed", i)).await;
        match i {
            0..=4 => assert_eq!(now, Seen::Erased, "doomed {i} was erased before the backup"),
            5 if sqlite => assert_eq!(now, Seen::Erased, "doomed 5 was erased before the key store was copied"),
            5 => assert_eq!(now, Seen::Whole(email("doomed", 5)), "doomed 5 was erased after the snapshot"),
            6..=14 => {}
            _ => assert_eq!(now, Seen::Whole(email("doomed", i)), "doomed {i} was erased after the backup"),
        }
    }
    assert_eq!(seen(&client, &between, "between@example.com").await, Seen::Erased, "created after the data copy");
    // Nobody half-written: every customer the restored database holds reads back whole.
    for id in stored_ids(&data_file(place.path()), url.as_deref()) {
        let r = client.get(&format!("/v1/subjects/{id}")).await;
        assert_eq!(r.status, 200, "{id}: {:?}", r.body);
        assert!(r.body["fields"]["full_name"].is_string(), "{id}");
    }
    drop(restored);
    let verified = log_verifies(&place.path().join("candor.toml"), place.path());
    let backend_name = if install.postgres.is_some() { "postgres" } else { "sqlite" };
    eprintln!(
        "FIGURES backup under load ({backend_name}): {WRITERS} writers; {before} writes acknowledged before the backup \
         all read back after the restore; {during_kept} of {during} acknowledged while it ran are in it; \
         {} written after it are not; erasures: 5 before it (and on SQLite 1 between its copies) stay erased, 5 after it do not; \
         backup of {bytes} bytes in {backup_seconds:.2} s (including the hold); {}",
        writes.iter().filter(|w| w.sent == 2).count(),
        verified.trim()
    );
    assert!(before >= 200, "{before}");
    drop(place);
    if let Some(db) = target {
        db.drop_database().await;
    }
}

on_both_backends!(a_backup_under_write_load_restores_every_acknowledged_write);

/// An installation with `n` customers (written through a server that is stopped again).
async fn with_customers(install: &Install, token: &str, prefix: &str, n: usize) -> Vec<String> {
    let server = install.serve();
    let client = server.client(token, Some("account"));
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(client.create(json!({"email": email(prefix, i), "full_name": format!("{prefix} {i}")})).await);
    }
    drop(server);
    ids
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Replaces a backup's file by another's and rewrites its manifest entry to match, as a careless
/// operator assembling a backup from two might: the checksums then pass, the pair must not.
fn transplant(into: &Path, from: &Path, file: &str) {
    std::fs::copy(from.join(file), into.join(file)).unwrap();
    let bytes = std::fs::read(into.join(file)).unwrap();
    let mut m = manifest(into);
    for f in m["files"].as_array_mut().unwrap() {
        if f["path"] == file {
            f["bytes"] = json!(bytes.len());
            f["sha256"] = json!(candor_crypto::sha256(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>());
        }
    }
    std::fs::write(into.join("manifest.json"), serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A restore that must be refused with `message`, leaving the place without a database.
fn refused(place: &Path, from: &Path, message: &str) {
    let (ok, out, err) = restore(place, from, &[]);
    assert!(!ok, "restored: {out}");
    assert!(err.contains(message), "expected `{message}` in: {err}");
    assert!(!data_file(place).exists(), "a refused restore leaves nothing behind");
}

#[tokio::test]
async fn a_damaged_or_unfinished_backup_is_refused_naming_the_file() {
    let install = Install::new();
    let token = install.token("shop_backend");
    with_customers(&install, &token, "c", 3).await;
    let to = install.dir.path().join("b");
    backup(&install, &to);
    owner_only(&to);
    // A second backup into the same directory is refused.
    let (ok, _, err) = run(&install, &["backup"], &["--to", to.to_str().unwrap()]);
    assert!(!ok && err.contains("is not empty"), "{err}");

    // One byte flipped in the data store.
    let damaged = install.dir.path().join("damaged");
    copy_dir(&to, &damaged);
    let mut bytes = std::fs::read(damaged.join("data/candor.db")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(damaged.join("data/candor.db"), bytes).unwrap();
    let place = fresh_place(&install, &to, None);
    refused(place.path(), &damaged, "data/candor.db: its SHA-256 differs from the manifest's (damaged or replaced)");

    // The key store cut short.
    let truncated = install.dir.path().join("truncated");
    copy_dir(&to, &truncated);
    let keys = truncated.join("keys/keystore.db");
    let length = std::fs::metadata(&keys).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&keys).unwrap().set_len(length / 2).unwrap();
    refused(place.path(), &truncated, &format!("keys/keystore.db: {} bytes, the manifest says {length}", length / 2));

    // No manifest: an unfinished backup (it is written last).
    let unfinished = install.dir.path().join("unfinished");
    copy_dir(&to, &unfinished);
    std::fs::remove_file(unfinished.join("manifest.json")).unwrap();
    refused(place.path(), &unfinished, "has no manifest.json");

    // A manifest altered by hand: its signed checkpoint no longer matches.
    let altered = install.dir.path().join("altered");
    copy_dir(&to, &altered);
    let mut m = manifest(&altered);
    m["log"]["checkpoint"] = json!(m["log"]["checkpoint"].as_str().unwrap().replacen('\n', "\n9", 1));
    std::fs::write(altered.join("manifest.json"), serde_json::to_string(&m).unwrap()).unwrap();
    refused(place.path(), &altered, "the manifest's checkpoint does not verify");

    // The backup itself still restores, owner-only too.
    let (ok, out, err) = restore(place.path(), &to, &[]);
    assert!(ok, "{out}{err}");
    owner_only(&place.path().join("data"));
    owner_only_file(&place.path().join("keys/keystore.db"));
}

/// Every directory under `dir` (and itself) is 0700, every file 0600.
fn owner_only(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { owner_only(&path) } else { owner_only_file(&path) }
        }
    }
}

fn owner_only_file(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600, "{}", path.display());
    }
}

#[tokio::test]
async fn a_mismatched_pair_is_refused_naming_what_is_wrong() {
    let install = Install::new();
    let token = install.token("shop_backend");
    with_customers(&install, &token, "early", 2).await;
    let early = install.dir.path().join("early");
    backup(&install, &early);
    with_customers(&install, &token, "late", 3).await;
    let late = install.dir.path().join("late");
    backup(&install, &late);
    let place = fresh_place(&install, &late, None);

    // The data of the later backup with the key store of the earlier one.
    let hybrid = install.dir.path().join("late-data-early-keys");
    copy_dir(&late, &hybrid);
    transplant(&hybrid, &early, "keys/keystore.db");
    refused(
        place.path(),
        &hybrid,
        "keys/keystore.db is older than data/candor.db: 3 of the 5 customers in the data store have no data key",
    );

    // The data of the earlier backup with the key store of the later one.
    let hybrid = install.dir.path().join("early-data-late-keys");
    copy_dir(&early, &hybrid);
    transplant(&hybrid, &late, "keys/keystore.db");
    refused(
        place.path(),
        &hybrid,
        "data/candor.db is older than keys/keystore.db: 3 customers have a data key but no data",
    );

    // The key store of another installation.
    let other = Install::new();
    let other_token = other.token("shop_backend");
    with_customers(&other, &other_token, "other", 1).await;
    let theirs = other.dir.path().join("theirs");
    backup(&other, &theirs);
    let hybrid = install.dir.path().join("foreign-keys");
    copy_dir(&late, &hybrid);
    transplant(&hybrid, &theirs, "keys/keystore.db");
    refused(
        place.path(),
        &hybrid,
        "data/candor.db and keys/keystore.db do not belong together: the data store is of installation",
    );

    // Another installation's backup restored with this one's config: its log is not this log.
    refused(place.path(), &theirs, "the backup's log is `");
}

#[tokio::test]
async fn a_restore_with_keys_that_do_not_open_the_backup_is_refused() {
    let install = Install::new();
    let token = install.token("shop_backend");
    with_customers(&install, &token, "c", 2).await;
    let to = install.dir.path().join("b");
    backup(&install, &to);
    let other = Install::new();
    // Another installation's KEK file: same version number, another key.
    let place = fresh_place(&install, &to, None);
    std::fs::copy(other.dir.path().join("keys/kek.key"), place.path().join("keys/kek.key")).unwrap();
    refused(place.path(), &to, "does not open the backup's data keys: it is not the key that wrapped them");
    // Another installation's log key.
    let place = fresh_place(&install, &to, None);
    std::fs::copy(other.dir.path().join("keys/log.key"), place.path().join("keys/log.key")).unwrap();
    refused(place.path(), &to, "is not the key that signed this backup's log");
    // No log key at all.
    std::fs::remove_file(place.path().join("keys/log.key")).unwrap();
    refused(place.path(), &to, "there is no log signing key");
}

/// Restoring over the installation itself: refused while it is live (without --replace) and
/// while a server has it open; then the files are moved aside, the erasure made since the
/// backup is kept, and the log verifies.
#[tokio::test]
async fn a_restore_over_the_installation_keeps_the_erasures_made_since_the_backup() {
    let install = Install::new();
    let (backend_token, privacy_token) = (install.token("shop_backend"), install.token("privacy_team"));
    let server = install.serve();
    let backend = server.client(&backend_token, Some("account"));
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(backend.create(json!({"email": email("c", i), "full_name": format!("C {i}")})).await);
    }
    let to = install.dir.path().join("b");
    backup(&install, &to);
    let privacy = server.client(&privacy_token, Some("privacy_requests"));
    let r = privacy.send(privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{}", ids[1]))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let after = backend.create(json!({"email": "after@example.com", "full_name": "After Backup"})).await;

    let (ok, _, err) = restore(install.dir.path(), &to, &[]);
    assert!(!ok && err.contains("already hold an installation") && err.contains("--replace"), "{err}");
    let (ok, _, err) = restore(install.dir.path(), &to, &["--replace"]);
    assert!(!ok && err.contains("is open in another process"), "{err}");
    drop(server);
    let (ok, out, err) = restore(install.dir.path(), &to, &["--replace"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("0 customer(s) erased while the backup ran, 1 erased since"), "{out}");
    assert!(out.contains("candor.db.before-restore-"), "{out}");
    let aside = std::fs::read_dir(install.dir.path().join("data"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("before-restore"))
        .count();
    assert!(aside >= 1, "the replaced database is kept");

    let server = install.serve();
    let backend = server.client(&backend_token, Some("account"));
    assert_eq!(seen(&backend, &ids[0], &email("c", 0)).await, Seen::Whole(email("c", 0)));
    assert_eq!(seen(&backend, &ids[1], &email("c", 1)).await, Seen::Erased, "the erasure after the backup stays");
    assert_eq!(seen(&backend, &ids[2], &email("c", 2)).await, Seen::Whole(email("c", 2)));
    assert_eq!(seen(&backend, &after, "after@example.com").await, Seen::Erased, "created after the backup: not in it");
    drop(server);
    log_verifies(&install.config(), install.dir.path());
}

/// Runs `candor serve` on an installation whose stores do not belong together: it must exit
/// with an error instead of listening. Returns what it said.
fn serve_refusal(install: &Install) -> String {
    let config = install.config();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("CANDOR_TEST_CLOCK_FILE", install.dir.path().join(CLOCK_FILE))
        .env_remove("CANDOR_KEK")
        .env_remove("CANDOR_INDEX_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    // stdout closes when the process exits; a server that starts prints `listening on` first.
    let started = std::io::BufRead::lines(std::io::BufReader::new(out))
        .map_while(Result::ok)
        .any(|l| l.starts_with("listening on"));
    if started {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server started on stores that do not belong together");
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A consistent copy of one SQLite file, as copying it alone would make one.
fn copy_alone(path: &Path, to: &Path) {
    let out = Command::new("sqlite3").arg(path).arg(format!("VACUUM INTO '{}'", to.display())).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Puts `copy` in place of the SQLite file `path` (its WAL goes with the old file).
fn put_in_place(copy: &Path, path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    if copy.exists() {
        std::fs::copy(copy, path).unwrap();
    }
}

#[tokio::test]
async fn the_start_up_refuses_stores_that_do_not_belong_together() {
    let install = Install::new();
    let token = install.token("shop_backend");
    with_customers(&install, &token, "first", 2).await;
    let (data, keys) = (install.db_path(), install.dir.path().join("keys/keystore.db"));
    let old_data = install.dir.path().join("old-data.db");
    let old_keys = install.dir.path().join("old-keys.db");
    copy_alone(&data, &old_data);
    copy_alone(&keys, &old_keys);
    with_customers(&install, &token, "second", 3).await;
    let (now_data, now_keys) = (install.dir.path().join("now-data.db"), install.dir.path().join("now-keys.db"));
    copy_alone(&data, &now_data);
    copy_alone(&keys, &now_keys);

    // The data as it was before the second customers, with today's key store.
    put_in_place(&old_data, &data);
    let e = serve_refusal(&install);
    assert!(e.contains("is older than its key store") && e.contains("have a data key created after"), "{e}");
    assert!(e.contains("candor restore"), "{e}");
    let (ok, _, err) = run(&install, &["log", "verify"], &[]);
    assert!(!ok && err.contains("is older than its key store"), "every command refuses: {err}");

    // An empty data file next to the full key store.
    put_in_place(Path::new("/nonexistent"), &data);
    let e = serve_refusal(&install);
    assert!(
        e.contains("is empty (no customer, no log entry)") && e.contains("holds the data keys of 5 customer(s)"),
        "{e}"
    );

    // The key store as it was before the second customers, with today's data.
    put_in_place(&now_data, &data);
    put_in_place(&old_keys, &keys);
    let e = serve_refusal(&install);
    assert!(
        e.contains("is older than the database") && e.contains("3 of the 5 newest customers have no data key"),
        "{e}"
    );

    // Both put back: it serves every customer again.
    put_in_place(&now_keys, &keys);
    let server = install.serve();
    let client = server.client(&token, Some("account"));
    for i in 0..3 {
        let found = client.get(&format!("/v1/subjects?email={}", email("second", i))).await;
        assert_eq!(found.body["ids"].as_array().map(Vec::len), Some(1), "{:?}", found.body);
    }
}
