//! The installation config (`candor.toml`): where the catalog, database and keys are, and how
//! the server listens. Relative paths resolve against the config file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candor_crypto::kek::GCM_RANDOM_NONCE_LIMIT;
use serde::Deserialize;

pub use candor_http::settings::{BrandingSettings, ServerLimits, SignInConfig, WitnessEndpoint, WitnessSettings};

pub const DEFAULT_CONFIG: &str = "candor.toml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8750";
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Days staff and recipient request addresses are kept beside the log (a year: breaches are often found months late).
pub const DEFAULT_CALLER_ADDRESS_DAYS: u32 = 365;
/// The longest an unwrapped data key may be cached (`[keys] dek_cache_seconds`).
pub const MAX_DEK_CACHE_SECONDS: u64 = 300;
pub const DEFAULT_DEK_CACHE_ENTRIES: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `[server] trusted_proxies`: networks whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub max_body_bytes: usize,
    /// `[server]`: connection, request and database time limits.
    pub limits: ServerLimits,
    pub database: Database,
    /// File the catalog is read from (the config file itself when the catalog is inline).
    pub catalog_path: PathBuf,
    pub keys: KeySettings,
    pub log: LogSettings,
    /// How often the server deletes what the catalog's retention periods say is due (0: never;
    /// `candor retention run` does it on demand).
    pub retention_sweep_interval_seconds: u64,
    pub policy: PolicySettings,
    pub branding: BrandingSettings,
    pub sign_in: SignInConfig,
    /// `[staff]`: sign-in of people through the company's OpenID Connect provider (`None`: off).
    pub staff: Option<crate::staff::StaffConfig>,
    /// `[sharing] max_grant_days`: the longest a grant may run.
    pub max_grant_days: u32,
    pub webhooks: WebhookSettings,
}

pub const DEFAULT_HEADER_TIMEOUT_SECONDS: u64 = 60;
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: u64 = 30;
pub const DEFAULT_DATABASE_TIMEOUT_SECONDS: u64 = 5;

/// `[sharing]`: how notices reach recipients.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Owner-only file of `<recipient id> <secret>` lines (`candor recipients secret`).
    pub secrets_file: PathBuf,
    /// First retry after this long; each further retry waits twice as long (at most 6 hours).
    pub retry_base_ms: u64,
    /// `allow_private_webhook_targets`: webhooks may go to loopback, private and link-local
    /// addresses (off by default: a recipient's URL must not reach the operator's own network).
    pub allow_private_targets: bool,
}

pub const DEFAULT_ACCENT: &str = "#0b4f9c";

#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// The operator's own Cedar policies, on top of the catalog's (none by default).
    pub file: Option<PathBuf>,
    /// How long a break-glass override lasts.
    pub break_glass_minutes: u32,
    /// Most erasures one token may make in an hour (0: no limit): a brake on bulk destruction
    /// with a stolen token.
    pub erasures_per_hour: u32,
    /// Most restrictions one token may place in an hour (0: no limit).
    pub restrictions_per_hour: u32,
}

/// Default of `[policy] erasures_per_hour`.
pub const DEFAULT_ERASURES_PER_HOUR: u32 = 60;

/// Longest break-glass override the config may set.
pub const MAX_BREAK_GLASS_MINUTES: u32 = 240;

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// The log's name in checkpoints (C2SP origin line), e.g. `shop.example/candor-log`.
    pub origin: String,
    pub signing_key_file: PathBuf,
    /// How often a checkpoint is signed and kept while the log grows.
    pub checkpoint_interval_seconds: u64,
    /// Days the address of each staff or recipient request is kept beside the log (for
    /// `breach assess --ip-range`); 0: not recorded.
    pub caller_address_days: u32,
    /// Witnesses each new checkpoint is sent to (`[[log.witnesses]]`).
    pub witnesses: WitnessSettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    /// A `postgres://` URL (may carry a password: never printed).
    Postgres(String),
}

/// Environment variable that overrides `database` in the config.
pub const DATABASE_ENV: &str = "CANDOR_DATABASE_URL";

