//! `candor token`: the installation's API tokens (create, list, revoke), as the admin.

use anyhow::{Context, Result};
use clap::Subcommand;

use super::ConfigArg;
use crate::vault::audit;
use crate::{clock, install};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (only the token, for scripts). It is shown only once.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// The role the token carries (declared in the catalog, or `admin`).
        #[arg(long)]
        role: String,
        /// What the token is for (shown by `token list`), e.g. "web shop, production".
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime, e.g. `30d`, `12h` or `P1M`; no expiry when omitted.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens: id, role, description, created, expires, revoked (never the token itself).
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Revoke a token by id: the next request carrying it is refused (`token_revoked`).
    Revoke {
        /// The token's id (from `candor token list`).
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub async fn run(command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create { config, role, description, expires } => {
            let expires_at = expires.as_deref().map(expiry_from_now).transpose()?;
            let (_, vault) = install::open(&config.config).await?;
            let token = vault.create_token(&role, &description, expires_at).await?;
            println!("{}", token.as_str());
            Ok(())
        }
        TokenCommand::List { config } => {
            let (_, vault) = install::open(&config.config).await?;
            // Times to the second, UTC; columns as wide as their widest cell.
            let time = clock::utc_second;
            let mut rows = vec![["id", "role", "created", "expires", "revoked", "description"].map(String::from)];
            for t in vault.tokens(&audit::system_actor()).await? {
                rows.push([
                    t.id,
                    t.role,
                    time(t.created_at),
                    t.expires_at.map(time).unwrap_or_else(|| "never".into()),
                    t.revoked_at.map(time).unwrap_or_else(|| "-".into()),
                    t.description,
                ]);
            }
            let widths: Vec<usize> =
                (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
            for r in &rows {
                let cells: Vec<String> = (0..5).map(|c| format!("{:<w$}", r[c], w = widths[c])).collect();
                println!("{}  {}", cells.join("  "), r[5]);
            }
            Ok(())
        }
        TokenCommand::Revoke { id, config } => {
            let (_, vault) = install::open(&config.config).await?;
            let t = vault.revoke_token(&audit::system_actor(), &id).await?;
            println!("token {} ({}) is revoked: the next request carrying it is refused", t.id, t.role);
            Ok(())
        }
    }
}

fn expiry_from_now(text: &str) -> Result<i64> {
    let span: jiff::Span =
        text.parse().with_context(|| format!("--expires `{text}` is not a duration such as 30d, 12h or P1M"))?;
    let at = crate::clock::now().to_zoned(jiff::tz::TimeZone::UTC).checked_add(span)?.timestamp();
    anyhow::ensure!(at > crate::clock::now(), "--expires must be a positive duration");
    Ok(at.as_millisecond())
}
