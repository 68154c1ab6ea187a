//! Staff identity: who a person is, as the company's OpenID Connect provider says.
//!
//! This module ends where authorization begins. It signs a person in (authorization code flow
//! with PKCE, `state` and `nonce`, the ID token's signature, issuer and audience checked by
//! `openidconnect`), derives their pseudonym (`candor_crypto::staff`) and turns the provider's
//! groups into exactly one catalog role (`[staff.roles]`). From then on the person is a
//! [`crate::vault::Principal`] like a token's holder — actor `staff:<pseudonym>` with that role —
//! and every decision is the catalog's and Cedar's (`vault/`), never this module's.

pub mod machine;
pub mod oidc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Deserialize;

/// The environment variable that, when set, holds the client secret instead of its file.
pub const CLIENT_SECRET_ENV: &str = "CANDOR_OIDC_CLIENT_SECRET";
/// The environment variable that, when set, holds the staff pseudonym key instead of its file.
pub const STAFF_KEY_ENV: &str = "CANDOR_STAFF_KEY";

/// `[staff]`, `[staff.oidc]` and `[staff.roles]` in `candor.toml`.
#[derive(Debug, Clone)]
pub struct StaffConfig {
    pub issuer: String,
    pub client_id: String,
    /// `client_secret_file` (owner-only), read at start-up unless [`CLIENT_SECRET_ENV`] is set.
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The ID-token claim holding the person's groups (a list of strings, or one string).
    pub roles_claim: String,
    /// Where the provider sends the browser back (registered there), if not
    /// `<public address>/console/callback`.
    pub redirect_url: Option<String>,
    /// IdP group -> catalog role.
    pub roles: BTreeMap<String, String>,
    /// `[staff.oidc] api_audience`: the `aud` of the provider's access tokens for Candor's API;
    /// `None`: services use Candor tokens only.
    pub api_audience: Option<String>,
    /// The access-token claim holding a service's roles (`roles` unless set).
    pub api_roles_claim: String,
    /// `[staff.clients]`: value of `api_roles_claim` -> catalog role, for services.
    pub clients: BTreeMap<String, String>,
    /// `[staff.require_mfa]`: powers a signed-in person uses only after a recent multi-factor
    /// sign-in (`None`: no such requirement).
    pub require_mfa: Option<MfaPolicy>,
    /// The pseudonym key file (owner-only; [`STAFF_KEY_ENV`] instead, if set).
    pub key_file: PathBuf,
    pub idle_minutes: u32,
    pub max_hours: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStaff {
    key_file: Option<String>,
    session_idle_minutes: Option<u32>,
    session_max_hours: Option<u32>,
    oidc: Option<RawOidc>,
    #[serde(default)]
    roles: BTreeMap<String, String>,
    #[serde(default)]
    clients: BTreeMap<String, String>,
    require_mfa: Option<RawMfa>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMfa {
    powers: Vec<String>,
    max_age_minutes: Option<u32>,
    amr: Option<Vec<String>>,
    acr: Option<Vec<String>>,
}

/// A power a role may hold that `[staff.require_mfa]` can guard, and the API calls that use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    BreakGlass,
    Erase,
    Export,
    Share,
    Audit,
    Manage,
}

impl Power {
    const ALL: [(&'static str, Power); 6] = [
        ("break_glass", Power::BreakGlass),
        ("erase", Power::Erase),
        ("export", Power::Export),
        ("share", Power::Share),
        ("audit", Power::Audit),
        ("manage", Power::Manage),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, p)| *p == self).map(|(n, _)| *n).unwrap_or("")
    }

    /// The power an API call uses, from its method and route (`None`: none guarded here).
    pub fn of_route(method: &str, route: &str) -> Option<Power> {
        Some(match (method, route) {
            ("POST", "/v1/subjects/{id}/break-glass" | "/console/customers/{id}/break-glass") => Power::BreakGlass,
            ("DELETE", "/v1/subjects/{id}") | ("POST", "/console/customers/{id}/erase") => Power::Erase,
            ("GET", "/v1/subjects/{id}/export") => Power::Export,
            ("POST", "/v1/grants") => Power::Share,
            ("GET", "/v1/log/entries") => Power::Audit,
            ("GET", "/v1/tokens") | ("DELETE", "/v1/tokens/{id}") => Power::Manage,
            _ => return None,
        })
    }
}

