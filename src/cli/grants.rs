//! `candor grants`: the operator's view of grants (data shared with recipients) and their
//! revocation, whatever the catalog now says about the grant's purpose, recipient or fields (a
//! grant made under an older catalog can always be ended). Each command is logged, a
//! revocation like one over the API (`grant.revoke` against every customer the grant held).

use anyhow::Result;
use clap::Subcommand;

use super::ConfigArg;
use crate::install;

#[derive(Subcommand)]
pub enum GrantsCommand {
    /// List grants, newest first: id, recipient, purpose, fields, created, expires, reads,
    /// revoked (never the credential: only its hash is stored).
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Revoke a grant by id: the recipient's next read is refused (`grant_revoked`).
    Revoke {
        /// The grant's id (from `candor grants list`, or the response that created it).
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

use crate::clock::utc_second as time;

pub async fn run(command: GrantsCommand) -> Result<()> {
    match command {
        GrantsCommand::List { config } => {
            let (_, vault) = install::open(&config.config).await?;
            let mut rows = vec![
                ["id", "recipient", "purpose", "created", "expires", "reads", "revoked", "fields"].map(String::from),
            ];
            for g in vault.all_grants().await? {
                rows.push([
                    g.id,
                    g.recipient,
                    g.purpose,
                    time(g.created_at),
                    time(g.expires_at),
                    match g.max_reads {
                        Some(m) => format!("{}/{m}", g.reads),
                        None => g.reads.to_string(),
                    },
                    g.revoked_at.map(time).unwrap_or_else(|| "-".into()),
                    g.fields.join(","),
                ]);
            }
            // Columns as wide as their widest cell; the last one as it is.
            let widths: Vec<usize> =
                (0..8).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
            for r in &rows {
                let cells: Vec<String> = (0..7).map(|c| format!("{:<w$}", r[c], w = widths[c])).collect();
                println!("{}  {}", cells.join("  "), r[7]);
            }
            Ok(())
        }
        GrantsCommand::Revoke { id, config } => {
            let (_, vault) = install::open(&config.config).await?;
            let Some(g) = vault.revoke_grant_by_operator(&id).await? else {
                anyhow::bail!("no grant with id `{}` (`candor grants list` shows them)", id.trim());
            };
            let at = g.revoked_at.map(time).unwrap_or_default();
            println!(
                "grant {} to {} ({}) is revoked since {at}: the recipient's next read is refused",
                g.id, g.recipient, g.purpose
            );
            Ok(())
        }
    }
}