#[derive(Debug, Clone)]
pub struct KeySettings {
    pub kek_file: PathBuf,
    pub index_key_file: PathBuf,
    /// The key store: each customer's wrapped data key, apart from the data (SQLite
    /// installations; on PostgreSQL it is the `candor_keys` schema).
    pub key_store: PathBuf,
    /// The HSM holding the KEKs, when `provider = "pkcs11"`.
    pub pkcs11: Option<Pkcs11Settings>,
    /// Data keys one KEK version may wrap; it stops at 90% of this (NIST SP 800-38D: 2^32
    /// encryptions with random nonces, the default and the maximum).
    pub kek_wrap_limit: u64,
    /// How long an unwrapped data key may be kept in memory (0: not at all, the default), and
    /// how many at most: for HSMs and KMSs where each unwrap is a round trip.
    pub dek_cache_seconds: u64,
    pub dek_cache_entries: usize,
}

/// A PKCS#11 token holding the KEKs (`[keys] provider = "pkcs11"`).
#[derive(Debug, Clone)]
pub struct Pkcs11Settings {
    /// The vendor's PKCS#11 shared library.
    pub module: PathBuf,
    pub token_label: String,
    /// The user PIN, in an owner-only file (or `CANDOR_HSM_PIN`).
    pub pin_file: PathBuf,
}

#[derive(Deserialize)]
struct RawConfig {
    catalog: Option<String>,
    database: Option<String>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    keys: RawKeys,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    privacy_center: RawPrivacyCenter,
    #[serde(default)]
    sharing: RawSharing,
    staff: Option<crate::staff::RawStaff>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSharing {
    max_grant_days: Option<u32>,
    webhook_secrets: Option<String>,
    webhook_retry_base_ms: Option<u64>,
    allow_private_webhook_targets: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPrivacyCenter {
    name: Option<String>,
    accent_colour: Option<String>,
    logo: Option<String>,
    public_url: Option<String>,
    link_minutes: Option<u32>,
    session_idle_minutes: Option<u32>,
    sign_in_attempts_per_minute: Option<u32>,
    link_senders: Option<Vec<String>>,
}

/// A `[privacy_center]` number within `range`, or its default.
fn minutes(
    path: &Path,
    name: &str,
    value: Option<u32>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(&v) => Ok(v),
        Some(v) => {
            bail!("{}: privacy_center.{name} = {v}: must be {} to {}", path.display(), range.start(), range.end())
        }
    }
}

fn public_url(path: &Path, url: Option<String>) -> Result<Option<String>> {
    let Some(url) = url.map(|u| u.trim().trim_end_matches('/').to_string()).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && host.chars().all(|c| c.is_ascii_graphic() && c != '?' && c != '#') => {
            Ok(Some(url))
        }
        _ => bail!(
            "{}: privacy_center.public_url `{url}` must be an http:// or https:// address such as https://privacy.shop.example",
            path.display()
        ),
    }
}

/// Relative luminance of an sRGB `#rrggbb` colour (WCAG 2.x), or `None` if malformed.
fn luminance(hex: &str) -> Option<f64> {
    let h = hex.strip_prefix('#').filter(|h| h.len() == 6 && h.chars().all(|c| c.is_ascii_hexdigit()))?;
    let channel = |i: usize| {
        let c = f64::from(u8::from_str_radix(&h[i..i + 2], 16).ok()?) / 255.0;
        Some(if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) })
    };
    Some(0.2126 * channel(0)? + 0.7152 * channel(2)? + 0.0722 * channel(4)?)
}

/// Contrast ratio of `hex` against white, or `None` if malformed.
pub fn contrast_with_white(hex: &str) -> Option<f64> {
    luminance(hex).map(|l| 1.05 / (l + 0.05))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    file: Option<String>,
    break_glass_minutes: Option<u32>,
    erasures_per_hour: Option<u32>,
    restrictions_per_hour: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    sweep_interval_seconds: Option<u64>,
}