/// `[staff.require_mfa]`.
#[derive(Debug, Clone)]
pub struct MfaPolicy {
    pub powers: Vec<Power>,
    pub max_age_minutes: u32,
    /// `amr` values that mean a multi-factor sign-in (default `mfa`).
    pub amr: Vec<String>,
    /// `acr` values that mean one (also asked for, as `acr_values`, when re-authenticating).
    pub acr: Vec<String>,
}

impl MfaPolicy {
    /// Whether an ID token's `amr` and `acr` say the person signed in with more than one factor.
    pub fn multi_factor(&self, amr: &[String], acr: Option<&str>) -> bool {
        amr.iter().any(|m| self.amr.contains(m)) || acr.is_some_and(|a| self.acr.iter().any(|x| x == a))
    }

    /// Whether a session whose sign-in was `multi_factor` at `auth_time` (seconds, as the
    /// provider said) may use `power` at `now` (seconds, Candor's clock).
    pub fn allows(&self, power: Power, multi_factor: bool, auth_time: Option<i64>, now: i64) -> bool {
        if !self.powers.contains(&power) {
            return true;
        }
        let max = i64::from(self.max_age_minutes) * 60;
        multi_factor && auth_time.is_some_and(|t| t <= now + 60 && now - t <= max)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    client_secret_file: Option<String>,
    scopes: Option<Vec<String>>,
    roles_claim: Option<String>,
    redirect_url: Option<String>,
    api_audience: Option<String>,
    api_roles_claim: Option<String>,
}

impl StaffConfig {
    /// `[staff]` from the config file at `path`; `resolve` makes its paths absolute.
    pub fn from_raw(raw: Option<RawStaff>, path: &Path, resolve: impl Fn(&str) -> PathBuf) -> Result<Option<Self>> {
        let Some(raw) = raw else { return Ok(None) };
        let p = path.display();
        let Some(oidc) = raw.oidc else {
            bail!("{p}: [staff] needs a [staff.oidc] section (issuer, client_id) naming your identity provider");
        };
        let issuer = oidc.issuer.trim().to_string();
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            bail!(
                "{p}: staff.oidc.issuer `{issuer}` must be the provider's https:// address, exactly as its discovery document names it"
            );
        }
        if oidc.client_id.trim().is_empty() {
            bail!("{p}: staff.oidc.client_id is empty; use the client id the provider gave Candor");
        }
        if raw.roles.is_empty() {
            bail!(
                "{p}: [staff.roles] maps none of the provider's groups to a role, so nobody could sign in; add lines such as \"support\" = \"support_agent\""
            );
        }
        let mut scopes = oidc.scopes.unwrap_or_else(|| vec!["email".into(), "profile".into(), "groups".into()]);
        scopes.retain(|s| s != "openid");
        if let Some(bad) =
            scopes.iter().find(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\'))
        {
            bail!("{p}: staff.oidc.scopes: `{bad}` is not a scope name");
        }
        let redirect_url = match oidc.redirect_url.map(|u| u.trim().to_string()) {
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => Some(u),
            Some(u) => bail!("{p}: staff.oidc.redirect_url `{u}` must be an https:// address ending /console/callback"),
            None => None,
        };
        let api_audience = oidc.api_audience.map(|a| a.trim().to_string());
        match (&api_audience, raw.clients.is_empty()) {
            (Some(a), _) if a.is_empty() => bail!(
                "{p}: staff.oidc.api_audience is empty; use the audience the provider puts in access tokens for Candor's API"
            ),
            (Some(_), true) => bail!(
                "{p}: staff.oidc.api_audience is set but [staff.clients] maps no value to a role, so no service could call the API; add lines such as \"vault-writer\" = \"shop_backend\""
            ),
            (None, false) => bail!(
                "{p}: [staff.clients] needs staff.oidc.api_audience, the audience the provider puts in access tokens for Candor's API"
            ),
            _ => {}
        }
        let require_mfa = match raw.require_mfa {
            None => None,
            Some(m) => {
                let mut powers = Vec::new();
                for name in &m.powers {
                    if name == "staff_whois" || name == "whois" {
                        bail!(
                            "{p}: staff.require_mfa.powers: `{name}`: candor staff whois takes a Candor token (admin or an audit role), never a staff session; keep that token for auditors"
                        );
                    }
                    match Power::ALL.iter().find(|(n, _)| n == name) {
                        Some((_, power)) => powers.push(*power),
                        None => bail!(
                            "{p}: staff.require_mfa.powers: `{name}` is not a power; use some of {}",
                            Power::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                        ),
                    }
                }
                let max_age_minutes = m.max_age_minutes.unwrap_or(15);
                if !(1..=1440).contains(&max_age_minutes) {
                    bail!("{p}: staff.require_mfa.max_age_minutes = {max_age_minutes}: must be 1 to 1440");
                }
                let amr = m.amr.unwrap_or_else(|| vec!["mfa".into()]);
                let acr = m.acr.unwrap_or_default();
                if amr.is_empty() && acr.is_empty() {
                    bail!(
                        "{p}: staff.require_mfa: amr and acr are both empty, so no sign-in could count as multi-factor"
                    );
                }
                Some(MfaPolicy { powers, max_age_minutes, amr, acr })
            }
        };
        let range = |name: &str, v: Option<u32>, default: u32, r: std::ops::RangeInclusive<u32>| -> Result<u32> {
            match v.unwrap_or(default) {
                n if r.contains(&n) => Ok(n),
                n => bail!("{p}: staff.{name} = {n}: must be {} to {}", r.start(), r.end()),
            }
        };
        Ok(Some(StaffConfig {
            issuer,
            client_id: oidc.client_id.trim().to_string(),
            client_secret_file: oidc.client_secret_file.as_deref().map(&resolve),
            scopes,
            roles_claim: oidc.roles_claim.unwrap_or_else(|| "groups".into()),
            redirect_url,
            roles: raw.roles,
            api_audience,
            api_roles_claim: oidc.api_roles_claim.unwrap_or_else(|| "roles".into()),
            clients: raw.clients,
            require_mfa,
            key_file: resolve(raw.key_file.as_deref().unwrap_or("keys/staff.key")),
            idle_minutes: range("session_idle_minutes", raw.session_idle_minutes, 30, 1..=240)?,
            max_hours: range("session_max_hours", raw.session_max_hours, 10, 1..=24)?,
        }))
    }

