//! `candor-bench`: micro-benchmarks of the vault's hot paths, printed as ops/s.
//! Numbers go to BENCHMARKS.md together with the command and the machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use candor_core::catalog::FieldType;
use candor_core::value;
use candor_core::{FieldName, SubjectId};
use candor_crypto::KeyRing;
use candor_store::sqlite::SqliteStore;
use candor_store::{LogRecord, NewSubject, Store};
use serde_json::json;

pub struct BenchOptions {
    /// A PostgreSQL server to also run the HTTP scenarios on (a fresh database is created and
    /// dropped), with 1 and 2 server instances.
    pub postgres: Option<String>,
    pub subjects: usize,
    pub seconds: f64,
    /// Size of the log to build for the log benchmarks (0 skips them).
    pub log_entries: u64,
    /// Customers in the consent audience benchmark (0 skips it).
    pub audience: usize,
    /// Customers loaded (full profile and two purchases each) before the HTTP scenarios.
    pub customers: usize,
    /// Serve the SQLite HTTP scenarios from a separate `candor serve` process (its CPU and
    /// memory then measured alone) instead of in this process.
    pub server_process: bool,
}

/// Turns the bulk-erasure brake off in a benchmark's own installation (it erases thousands of
/// customers on purpose).
pub(crate) fn lift_erasure_brake(config: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(config)?;
    let key = format!("erasures_per_hour = {}", candor::config::DEFAULT_ERASURES_PER_HOUR);
    anyhow::ensure!(text.contains(&key), "the initial config sets {key}");
    std::fs::write(config, text.replace(&key, "erasures_per_hour = 0"))?;
    Ok(())
}

/// Concurrent HTTP clients in the HTTP scenarios.
const CLIENTS: usize = 64;

fn measure(name: &str, seconds: f64, mut op: impl FnMut()) {
    // Warm up, then run in batches until the time budget is used.
    for _ in 0..1000 {
        op();
    }
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n: u64 = 0;
    while n == 0 || start.elapsed() < budget {
        for _ in 0..256 {
            op();
        }
        n += 256;
    }
    report(name, n, start.elapsed());
}

/// Every measurement of this run, for `--json`.
static RESULTS: std::sync::Mutex<Vec<serde_json::Value>> = std::sync::Mutex::new(Vec::new());

/// Keeps a measurement for `--json` (printed lines stay the human-readable record).
pub fn keep(result: serde_json::Value) {
    RESULTS.lock().unwrap_or_else(|e| e.into_inner()).push(result);
}

/// Adds `extra` to the last kept measurement.
fn amend_last(extra: serde_json::Value) {
    let mut results = RESULTS.lock().unwrap_or_else(|e| e.into_inner());
    if let (Some(last), Some(extra)) = (results.last_mut().and_then(|v| v.as_object_mut()), extra.as_object()) {
        last.extend(extra.clone());
    }
}

/// The run as JSON: the machine and every measurement.
pub fn results_json() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines().find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()))
    });
    json!({
        "machine": {
            "arch": std::env::consts::ARCH,
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "cpu_model": cpu,
            "debug_build": cfg!(debug_assertions),
        },
        "results": *RESULTS.lock().unwrap_or_else(|e| e.into_inner()),
    })
}

fn report(name: &str, n: u64, elapsed: Duration) {
    let per = elapsed.as_secs_f64() / n as f64;
    println!("{name:<52} {:>12.0} ops/s {:>10.2} µs/op", 1.0 / per, per * 1e6);
    // One decimal, so a slow run's rate is never rounded down to 0.
    keep(json!({"operation": name, "ops_per_s": (10.0 / per).round() / 10.0, "us_per_op": per * 1e6}));
}

fn record() -> Vec<(FieldName, Vec<u8>)> {
    let values = [
        ("email", json!("ada.lovelace@example.com")),
        ("full_name", json!("Ada Lovelace")),
        ("phone", json!("+44 20 7946 0101")),
        ("date_of_birth", json!("1990-12-10")),
        (
            "shipping_address",
            json!({"street": "12 Demo Street", "city": "London", "postal_code": "N1 9GU", "country": "GB"}),
        ),
        ("loyalty_points", json!(1240)),
        ("shop_preferences", json!({"size": "M", "newsletter_topics": ["pens", "paper"]})),
        ("company", json!("Analytical Engines Ltd")),
        ("vat_number", json!("GB123456789")),
        ("notes", json!("Prefers delivery after 5 pm.")),
    ];
    values.into_iter().map(|(k, v)| (FieldName::new(k), serde_json::to_vec(&v).expect("json"))).collect()
}

