//! `candor doctor`: checks an installation for what is unsafe or broken and says how to fix it —
//! key files present and owner-only, data keys that need a KEK the ring does not hold, database
//! files not readable by others, TLS in front of the privacy center, keys in the environment.
//! Exit code 1 when anything fails.

use std::path::Path;

use anyhow::Result;
use candor_crypto::kek::{KekUsage, kek_usage};

use crate::config::{Config, Database};
use crate::install;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

pub struct Finding {
    pub level: Level,
    pub what: String,
}

fn finding(level: Level, what: impl Into<String>) -> Finding {
    Finding { level, what: what.into() }
}

/// Whether group or others may read `path` (`None`: it does not exist).
fn readable_by_others(path: &Path) -> Option<bool> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(meta.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Some(false)
    }
}

fn secret_file(findings: &mut Vec<Finding>, what: &str, path: &Path, required: bool) {
    match readable_by_others(path) {
        None if required => findings.push(finding(Level::Fail, format!("{what} {} is missing", path.display()))),
        None => findings.push(finding(Level::Ok, format!("{what}: none yet ({})", path.display()))),
        Some(true) => findings.push(finding(
            Level::Fail,
            format!("{what} {} can be read by group or others: run `chmod 600 {}`", path.display(), path.display()),
        )),
        Some(false) => findings.push(finding(Level::Ok, format!("{what} {} is owner-only", path.display()))),
    }
}

/// Whether a PostgreSQL URL carries a password (`postgres://user:secret@host/db`).
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let userinfo = rest.split(['/', '?']).next().unwrap_or("").rsplit_once('@').map(|(u, _)| u);
    userinfo.is_some_and(|u| u.contains(':')) || url.contains("password=")
}

