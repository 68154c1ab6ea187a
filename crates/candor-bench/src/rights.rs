//! `candor bench --rights-events N`: the customer-rights operations on SQLite — the access
//! report and the export (JSON and zip) of one customer with N events, with the process's peak
//! memory while streaming; erasure latency; the retention sweep rate.

use std::time::Instant;

use anyhow::Result;
use candor_core::{EventId, FieldName, SubjectId};
use serde_json::json;

use candor::config::Database;
use candor::vault::{Authorized, Principal, Vault};

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    crate::scenarios::proc_memory_mib("self", "VmHWM")
}

/// Resets the peak so the next reading covers only what follows (Linux).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn authorize(vault: &Vault, role: &str, purpose: &str) -> Result<Authorized> {
    let principal = Principal { token_id: "bench".into(), role: role.into(), origin: None };
    Ok(vault.authorize(principal, Some(purpose), None).await?)
}

/// Seeds `events` sealed purchase events for `id` straight into the database, in one transaction.
async fn seed_events(config: &candor::config::Config, id: SubjectId, events: u64) -> Result<()> {
    let Database::Sqlite(db) = config.database.clone() else { anyhow::bail!("the rights benchmark runs on SQLite") };
    let keys = candor::install::load_keys(config)?;
    let record = candor::install::open_store(config).await?.load_subject(id, &[]).await?.expect("the subject exists");
    let key = keys.open_subject_key(id, &record.dek)?;
    let key_store = config.keys.key_store.clone();
    let bar = indicatif::ProgressBar::new(events);
    bar.set_style(indicatif::ProgressStyle::with_template("seeding events {bar:40} {pos}/{len}").expect("template"));
    let seeding = bar.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut conn = rusqlite::Connection::open(&db)?;
        conn.execute("ATTACH DATABASE ?1 AS keys", [key_store.to_string_lossy()])?;
        let tx = conn.transaction()?;
        {
            let mut put = tx.prepare(
                "INSERT INTO events (id, subject_id, event_type, recorded_at, payload) VALUES (?1, ?2, 'purchase', ?3, ?4)",
            )?;
            let purchase = FieldName::new("purchase");
            let now = candor::vault::now_millis();
            for i in 0..events {
                let event = EventId::random();
                let body = json!({"data": {"item": format!("item-{i}"), "price_eur": 12.5, "shop": "online"}});
                let sealed = key.seal_event(event, &purchase, body.to_string().as_bytes())?;
                put.execute(rusqlite::params![event.to_string(), id.to_string(), now - (events - i) as i64, sealed.as_bytes()])?;
                if i % 10_000 == 0 {
                    seeding.set_position(i);
                }
            }
        }
        tx.commit()?;
        Ok(())
    })
    .await??;
    bar.finish_and_clear();
    Ok(())
}

pub async fn run(events: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let done = candor::install::init(dir.path(), None).await?;
    crate::scenarios::lift_erasure_brake(&done.config_path)?;
    let (config, vault) = candor::install::open(&done.config_path).await?;
    let account = authorize(&vault, "shop_backend", "account").await?;
    let privacy = authorize(&vault, "privacy_team", "privacy_requests").await?;
    let fields = json!({"email": "ada@example.com", "full_name": "Ada Lovelace", "date_of_birth": "1990-12-10"});
    let id = vault.create_subject(&account, fields.as_object().expect("object")).await?;
    seed_events(&config, id, events).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let token = vault.create_token("shop_backend", "bench", None).await?.to_string();
    let app =
        candor::http::router(candor::http::AppState::new(vault.clone(), candor::install::http_settings(&config)?)?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    println!("-- customer rights, SQLite: one customer with {events} events");
    for (name, path) in [
        ("GET /report", format!("/v1/subjects/{id}/report")),
        ("GET /export?format=json", format!("/v1/subjects/{id}/export?format=json")),
        ("GET /export?format=csv (zip + signed manifest)", format!("/v1/subjects/{id}/export?format=csv")),
    ] {
        reset_peak_rss();
        let before = peak_rss_mib().unwrap_or(0.0);
        let start = Instant::now();
        let mut resp = client
            .get(format!("{url}{path}"))
            .bearer_auth(&token)
            .header("Candor-Purpose", "privacy_requests")
            .send()
            .await?
            .error_for_status()?;
        let mut bytes = 0usize;
        while let Some(chunk) = resp.chunk().await? {
            bytes += chunk.len();
        }
        let elapsed = start.elapsed();
        println!(
            "{name:<52} {:>9.1} ms {:>9.1} MB   peak RSS {:.0} MiB (was {:.0} MiB before)",
            elapsed.as_secs_f64() * 1e3,
            bytes as f64 / 1e6,
            peak_rss_mib().unwrap_or(0.0),
            before
        );
    }
    server.abort();

    // Erasure: customers with 3 fields, one event and a consent each.
    let n = 500;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let f = json!({"email": format!("e{i}@example.com"), "full_name": "E", "date_of_birth": "1990-01-01"});
        ids.push(vault.create_subject(&account, f.as_object().expect("object")).await?);
    }
    let start = Instant::now();
    for id in &ids {
        vault.erase_subject(&privacy, *id).await?;
    }
    let per = start.elapsed().as_secs_f64() / n as f64;
    println!(
        "{:<52} {:>9.2} ms/customer ({n} customers, sequential)",
        "erasure (key destroyed + data deleted + certificate)",
        per * 1e3
    );

    // Retention: customers whose page views are all past P13M.
    let m = 5_000u64;
    let Database::Sqlite(db) = config.database.clone() else { anyhow::bail!("SQLite only") };
    let key_store = config.keys.key_store.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut conn = rusqlite::Connection::open(&db)?;
        conn.execute("ATTACH DATABASE ?1 AS keys", [key_store.to_string_lossy()])?;
        let tx = conn.transaction()?;
        for _ in 0..m {
            let id = SubjectId::random().to_string();
            tx.execute("INSERT INTO keys.subject_keys (subject_id, kek_version, dek_version, wrapped_dek, created_at) VALUES (?1, 1, 1, x'00', 0)", [&id])?;
            tx.execute("INSERT INTO subjects (id, created_at, updated_at) VALUES (?1, 0, 0)", [&id])?;
            for _ in 0..3 {
                tx.execute(
                    "INSERT INTO events (id, subject_id, event_type, recorded_at, payload) VALUES (?1, ?2, 'page_view', 0, x'00')",
                    [uuid::Uuid::new_v4().to_string(), id.clone()],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    })
    .await??;
    let start = Instant::now();
    let report = vault.sweep_retention(candor::vault::now_millis(), |_| {}).await?;
    let elapsed = start.elapsed().as_secs_f64();
    anyhow::ensure!(report.subjects == m, "every seeded customer had page views due");
    println!(
        "{:<52} {:>9.0} customers/s ({} events deleted, {:.2} s)",
        "retention sweep (3 expired events per customer)",
        m as f64 / elapsed,
        report.events,
        elapsed
    );
    Ok(())
}
