//! `candor serve` and `candor quickstart`: a server of an installation, with every background
//! job ([`crate::jobs`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::{clock, config, demo, hardening, http, install, jobs, staff, vault};

/// Before a server holds any key: no core dumps.
pub fn harden() {
    clock::warn_if_movable();
    for problem in hardening::no_core_dumps() {
        tracing::warn!(problem = %problem, "could not turn core dumps off");
    }
}

pub async fn serve(config_path: &Path, listen: Option<SocketAddr>) -> Result<()> {
    harden();
    let (config, vault) = install::open(config_path).await?;
    let addr = listen.unwrap_or(config.listen);
    tracing::info!(catalog = %config.catalog_path.display(), "starting");
    let listener = http::bind(addr).await?;
    let state = http::AppState::new(vault.clone(), install::http_settings(&config)?)?
        .with_installation_report(std::sync::Arc::new(InstallationReport::new(config_path)));
    let public_base = state.listening_on(listener.local_addr()?);
    let jobs = jobs::Jobs { sweep_retention: true };
    jobs.start(&vault, &config, state.witnesses.as_ref(), &state.webhook_secrets, public_base);
    http::serve_on(state, listener, |local| {
        println!("listening on http://{local}");
    })
    .await
}

/// The temporary directory of a quickstart without `--dir`: removed (keys and database with
/// it) when the quickstart ends, however it ends short of being killed.
struct TemporaryInstallation(PathBuf);

impl Drop for TemporaryInstallation {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.0).is_ok() {
            eprintln!("removed the quickstart installation {} (pass --dir D to keep one)", self.0.display());
        }
    }
}

/// `candor quickstart --staff-issuer`: staff sign-in for this run only.
pub struct QuickstartStaff {
    pub issuer: String,
    pub client_id: String,
    pub roles: Vec<String>,
}

pub async fn quickstart(
    dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    staff: Option<QuickstartStaff>,
) -> Result<()> {
    harden();
    // Checked before anything is created, like the port.
    if staff.is_some() && std::env::var_os(staff::CLIENT_SECRET_ENV).is_none() {
        anyhow::bail!(
            "--staff-issuer needs the client secret the provider gave Candor in {}",
            staff::CLIENT_SECRET_ENV
        );
    }
    let (dir, _temporary) = match dir {
        Some(d) => (d, None),
        None => {
            let d = std::env::temp_dir()
                .join(format!("candor-quickstart-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
            (d.clone(), Some(TemporaryInstallation(d)))
        }
    };
    let config_path = dir.join(config::DEFAULT_CONFIG);
    // The port is taken before anything is created, so a busy port leaves nothing behind.
    let listener = match listen {
        Some(addr) => http::bind(addr).await?,
        None if config_path.exists() => http::bind(config::Config::load(&config_path)?.listen).await?,
        None => http::bind(config::DEFAULT_LISTEN.parse().expect("default address")).await?,
    };
    let fresh = !config_path.exists();
    let admin_token = if fresh { Some(install::init(&dir, None).await?.admin_token) } else { None };
    let (mut config, vault) = install::open(&config_path).await?;
    if let Some(s) = &staff {
        config.staff = Some(staff::StaffConfig::from_arguments(&config_path, &s.issuer, &s.client_id, &s.roles)?);
    }
    let demo_ids = if fresh { demo::seed(&vault).await? } else { Vec::new() };
    let backend = vault.create_token("shop_backend", "quickstart", None).await?;
    let support = vault.create_token("support_agent", "quickstart", None).await?;
    let privacy = vault.create_token("privacy_team", "quickstart", None).await?;
    // A one-time link into the first demo customer's privacy center.
    let sign_in = match demo_ids.first() {
        Some(id) => {
            let backend =
                vault::Principal { token_id: "quickstart-demo".into(), role: "shop_backend".into(), origin: None };
            let auth = vault.authorize(backend, Some("privacy_requests"), None).await?;
            let id = candor_core::SubjectId::parse(id).expect("demo ids are subject ids");
            Some(vault.create_sign_in_link(&auth, id).await?.secret)
        }
        None => None,
    };
    let link_minutes = config.sign_in.settings.link_minutes;
    let temporary = _temporary.is_some();
    let state = http::AppState::new(vault.clone(), install::http_settings(&config)?)?
        .with_installation_report(std::sync::Arc::new(InstallationReport::new(&config_path)));
    let public_base = state.listening_on(listener.local_addr()?);
    let jobs = jobs::Jobs { sweep_retention: false };
    jobs.start(&vault, &config, state.witnesses.as_ref(), &state.webhook_secrets, public_base);
    http::serve_on(state, listener, move |local| {
        let url = format!("http://{local}");
        if temporary {
            println!("Candor quickstart: {} (temporary: removed when you stop it; --dir D keeps one)", dir.display());
        } else {
            println!("Candor quickstart: {}", dir.display());
        }
        if let Some(t) = &admin_token {
            println!("admin token: {}", t.as_str());
        }
        println!("shop_backend token: {}", backend.as_str());
        println!("support_agent token: {}", support.as_str());
        println!("privacy_team token: {}", privacy.as_str());
        if !demo_ids.is_empty() {
            println!("demo customers: {}", demo_ids.join(", "));
        }
        println!();
        println!("Try:");
        println!("  curl -s '{url}/v1/subjects?email=ada@example.com' -H 'Authorization: Bearer {}' -H 'Candor-Purpose: account'", backend.as_str());
        println!("  curl -s {url}/v1/catalog -H 'Authorization: Bearer {}'", support.as_str());
        println!("  OpenAPI: {url}/openapi.json");
        println!("  Privacy notice: {url}/privacy");
        if let Some(s) = &staff {
            println!("  Staff console: {url}/console (signs in at {}; for this run only)", s.issuer);
        }
        if let (Some(secret), Some(id)) = (&sign_in, demo_ids.first()) {
            println!(
                "  Ada's privacy center (one-time link, valid {link_minutes} minutes): {url}/privacy/sign-in/{}",
                secret.as_str()
            );
            println!(
                "  Another link: curl -s -X POST {url}/v1/subjects/{id}/privacy-center-links -H 'Authorization: Bearer {}' -H 'Candor-Purpose: privacy_requests'",
                backend.as_str()
            );
        }
        println!("listening on {url}");
    })
    .await
}

/// `candor doctor`'s findings and `candor keys status`, for the staff console's accountability
/// page (computed afresh each time the page asks).
pub struct InstallationReport {
    config_path: std::path::PathBuf,
}

impl InstallationReport {
    pub fn new(config_path: &Path) -> Self {
        InstallationReport { config_path: config_path.to_path_buf() }
    }

    async fn gather(&self) -> candor_http::InstallationHealth {
        use candor_http::FindingLevel as L;
        let findings = match crate::doctor::check(&self.config_path).await {
            Ok(found) => found
                .into_iter()
                .map(|x| {
                    let level = match x.level {
                        crate::doctor::Level::Ok => L::Ok,
                        crate::doctor::Level::Warn => L::Warn,
                        crate::doctor::Level::Fail => L::Fail,
                    };
                    (level, x.what)
                })
                .collect(),
            Err(e) => vec![(L::Fail, format!("the checks could not run: {e:#}"))],
        };
        let keys = match super::keys::status_lines(&self.config_path).await {
            Ok(lines) => lines,
            Err(e) => vec![format!("the key status could not be read: {e:#}")],
        };
        candor_http::InstallationHealth { findings, keys }
    }
}

impl candor_http::InstallationReport for InstallationReport {
    fn health(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = candor_http::InstallationHealth> + Send + '_>> {
        Box::pin(self.gather())
    }
}
