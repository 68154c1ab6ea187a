//! What the HTTP layer needs to know of the installation's configuration, parsed and checked by
//! the binary's `config` module (`candor.toml`) and handed over in one [`Settings`].

use std::collections::HashMap;
use std::path::PathBuf;

use zeroize::Zeroizing;

/// `[server]`: how long the server waits, and how many connections it keeps open.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// `max_connections`: open client connections at most (lowered to fit the open-file limit).
    pub max_connections: Option<usize>,
    /// `header_timeout_seconds`: a connection that has not sent a complete request head this
    /// long after it opened or after its previous answer is closed (slow and idle alike).
    pub header_timeout: std::time::Duration,
    /// `request_timeout_seconds`: a request not answered by then gets `503 timeout`.
    pub request_timeout: std::time::Duration,
    /// `database_timeout_seconds`: a request waiting this long while the database does not
    /// answer gets `503 database_unavailable`.
    pub database_timeout: std::time::Duration,
}

/// `[privacy_center]`: where customers reach it and how signing in works.
#[derive(Debug, Clone)]
pub struct SignInConfig {
    /// The address customers use (`https://privacy.shop.example`), which sign-in links start
    /// with. When it is `https`, session cookies are marked `Secure`.
    pub public_url: Option<String>,
    pub settings: candor_vault::SignInSettings,
    /// Sign-in attempts allowed per client address per minute.
    pub attempts_per_minute: u32,
}

impl SignInConfig {
    /// Whether customers reach the server over TLS (a TLS-terminating proxy in front).
    pub fn secure(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}

/// `[privacy_center]`: how the customer-facing pages look.
#[derive(Debug, Clone)]
pub struct BrandingSettings {
    pub name: Option<String>,
    /// `#rrggbb`, with at least 4.5:1 contrast against white (WCAG 2.2 AA for text).
    pub accent_colour: String,
    pub logo: Option<PathBuf>,
}

/// The witnesses of the log and how many must cosign.
#[derive(Debug, Clone, Default)]
pub struct WitnessSettings {
    pub witnesses: Vec<WitnessEndpoint>,
    /// Cosignatures a checkpoint needs before it is served as cosigned (`[log] witnesses_required`).
    pub required: usize,
}

#[derive(Debug, Clone)]
pub struct WitnessEndpoint {
    /// Submission prefix: `add-checkpoint` is `<url>/add-checkpoint`.
    pub url: String,
    pub key: candor_log::witness::CosignerKey,
}

/// How one finding about the installation stands (as `candor doctor` prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingLevel {
    Ok,
    Warn,
    Fail,
}

/// What the installation says of itself: `candor doctor`'s findings and the key status.
#[derive(Debug, Clone, Default)]
pub struct InstallationHealth {
    pub findings: Vec<(FindingLevel, String)>,
    pub keys: Vec<String>,
}

/// The installation's own checks, for the staff console's accountability page: made by the
/// binary, which knows the configuration file and the key files; the HTTP layer only shows them.
/// They name files, key versions and counts, never a customer or a value.
pub trait InstallationReport: Send + Sync {
    fn health(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = InstallationHealth> + Send + '_>>;
}

/// Everything a server of this installation needs beyond its vault.
pub struct Settings {
    /// `[server] max_body_bytes`.
    pub max_body_bytes: usize,
    pub branding: BrandingSettings,
    pub sign_in: SignInConfig,
    /// Recipients' webhook secrets (`[sharing] webhook_secrets`), by recipient id.
    pub webhook_secrets: HashMap<String, Zeroizing<String>>,
    /// `[server] trusted_proxies`: whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Whether staff and recipient addresses are recorded beside the log (`[log]
    /// caller_address_days` > 0).
    pub record_callers: bool,
    pub limits: ServerLimits,
    /// Staff sign-in (`[staff]`), if set up.
    pub staff: Option<crate::identity::StaffConfig>,
    /// `[[log.witnesses]]`.
    pub witnesses: WitnessSettings,
}
