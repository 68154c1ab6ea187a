//! `candor`: the customer-data vault's server and command-line tool.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use candor::cli::args::*;
use candor::{backup, breach, cli, config, copy, doctor, install, ropa, verify, witness};
use candor_vault as vault;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging("info");
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
fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CANDOR_LOG").unwrap_or_else(|_| default_level.into());
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
        Command::Init { dir, database } => {
            let done = install::init(&dir, database.as_deref()).await?;
            println!("Candor is set up in {}", dir.display());
            println!("  config:  {}", done.config_path.display());
            println!("  catalog: {}", dir.join("catalog.toml").display());
            println!("admin token: {}", done.admin_token.as_str());
            println!("(shown only once: keep it safe. Create tokens for apps with `candor token create --role ROLE`.)");
            Ok(())
        }
        Command::Serve { config, listen } => cli::serve::serve(&config.config, listen).await,
        Command::Migrate { config } => {
            let completed = install::migrate(&config.config).await?;
            println!("migrations applied: the database schema is current");
            if completed > 0 {
                println!("completed {completed} erasure(s) interrupted by a crash");
            }
            Ok(())
        }
        Command::Backup { config, to } => backup::backup(&config.config, &to).await,
        Command::Restore { config, from, replace } => backup::restore(&config.config, &from, replace).await,
        Command::Copy { from, to, from_keys } => copy::run(&from, &from_keys, &to).await,
        Command::Quickstart { dir, listen, staff_issuer, staff_client_id, staff_role } => {
            let staff = staff_issuer.map(|issuer| cli::serve::QuickstartStaff {
                issuer,
                client_id: staff_client_id.unwrap_or_else(|| "candor".into()),
                roles: staff_role,
            });
            cli::serve::quickstart(dir, listen, staff).await
        }
        Command::Token { command } => cli::tokens::run(command).await,
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
            let engine = install::load_policy(&cfg, &c)?;
            if let Some(file) = &cfg.policy.file {
                println!("{}: policies OK — {} policies", file.display(), engine.operator_policy_count());
            }
            Ok(())
        }
        Command::Policy {
            command: PolicyCommand::Explain { config, role, purpose, field, power, consent, restricted, break_glass },
        } => {
            let situation = candor_policy::Situation { consent_given: consent == "yes", restricted, break_glass };
            let text = match (power, field) {
                (Some(power), field) => {
                    cli::policy::explain_power(&config.config, &role, &purpose, &power, field.as_deref(), situation)?
                }
                (None, Some(field)) => cli::policy::explain(&config.config, &role, &purpose, &field, situation)?,
                (None, None) => anyhow::bail!("give --field or --power"),
            };
            print!("{text}");
            Ok(())
        }
        Command::Policy { command: PolicyCommand::Test { config, file } } => cli::policy::test(&config.config, &file),
        Command::Catalog { command: CatalogCommand::Ropa { config, out } } => {
            let cfg = config::Config::load(&config.config)?;
            let c = install::load_catalog(&cfg)?;
            std::fs::create_dir_all(&out)?;
            let (md, csv) = (out.join("ropa.md"), out.join("ropa.csv"));
            std::fs::write(&md, ropa::markdown(&c))?;
            std::fs::write(&csv, ropa::csv(&c)?)?;
            println!("wrote {} and {} ({} processing activities)", md.display(), csv.display(), c.purposes.len());
            Ok(())
        }
        Command::Log { command: LogCommand::Verify { config, url, token, checkpoint, key, allow_unsigned_tail } } => {
            let source = match url {
                Some(url) => verify::Source::Url { url, token },
                None => verify::Source::Config(config.unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG))),
            };
            let saved = checkpoint
                .map(|p| std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display())))
                .transpose()?;
            let report = verify::run(source, verify::Options { saved, pinned_key: key, allow_unsigned_tail }).await?;
            verify::print(&report);
            Ok(())
        }
        Command::Log { command: LogCommand::CheckWitnesses { url, witnesses, required, key } } => {
            let parsed = witnesses.iter().map(|w| witness::check::parse_witness_arg(w)).collect::<Result<Vec<_>>>()?;
            let required = required.unwrap_or(parsed.len());
            let report = witness::check::run(&url, key.as_deref(), &parsed, required).await?;
            for line in report.lines {
                println!("ok: {line}");
            }
            Ok(())
        }
        Command::Witness { command: WitnessCommand::Init { dir, name, listen, logs } } => {
            let key = witness::server::init(&dir, &name, listen, &logs)?;
            println!("witness set up in {}", dir.display());
            println!("witness key: {key}");
            println!("(give this key and the witness's URL to each log's operator: [[log.witnesses]] in candor.toml)");
            Ok(())
        }
        Command::Witness { command: WitnessCommand::Serve { config, listen } } => {
            witness::server::serve(&config, listen).await
        }
        Command::Witness { command: WitnessCommand::Key { config } } => {
            println!("{}", witness::server::verifier_key(&config)?);
            Ok(())
        }
        Command::Log { command: LogCommand::Checkpoint { config } } => {
            let (_, vault) = install::open(&config.config).await?;
            print!("{}", vault.checkpoint().await?.note);
            Ok(())
        }
        Command::Verify { command: VerifyCommand::History { bundle, log_key, witnesses, require, since } } => {
            let options = cli::verify::HistoryOptions { log_key, witnesses, require, since };
            for line in cli::verify::history(&bundle, &options)? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Receipt { command: ReceiptCommand::Verify { file, key, config } } => {
            cli::consent::verify_receipt(&file, key.as_deref(), &config.config)
        }
        Command::Doctor { config } => {
            if doctor::run(&config.config).await? {
                Ok(())
            } else {
                anyhow::bail!("some checks failed (FAIL above)")
            }
        }
        Command::Breach {
            command:
                BreachCommand::Assess {
                    from,
                    to,
                    token,
                    staff,
                    role,
                    recipient,
                    field,
                    category,
                    kek_version,
                    ip_ranges,
                    countries_from,
                    out,
                    config,
                },
        } => {
            let token = match staff {
                Some(pseudonym) => Some(cli::staff::actor_of(&pseudonym)?),
                None => token,
            };
            let filters = breach::Filters {
                from: from.as_deref().map(breach::log_time).transpose()?,
                to: to.as_deref().map(breach::log_time).transpose()?,
                token,
                role,
                recipient,
                field,
                category,
                networks: breach::networks(&ip_ranges)?,
            };
            breach::assess(&config.config, filters, kek_version, countries_from.as_deref(), out.as_deref()).await
        }
        Command::Breach {
            command: BreachCommand::Record { assessment, nature, consequences, measures, detected_at, out, config },
        } => {
            let args =
                breach::RecordArgs { assessment: &assessment, nature, consequences, measures, detected_at, out: &out };
            breach::record(&config.config, args).await
        }
        Command::Breach { command: BreachCommand::List { config } } => breach::list(&config.config).await,
        Command::Breach { command: BreachCommand::Update { id, authority_notified: _, closed, config } } => {
            breach::update(&config.config, &id, closed).await
        }
        Command::Keys { command } => match command {
            KeysCommand::Status { config } => cli::keys::status(&config.config).await,
            KeysCommand::Rotate { config } => cli::keys::rotate(&config.config).await,
            KeysCommand::Rewrap { per_second, config } => cli::keys::rewrap(&config.config, per_second).await,
            KeysCommand::Retire { version, config } => cli::keys::retire(&config.config, version).await,
            KeysCommand::RotateIndex { config } => cli::keys_index::rotate(&config.config).await,
            KeysCommand::Reindex { per_second, config } => cli::keys_index::reindex(&config.config, per_second).await,
            KeysCommand::RetireIndex { version, config } => cli::keys_index::retire(&config.config, version).await,
        },
        Command::Grants { command } => cli::grants::run(command).await,
        Command::Staff { command } => cli::staff::run(command).await,
        Command::Recipients { command: RecipientsCommand::Secret { recipient, config } } => {
            let config = config::Config::load(&config.config)?;
            let text = std::fs::read_to_string(&config.catalog_path)
                .with_context(|| format!("cannot read the catalog {}", config.catalog_path.display()))?;
            let catalog =
                candor_core::catalog::Catalog::from_toml_str(&text, &config.catalog_path.display().to_string())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            let Some(r) = catalog.recipients.iter().find(|r| r.id == recipient) else {
                anyhow::bail!("recipient `{recipient}` is not declared in the catalog");
            };
            let secret = candor_crypto::webhook::generate_webhook_secret()?;
            candor_crypto::webhook::store_webhook_secret(&config.webhooks.secrets_file, &r.id, &secret)?;
            println!("{}", secret.as_str());
            eprintln!(
                "kept in {}; give it to {} to check Candor-Signature. Restart servers to use it.{}",
                config.webhooks.secrets_file.display(),
                r.name,
                if r.webhook_url.is_none() { " (The catalog gives this recipient no webhook_url yet.)" } else { "" }
            );
            Ok(())
        }
        Command::Retention { command: RetentionCommand::Run { dry_run, now, config } } => {
            let now = match now {
                Some(t) => t
                    .parse::<jiff::Timestamp>()
                    .with_context(|| format!("--now `{t}` is not an RFC 3339 time such as 2027-01-31T00:00:00Z"))?
                    .as_millisecond(),
                None => vault::now_millis(),
            };
            let (config, vault) = install::open(&config.config).await?;
            cli::retention::run(&vault, now, dry_run, config.log.caller_address_days).await
        }
        Command::Import { command: ImportCommand::Consents { file, notice_version, config } } => {
            let (_, vault) = install::open(&config.config).await?;
            cli::consent::import(&vault, &file, cli::consent::NoticeDefault::from_arg(notice_version.as_deref())).await
        }
        Command::Import {
            command:
                ImportCommand::Subjects {
                    file,
                    purpose,
                    role,
                    map,
                    dry_run,
                    on_duplicate,
                    report,
                    default_region,
                    consent_source,
                    consent_notice,
                    config,
                },
        } => {
            let (_, vault) = install::open(&config.config).await?;
            let options = cli::import::Options {
                file,
                purpose,
                role,
                map,
                dry_run,
                on_duplicate: on_duplicate.into(),
                report_dir: report,
                default_region,
                consent_source,
                consent_notice,
            };
            cli::import::import(&vault, options).await
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every option and argument of every subcommand says what it is for in `--help`.
    #[test]
    fn every_option_of_every_command_has_a_description() {
        fn walk(cmd: &clap::Command, path: String, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "candor".into(), &mut missing);
        assert!(missing.is_empty(), "options without a description: {missing:#?}");
    }
}
