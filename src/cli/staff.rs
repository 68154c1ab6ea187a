//! `candor staff whois PSEUDONYM`: the person behind a staff pseudonym, for an auditor.

use anyhow::{Result, bail};
use clap::Subcommand;

use super::ConfigArg;
use crate::install;

#[derive(Subcommand)]
pub enum StaffCommand {
    /// Resolve a staff pseudonym from the log (stf_…) to the identity provider's issuer and
    /// subject. Needs the admin token or a token of a role with `audit = true`; the look-up is
    /// itself logged under that token.
    Whois {
        /// The pseudonym, as the log names it (`stf_…`, with or without `staff:` before it).
        pseudonym: String,
        /// Your token (admin, or a role with audit = true).
        #[arg(long, env = "CANDOR_TOKEN", hide_env_values = true)]
        token: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// The log's actor for a staff pseudonym given on the command line (`stf_…`, with or without
/// `staff:` before it), for `candor breach assess --staff`.
pub fn actor_of(pseudonym: &str) -> Result<String> {
    let pseudonym = pseudonym.trim();
    let pseudonym = candor_log::actor::staff_pseudonym(pseudonym).unwrap_or(pseudonym);
    if !candor_crypto::staff::is_pseudonym(pseudonym) {
        bail!("`{pseudonym}` is not a staff pseudonym: they look like stf_ and 32 hex digits");
    }
    Ok(candor_log::actor::staff(pseudonym))
}

pub async fn run(command: StaffCommand) -> Result<()> {
    match command {
        StaffCommand::Whois { pseudonym, token, config } => {
            let pseudonym = pseudonym.trim();
            let pseudonym = candor_log::actor::staff_pseudonym(pseudonym).unwrap_or(pseudonym);
            if !candor_crypto::staff::is_pseudonym(pseudonym) {
                bail!("`{pseudonym}` is not a staff pseudonym: they look like stf_ and 32 hex digits");
            }
            let (_, vault) = install::open(&config.config).await?;
            let caller = vault.authenticate(&token).await?;
            let found = match vault.staff_whois(&caller, pseudonym).await {
                Err(crate::vault::VaultError::AuditNotAllowed(role)) => bail!(
                    "role `{role}` may not resolve staff pseudonyms: that is for auditors (the admin token, or a role \
                     with audit = true); the refusal is logged"
                ),
                other => other?,
            };
            let Some(person) = found else {
                bail!(
                    "nobody with the pseudonym {pseudonym} has signed in to this installation (the look-up is logged)"
                );
            };
            let time = crate::clock::utc_second;
            println!("pseudonym   {}", person.pseudonym);
            println!("issuer      {}", person.issuer);
            println!("subject     {}", person.subject);
            println!("first seen  {}", time(person.first_seen_at));
            println!("last seen   {}", time(person.last_seen_at));
            println!("last role   {}", person.last_role);
            println!("(look the subject up in the identity provider's directory; this look-up was logged)");
            Ok(())
        }
    }
}
