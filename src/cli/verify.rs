//! `candor verify history BUNDLE`: checks a customer's history proof bundle offline (no server,
//! no installation) with `candor_log::history`, and says in plain words what it proved or which
//! check failed, naming the checkpoint.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use candor_log::history::{HistoryBundle, HistoryReport, Trust, verify_bundle, verify_extension};
use candor_log::note::VerifierKey;
use candor_log::witness::CosignerKey;

/// What the person checking trusts beyond the bundle.
pub struct HistoryOptions {
    /// The log's verifier key, obtained independently.
    pub log_key: Option<String>,
    /// Witness verifier keys, obtained independently (replace the bundle's).
    pub witnesses: Vec<String>,
    /// Cosignatures required at least.
    pub require: Option<usize>,
    /// An earlier bundle of the same customer: the later one must keep every earlier entry.
    pub since: Option<std::path::PathBuf>,
}

fn read_bundle(path: &Path) -> Result<HistoryBundle> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a Candor history proof bundle (JSON)", path.display()))
}

/// Verifies the bundle at `path`; the plain-words report on success.
pub fn history(path: &Path, options: &HistoryOptions) -> Result<Vec<String>> {
    let bundle = read_bundle(path)?;
    let trust = Trust {
        log_key: options.log_key.as_deref().map(VerifierKey::parse).transpose().context("--log-key")?,
        witnesses: if options.witnesses.is_empty() {
            None
        } else {
            Some(
                options
                    .witnesses
                    .iter()
                    .map(|w| CosignerKey::parse(w))
                    .collect::<Result<_, _>>()
                    .context("--witness")?,
            )
        },
        required: options.require,
    };
    let Some(since) = &options.since else {
        let report = verify_bundle(&bundle, &trust).map_err(|e| anyhow!("NOT VERIFIED: {e}"))?;
        return Ok(describe(&report));
    };
    let earlier = read_bundle(since)?;
    let r = verify_extension(&earlier, &bundle, &trust).map_err(|e| anyhow!("NOT VERIFIED: {e}"))?;
    let mut lines = describe(&r.later);
    lines.push(format!(
        "EXTENDS the earlier bundle: its {} entries (checkpoint of size {}) are all still listed, unchanged and in place; {} entries were added since.",
        r.earlier.count, r.earlier.checkpoint_size, r.added
    ));
    if r.common_witnesses.is_empty() {
        lines.push(
            "  No witness cosigned both checkpoints, so this does not show that the later log extends the earlier one (ask the server for a consistency proof)."
                .into(),
        );
    } else {
        lines.push(format!(
            "  {} cosigned both checkpoints: the later log extends the earlier one.",
            r.common_witnesses.join(", ")
        ));
    }
    Ok(lines)
}

fn when(seconds: u64) -> String {
    jiff::Timestamp::from_second(seconds as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| format!("{seconds} s after 1970"))
}

/// The report in plain words.
pub fn describe(r: &HistoryReport) -> Vec<String> {
    let newest_cosignature = r.cosignatures.iter().map(|c| c.timestamp).max();
    let up_to = match (newest_cosignature, &r.last_entry_time) {
        (Some(t), _) => when(t),
        (None, Some(t)) => format!("{} (the newest entry's time; no witness dated this checkpoint)", t),
        (None, None) => "this checkpoint".into(),
    };
    let mut lines = Vec::new();
    let what = if r.count == 1 { "entry".to_string() } else { "entries".to_string() };
    let witnesses = match r.cosignatures.len() {
        0 => "no independent witness has cosigned this checkpoint, so this does not show that everyone else sees the same log".to_string(),
        1 => "1 independent witness confirms everyone sees the same log".to_string(),
        n => format!("{n} independent witnesses confirm everyone sees the same log"),
    };
    lines.push(format!(
        "VERIFIED: all {} {what} about your data ({} of them accesses that showed your data) up to {up_to} are listed; {witnesses}.",
        r.count, r.reads
    ));
    lines.push(format!(
        "  Each listed entry is in the log of checkpoint {} of `{}` (inclusion proofs), and the checkpoint commits to exactly {} {what} naming you (completeness map): none left out, altered, reordered or added.",
        r.checkpoint_size, r.origin, r.count
    ));
    for c in &r.cosignatures {
        lines.push(format!("  cosigned by witness {} at {}", c.witness, when(c.timestamp)));
    }
    if r.log_key_from_bundle {
        lines.push(format!(
            "  The log key came with the bundle ({}): compare it with the one the company publishes (GET /v1/log/key) or pin it with --log-key.",
            r.log_key
        ));
    }
    if r.witness_keys_from_bundle && !r.cosignatures.is_empty() {
        lines.push(
            "  The witnesses' keys came with the bundle: check them with the witnesses' operators or pin them with --witness."
                .into(),
        );
    }
    lines
}
