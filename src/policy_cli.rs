//! `candor policy explain` and `candor policy test`: the policy engine, asked from the command
//! line with the installation's catalog and policy file (no database, no keys).

use std::path::Path;

use anyhow::{Context, Result, bail};
use candor_policy::{PolicyEngine, Situation, table};

use crate::config::Config;
use crate::install;

fn engine(config: &Path) -> Result<PolicyEngine> {
    let cfg = Config::load(config)?;
    let catalog = install::load_catalog(&cfg)?;
    install::load_policy(&cfg, &catalog)
}

/// The decision for one role, purpose and field, and the policies behind it.
pub fn explain(config: &Path, role: &str, purpose: &str, field: &str, situation: Situation) -> Result<String> {
    let engine = engine(config)?;
    let explanation = engine.explain(role, purpose, field, situation)?;
    let consent = if situation.consent_given { "given" } else { "not given" };
    Ok(format!(
        "role {role}, purpose {purpose}, {field}; customer: consent {consent}{}{}\n{explanation}",
        if situation.restricted { ", restricted" } else { "" },
        if situation.break_glass { ", break-glass open" } else { "" },
    ))
}

/// Runs a decision table; fails (non-zero exit) on any mismatch.
pub fn test(config: &Path, file: &Path) -> Result<()> {
    let engine = engine(config)?;
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let cases = table::parse(&text).map_err(|errors| {
        anyhow::anyhow!("{}", errors.iter().map(|e| format!("{}: {e}", file.display())).collect::<Vec<_>>().join("\n"))
    })?;
    let (checked, mismatches) = table::run(&engine, &cases).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    for m in &mismatches {
        println!(
            "{}:{}: {} under {}: {} expected {}, got {}",
            file.display(),
            m.line,
            m.role,
            m.purpose,
            m.name,
            m.expected,
            m.actual
        );
    }
    if !mismatches.is_empty() {
        bail!("{} of {checked} decisions differ from {}", mismatches.len(), file.display());
    }
    println!("{}: {checked} decisions in {} rows, all as expected", file.display(), cases.len());
    Ok(())
}