/// `[[log.witnesses]]` and `[log] witnesses_required` (default: all of them).
fn witness_settings(path: &Path, raw: Vec<RawWitness>, required: Option<usize>) -> Result<WitnessSettings> {
    let mut witnesses: Vec<WitnessEndpoint> = Vec::new();
    for (i, w) in raw.into_iter().enumerate() {
        let key = candor_log::witness::CosignerKey::parse(&w.key).map_err(|e| {
            anyhow::anyhow!(
                "{}: log.witnesses[{i}].key is not a witness verifier key (name+id+base64, as `candor witness serve` prints it): {e}",
                path.display()
            )
        })?;
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            bail!("{}: log.witnesses[{i}].url `{}` must start with http:// or https://", path.display(), w.url);
        }
        if witnesses.iter().any(|o| o.key.name == key.name) {
            bail!("{}: log.witnesses[{i}]: the witness `{}` is listed twice", path.display(), key.name);
        }
        witnesses.push(WitnessEndpoint { url: w.url, key });
    }
    let required = required.unwrap_or(witnesses.len());
    if required > witnesses.len() {
        bail!(
            "{}: log.witnesses_required is {required}, but only {} witness(es) are listed in [[log.witnesses]]",
            path.display(),
            witnesses.len()
        );
    }
    if required == 0 && !witnesses.is_empty() {
        bail!("{}: log.witnesses_required must be at least 1 when witnesses are listed", path.display());
    }
    Ok(WitnessSettings { witnesses, required })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    origin: Option<String>,
    signing_key_file: Option<String>,
    checkpoint_interval_seconds: Option<u64>,
    caller_address_days: Option<u32>,
    #[serde(default)]
    witnesses: Vec<RawWitness>,
    witnesses_required: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitness {
    url: String,
    key: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    max_body_bytes: Option<usize>,
    trusted_proxies: Option<Vec<String>>,
    max_connections: Option<usize>,
    header_timeout_seconds: Option<u64>,
    request_timeout_seconds: Option<u64>,
    database_timeout_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    kek_file: Option<String>,
    index_key_file: Option<String>,
    key_store: Option<String>,
    provider: Option<String>,
    pkcs11: Option<RawPkcs11>,
    kek_wrap_limit: Option<u64>,
    dek_cache_seconds: Option<u64>,
    dek_cache_entries: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPkcs11 {
    module: String,
    token_label: String,
    pin_file: Option<String>,
}

impl Config {
    /// Reads and resolves the config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the config file {} (run `candor init` to create one, or pass --config)",
                path.display()
            )
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message().trim())
        })?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() { p.to_path_buf() } else { dir.join(p) }
        };
        let listen_text = raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text.parse().with_context(|| {
            format!("{}: server.listen `{listen_text}` is not an address like 127.0.0.1:8750", path.display())
        })?;
        let from_env = std::env::var(DATABASE_ENV).ok().filter(|v| !v.is_empty());
        let database = match from_env.as_deref().or(raw.database.as_deref()) {
            None => bail!(
                "{}: `database` is missing; set it to a SQLite file (database = \"data/candor.db\") or a postgres:// URL",
                path.display()
            ),
            Some(d) if d.starts_with("postgres://") || d.starts_with("postgresql://") => {
                Database::Postgres(d.to_string())
            }
            Some(d) => Database::Sqlite(resolve(d.strip_prefix("sqlite:").unwrap_or(d))),
        };
        let mut trusted_proxies = Vec::new();
        for text in raw.server.trusted_proxies.iter().flatten() {
            let net = parse_network(text).with_context(|| {
                format!(
                    "{}: server.trusted_proxies: `{text}` is not an address or network like 10.0.0.0/8",
                    path.display()
                )
            })?;
            trusted_proxies.push(net);
        }
        Ok(Config {
            listen,
            trusted_proxies,
            max_body_bytes: raw.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            limits: {
                let seconds = |name: &str, value: Option<u64>, default: u64| -> Result<std::time::Duration> {
                    match value.unwrap_or(default) {
                        0 => bail!("{}: [server] {name} must be at least 1", path.display()),
                        n => Ok(std::time::Duration::from_secs(n)),
                    }
                };
                let limits = ServerLimits {
                    max_connections: match raw.server.max_connections {
                        Some(0) => bail!("{}: [server] max_connections must be at least 1", path.display()),
                        n => n,
                    },
                    header_timeout: seconds(
                        "header_timeout_seconds",
                        raw.server.header_timeout_seconds,
                        DEFAULT_HEADER_TIMEOUT_SECONDS,
                    )?,
                    request_timeout: seconds(
                        "request_timeout_seconds",
                        raw.server.request_timeout_seconds,
                        DEFAULT_REQUEST_TIMEOUT_SECONDS,
                    )?,
                    database_timeout: seconds(
                        "database_timeout_seconds",
                        raw.server.database_timeout_seconds,
                        DEFAULT_DATABASE_TIMEOUT_SECONDS,
                    )?,
                };
                if limits.database_timeout > limits.request_timeout {
                    bail!(
                        "{}: [server] database_timeout_seconds ({}) must not be longer than request_timeout_seconds ({})",
                        path.display(),
                        limits.database_timeout.as_secs(),
                        limits.request_timeout.as_secs()
                    );
                }
                limits
            },
            database,
            catalog_path: raw.catalog.as_deref().map_or_else(|| path.to_path_buf(), resolve),
            keys: KeySettings {
                kek_file: resolve(raw.keys.kek_file.as_deref().unwrap_or("keys/kek.key")),
                index_key_file: resolve(raw.keys.index_key_file.as_deref().unwrap_or("keys/index.key")),
                key_store: resolve(raw.keys.key_store.as_deref().unwrap_or("keys/keystore.db")),
                kek_wrap_limit: match raw.keys.kek_wrap_limit {
                    None => GCM_RANDOM_NONCE_LIMIT,
                    Some(n) if (1..=GCM_RANDOM_NONCE_LIMIT).contains(&n) => n,
                    Some(n) => bail!(
                        "{}: [keys] kek_wrap_limit = {n} is out of range: 1 to {GCM_RANDOM_NONCE_LIMIT} (2^32, the NIST \
                         SP 800-38D limit for random nonces)",
                        path.display()
                    ),
                },
                dek_cache_seconds: match raw.keys.dek_cache_seconds.unwrap_or(0) {
                    n if n <= MAX_DEK_CACHE_SECONDS => n,
                    n => bail!(
                        "{}: [keys] dek_cache_seconds = {n} is too long: keep unwrapped data keys at most \
                         {MAX_DEK_CACHE_SECONDS} seconds (0 keeps none)",
                        path.display()
                    ),
                },
                dek_cache_entries: raw.keys.dek_cache_entries.unwrap_or(DEFAULT_DEK_CACHE_ENTRIES),
                pkcs11: match (raw.keys.provider.as_deref().unwrap_or("file"), raw.keys.pkcs11) {
                    ("file", _) => None,
                    ("pkcs11", Some(p)) => Some(Pkcs11Settings {
                        module: resolve(&p.module),
                        token_label: p.token_label,
                        pin_file: resolve(p.pin_file.as_deref().unwrap_or("keys/hsm.pin")),
                    }),
                    ("pkcs11", None) => bail!(
                        "{}: [keys] provider = \"pkcs11\" needs a [keys.pkcs11] section with `module` (the \
                         PKCS#11 library) and `token_label`",
                        path.display()
                    ),
                    (other, _) => bail!(
                        "{}: [keys] provider = \"{other}\" is not known; use \"file\" (the key file or \
                         CANDOR_KEK) or \"pkcs11\" (an HSM)",
                        path.display()
                    ),
                },
            },
            log: LogSettings {
                origin: match raw.log.origin {
                    Some(o) if is_origin(&o) => o,
                    Some(o) => bail!(
                        "{}: log.origin `{o}` must be one line of printable text without spaces, such as shop.example/candor-log",
                        path.display()
                    ),
                    None => "candor/log".to_string(),
                },
                signing_key_file: resolve(raw.log.signing_key_file.as_deref().unwrap_or("keys/log.key")),
                checkpoint_interval_seconds: raw.log.checkpoint_interval_seconds.unwrap_or(60).max(1),
                caller_address_days: raw.log.caller_address_days.unwrap_or(DEFAULT_CALLER_ADDRESS_DAYS),
                witnesses: witness_settings(path, raw.log.witnesses, raw.log.witnesses_required)?,
            },
            retention_sweep_interval_seconds: raw.retention.sweep_interval_seconds.unwrap_or(3600),
            branding: BrandingSettings {
                name: raw.privacy_center.name.filter(|n| !n.trim().is_empty()),
                accent_colour: {
                    let accent = raw.privacy_center.accent_colour.unwrap_or_else(|| DEFAULT_ACCENT.to_string());
                    match contrast_with_white(&accent) {
                        None => {
                            bail!("{}: privacy_center.accent_colour `{accent}` must be written #rrggbb", path.display())
                        }
                        Some(ratio) if ratio < 4.5 => bail!(
                            "{}: privacy_center.accent_colour `{accent}` has a contrast of {ratio:.1}:1 against white; \
                             links and buttons need at least 4.5:1 (WCAG 2.2 AA). Choose a darker colour",
                            path.display()
                        ),
                        Some(_) => accent.to_ascii_lowercase(),
                    }
                },
                logo: raw.privacy_center.logo.as_deref().map(resolve),
            },
            max_grant_days: match raw.sharing.max_grant_days {
                None => 30,
                Some(d @ 1..=365) => d,
                Some(d) => bail!("{}: sharing.max_grant_days = {d}: a grant runs 1 to 365 days", path.display()),
            },
            webhooks: WebhookSettings {
                secrets_file: resolve(raw.sharing.webhook_secrets.as_deref().unwrap_or("keys/webhook-secrets.txt")),
                retry_base_ms: match raw.sharing.webhook_retry_base_ms {
                    None => 30_000,
                    Some(ms @ 100..=3_600_000) => ms,
                    Some(ms) => {
                        bail!("{}: sharing.webhook_retry_base_ms = {ms}: must be 100 to 3600000", path.display())
                    }
                },
                allow_private_targets: raw.sharing.allow_private_webhook_targets.unwrap_or(false),
            },
            staff: crate::staff::StaffConfig::from_raw(raw.staff, path, resolve)?,
            sign_in: SignInConfig {
                public_url: public_url(path, raw.privacy_center.public_url)?,
                settings: crate::vault::SignInSettings {
                    link_minutes: minutes(path, "link_minutes", raw.privacy_center.link_minutes, 15, 1..=60)?,
                    idle_minutes: minutes(
                        path,
                        "session_idle_minutes",
                        raw.privacy_center.session_idle_minutes,
                        20,
                        5..=120,
                    )?,
                    link_senders: raw.privacy_center.link_senders,
                },
                attempts_per_minute: minutes(
                    path,
                    "sign_in_attempts_per_minute",
                    raw.privacy_center.sign_in_attempts_per_minute,
                    10,
                    1..=1000,
                )?,
            },
            policy: PolicySettings {
                file: raw.policy.file.as_deref().map(resolve),
                break_glass_minutes: match raw.policy.break_glass_minutes {
                    None => 15,
                    Some(m @ 1..=MAX_BREAK_GLASS_MINUTES) => m,
                    Some(m) => bail!(
                        "{}: policy.break_glass_minutes = {m}: an override lasts 1 to {MAX_BREAK_GLASS_MINUTES} minutes",
                        path.display()
                    ),
                },
                erasures_per_hour: raw.policy.erasures_per_hour.unwrap_or(DEFAULT_ERASURES_PER_HOUR),
                restrictions_per_hour: raw.policy.restrictions_per_hour.unwrap_or(DEFAULT_ERASURES_PER_HOUR),
            },
        })
    }
}