pub async fn run(opts: BenchOptions) -> Result<()> {
    let ring = Arc::new(KeyRing::generate_in_memory());
    let subject = SubjectId::random();
    let (key, stored) = ring.new_subject_key(subject)?;
    let fields = record();
    println!("candor bench — {} (debug build: {})", std::env::consts::ARCH, cfg!(debug_assertions));
    println!("{:<52} {:>18} {:>16}", "operation", "throughput", "latency");

    measure("seal 10-field record (AES-256-GCM, per-field AAD)", opts.seconds, || {
        for (name, v) in &fields {
            std::hint::black_box(key.seal_field(name, v).expect("seal"));
        }
    });
    let sealed: Vec<_> = fields.iter().map(|(n, v)| (n.clone(), key.seal_field(n, v).expect("seal"))).collect();
    measure("open 10-field record", opts.seconds, || {
        for (name, c) in &sealed {
            std::hint::black_box(key.open_field(name, c).expect("open"));
        }
    });
    measure("seal+open 10-field record incl. DEK unwrap", opts.seconds, || {
        let k = ring.open_subject_key(subject, &stored).expect("unwrap");
        for (name, v) in &fields {
            let c = k.seal_field(name, v).expect("seal");
            std::hint::black_box(k.open_field(name, &c).expect("open"));
        }
    });
    let email = FieldName::new("email");
    measure("blind index (normalise + HKDF + HMAC-SHA-256)", opts.seconds, || {
        let n = value::lookup_key(FieldType::Email, &json!("Ada.Lovelace@Example.com")).expect("valid");
        std::hint::black_box(ring.blind_index(&email, &n));
    });

    policy_bench(opts.seconds)?;

    // Lookup through a real SQLite file holding `subjects` customers.
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open_with_adjacent_keys(dir.path().join("bench.db")).await?;
    let start = Instant::now();
    for i in 0..opts.subjects {
        let id = SubjectId::random();
        let (k, dek) = ring.new_subject_key(id)?;
        let address = format!("customer{i}@example.com");
        let n = value::lookup_key(FieldType::Email, &json!(address)).expect("valid");
        store
            .create_subject(
                NewSubject {
                    id,
                    dek,
                    values: vec![(email.clone(), k.seal_field(&email, address.as_bytes())?)],
                    index: vec![(email.clone(), ring.blind_index(&email, &n))],
                    now: 0,
                },
                LogRecord {
                    entry: format!("{{\"action\":\"bench.create\",\"n\":{i}}}").into_bytes(),
                    subjects: vec![id],
                    ..Default::default()
                },
            )
            .await?;
    }
    report(
        &format!("create subject + log entry, SQLite durable commit (n={})", opts.subjects),
        opts.subjects as u64,
        start.elapsed(),
    );
    let budget = Duration::from_secs_f64(opts.seconds);
    let start = Instant::now();
    let mut n = 0u64;
    while n == 0 || start.elapsed() < budget {
        let target = format!("customer{}@example.com", n as usize % opts.subjects.max(1));
        let key = value::lookup_key(FieldType::Email, &json!(target)).expect("valid");
        let found = store.find_by_index(&email, &ring.blind_indexes(&email, &key)).await?;
        anyhow::ensure!(found.len() == 1, "lookup must find exactly one customer");
        n += 1;
    }
    report(&format!("lookup by e-mail: blind index + SQLite ({} customers)", opts.subjects), n, start.elapsed());
    println!("-- HTTP scenarios, SQLite, 1 server instance");
    api_bench(opts.seconds, None, 1, opts.customers, opts.server_process).await?;
    if let Some(server) = &opts.postgres {
        for instances in [1, 2] {
            let db = candor_store::pgtest::TestDatabase::create_on(server, "candor_bench").await;
            println!("-- HTTP scenarios, PostgreSQL, {instances} server instance(s) (separate pools, one process)");
            let result = api_bench(opts.seconds, Some(&db.url), instances, opts.customers, false).await;
            db.drop_database().await;
            result?;
        }
    }
    if opts.log_entries > 0 {
        log_bench(dir.path(), opts.log_entries, opts.seconds).await?;
    }
    if opts.audience > 0 {
        audience_bench(opts.audience).await?;
    }
    Ok(())
}