/// Runs every check.
pub async fn check(config_path: &Path) -> Result<Vec<Finding>> {
    let mut f = Vec::new();
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return Ok(vec![finding(Level::Fail, format!("config: {e:#}"))]),
    };
    match install::load_catalog(&config) {
        Ok(c) => match install::load_policy(&config, &c) {
            Ok(_) => f.push(finding(Level::Ok, "catalog and policies are valid")),
            Err(e) => f.push(finding(Level::Fail, format!("policies: {e:#}"))),
        },
        Err(e) => f.push(finding(Level::Fail, format!("catalog: {e:#}"))),
    }
    for (var, what) in [(install::KEK_ENV, "key-encryption keys"), (install::INDEX_KEY_ENV, "blind-index key")] {
        if std::env::var_os(var).is_some() {
            f.push(finding(
                Level::Warn,
                format!("{what} come from {var}: processes of the same user can read the environment; prefer an owner-only file"),
            ));
        }
    }
    match &config.keys.pkcs11 {
        None if std::env::var_os(install::KEK_ENV).is_none() => {
            secret_file(&mut f, "KEK file", &config.keys.kek_file, true)
        }
        None => {}
        Some(hsm) => {
            f.push(finding(
                Level::Ok,
                format!("key-encryption keys are in PKCS#11 token `{}` ({})", hsm.token_label, hsm.module.display()),
            ));
            if std::env::var_os(install::HSM_PIN_ENV).is_some() {
                f.push(finding(
                    Level::Warn,
                    format!("the HSM PIN comes from {}: prefer the owner-only PIN file", install::HSM_PIN_ENV),
                ));
            } else {
                secret_file(&mut f, "HSM PIN file", &hsm.pin_file, true);
            }
            if config.keys.kek_file.exists() {
                secret_file(&mut f, "KEK file (older versions, until retired)", &config.keys.kek_file, false);
            }
        }
    }
    if std::env::var_os(install::INDEX_KEY_ENV).is_none() {
        secret_file(&mut f, "blind-index key file", &config.keys.index_key_file, true);
    }
    secret_file(&mut f, "log signing key", &config.log.signing_key_file, false);
    secret_file(&mut f, "webhook secrets", &config.webhooks.secrets_file, false);
    if let Database::Postgres(url) = &config.database {
        f.push(match postgres_host(url) {
            None => finding(Level::Ok, "PostgreSQL is on this machine (loopback or a Unix socket)"),
            Some(host) => finding(
                Level::Warn,
                format!(
                    "PostgreSQL at {host} is reached without TLS (Candor does not speak TLS to PostgreSQL yet): ids, \
                     log entries and the database password cross the network in clear (values stay encrypted); \
                     keep it on a private network or behind a tunnel (WireGuard, stunnel)"
                ),
            ),
        });
    }
    // The config may hold a database password; the SQLite files hold ids and times in clear.
    match readable_by_others(config_path) {
        Some(true) if matches!(&config.database, Database::Postgres(url) if url_has_password(url)) => f.push(finding(
            Level::Fail,
            format!(
                "config {} holds a database password and can be read by group or others: run `chmod 600 {}`",
                config_path.display(),
                config_path.display()
            ),
        )),
        Some(true) => f.push(finding(
            Level::Warn,
            format!(
                "config {} can be read by group or others: run `chmod 600 {}`",
                config_path.display(),
                config_path.display()
            ),
        )),
        _ => f.push(finding(Level::Ok, format!("config {} is owner-only", config_path.display()))),
    }
    if let Database::Sqlite(path) = &config.database {
        for (what, file) in [("database", path.as_path()), ("key store", config.keys.key_store.as_path())] {
            if let Some(dir) = file.parent().filter(|d| readable_by_others(d) == Some(true)) {
                f.push(finding(
                    Level::Fail,
                    format!(
                        "the {what}'s directory {} can be listed by group or others: run `chmod 700 {}`",
                        dir.display(),
                        dir.display()
                    ),
                ));
            }
            for suffix in ["", "-wal", "-shm"] {
                let mut name = file.as_os_str().to_owned();
                name.push(suffix);
                let p = std::path::PathBuf::from(name);
                if readable_by_others(&p) == Some(true) {
                    f.push(finding(
                        Level::Fail,
                        format!(
                            "{what} file {} can be read by group or others (values are encrypted, ids and times are not): run `chmod 600 {}`",
                            p.display(),
                            p.display()
                        ),
                    ));
                }
            }
        }
    }
    if let Some(net) = config.trusted_proxies.iter().find(|n| n.prefix_len() == 0) {
        f.push(finding(
            Level::Fail,
            format!(
                "[server] trusted_proxies holds {net}, which trusts every address: any client can choose the address \
                 it is rate-limited and recorded under; list only your proxies"
            ),
        ));
    }
    if config.sign_in.settings.link_senders.is_none() {
        f.push(finding(
            Level::Warn,
            "[privacy_center] link_senders is not set: every role under a customer_requests purpose receives \
             sign-in links, and a link signs its holder in as the customer; list only your mailer's role",
        ));
    }
    if config.log.caller_address_days == 0 {
        f.push(finding(
            Level::Warn,
            "[log] caller_address_days = 0: staff and recipient request addresses are not recorded, so \
             `candor breach assess --ip-range` cannot answer",
        ));
    }
    match (&config.sign_in.public_url, config.listen.ip().is_loopback()) {
        (Some(u), _) if u.starts_with("https://") => {
            f.push(finding(Level::Ok, "the privacy center is reached over TLS (public_url is https); cookies are Secure"))
        }
        (Some(u), _) => f.push(finding(
            Level::Fail,
            format!("public_url {u} is not https: sign-in links and session cookies would travel in clear text"),
        )),
        (None, true) => f.push(finding(
            Level::Warn,
            "no [privacy_center] public_url: fine on this machine; put TLS in front and set an https public_url before customers use it",
        )),
        (None, false) => f.push(finding(
            Level::Fail,
            format!("listening on {} without an https public_url: put a TLS proxy in front and set public_url", config.listen),
        )),
    }
    match (install::load_keys(&config), install::open_store(&config).await) {
        (Ok(ring), Ok(store)) => {
            let held = ring.kek_versions();
            for (v, n) in store.dek_counts().await? {
                if !held.contains(&v) {
                    f.push(finding(
                        Level::Fail,
                        format!("{n} data key(s) need kek v{v}, which the key ring does not hold"),
                    ));
                } else if v != ring.primary_kek_version() {
                    f.push(finding(
                        Level::Warn,
                        format!("{n} data key(s) still under kek v{v}: run `candor keys rewrap`"),
                    ));
                }
            }
            let index_primary = ring.primary_index_version();
            for (v, n) in store.index_counts().await? {
                if v != 0 && !ring.index_versions().contains(&v) {
                    f.push(finding(
                        Level::Fail,
                        format!("{n} lookup row(s) were made with index key v{v}, which the index key file does not hold: lookups miss these customers"),
                    ));
                } else if ring.needs_reindex(v) {
                    f.push(finding(
                        Level::Warn,
                        format!("{n} lookup row(s) not under index key v{index_primary}: run `candor keys reindex`"),
                    ));
                }
            }
            let primary = ring.primary_kek_version();
            let used = install::primary_wraps(store.as_ref(), primary).await?;
            let limit = config.keys.kek_wrap_limit;
            let budget = format!("kek v{primary} has wrapped {used} of the {limit} data keys it may wrap");
            f.push(match kek_usage(used, limit) {
                KekUsage::Fine => finding(Level::Ok, budget),
                KekUsage::RotateSoon => finding(Level::Warn, format!("{budget}: plan `candor keys rotate`")),
                KekUsage::Exhausted => finding(
                    Level::Fail,
                    format!("{budget}: it no longer wraps, new customers are refused; run `candor keys rotate`"),
                ),
            });
            f.push(finding(
                Level::Ok,
                format!(
                    "key ring holds kek {:?}; primary v{primary} in {}",
                    held,
                    ring.provider_of(primary).unwrap_or_default()
                ),
            ));
        }
        (Err(e), _) => f.push(finding(Level::Fail, format!("keys: {e:#}"))),
        (_, Err(e)) => f.push(finding(Level::Fail, format!("database: {e:#}"))),
    }
    Ok(f)
}

