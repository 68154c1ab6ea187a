//! `candor retention run`: deletes what the catalog's retention periods say is due.

use anyhow::Result;

use crate::vault;

/// Runs (or, with `dry_run`, lists) the retention due at `now`, and forgets request addresses
/// older than `caller_address_days`.
pub async fn run(vault: &vault::Vault, now: i64, dry_run: bool, caller_address_days: u32) -> Result<()> {
    let due = vault.retention_due(now).await?;
    let at = jiff::Timestamp::from_millisecond(now)?;
    println!("retention at {at}:");
    for d in &due {
        let what = match d.rule.target {
            candor_core::rights::RuleTarget::Event => "events",
            candor_core::rights::RuleTarget::Field => "field",
        };
        println!(
            "  {what} {:<20} due: {} of {} customer(s); kept under legal hold: {}",
            d.rule.name.as_str(),
            d.items,
            d.subjects,
            d.held_items
        );
    }
    if due.is_empty() {
        println!("  nothing in the catalog has a fixed retention period");
    }
    if dry_run {
        println!("dry run: nothing deleted");
        return Ok(());
    }
    let total: u64 = due.iter().map(|d| d.subjects).sum();
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("deleting {bar:40} {pos}/{len} customers").expect("template"),
    );
    let report = vault.sweep_retention(now, |done| bar.set_position(done)).await?;
    bar.finish_and_clear();
    println!(
        "deleted {} event(s) and {} field value(s) of {} customer(s); {} skipped under a legal hold",
        report.events, report.fields, report.subjects, report.held
    );
    let forgotten = vault.prune_caller_addresses(now, caller_address_days).await?;
    println!("forgot {forgotten} staff/recipient request address(es) older than {caller_address_days} day(s)");
    Ok(())
}