/// HTTP scenarios over real loopback connections (keep-alive, 32 concurrent clients, servers in
/// this process): `/healthz` (the HTTP stack's floor), creates (3 fields, blind index, durable
/// log entry) and audited reads (token, purpose, decrypt, durable log entry). With several
/// instances, each has its own store (connection pool) and clients alternate between them.
/// Access decisions: what Cedar costs for a question asked the first time, and what a read pays
/// per request once the answer is cached (the common case: the questions are few).
fn policy_bench(seconds: f64) -> Result<()> {
    let catalog = candor_core::catalog::Catalog::from_toml_str(candor_core::catalog::EXAMPLE_CATALOG, "example")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = candor_policy::PolicyEngine::new(&catalog, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let situation = candor_policy::Situation::NEUTRAL;
    let phone = candor_policy::Target::Field("phone");
    measure("policy decision, evaluated by Cedar (uncached)", seconds, || {
        let d =
            engine.decide_uncached("support_agent", candor_policy::Action::Read, "customer_support", phone, situation);
        std::hint::black_box(d.expect("declared names"));
    });
    let build = Instant::now();
    let fresh = candor_policy::PolicyEngine::new(&catalog, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::hint::black_box(fresh.outcomes("support_agent", "customer_support", situation).expect("declared names"));
    report("policy: compile catalog + first read's outcomes (cold)", 1, build.elapsed());
    // Per request: the gate and every field's outcome, from the cache.
    let mut latencies = Vec::new();
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    while latencies.is_empty() || start.elapsed() < budget {
        let t = Instant::now();
        std::hint::black_box(engine.outcomes("support_agent", "customer_support", situation).expect("declared names"));
        latencies.push(t.elapsed());
    }
    report("policy: a read's decisions (gate + 7 fields + 2 events), cached", latencies.len() as u64, start.elapsed());
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    println!("{:<52} p50 {:.2} µs, p99 {:.2} µs", "", pct(0.50), pct(0.99));
    Ok(())
}

/// Loads `n` customers through the vault, 64 at a time, with a progress bar: a full profile
/// (e-mail `l<i>@example.com`, name, date of birth, loyalty points, preferences; phone and
/// address under order fulfilment) and two purchases each. Returns their ids.
async fn load_customers(vault: &candor::vault::Vault, n: usize) -> Result<Vec<String>> {
    use indicatif::{ProgressBar, ProgressStyle};
    if n == 0 {
        return Ok(Vec::new());
    }
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("loading customers {bar:40} {pos}/{len} ({per_sec})").expect("template"),
    );
    let backend = candor::vault::Principal { token_id: "bench".into(), role: "shop_backend".into(), origin: None };
    let account = vault.authorize(backend.clone(), Some("account"), None).await?;
    let fulfilment = vault.authorize(backend, Some("order_fulfilment"), None).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CLIENTS {
        let (vault, account, fulfilment, bar) = (vault.clone(), account.clone(), fulfilment.clone(), bar.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (worker..n).step_by(CLIENTS) {
                let profile = json!({
                    "email": format!("l{i}@example.com"), "full_name": format!("Loaded Customer {i}"),
                    "date_of_birth": "1988-04-12", "loyalty_points": i % 5000,
                    "shop_preferences": {"size": "M", "topics": ["pens", "paper"]},
                });
                let id = vault.create_subject(&account, profile.as_object().expect("object")).await?;
                let shipping = json!({
                    "phone": format!("+44 20 7946 {:04}", i % 10_000),
                    "shipping_address": {"street": format!("{} Bench Street", i % 300), "city": "London", "postal_code": "N1 9GU", "country": "GB"},
                });
                vault.correct_subject(&fulfilment, id, shipping.as_object().expect("object")).await?;
                for item in ["Notebook", "Fountain pen"] {
                    let event = candor::vault::NewEventInput {
                        event_type: "purchase".into(),
                        data: json!({"item": item, "price_eur": 12.5}),
                        occurred_at: None,
                    };
                    vault.append_event(&fulfilment, id, event).await?;
                }
                ids.push(id.to_string());
                bar.inc(1);
            }
            Ok::<_, candor::vault::VaultError>(ids)
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.extend(t.await??);
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:<52} {:>12.1} s ({:.0} customers/s, 4 durable writes each)",
        format!("loaded {n} customers"),
        secs,
        n as f64 / secs
    );
    keep(json!({"operation": "load customers (create + correction + 2 events)", "customers": n, "seconds": secs}));
    Ok(ids)
}

async fn api_bench(
    seconds: f64,
    database: Option<&str>,
    instances: usize,
    customers: usize,
    server_process: bool,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let done = candor::install::init(dir.path(), database).await?;
    lift_erasure_brake(&done.config_path)?;
    let mut urls = Vec::new();
    let mut servers = Vec::new();
    let mut first = None;
    let mut process = None;
    if server_process {
        // The bench seeds through its own vault on the same files; the server process serves.
        let (server, url) = ServerProcess::start(&done.config_path)?;
        urls.push(url);
        process = Some(server);
        first = Some(candor::install::open(&done.config_path).await?.1);
    }
    for _ in 0..if server_process { 0 } else { instances } {
        let (config, vault) = candor::install::open(&done.config_path).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        urls.push(format!("http://{}", listener.local_addr()?));
        let app =
            candor::http::router(candor::http::AppState::new(vault.clone(), candor::install::http_settings(&config)?)?);
        servers.push(tokio::spawn(async move { axum::serve(listener, app).await }));
        first.get_or_insert(vault);
    }
    let vault = first.expect("at least one instance");
    let server_pid = process.as_ref().map(ServerProcess::pid);
    let token = vault.create_token("shop_backend", "bench", None).await?.to_string();
    let backend = candor::vault::Principal { token_id: "bench".into(), role: "shop_backend".into(), origin: None };
    let account = vault.authorize(backend, Some("account"), None).await?;
    let mut ids = Vec::new();
    for i in 0..200 {
        let fields = json!({"email": format!("c{i}@example.com"), "full_name": format!("Customer {i}"), "date_of_birth": "1990-01-01"});
        ids.push(vault.create_subject(&account, fields.as_object().expect("object")).await?.to_string());
    }
    // Every bench customer consents to marketing by e-mail, so the marketing tool can read them.
    for id in &ids {
        let id = SubjectId::parse(id).expect("id");
        let change = candor_core::consent::RequestedChange {
            purpose: "marketing".into(),
            channel: Some("email".into()),
            action: "grant".into(),
        };
        let input = candor::vault::ChangeInput {
            changes: vec![change],
            method: None,
            actor: None,
            reason: None,
            evidence: Some("bench sign-up form, marketing checkbox".into()),
            gpc: false,
        };
        vault.change_consents(&account, id, input).await?;
    }
    let marketing_token = vault.create_token("marketing_tool", "bench", None).await?.to_string();
    // Erasure is the privacy team's power (`erase = true`), under its customer_requests purpose.
    let privacy_token = vault.create_token("privacy_team", "bench", None).await?.to_string();
    let tool = candor::vault::Principal { token_id: "bench".into(), role: "marketing_tool".into(), origin: None };
    let marketing = vault.authorize(tool, Some("marketing"), None).await?;
    let start = Instant::now();
    let rounds = 2000usize;
    for i in 0..rounds {
        let id = SubjectId::parse(&ids[i % ids.len()]).expect("id");
        std::hint::black_box(vault.bench_consent_given(&marketing, id).await?);
    }
    report("consent check alone (ledger query + derive state), in-process", rounds as u64, start.elapsed());
    // The loaded population (if any) joins the 200 consenting customers for every scenario but
    // the consent-checked read.
    let loaded = load_customers(&vault, customers).await?;
    let lookup_prefix = if loaded.is_empty() { "c" } else { "l" };
    let lookup_count = if loaded.is_empty() { ids.len() } else { loaded.len() };
    let population: Vec<String> = ids.iter().cloned().chain(loaded).collect();
    // Customers to erase (each can be erased once).
    let mut victims = Vec::new();
    for i in 0..((seconds * 2000.0) as usize).clamp(100, 20_000) {
        let fields = json!({"email": format!("v{i}@example.com"), "full_name": format!("Victim {i}")});
        victims.push(vault.create_subject(&account, fields.as_object().expect("object")).await?.to_string());
    }
    let (victims, next_victim) = (Arc::new(victims), Arc::new(std::sync::atomic::AtomicUsize::new(0)));
    let (ids, population, urls) = (Arc::new(ids), Arc::new(population), Arc::new(urls));
    let storage = storage_floor(dir.path(), database, seconds.min(2.0)).await?;
    if let Some((rss, _)) = process.as_ref().and_then(ServerProcess::memory_mib) {
        println!("{:<52} {rss:>12.1} MiB", "server process RSS after seeding, before the scenarios");
        keep(json!({"operation": "server process RSS before the scenarios", "mib": rss}));
    }
    // The load generator runs on its own threads, so the servers' CPU can be told apart.
    let clients_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()?;
    let mut floor = 0.0f64;
    let mut read_peak = 0.0f64;
    for (name, scenario) in [
        ("GET /healthz (floor)", 0u8),
        ("POST /v1/subjects (create)", 1),
        ("GET /v1/subjects/{id} (audited read)", 2),
        ("GET /v1/subjects/{id} at half the peak read rate (paced)", 10),
        ("GET /v1/subjects/{id} under consent (read + consent check)", 3),
        ("GET /v1/subjects?email= (lookup by e-mail)", 4),
        ("PATCH /v1/subjects/{id} (correction)", 5),
        ("POST /v1/subjects/{id}/consents (consent change)", 6),
        ("POST /v1/subjects/{id}/events (event append)", 7),
        ("GET /v1/subjects/{id}/export (JSON)", 8),
        ("DELETE /v1/subjects/{id} (erasure + certificate)", 9),
    ] {
        let budget = Duration::from_secs_f64(seconds);
        // The paced scenario: each client sends on a fixed schedule so that all together offer
        // half the audited-read rate just measured; latency counts from the scheduled time, so
        // a late answer also delays what it holds up (no coordinated omission).
        let pace = (scenario == 10).then(|| Duration::from_secs_f64(CLIENTS as f64 / (read_peak / 2.0).max(1.0)));
        // Paced clients first open their connection with one untimed request; the schedule
        // starts after that, so 64 simultaneous connects are not counted as latency.
        let warmup = if pace.is_some() { Duration::from_millis(500) } else { Duration::ZERO };
        let cpu_before = server_cpu_seconds(server_pid);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..CLIENTS {
            let (client, urls, token, ids) = (reqwest::Client::new(), urls.clone(), token.clone(), ids.clone());
            let population = population.clone();
            let (marketing_token, privacy_token, victims, next_victim) =
                (marketing_token.clone(), privacy_token.clone(), victims.clone(), next_victim.clone());
            tasks.push(clients_runtime.spawn(async move {
                let url = &urls[t % urls.len()];
                let (token, purpose) = if scenario == 3 { (&marketing_token, "marketing") } else { (&token, "account") };
                let mut n = 0u64;
                let mut latencies = Vec::new();
                if pace.is_some() {
                    let _ = client.get(format!("{url}/healthz")).send().await.map(|r| r.bytes());
                }
                // Every client completes at least one request however slow the machine is, so
                // no scenario reports zero operations (a rate of 0 divides nothing usefully).
                while n == 0 || start.elapsed() < budget + warmup {
                    let mut sent = Instant::now();
                    if let Some(interval) = pace {
                        sent = start + warmup + interval.mul_f64(t as f64 / CLIENTS as f64) + interval * n as u32;
                        if n > 0 && sent > start + warmup + budget {
                            break;
                        }
                        tokio::time::sleep_until(sent.into()).await;
                    }
                    let pick = t * 7919 + n as usize * 64;
                    let id = if scenario == 3 { &ids[pick % ids.len()] } else { &population[pick % population.len()] };
                    let victim = if scenario == 9 {
                        match victims.get(next_victim.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                            Some(v) => v.clone(),
                            None => break, // every victim erased: this client is done
                        }
                    } else {
                        String::new()
                    };
                    let req = match scenario {
                        8 => client
                            .get(format!("{url}/v1/subjects/{id}/export?format=json"))
                            .bearer_auth(token)
                            .header("Candor-Purpose", "privacy_requests"),
                        9 => client
                            .delete(format!("{url}/v1/subjects/{victim}"))
                            .bearer_auth(&privacy_token)
                            .header("Candor-Purpose", "privacy_requests"),
                        0 => client.get(format!("{url}/healthz")),
                        4 => client
                            .get(format!("{url}/v1/subjects?email={lookup_prefix}{}@example.com", pick % lookup_count))
                            .bearer_auth(token)
                            .header("Candor-Purpose", "account"),
                        5 => client
                            .patch(format!("{url}/v1/subjects/{id}"))
                            .bearer_auth(token)
                            .header("Candor-Purpose", "account")
                            .json(&json!({"fields": {"full_name": format!("Customer {t}-{n}")}})),
                        6 => client
                            .post(format!("{url}/v1/subjects/{id}/consents"))
                            .bearer_auth(token)
                            .header("Candor-Purpose", "account")
                            .json(&json!({"changes": [{"purpose": "analytics", "action": if n.is_multiple_of(2) { "grant" } else { "withdraw" }}], "evidence": "bench account settings form"})),
                        7 => client
                            .post(format!("{url}/v1/subjects/{id}/events"))
                            .bearer_auth(token)
                            .header("Candor-Purpose", "order_fulfilment")
                            .json(&json!({"type": "purchase", "data": {"item": "Notebook", "price_eur": 12.5}})),
                        1 => client
                            .post(format!("{url}/v1/subjects"))
                            .bearer_auth(token)
                            .header("Candor-Purpose", "account")
                            .json(&json!({"fields": {"email": format!("t{t}-n{n}@example.com"), "full_name": "Bench Customer", "date_of_birth": "1990-01-01"}})),
                        _ => client.get(format!("{url}/v1/subjects/{id}")).bearer_auth(token).header("Candor-Purpose", purpose),
                    };
                    // The whole body is read, as a client would (an export is streamed).
                    let status = match req.send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            if r.bytes().await.is_err() {
                                0
                            } else {
                                status
                            }
                        }
                        Err(_) => 0,
                    };
                    assert!(status == 200 || status == 201, "benchmark request failed with {status}");
                    latencies.push(sent.elapsed().as_micros() as u32);
                    n += 1;
                }
                (n, latencies)
            }));
        }
        let mut total = 0;
        let mut latencies = Vec::new();
        for t in tasks {
            let (n, l) = t.await?;
            total += n;
            latencies.extend(l);
        }
        let elapsed = start.elapsed().saturating_sub(warmup);
        // Servers' CPU: the process's minus the load generator's threads'.
        let server_cpu =
            server_cpu_seconds(server_pid).zip(cpu_before).map(|(after, before)| (after - before).max(0.0));
        latencies.sort_unstable();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        report(&format!("HTTP {name}, {CLIENTS} clients"), total, elapsed);
        let rate = total as f64 / elapsed.as_secs_f64();
        if scenario == 0 {
            floor = rate;
        }
        if scenario == 2 {
            read_peak = rate;
        }
        // Shares are computed from the rates this run reports (the floor's own share is exactly
        // 100); a floor that measured nothing gives no share rather than a made-up one.
        let share_of = |base: f64| (base > 0.0).then(|| 100.0 * rate / base);
        let (share, storage_share) = (share_of(floor).unwrap_or(f64::NAN), share_of(storage).unwrap_or(f64::NAN));
        println!(
            "{:<52} p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; {share:.0}% of the /healthz floor",
            "",
            pct(0.50),
            pct(0.99),
            pct(0.999),
        );
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        if let Some(cpu) = server_cpu {
            println!(
                "{:<52} server CPU {:.0} µs per request ({:.0}% of {cores} cores); {storage_share:.0}% of the storage floor",
                "",
                1e6 * cpu / total.max(1) as f64,
                100.0 * cpu / elapsed.as_secs_f64() / cores,
            );
        }
        amend_last(json!({
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
            "share_of_floor_percent": share_of(floor).map(|s| (s * 10.0).round() / 10.0), "clients": CLIENTS,
            "share_of_storage_floor_percent": share_of(storage).map(|s| (s * 10.0).round() / 10.0),
            "server_cpu_us_per_request": server_cpu.map(|c| (1e6 * c / total.max(1) as f64).round()),
            "server_cpu_percent_of_machine": server_cpu.map(|c| (100.0 * c / elapsed.as_secs_f64() / cores).round()),
            "database": database.map_or("sqlite", |_| "postgres"), "instances": instances,
        }));
    }
    clients_runtime.shutdown_background();
    match process.as_ref().and_then(ServerProcess::memory_mib) {
        Some((_, peak)) => {
            println!("{:<52} {peak:>12.1} MiB (the server process alone)", "peak RSS of the server");
            keep(json!({"operation": "peak RSS of the server process", "mib": peak}));
        }
        None => {
            if let Some(mib) = proc_memory_mib("self", "VmHWM") {
                println!("{:<52} {mib:>12.1} MiB (this process: servers and load generator)", "peak RSS");
                keep(json!({"operation": "peak RSS of the benchmark process", "mib": mib}));
            }
        }
    }
    for s in servers {
        s.abort();
    }
    Ok(())
}

