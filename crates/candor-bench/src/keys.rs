//! `candor bench --keys N`: key rotation and breach assessment at scale. Seeds N customers (a
//! real installation; data keys wrapped by the real key ring, an e-mail address and a shipping
//! address sealed with each, the e-mail's lookup row — written straight into the SQLite files to
//! save time), a log of N staff reads, then measures `candor breach assess` over the whole log
//! (and its per-country count), `candor keys rewrap`'s work (DEKs/s, durable batches) and
//! `candor keys reindex` (lookup rows/s).

use std::time::Instant;

use anyhow::Result;
use candor_crypto::keyfile::{self, KEK_LABEL};
use candor_crypto::pkcs11::{self, SOFTHSM_MODULE};

use candor::breach::{Assessment, Filters, scan_log};
use candor::config::Database;
use candor::vault::Principal;
use candor::vault::audit::Audit;

pub async fn run(customers: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let done = candor::install::init(dir.path(), None).await?;
    let config = candor::config::Config::load(&done.config_path)?;
    let Database::Sqlite(db) = config.database.clone() else { anyhow::bail!("the key benchmark runs on SQLite") };
    let ring = candor::install::load_keys(&config)?;
    let seeding_ring = candor::install::load_keys(&config)?;
    let catalog = candor::install::load_catalog(&config)?;
    let start = Instant::now();
    let keys_path = config.keys.key_store.clone();
    let ids = tokio::task::spawn_blocking(move || -> Result<Vec<candor_core::SubjectId>> {
        let mut data = rusqlite::Connection::open(&db)?;
        let mut keys = rusqlite::Connection::open(&keys_path)?;
        data.pragma_update(None, "synchronous", "OFF")?;
        keys.pragma_update(None, "synchronous", "OFF")?;
        let (dt, kt) = (data.transaction()?, keys.transaction()?);
        let mut ids = Vec::with_capacity(customers);
        {
            let mut subject = dt.prepare("INSERT INTO subjects (id, created_at, updated_at) VALUES (?1, 0, 0)")?;
            let mut key = kt.prepare(
                "INSERT INTO subject_keys (subject_id, kek_version, dek_version, wrapped_dek, created_at) VALUES (?1, ?2, ?3, ?4, 0)",
            )?;
            let mut value =
                dt.prepare("INSERT INTO field_values (subject_no, field, ciphertext, updated_at) VALUES (?1, ?2, ?3, 0)")?;
            let mut index =
                dt.prepare("INSERT INTO blind_index (field, token, subject_no, key_version) VALUES (?1, ?2, ?3, ?4)")?;
            let (email, address) = (candor_core::FieldName::new("email"), candor_core::FieldName::new("shipping_address"));
            for n in 0..customers {
                let id = candor_core::SubjectId::random();
                let (subject_key, dek) = seeding_ring.new_subject_key(id)?;
                subject.execute([id.to_string()])?;
                // Values and index rows name the customer by their internal number.
                let no = dt.last_insert_rowid();
                key.execute(rusqlite::params![id.to_string(), dek.kek_version, dek.dek_version, dek.wrapped.as_bytes()])?;
                let mail = format!("customer{n}@example.com");
                let country = ["DE", "FR", "GB", "IE", "NL"][n % 7 % 5];
                let place = serde_json::json!({"street": format!("{n} Bench St"), "city": "Benchton", "country": country});
                for (field, plain) in [(&email, serde_json::to_vec(&mail)?), (&address, serde_json::to_vec(&place)?)] {
                    let sealed = subject_key.seal_field(field, &plain)?;
                    value.execute(rusqlite::params![no, field.as_str(), sealed.as_bytes()])?;
                }
                let token = seeding_ring.blind_index(&email, mail.as_bytes());
                index.execute(rusqlite::params!["email", token.as_bytes(), no, token.key_version()])?;
                ids.push(id);
            }
        }
        dt.commit()?;
        kt.commit()?;
        Ok(ids)
    })
    .await??;
    println!("-- keys and breach assessment: {customers} customers seeded in {:.1} s", start.elapsed().as_secs_f64());

    // A log of one staff read per customer, 1 in 100 by the "leaked" token.
    let store = candor::install::open_store(&config).await?;
    let start = Instant::now();
    let staff = Principal { token_id: "staff-token".into(), role: "support_agent".into(), origin: None };
    let leaked = Principal { token_id: "leaked-token".into(), role: "support_agent".into(), origin: None };
    for (n, chunk) in ids.chunks(10_000).enumerate() {
        let records = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let actor = if (n * 10_000 + i) % 100 == 0 { &leaked } else { &staff };
                Audit::new(actor, candor_log::Action::SubjectRead)
                    .purpose(&candor_core::PurposeId::new("customer_support"))
                    .subjects(&[*id])
                    .fields(["email", "full_name", "phone"])
                    .decision("masked")
                    .record_quiet()
            })
            .collect();
        store.append_log(records).await?;
    }
    println!("{:<52} {:>12.1} s", format!("log of {} reads written", ids.len()), start.elapsed().as_secs_f64());

    let start = Instant::now();
    let mut assessment = Assessment::default();
    let filters = Filters { token: Some("leaked-token".into()), ..Default::default() };
    scan_log(store.as_ref(), &catalog, &filters, &mut assessment).await?;
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{:<52} {:>12.2} s ({:.0} entries/s; {} customers found)",
        "breach assess --token (whole log)",
        elapsed,
        assessment.entries_scanned as f64 / elapsed,
        assessment.customers.len()
    );
    crate::scenarios::keep(serde_json::json!({
        "operation": "breach assess --token (whole log)", "log_entries": assessment.entries_scanned,
        "seconds": elapsed, "customers_found": assessment.customers.len(),
    }));
    let field = catalog.field("shipping_address").expect("the example catalog declares shipping_address");
    for (what, subjects) in [
        (
            "--countries-from, the leaked token's customers",
            assessment.customers.keys().filter_map(|s| candor_core::SubjectId::parse(s)).collect::<Vec<_>>(),
        ),
        ("--countries-from, every customer (a leaked KEK)", ids.clone()),
    ] {
        let start = Instant::now();
        let system = candor_vault::audit::system_actor();
        let counts = candor::breach::count_countries(
            store.as_ref(),
            &ring,
            field,
            &subjects,
            &system,
            &candor_vault::clock::SystemClock,
        )
        .await?;
        let elapsed = start.elapsed().as_secs_f64();
        println!(
            "{:<52} {:>12.2} s ({:.0} customers/s; {} countries)",
            format!("breach assess {what}"),
            elapsed,
            subjects.len() as f64 / elapsed,
            counts.len()
        );
        crate::scenarios::keep(serde_json::json!({
            "operation": format!("breach assess {what}"), "customers": subjects.len(), "seconds": elapsed,
            "customers_per_s": (subjects.len() as f64 / elapsed).round(),
        }));
    }

    keyfile::add_key_version(&config.keys.kek_file, KEK_LABEL)?;
    let ring = candor::install::load_keys(&config)?;
    let start = Instant::now();
    let (rewrapped, _) = candor::cli::keys::rewrap_all(store.as_ref(), &ring, 0, |_| {}).await?;
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{:<52} {:>12.0} DEKs/s ({rewrapped} in {elapsed:.1} s, durable batches of 500)",
        "keys rewrap (unwrap v1, wrap v2, conditional update)",
        rewrapped as f64 / elapsed
    );
    crate::scenarios::keep(serde_json::json!({
        "operation": "keys rewrap", "data_keys": rewrapped, "seconds": elapsed, "deks_per_s": (rewrapped as f64 / elapsed).round(),
    }));

    keyfile::add_key_version(&config.keys.index_key_file, keyfile::INDEX_LABEL)?;
    let ring = candor::install::load_keys(&config)?;
    let start = Instant::now();
    let reindexed = candor::cli::keys_index::reindex_all(store.as_ref(), &ring, &catalog, 0, |_| {}).await?;
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{:<52} {:>12.0} rows/s ({} in {elapsed:.1} s, durable batches of 500)",
        "keys reindex (decrypt, HMAC v2, conditional replace)",
        reindexed.done as f64 / elapsed,
        reindexed.done
    );
    crate::scenarios::keep(serde_json::json!({
        "operation": "keys reindex", "rows": reindexed.done, "seconds": elapsed,
        "rows_per_s": (reindexed.done as f64 / elapsed).round(),
    }));
    drop(store);
    hsm_rewrap(&done.config_path, dir.path())
}