    /// Staff sign-in given on the command line (`candor quickstart --staff-issuer`), held to
    /// the same rules as `[staff]` in `candor.toml`; `roles` are `GROUP=ROLE`. Files (the
    /// pseudonym key) are where that config would put them.
    pub fn from_arguments(config_path: &Path, issuer: &str, client_id: &str, roles: &[String]) -> Result<Self> {
        let quoted = |s: &str| toml::Value::String(s.trim().to_string()).to_string();
        let mut text = format!("[oidc]\nissuer = {}\nclient_id = {}\n[roles]\n", quoted(issuer), quoted(client_id));
        for pair in roles {
            let Some((group, role)) = pair.split_once('=') else {
                bail!("--staff-role `{pair}`: write GROUP=ROLE, for example support-team=support_agent");
            };
            text.push_str(&format!("{} = {}\n", quoted(group), quoted(role)));
        }
        let raw: RawStaff = toml::from_str(&text).map_err(|e| anyhow::anyhow!("--staff-role: {}", e.message()))?;
        let dir = config_path.parent().unwrap_or(Path::new("."));
        match Self::from_raw(Some(raw), Path::new("the command line"), |p| dir.join(p))? {
            Some(config) => Ok(config),
            None => bail!("--staff-issuer: no staff sign-in was given"),
        }
    }

    /// Checks `[staff.roles]` against the catalog: every role exists and may be held by a person.
    pub fn check_roles(&self, catalog: &candor_core::catalog::Catalog) -> Result<()> {
        use candor_core::catalog::{ADMIN_ROLE, CUSTOMER_ROLE, SYSTEM_ROLE};
        for (table, map) in [("staff.roles", &self.roles), ("staff.clients", &self.clients)] {
            for (group, role) in map {
                if role == CUSTOMER_ROLE || role == SYSTEM_ROLE || role == "public" {
                    bail!("[{table}] \"{group}\" = \"{role}\": `{role}` is reserved and cannot be given to staff");
                }
                if role != ADMIN_ROLE && !catalog.roles.iter().any(|r| r.id.as_str() == role) {
                    bail!("[{table}] \"{group}\" = \"{role}\": the catalog declares no role `{role}`");
                }
            }
        }
        Ok(())
    }

    /// The one role the person's groups map to, or why there is none.
    pub fn role_for(&self, groups: &[String]) -> Result<String, NoRole> {
        one_role(&self.roles, groups)
    }