/// Name of the load generator's threads (the servers run on the main runtime's threads).
const CLIENT_THREADS: &str = "bench-client";

/// User + system CPU seconds in a `/proc/.../stat` line.
fn stat_cpu_seconds(stat: &str, ticks_per_second: f64) -> Option<f64> {
    // Fields after the command name (which may hold spaces, hence the last ')'): state is the
    // first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    Some((fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / ticks_per_second)
}

/// CPU seconds the servers have used so far: the server process's (`pid`), or, with the servers
/// in this process, this process's minus its load-generator threads' (what remains is the
/// servers' workers, blocking pool and SQLite writer).
#[cfg(target_os = "linux")]
fn server_cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let hz = rustix::param::clock_ticks_per_second() as f64;
    if let Some(pid) = pid {
        return stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?, hz);
    }
    let process = stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?, hz)?;
    let mut clients = 0.0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == CLIENT_THREADS {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            clients += stat_cpu_seconds(&stat, hz).unwrap_or(0.0);
        }
    }
    Some(process - clients)
}

#[cfg(not(target_os = "linux"))]
fn server_cpu_seconds(_pid: Option<u32>) -> Option<f64> {
    None
}

/// A `candor serve` of the benchmark's installation in its own process (`--server-process`),
/// so its CPU and memory are measured alone; killed on drop.
struct ServerProcess(std::process::Child);

