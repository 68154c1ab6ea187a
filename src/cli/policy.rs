//! `candor policy explain` and `candor policy test`: the policy engine, asked from the command
//! line with the installation's catalog and policy file (no database, no keys).

use std::path::Path;

use anyhow::{Context, Result, bail};
use candor_policy::{Action, PolicyEngine, Situation, Target, table};

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

/// The powers `candor policy explain --power` answers for.
pub const POWERS: [&str; 7] = ["record_consent", "erase", "export", "break_glass", "share", "audit", "manage"];

/// Whether `role` holds a power (under `purpose`, or for `field` with `share`), and the policies
/// that decided.
pub fn explain_power(
    config: &Path,
    role: &str,
    purpose: &str,
    power: &str,
    field: Option<&str>,
    situation: Situation,
) -> Result<String> {
    let engine = engine(config)?;
    let consent = if situation.consent_given { "given" } else { "not given" };
    let mut out = format!(
        "role {role}, purpose {purpose}, power {power}{}; customer: consent {consent}{}{}\n",
        field.map(|f| format!(" of {f}")).unwrap_or_default(),
        if situation.restricted { ", restricted" } else { "" },
        if situation.break_glass { ", break-glass open" } else { "" },
    );
    let (action, target) = match power {
        "audit" | "manage" => {
            let allowed = if power == "audit" { engine.may_audit(role) } else { engine.may_manage(role) };
            let why = if power == "audit" {
                "the admin role, and roles the catalog declares audit = true, read the whole log"
            } else {
                "only the built-in admin role manages the installation"
            };
            out.push_str(&format!("decision: {}\n  {why}\n", if allowed { "allowed" } else { "refused" }));
            return Ok(out);
        }
        "record_consent" => (Action::RecordConsent, Target::Purpose),
        "erase" => (Action::Erase, Target::Purpose),
        "export" => (Action::Export, Target::Purpose),
        "break_glass" => (Action::BreakGlass, Target::Purpose),
        "share" => match field {
            Some(f) => (Action::Share, Target::Field(f)),
            None => bail!("--power share needs --field: sharing is decided per field"),
        },
        other => bail!("unknown power `{other}`; one of: {}", POWERS.join(", ")),
    };
    let d = engine.decide(role, action, purpose, target, situation)?;
    out.push_str(&format!("decision: {}\n", if d.allowed { "allowed" } else { "refused" }));
    if d.determining.is_empty() && !d.allowed {
        out.push_str("  no policy permits it (Cedar denies by default)\n");
    }
    let by = if d.allowed { "permitted by" } else { "forbidden by" };
    for p in &d.determining {
        let reason = p.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
        out.push_str(&format!("  {by} {} ({}){reason}\n", p.id, p.origin));
    }
    for e in &d.errors {
        out.push_str(&format!("  error (counts as a refusal): {e}\n"));
    }
    Ok(out)
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