    /// The one role a service's `api_roles_claim` values map to in `[staff.clients]`.
    pub fn client_role_for(&self, values: &[String]) -> Result<String, NoRole> {
        one_role(&self.clients, values)
    }
}

/// The one role `values` map to in `map`, or why there is none.
fn one_role(map: &BTreeMap<String, String>, values: &[String]) -> Result<String, NoRole> {
    let mut roles: Vec<&String> = values.iter().filter_map(|g| map.get(g)).collect();
    roles.sort();
    roles.dedup();
    match roles.as_slice() {
        [] => Err(NoRole::None),
        [one] => Ok((*one).clone()),
        many => Err(NoRole::Several(many.iter().map(|r| r.to_string()).collect())),
    }
}

/// Why a signed-in person gets no role.
#[derive(Debug, PartialEq, Eq)]
pub enum NoRole {
    /// None of their groups is mapped.
    None,
    /// Their groups map to several roles; a session acts in one.
    Several(Vec<String>),
}

/// The staff pseudonym key: the environment variable, or its owner-only file (created, like the
/// log key, the first time an installation is used with staff sign-in).
pub fn load_key(config: &StaffConfig) -> Result<candor_crypto::staff::StaffKey> {
    use candor_crypto::keyfile;
    use candor_crypto::staff::{STAFF_KEY_LABEL, StaffKey};
    let keys = match std::env::var(STAFF_KEY_ENV) {
        Ok(text) => keyfile::parse_keys(&zeroize::Zeroizing::new(text), STAFF_KEY_LABEL, STAFF_KEY_ENV)?,
        Err(_) => {
            if !config.key_file.exists() {
                keyfile::create_key_file(&config.key_file, STAFF_KEY_LABEL, STAFF_KEY_COMMENT)?;
                tracing::warn!(path = %config.key_file.display(), "generated the staff pseudonym key for this installation");
            }
            keyfile::read_key_file(&config.key_file, STAFF_KEY_LABEL)?
        }
    };
    Ok(StaffKey::new(&keys, &config.key_file.display().to_string())?)
}

const STAFF_KEY_COMMENT: &str = "Candor staff pseudonym key: turns an identity provider's issuer and subject into the\npseudonym the log names. Keep it secret, back it up, never replace it (every pseudonym would change),\nand give every server of the installation the same file.";

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<Option<StaffConfig>> {
        let text = format!(
            "[oidc]\nissuer = \"https://idp.example\"\nclient_id = \"candor\"\n[roles]\nsupport = \"support_agent\"\nprivacy = \"privacy_officer\"\n{extra}"
        );
        let raw: RawStaff = toml::from_str(&text).unwrap();
        StaffConfig::from_raw(Some(raw), Path::new("candor.toml"), |p: &str| PathBuf::from(p))
    }

    #[test]
    fn groups_map_to_exactly_one_role() {
        let c = config("").unwrap().unwrap();
        assert_eq!(c.role_for(&["x".into(), "support".into()]), Ok("support_agent".into()));
        assert_eq!(c.role_for(&["x".into()]), Err(NoRole::None));
        assert_eq!(
            c.role_for(&["support".into(), "privacy".into()]),
            Err(NoRole::Several(vec!["privacy_officer".into(), "support_agent".into()]))
        );
        assert_eq!((c.idle_minutes, c.max_hours, c.roles_claim.as_str()), (30, 10, "groups"));
        assert!(!c.scopes.contains(&"openid".to_string()));
        assert_eq!((c.api_audience.as_deref(), c.api_roles_claim.as_str()), (None, "roles"));
    }

    #[test]
    fn stronger_powers_need_a_recent_multi_factor_sign_in() {
        let c = config("[require_mfa]\npowers = [\"break_glass\", \"erase\"]\nmax_age_minutes = 10\nacr = [\"gold\"]")
            .unwrap()
            .unwrap();
        let m = c.require_mfa.unwrap();
        assert!(m.multi_factor(&["pwd".into(), "mfa".into()], None));
        assert!(m.multi_factor(&["pwd".into()], Some("gold")));
        assert!(!m.multi_factor(&["pwd".into(), "otp".into()], Some("silver")), "only the configured values count");
        let now = 100_000;
        assert!(m.allows(Power::BreakGlass, true, Some(now - 600), now));
        assert!(!m.allows(Power::BreakGlass, true, Some(now - 601), now), "too long ago");
        assert!(!m.allows(Power::BreakGlass, true, None, now), "no auth_time");
        assert!(!m.allows(Power::Erase, false, Some(now), now), "one factor");
        assert!(m.allows(Power::Export, false, None, now), "not listed");
        assert_eq!(Power::of_route("POST", "/v1/subjects/{id}/break-glass"), Some(Power::BreakGlass));
        assert_eq!(Power::of_route("GET", "/v1/subjects/{id}"), None);
        // The console's forms for the same powers are guarded alike.
        assert_eq!(Power::of_route("POST", "/console/customers/{id}/break-glass"), Some(Power::BreakGlass));
        assert_eq!(Power::of_route("POST", "/console/customers/{id}/erase"), Some(Power::Erase));
        assert_eq!(Power::of_route("GET", "/console/customers/{id}"), None);
        let bad = |t: &str| config(t).unwrap_err().to_string();
        assert!(bad("[require_mfa]\npowers = [\"staff_whois\"]").contains("Candor token"));
        assert!(bad("[require_mfa]\npowers = [\"fly\"]").contains("break_glass, erase"));
        assert!(bad("[require_mfa]\npowers = []\nmax_age_minutes = 0").contains("max_age_minutes"));
    }