impl ServerProcess {
    fn start(config: &std::path::Path) -> Result<(Self, String)> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(crate::candor_exe()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let server = Self(child);
        for line in std::io::BufReader::new(stdout).lines() {
            if let Some(url) = line?.strip_prefix("listening on ") {
                return Ok((server, url.trim().to_string()));
            }
        }
        anyhow::bail!("the benchmark server exited before listening")
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Resident memory now and at its peak (Linux `VmRSS`, `VmHWM`), in MiB.
    fn memory_mib(&self) -> Option<(f64, f64)> {
        let pid = self.pid().to_string();
        Some((proc_memory_mib(&pid, "VmRSS")?, proc_memory_mib(&pid, "VmHWM")?))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The storage floor of the database the scenarios run on: bare 200-byte inserts with the
/// store's durability settings, one row per commit and 64 per commit (what group commit can
/// reach with 64 clients) on SQLite; 64 concurrent autocommit connections on PostgreSQL.
async fn storage_floor(dir: &std::path::Path, database: Option<&str>, seconds: f64) -> Result<f64> {
    let floor = match database {
        None => {
            let (db, keys) = (dir.join("floor.db"), dir.join("floor-keys.db"));
            let one = {
                let (db, keys) = (db.clone(), keys.clone());
                tokio::task::spawn_blocking(move || candor_store::floor::sqlite(&db, &keys, seconds, 1)).await??
            };
            report("storage floor: SQLite insert, 1 row per durable commit", one.rows, one.elapsed);
            keep(
                json!({"operation": "storage floor, SQLite, 1 row per commit", "ops_per_second": one.rows_per_second()}),
            );
            let grouped =
                tokio::task::spawn_blocking(move || candor_store::floor::sqlite(&db, &keys, seconds, CLIENTS))
                    .await??;
            report(
                &format!("storage floor: SQLite insert, {CLIENTS} rows per durable commit"),
                grouped.rows,
                grouped.elapsed,
            );
            grouped
        }
        Some(url) => {
            let run = candor_store::floor::postgres(url, seconds, CLIENTS).await?;
            report(
                &format!("storage floor: PostgreSQL insert, {CLIENTS} connections, autocommit"),
                run.rows,
                run.elapsed,
            );
            run
        }
    };
    amend_last(json!({"storage_floor": true}));
    Ok(floor.rows_per_second())
}

/// A memory line of `/proc/<process>/status` (`process`: "self" or a pid; `key`: `VmRSS`,
/// `VmHWM` for the peak), in MiB (Linux).
pub(crate) fn proc_memory_mib(process: &str, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// A realistic entry: a support agent reading two fields of one customer.
fn sample_entry(i: u64) -> LogRecord {
    let subject = SubjectId::random();
    let entry = candor::vault::audit::Audit::new(
        &candor::vault::Principal {
            token_id: format!("bench-token-{}", i % 50),
            role: "support_agent".into(),
            origin: None,
        },
        candor_log::Action::SubjectRead,
    )
    .purpose(&candor_core::PurposeId::new("customer_support"))
    .subjects(&[subject])
    .fields(["email", "phone"])
    .decision("full");
    entry.record_quiet()
}

async fn log_bench(dir: &std::path::Path, entries: u64, seconds: f64) -> Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_with_adjacent_keys(dir.join("log-bench.db")).await?);
    let bar = ProgressBar::new(entries);
    bar.set_style(ProgressStyle::with_template("building log {bar:40} {pos}/{len}").expect("template"));
    let start = Instant::now();
    let mut i = 0;
    while i < entries {
        let n = 1000.min(entries - i);
        store.append_log((i..i + n).map(sample_entry).collect()).await?;
        i += n;
        bar.set_position(i);
    }
    bar.finish_and_clear();
    report(&format!("log append, 1000 entries per transaction (to {entries})"), entries, start.elapsed());

    // Concurrent single-entry appends: what audited reads do (one durable commit each).
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while n == 0 || start.elapsed() < budget {
                store.append_log(vec![sample_entry(t)]).await.expect("append");
                n += 1;
            }
            n
        }));
    }
    let mut appended = 0;
    for t in tasks {
        appended += t.await?;
    }
    report("log append, 1 entry per transaction, 32 concurrent tasks", appended, start.elapsed());

    let (size, root) = store.log_head().await?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let start = Instant::now();
    let rounds = 2000u64;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let index = x % size;
        let (leaf, proof) = store.log_inclusion_proof(index, size).await?;
        candor_log::merkle::verify_inclusion(&leaf, index, size, &proof, &root)?;
    }
    report(&format!("inclusion proof + verification at {size} entries"), rounds, start.elapsed());
    let start = Instant::now();
    for k in 1..=rounds {
        let first = (size / (rounds + 1)) * k;
        std::hint::black_box(store.log_consistency_proof(first.max(1), size).await?);
    }
    report(&format!("consistency proof at {size} entries"), rounds, start.elapsed());

    let start = Instant::now();
    let (recomputed, _) =
        candor::verify::recompute(&mut candor::verify::DbReader::new(store.clone()), size, &[]).await?;
    anyhow::ensure!(recomputed == root, "the recomputed root must match");
    report(&format!("full verification: read + hash + recompute root ({size} entries)"), size, start.elapsed());
    Ok(())
}