fn is_origin(o: &str) -> bool {
    !o.is_empty() && o.len() <= 200 && o.chars().all(|c| c.is_ascii_graphic())
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    (before.matches('\n').count() + 1, before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1)
}

/// The `candor.toml` that `candor init` writes.
pub fn initial_config_text(log_origin: &str, database: &str) -> String {
    format!(
        r#"# Candor installation config. Relative paths resolve against this file's directory.

# The catalog (data map): every field, purpose, retention, recipient and role.
# Check it with `candor catalog check`.
catalog = "catalog.toml"

# The database: a SQLite file (embedded default) or a postgres:// URL.
# CANDOR_DATABASE_URL, when set, overrides it.
database = "{database}"

[server]
listen = "{DEFAULT_LISTEN}"
max_body_bytes = {DEFAULT_MAX_BODY_BYTES}
# Proxies in front of Candor (addresses or networks) whose X-Forwarded-For names the client.
# Leave empty when clients connect directly: the header is then ignored, so no one can choose
# the address their requests are recorded and rate-limited under.
trusted_proxies = []
# Open client connections at most (default 4096, lowered to fit the open-file limit). When
# full, the least recently active idle connections are closed to make room.
# max_connections = 4096
# A connection that has not sent a complete request head within this many seconds after it
# opened, or after its previous answer, is closed (slow senders and idle keep-alive alike).
header_timeout_seconds = {DEFAULT_HEADER_TIMEOUT_SECONDS}
# A request not answered within this many seconds gets 503 `timeout`.
request_timeout_seconds = {DEFAULT_REQUEST_TIMEOUT_SECONDS}
# A request that has waited this long while the database does not answer gets 503
# `database_unavailable` (it says whether a change may have been made; see Idempotency-Key).
database_timeout_seconds = {DEFAULT_DATABASE_TIMEOUT_SECONDS}

[keys]
# Key-encryption keys and the blind-index key: files readable only by their owner (0600).
# CANDOR_KEK and CANDOR_INDEX_KEY, when set, are used instead (same text format).
kek_file = "keys/kek.key"
index_key_file = "keys/index.key"
# Each customer's wrapped data key, in a SQLite file apart from the data (on PostgreSQL: the
# candor_keys schema). Erasing a customer destroys their key here, so back this file up
# separately and keep its backups short-lived: an old copy of the data is unreadable without it.
key_store = "keys/keystore.db"
# Where the key-encryption keys live: "file" (kek_file above, or CANDOR_KEK) or "pkcs11" (an HSM:
# keys are generated inside it and never leave it). Moving to an HSM: set "pkcs11", run
# `candor keys rotate` (the new version is created in the token), restart, `candor keys rewrap`,
# then `candor keys retire` the old file versions.
provider = "file"
# Data keys one KEK version may wrap (each wrap draws a random 96-bit nonce; NIST SP 800-38D
# allows 2^32 per key). A KEK stops wrapping at 90% of this: new customers are then refused
# (503 key_rotation_required) until it is rotated; `candor keys status` shows the use.
kek_wrap_limit = 4294967296
# Unwrapped data keys kept in memory for this many seconds (at most 300), at most
# dek_cache_entries of them, wiped when they leave. 0 (the default) keeps none: every request
# unwraps. Worth a few seconds only when each unwrap is a round trip (a network HSM).
dek_cache_seconds = 0
dek_cache_entries = {DEFAULT_DEK_CACHE_ENTRIES}
# [keys.pkcs11]
# module = "/usr/lib/softhsm/libsofthsm2.so"  # the vendor's PKCS#11 library
# token_label = "candor"
# pin_file = "keys/hsm.pin"                   # the user PIN, owner-only; or CANDOR_HSM_PIN

[log]
# The tamper-evident log's name in its signed checkpoints. Set it to something that
# identifies your installation (e.g. your domain + /candor-log) before publishing checkpoints.
origin = "{log_origin}"
# Ed25519 key that signs checkpoints (owner-only file; or CANDOR_LOG_KEY).
signing_key_file = "keys/log.key"
checkpoint_interval_seconds = 60
# The network address of each staff or recipient request is kept beside the log (not in its
# entries) for this many days, so `candor breach assess --ip-range` can answer "what did requests
# from these addresses read?"; 0: never recorded. Customers' own privacy-center visits never are.
caller_address_days = {DEFAULT_CALLER_ADDRESS_DAYS}
# Witnesses (C2SP tlog-witness, e.g. `candor witness serve` run by a partner or an auditor)
# cosign each new checkpoint after checking it extends what they cosigned before, so nobody
# can be shown a different log. GET /v1/log/checkpoint/cosigned serves the cosigned checkpoint.
# witnesses_required = 1          # cosignatures needed (default: every listed witness)
# [[log.witnesses]]
# url = "https://witness.example"  # its submission prefix
# key = "witness.example/w1+0123abcd+BA…"  # the key `candor witness serve` prints

[retention]
# Values and events whose retention period (in the catalog) has passed are deleted this often
# (0: only by `candor retention run`). Customers under a legal hold are skipped.
sweep_interval_seconds = 3600

[privacy_center]
# How the customer-facing pages (/privacy) look. The name defaults to the catalog's organisation.
# The accent colour needs 4.5:1 contrast against white (checked at start-up).
# name = "Example Shop"
accent_colour = "{DEFAULT_ACCENT}"
# A logo shown beside the name: png, svg, jpg or webp, at most 256 KiB.
# logo = "branding/logo.svg"
# The address customers reach the privacy center at; sign-in links start with it, and with
# https:// the session cookie is marked Secure. Unset: links use this server's listen address.
# public_url = "https://privacy.shop.example"
# One-time sign-in links (POST /v1/subjects/{{id}}/privacy-center-links) work once, for this long
# (1 to 60 minutes); a session ends after this long without activity (5 to 120) or after 12 hours.
link_minutes = 15
session_idle_minutes = 20
# The roles that receive sign-in links to send them to the customer (the operator's own mailer).
# A link signs its holder in as the customer, so no other role gets one: a person on the staff
# can never become the customer. Unset: every role under a customer_requests purpose does.
link_senders = ["shop_backend"]
# Sign-in attempts and message-code checks allowed per client address per minute (beyond: 429).
sign_in_attempts_per_minute = 10

[sharing]
# Grants (POST /v1/grants) let a recipient read named fields of named customers until they
# expire; the expiry is required and at most this many days ahead (1 to 365).
max_grant_days = 30
# Erasures, corrections and restrictions are announced to every recipient that was given the
# customer's data, as signed webhooks (recipient webhook_url in the catalog), retried with
# growing waits until delivered. Secrets: `candor recipients secret RECIPIENT` writes them here.
webhook_secrets = "keys/webhook-secrets.txt"
webhook_retry_base_ms = 30000
# Webhooks go only to public addresses: a webhook_url that is (or resolves to) a loopback,
# private or link-local address is refused, redirects are never followed. Allow private
# targets only when recipients really are on your own network.
allow_private_webhook_targets = false

[policy]
# Your own Cedar policies on top of the catalog's (validated at start-up against Candor's
# schema; see `candor policy explain` and `candor policy test`). Uncomment to use:
# file = "policies.cedar"
# How long a break-glass override lasts (1 to 240 minutes). Roles with break_glass = true in the
# catalog may open one for one customer, with a written reason; it is logged and shown to them.
break_glass_minutes = 15
# Most customers one token may erase in an hour (per server; 0 = no limit). Erasure cannot be
# undone: this brake stops a stolen token of an erasing role from wiping the customer base.
erasures_per_hour = {DEFAULT_ERASURES_PER_HOUR}
# The same brake on restrictions (any role may restrict a customer; restricting everyone would
# stop all processing).
restrictions_per_hour = {DEFAULT_ERASURES_PER_HOUR}
"#
    )
}