    #[test]
    fn command_line_settings_follow_the_config_rules() {
        let path = Path::new("/srv/candor/candor.toml");
        let roles = ["support-team=support_agent".to_string(), " privacy team = privacy_team".to_string()];
        let c = StaffConfig::from_arguments(path, "http://127.0.0.1:4000", "candor", &roles).unwrap();
        assert_eq!(c.role_for(&["privacy team".into()]), Ok("privacy_team".into()));
        assert_eq!(c.role_for(&["support-team".into()]), Ok("support_agent".into()));
        assert_eq!(c.key_file, Path::new("/srv/candor/keys/staff.key"));
        let err = |issuer: &str, roles: &[&str]| {
            let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
            StaffConfig::from_arguments(path, issuer, "candor", &roles).unwrap_err().to_string()
        };
        assert!(err("http://i", &["support"]).contains("GROUP=ROLE"));
        assert!(err("idp.example", &["a=b"]).contains("issuer"));
        assert!(err("http://i", &[]).contains("[staff.roles]"));
        // A quote or newline in an argument is a value, never more TOML.
        let c = StaffConfig::from_arguments(path, "http://i", "c\"\n[x]", &["a\"=b".to_string()]).unwrap();
        assert_eq!((c.client_id.as_str(), c.role_for(&["a\"".into()])), ("c\"\n[x]", Ok("b".into())));
    }

    #[test]
    fn services_map_through_their_own_table() {
        let text = "[oidc]\nissuer = \"https://idp.example\"\nclient_id = \"candor\"\napi_audience = \"https://candor/api\"\n[roles]\nsupport = \"support_agent\"\n[clients]\nvault-writer = \"shop_backend\"\n";
        let raw: RawStaff = toml::from_str(text).unwrap();
        let c = StaffConfig::from_raw(Some(raw), Path::new("c.toml"), |p: &str| PathBuf::from(p)).unwrap().unwrap();
        assert_eq!(c.client_role_for(&["vault-writer".into()]), Ok("shop_backend".into()));
        assert_eq!(c.client_role_for(&["support".into()]), Err(NoRole::None), "a person's group is not a service's");
        assert_eq!(c.role_for(&["vault-writer".into()]), Err(NoRole::None), "and the other way round");
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        let err = |raw: &str| {
            let raw: RawStaff = toml::from_str(raw).unwrap();
            StaffConfig::from_raw(Some(raw), Path::new("c.toml"), |p: &str| PathBuf::from(p)).unwrap_err().to_string()
        };
        assert!(err("[roles]\na = \"b\"").contains("[staff.oidc]"));
        assert!(err("[oidc]\nissuer = \"idp.example\"\nclient_id = \"c\"\n[roles]\na = \"b\"").contains("issuer"));
        assert!(err("[oidc]\nissuer = \"https://i\"\nclient_id = \"c\"").contains("[staff.roles]"));
        assert!(config("").is_ok());
        let base = "[oidc]\nissuer = \"https://i\"\nclient_id = \"c\"\n";
        assert!(err(&format!("{base}api_audience = \"api\"\n[roles]\na = \"b\"")).contains("[staff.clients]"));
        assert!(err(&format!("{base}[roles]\na = \"b\"\n[clients]\nw = \"b\"")).contains("api_audience"));
        let c = config("[clients]\nvault-writer = \"shop_backend\"").unwrap_err().to_string();
        assert!(c.contains("api_audience"), "{c}");
        let raw: Result<RawStaff, _> = toml::from_str("[oidc]\nissuer = \"https://i\"\nclient_id = \"c\"\nunknown = 1");
        assert!(raw.is_err(), "unknown keys are refused");
    }
}