/// The audience query over `customers` customers on SQLite: about 60% consented to marketing by
/// e-mail, a tenth of them withdrew again, a tenth gave consent on an earlier notice. The data is
/// seeded with plain SQL in one transaction (what is measured is the query, not the seeding);
/// then the audience is read in-process and over HTTP.
async fn audience_bench(customers: usize) -> Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    let dir = tempfile::tempdir()?;
    let done = candor::install::init(dir.path(), None).await?;
    let (config, vault) = candor::install::open(&done.config_path).await?;
    let current = vault.notices().version(&candor_core::PurposeId::new("marketing")).to_string();
    let candor::config::Database::Sqlite(db) = config.database.clone() else {
        anyhow::bail!("the audience benchmark runs on SQLite");
    };
    let bar = ProgressBar::new(customers as u64);
    let seeding = bar.clone();
    bar.set_style(ProgressStyle::with_template("seeding consents {bar:40} {pos}/{len}").expect("template"));
    let start = Instant::now();
    let expected = tokio::task::spawn_blocking(move || -> Result<usize> {
        let mut conn = rusqlite::Connection::open(&db)?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        let tx = conn.transaction()?;
        let mut expected = 0;
        {
            let mut subject = tx.prepare(
                "INSERT INTO subjects (id, created_at, updated_at) VALUES (?1, 0, 0)",
            )?;
            let mut receipt =
                tx.prepare("INSERT INTO consent_receipts (id, subject_id, recorded_at, body) VALUES (?1, ?2, 0, '{}')")?;
            let mut entry = tx.prepare(
                "INSERT INTO consents (subject_id, purpose, channel, action, notice_version, method, actor_kind, given_at, recorded_at, receipt_id)
                 VALUES (?1, 'marketing', 'email', ?2, ?3, 'api', 'subject', ?4, ?4, ?5)",
            )?;
            for i in 0..customers {
                let id = SubjectId::random().to_string();
                subject.execute([&id])?;
                let receipt_id = uuid::Uuid::new_v4().to_string();
                receipt.execute([&receipt_id, &id])?;
                let mut add = |action: &str, version: &str, at: i64| {
                    entry.execute(rusqlite::params![id, action, version, at, receipt_id])
                };
                match i % 10 {
                    0..=3 => {}
                    4 => {
                        add("grant", &current, 1)?;
                        add("withdraw", &current, 2)?;
                    }
                    5 => {
                        add("grant", "sha256:earlier-notice", 1)?;
                    }
                    _ => {
                        add("grant", &current, 1)?;
                        expected += 1;
                    }
                }
                if i % 10_000 == 0 {
                    seeding.set_position(i as u64);
                }
            }
        }
        tx.commit()?;
        Ok(expected)
    })
    .await??;
    bar.finish_and_clear();
    println!("-- consent audience: {customers} customers seeded in {:.1} s", start.elapsed().as_secs_f64());

    let tool = candor::vault::Principal { token_id: "bench".into(), role: "marketing_tool".into(), origin: None };
    let marketing = vault.authorize(tool, Some("marketing"), None).await?;
    let start = Instant::now();
    let mut rx = vault.audience(&marketing, Some("email")).await?;
    let mut n = 0usize;
    while let Some(ids) = rx.recv().await {
        n += ids?.len();
    }
    anyhow::ensure!(n == expected, "the audience must hold exactly the consented customers");
    let elapsed = start.elapsed();
    println!(
        "{:<52} {:>12.0} ids/s {:>9.2} s total ({n} ids of {customers})",
        "audience marketing/email, in-process",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let token = vault.create_token("marketing_tool", "bench", None).await?.to_string();
    let app = candor::http::router(candor::http::AppState::new(vault, candor::install::http_settings(&config)?)?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let start = Instant::now();
    let mut resp = reqwest::Client::new()
        .get(format!("{url}/v1/consents/audience?channel=email"))
        .bearer_auth(&token)
        .header("Candor-Purpose", "marketing")
        .send()
        .await?
        .error_for_status()?;
    let (mut lines, mut bytes) = (0usize, 0usize);
    while let Some(chunk) = resp.chunk().await? {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    anyhow::ensure!(lines == expected, "the HTTP audience must hold exactly the consented customers");
    let elapsed = start.elapsed();
    println!(
        "{:<52} {:>12.0} ids/s {:>9.2} s total ({:.1} MB streamed)",
        "GET /v1/consents/audience?channel=email (HTTP)",
        lines as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        bytes as f64 / 1e6
    );
    server.abort();
    Ok(())
}