/// The host of a `postgres://` URL when it is another machine (`None`: loopback, a Unix socket,
/// or no host, which means the local socket). The URL may carry a password: only the host leaves.
fn postgres_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    // `?host=/run/postgresql` selects a socket directory.
    let query_host = rest
        .split_once('?')
        .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("host=")).map(str::to_string));
    let host = query_host.unwrap_or_else(|| host.to_string());
    let local = host.is_empty()
        || host.starts_with('/')
        || host.starts_with("%2F")
        || host == "localhost"
        || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
    (!local).then_some(host)
}

/// Prints the findings; `true` when nothing failed.
pub async fn run(config_path: &Path) -> Result<bool> {
    let findings = check(config_path).await?;
    for x in &findings {
        let tag = match x.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{tag}  {}", x.what);
    }
    Ok(findings.iter().all(|x| x.level != Level::Fail))
}

#[cfg(test)]
mod tests {
    use super::postgres_host;

    #[test]
    fn only_another_machine_s_host_is_named_and_never_the_password() {
        assert_eq!(postgres_host("postgres://postgres@127.0.0.1:5432/test"), None);
        assert_eq!(postgres_host("postgresql://u:secret@localhost/db"), None);
        assert_eq!(postgres_host("postgres://u@[::1]:5432/db"), None);
        assert_eq!(postgres_host("postgres:///db?host=/run/postgresql"), None);
        assert_eq!(postgres_host("postgres://u:s3cret@db.internal:5432/candor").as_deref(), Some("db.internal"));
        assert_eq!(postgres_host("postgres://u:p@10.0.0.5/candor?sslmode=disable").as_deref(), Some("10.0.0.5"));
    }
}