/// The same installation moved into a SoftHSM2 token: `candor keys rotate` generates the next
/// KEK inside it and `candor keys rewrap` (a child process, so SoftHSM reads its own
/// `SOFTHSM2_CONF`) wraps every data key there. Skipped, saying so, without SoftHSM2.
fn hsm_rewrap(config_path: &std::path::Path, dir: &std::path::Path) -> Result<()> {
    use std::process::Command;
    if !pkcs11::softhsm_installed() {
        println!("keys rewrap into an HSM: skipped (SoftHSM2 is not installed: apt install softhsm2)");
        return Ok(());
    }
    // A throwaway token in the benchmark's temporary directory: its PIN protects nothing.
    let pin = "candor-bench-pin";
    let conf = pkcs11::init_softhsm_token(dir, "candor-bench", pin).map_err(anyhow::Error::msg)?;
    let pin_file = dir.join("keys").join("hsm.pin");
    std::fs::write(&pin_file, pin.as_bytes())?;
    std::fs::set_permissions(&pin_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let text = std::fs::read_to_string(config_path)?.replace("provider = \"file\"", "provider = \"pkcs11\"");
    std::fs::write(
        config_path,
        format!(
            "{text}\n[keys.pkcs11]\nmodule = \"{SOFTHSM_MODULE}\"\ntoken_label = \"candor-bench\"\npin_file = \"keys/hsm.pin\"\n"
        ),
    )?;
    let candor = |args: &[&str]| -> Result<String> {
        let out = Command::new(crate::candor_exe()?)
            .args(args)
            .arg("--config")
            .arg(config_path)
            .env("SOFTHSM2_CONF", &conf)
            .output()?;
        anyhow::ensure!(out.status.success(), "candor {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    candor(&["keys", "rotate"])?;
    let start = Instant::now();
    let out = candor(&["keys", "rewrap"])?;
    let elapsed = start.elapsed().as_secs_f64();
    let rewrapped: u64 = out.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    println!(
        "{:<52} {:>12.0} DEKs/s ({rewrapped} in {elapsed:.1} s, incl. process start and login)",
        "keys rewrap into SoftHSM2 (wrap inside the token)",
        rewrapped as f64 / elapsed
    );
    crate::scenarios::keep(serde_json::json!({
        "operation": "keys rewrap into SoftHSM2", "data_keys": rewrapped, "seconds": elapsed,
        "deks_per_s": (rewrapped as f64 / elapsed).round(),
    }));
    Ok(())
}
