//! `candor`: the customer-data vault's server and command-line tool.
#![forbid(unsafe_code)]

mod bench;
mod config;
mod demo;
mod http;
mod install;
mod vault;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "candor",
    version,
    about = "Customer-data vault: field-level encrypted personal data, purpose-bound access."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The installation's config file.
    #[arg(long, env = "CANDOR_CONFIG", default_value = config::DEFAULT_CONFIG)]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Create an installation: config, example catalog, keys, database, admin token.
    Init {
        /// Directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Serve the HTTP API.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Address to listen on (overrides the config); port 0 picks a free port.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Create an installation with demo customers and serve it, printing URLs and tokens.
    Quickstart {
        /// Directory for the installation (default: a new temporary directory). An existing
        /// installation there is reused.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Work with the catalog (data map).
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Measure the hot paths (sealing, blind index, lookup) and print ops/s.
    Bench {
        /// Customers to store before measuring lookups.
        #[arg(long, default_value_t = 10_000)]
        subjects: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (only the token, for scripts). It is shown only once.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// The role the token carries (declared in the catalog, or `admin`).
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime, e.g. `30d`, `12h` or `P1M`; no expiry when omitted.
        #[arg(long)]
        expires: Option<String>,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Validate the catalog; problems are printed as file:line:column with how to fix them.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr. `CANDOR_LOG` sets the filter (default `info`); `CANDOR_LOG_FORMAT=json`
/// switches to JSON lines. Nothing logged carries a personal value.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CANDOR_LOG").unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    if std::env::var("CANDOR_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Init { dir } => {
            let done = install::init(&dir).await?;
            println!("Candor is set up in {}", dir.display());
            println!("  config:  {}", done.config_path.display());
            println!("  catalog: {}", dir.join("catalog.toml").display());
            println!("admin token: {}", done.admin_token.as_str());
            println!("(shown only once: keep it safe. Create tokens for apps with `candor token create --role ROLE`.)");
            Ok(())
        }
        Command::Serve { config, listen } => serve(&config.config, listen).await,
        Command::Quickstart { dir, listen } => quickstart(dir, listen).await,
        Command::Token { command: TokenCommand::Create { config, role, description, expires } } => {
            let expires_at = expires.as_deref().map(expiry_from_now).transpose()?;
            let (_, vault) = install::open(&config.config).await?;
            let token = vault.create_token(&role, &description, expires_at).await?;
            println!("{}", token.as_str());
            Ok(())
        }
        Command::Catalog { command: CatalogCommand::Check { config } } => {
            let cfg = config::Config::load(&config.config)?;
            let c = install::load_catalog(&cfg)?;
            println!(
                "{}: catalog OK — {} purposes, {} fields, {} event types, {} recipients, {} roles",
                cfg.catalog_path.display(),
                c.purposes.len(),
                c.fields.len(),
                c.events.len(),
                c.recipients.len(),
                c.roles.len()
            );
            Ok(())
        }
        Command::Bench { subjects, seconds } => bench::run(bench::BenchOptions { subjects, seconds }).await,
    }
}

fn expiry_from_now(text: &str) -> Result<i64> {
    let span: jiff::Span =
        text.parse().with_context(|| format!("--expires `{text}` is not a duration such as 30d, 12h or P1M"))?;
    let at = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).checked_add(span)?.timestamp();
    anyhow::ensure!(at > jiff::Timestamp::now(), "--expires must be a positive duration");
    Ok(at.as_millisecond())
}

async fn serve(config_path: &Path, listen: Option<SocketAddr>) -> Result<()> {
    let (config, vault) = install::open(config_path).await?;
    let addr = listen.unwrap_or(config.listen);
    tracing::info!(catalog = %config.catalog_path.display(), "starting");
    http::serve(http::AppState { vault }, addr, config.max_body_bytes, |local| {
        println!("listening on http://{local}");
    })
    .await
}

async fn quickstart(dir: Option<PathBuf>, listen: Option<SocketAddr>) -> Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => {
            std::env::temp_dir().join(format!("candor-quickstart-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
        }
    };
    let config_path = dir.join(config::DEFAULT_CONFIG);
    let fresh = !config_path.exists();
    let admin_token = if fresh { Some(install::init(&dir).await?.admin_token) } else { None };
    let (config, vault) = install::open(&config_path).await?;
    let demo_ids = if fresh { demo::seed(&vault).await? } else { Vec::new() };
    let backend = vault.create_token("shop_backend", "quickstart", None).await?;
    let support = vault.create_token("support_agent", "quickstart", None).await?;
    let addr = listen.unwrap_or(config.listen);
    http::serve(http::AppState { vault }, addr, config.max_body_bytes, move |local| {
        let url = format!("http://{local}");
        println!("Candor quickstart: {}", dir.display());
        if let Some(t) = &admin_token {
            println!("admin token: {}", t.as_str());
        }
        println!("shop_backend token: {}", backend.as_str());
        println!("support_agent token: {}", support.as_str());
        if !demo_ids.is_empty() {
            println!("demo customers: {}", demo_ids.join(", "));
        }
        println!();
        println!("Try:");
        println!("  curl -s '{url}/v1/subjects?email=ada@example.com' -H 'Authorization: Bearer {}' -H 'Candor-Purpose: account'", backend.as_str());
        println!("  curl -s {url}/v1/catalog -H 'Authorization: Bearer {}'", support.as_str());
        println!("  OpenAPI: {url}/openapi.json");
        println!("listening on {url}");
    })
    .await
}