/// A network in CIDR form (`10.0.0.0/8`) or a single address (`203.0.113.7`, a /32 or /128).
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_cidr_or_single_addresses() {
        assert_eq!(parse_network("10.0.0.0/8"), Some("10.0.0.0/8".parse().unwrap()));
        assert_eq!(parse_network(" 203.0.113.7 "), Some("203.0.113.7/32".parse().unwrap()));
        assert_eq!(parse_network("2001:db8::/32").map(|n| n.prefix_len()), Some(32));
        assert_eq!(parse_network("10.0.0.0/33"), None);
        assert_eq!(parse_network("intranet"), None);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let c = Config::parse(
            &initial_config_text("shop.example/candor-log", "data/candor.db"),
            Path::new("/srv/candor/candor.toml"),
        )
        .unwrap();
        assert_eq!(c.database, Database::Sqlite("/srv/candor/data/candor.db".into()));
        assert_eq!(c.catalog_path, Path::new("/srv/candor/catalog.toml"));
        assert_eq!(c.keys.kek_file, Path::new("/srv/candor/keys/kek.key"));
        assert_eq!(c.keys.key_store, Path::new("/srv/candor/keys/keystore.db"));
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.log.origin, "shop.example/candor-log");
        assert_eq!(c.log.signing_key_file, Path::new("/srv/candor/keys/log.key"));
    }

    #[test]
    fn an_inline_catalog_is_read_from_the_config_itself() {
        let c = Config::parse("database = \"/tmp/x.db\"\n[organisation]\nname = \"x\"\n", Path::new("c.toml")).unwrap();
        assert_eq!(c.catalog_path, Path::new("c.toml"));
    }

    #[test]
    fn sign_in_settings_have_safe_defaults_and_bounds() {
        let cfg = |extra: &str| {
            Config::parse(&format!("database = \"x.db\"\n[privacy_center]\n{extra}\n"), Path::new("c.toml"))
        };
        let c = cfg("").unwrap();
        assert_eq!((c.sign_in.settings.link_minutes, c.sign_in.settings.idle_minutes), (15, 20));
        assert!(!c.sign_in.secure());
        let c = cfg("public_url = \"https://privacy.shop.example/\"\nlink_minutes = 5").unwrap();
        assert_eq!(c.sign_in.public_url.as_deref(), Some("https://privacy.shop.example"));
        assert!(c.sign_in.secure());
        assert_eq!(c.sign_in.settings.link_minutes, 5);
        let e = cfg("link_minutes = 600").unwrap_err().to_string();
        assert!(e.contains("privacy_center.link_minutes = 600") && e.contains("1 to 60"), "{e}");
        assert!(cfg("session_idle_minutes = 1").is_err());
        let e = cfg("public_url = \"privacy.shop.example\"").unwrap_err().to_string();
        assert!(e.contains("public_url") && e.contains("https://"), "{e}");
    }

    #[test]
    fn witnesses_need_a_witness_key_a_url_and_a_reachable_quorum() {
        let key = |name: &str| candor_log::witness::CosignerKey::new(name, [3u8; 32]).to_text();
        let cfg = |log: &str| Config::parse(&format!("database = \"x.db\"\n[log]\n{log}\n"), Path::new("c.toml"));
        let two = format!(
            "[[log.witnesses]]\nurl = \"http://127.0.0.1:1\"\nkey = \"{}\"\n[[log.witnesses]]\nurl = \"https://w2.example\"\nkey = \"{}\"",
            key("w1.example"),
            key("w2.example")
        );
        let c = cfg(&two).unwrap();
        assert_eq!((c.log.witnesses.witnesses.len(), c.log.witnesses.required), (2, 2));
        let c = cfg(&format!("witnesses_required = 1\n{two}")).unwrap();
        assert_eq!(c.log.witnesses.required, 1);
        assert!(cfg("").unwrap().log.witnesses.witnesses.is_empty());
        let e = cfg(&format!("witnesses_required = 3\n{two}")).unwrap_err().to_string();
        assert!(e.contains("log.witnesses_required is 3"), "{e}");
        let e = cfg(&format!("witnesses_required = 0\n{two}")).unwrap_err().to_string();
        assert!(e.contains("at least 1"), "{e}");
        // A log key (type 0x01) where a witness key (0x04) belongs.
        let log_key = candor_log::note::VerifierKey::new("w1.example", [3u8; 32]).to_text();
        let e = cfg(&format!("[[log.witnesses]]\nurl = \"http://w\"\nkey = \"{log_key}\"")).unwrap_err().to_string();
        assert!(e.contains("log.witnesses[0].key"), "{e}");
        let e = cfg(&format!("[[log.witnesses]]\nurl = \"w1.example\"\nkey = \"{}\"", key("w1.example")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.witnesses[0].url"), "{e}");
        let dup = format!(
            "[[log.witnesses]]\nurl = \"http://a\"\nkey = \"{k}\"\n[[log.witnesses]]\nurl = \"http://b\"\nkey = \"{k}\"",
            k = key("w1.example")
        );
        assert!(cfg(&dup).unwrap_err().to_string().contains("listed twice"));
    }

    #[test]
    fn the_accent_colour_must_be_readable_on_white() {
        assert!((contrast_with_white("#000000").unwrap() - 21.0).abs() < 0.01);
        assert!((contrast_with_white("#ffffff").unwrap() - 1.0).abs() < 0.01);
        assert!(contrast_with_white(DEFAULT_ACCENT).unwrap() >= 4.5);
        assert!(contrast_with_white("red").is_none());
        let cfg = |accent: &str| {
            Config::parse(
                &format!("database = \"x.db\"\n[privacy_center]\naccent_colour = \"{accent}\"\n"),
                Path::new("c.toml"),
            )
        };
        assert_eq!(cfg("#7A1F5C").unwrap().branding.accent_colour, "#7a1f5c");
        let e = cfg("#ffcc00").unwrap_err().to_string();
        assert!(e.contains("contrast of 1.") && e.contains("4.5:1"), "{e}");
        assert!(cfg("#12345").is_err());
    }

    #[test]
    fn unwrapped_data_keys_are_not_cached_unless_asked_and_never_long() {
        let cfg = |keys: &str| Config::parse(&format!("database = \"x.db\"\n[keys]\n{keys}\n"), Path::new("c.toml"));
        let c = cfg("").unwrap();
        assert_eq!((c.keys.dek_cache_seconds, c.keys.dek_cache_entries), (0, DEFAULT_DEK_CACHE_ENTRIES));
        assert_eq!(cfg("dek_cache_seconds = 5").unwrap().keys.dek_cache_seconds, 5);
        let e = cfg("dek_cache_seconds = 3600").unwrap_err().to_string();
        assert!(e.contains("dek_cache_seconds = 3600 is too long") && e.contains("300"), "{e}");
    }

    #[test]
    fn trusted_proxies_are_networks_or_addresses_and_addresses_are_kept_a_year_by_default() {
        let cfg = |proxies: &str| {
            Config::parse(&format!("database = \"x.db\"\n[server]\ntrusted_proxies = {proxies}\n"), Path::new("c.toml"))
        };
        let c = cfg(r#"["10.0.0.0/8", "192.0.2.1"]"#).unwrap();
        assert_eq!(
            c.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.0.0.0/8", "192.0.2.1/32"]
        );
        assert_eq!(c.log.caller_address_days, 365);
        let e = cfg(r#"["the load balancer"]"#).unwrap_err().to_string();
        assert!(e.contains("server.trusted_proxies: `the load balancer` is not an address or network"), "{e}");
        assert!(cfg("[]").unwrap().trusted_proxies.is_empty());
    }

    #[test]
    fn mistakes_are_reported_with_position() {
        let e =
            Config::parse("database = \"x.db\"\n[server]\nlisten = \"nowhere\"\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("server.listen"), "{e}");
        let e = Config::parse("database = \"x.db\"\n[server]\nlisen = \"1\"\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().starts_with("c.toml:3:1"), "{e}");
        let e = Config::parse("[server]\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("`database` is missing"), "{e}");
    }
}
