//! Consent commands: `candor receipt verify` and `candor import consents`.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use candor_core::SubjectId;
use candor_core::consent::{self, ActorKind, RequestedChange};
use candor_log::note::VerifierKey;
use serde_json::Value;

use crate::vault::audit::system_actor;
use crate::vault::receipt::{self, CONSENT_RECEIPT};
use crate::vault::{ImportLine, Vault};
use crate::{config, install};

/// Verifies a saved consent receipt against the given verifier key, or the installation's.
pub fn verify_receipt(file: &Path, key: Option<&str>, config_path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let document: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not JSON (line {}, column {})", file.display(), e.line(), e.column()))?;
    let key = match key {
        Some(k) => VerifierKey::parse(k).map_err(|e| anyhow::anyhow!("--key: {e}"))?,
        None => {
            let config = config::Config::load(config_path)
                .context("give the verifier key with --key (from GET /v1/log/key), or run where candor.toml is")?;
            VerifierKey::new(&config.log.origin, install::load_log_signer(&config)?.public_key())
        }
    };
    let context = receipt::context_of(&document).unwrap_or(CONSENT_RECEIPT);
    let kind = match context {
        receipt::EXPORT_MANIFEST => "export manifest",
        receipt::ERASURE_CERTIFICATE => "erasure certificate",
        _ => "consent receipt",
    };
    let body = receipt::verify(&key, context, &document)
        .map_err(|e| anyhow::anyhow!("{}: {kind} NOT valid: {e}", file.display()))?;
    println!("{}: {kind} valid, signed by {}", file.display(), key.name);
    if context == receipt::EXPORT_MANIFEST {
        let s = |v: &Value| v.to_string().trim_matches('"').to_string();
        println!("  export of subject {}", s(&body["subject_id"]));
        for f in body["files"].as_array().into_iter().flatten() {
            let rows = f["rows"].as_u64().unwrap_or(0);
            let unit = if rows == 1 { "row" } else { "rows" };
            println!("  {}: {rows} {unit}, sha256 {}", s(&f["name"]), s(&f["sha256"]));
        }
        return Ok(());
    }
    if context == receipt::ERASURE_CERTIFICATE {
        let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
        println!("  erasure certificate: {}", s(&body["certificate_id"]));
        println!("  subject:    {}", s(&body["subject_id"]));
        println!("  erased at:  {}", s(&body["erased_at"]));
        for f in body["erased"]["fields"].as_array().into_iter().flatten() {
            println!("  field {} ({})", s(&f["field"]), s(&f["category"]));
        }
        for r in body["recipients_to_notify"].as_array().into_iter().flatten() {
            println!("  recipient to notify: {} ({})", s(&r["name"]), s(&r["country"]));
        }
        if let Some(summary) = body["recipients_summary"].as_str() {
            println!("  recipients: {summary}");
        }
        return Ok(());
    }
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    println!("  receipt:    {}", s(&body["receipt_id"]));
    println!("  subject:    {}", s(&body["subject_id"]));
    println!("  given at:   {} ({})", s(&body["timestamp"]), s(&body["method"]));
    println!("  controller: {} <{}>", s(&body["controller"]["name"]), s(&body["controller"]["contact"]));
    for p in body["purposes"].as_array().into_iter().flatten() {
        let channel = p["channel"].as_str().map(|c| format!("/{c}")).unwrap_or_default();
        println!("  {} {}{channel} (notice {})", s(&p["action"]), s(&p["purpose"]), s(&p["notice_version"]));
    }
    Ok(())
}

/// Largest number of problems listed before the import gives up listing.
const MAX_LISTED: usize = 20;
/// Clock skew tolerated for "not in the future".
const SKEW_MS: i64 = 5 * 60 * 1000;

/// How an import line without a `notice_version` is recorded.
pub enum NoticeDefault {
    /// Refuse such lines.
    Required,
    /// The notice in force now (the operator vouches that customers saw it).
    Current,
    /// A given label (for example the version of the old system's notice).
    Given(String),
}

impl NoticeDefault {
    pub fn from_arg(arg: Option<&str>) -> Self {
        match arg {
            None => NoticeDefault::Required,
            Some("current") => NoticeDefault::Current,
            Some(v) => NoticeDefault::Given(v.to_string()),
        }
    }
}

/// Imports consents from a CSV file: all lines or none.
pub async fn import(vault: &Vault, file: &Path, notice: NoticeDefault) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let headers = reader.headers().with_context(|| format!("{}: no header line", file.display()))?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    const REQUIRED: [&str; 4] = ["subject_id", "purpose", "action", "given_at"];
    const KNOWN: [&str; 7] = ["subject_id", "purpose", "channel", "action", "given_at", "evidence", "notice_version"];
    let missing: Vec<&str> = REQUIRED.into_iter().filter(|c| column(c).is_none()).collect();
    if !missing.is_empty() {
        bail!(
            "{}: line 1: the header lacks {}; expected columns: {} (channel, evidence and notice_version may be empty)",
            file.display(),
            missing.join(", "),
            KNOWN.join(",")
        );
    }
    if let Some(unknown) = headers.iter().find(|h| !KNOWN.contains(h)) {
        bail!("{}: line 1: unknown column `{unknown}`; expected columns: {}", file.display(), KNOWN.join(","));
    }

    let records: Vec<(u64, csv::StringRecord)> = {
        let mut out = Vec::new();
        for r in reader.records() {
            let r = r.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            out.push((r.position().map_or(0, |p| p.line()), r));
        }
        out
    };
    let bar = indicatif::ProgressBar::new(records.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:10} {bar:40} {pos}/{len} lines").expect("progress template"),
    );
    bar.set_message("checking");

    let now = crate::clock::now().as_millisecond();
    fn cell(r: &csv::StringRecord, at: Option<usize>) -> Option<&str> {
        at.and_then(|i| r.get(i)).filter(|v| !v.is_empty())
    }
    let get = |r, name: &str| cell(r, column(name));
    let mut problems: Vec<String> = Vec::new();
    let mut lines = Vec::with_capacity(records.len());
    let mut known_subjects: HashSet<SubjectId> = HashSet::new();
    for (line, r) in &records {
        bar.inc(1);
        let mut problem = |field: &str, message: String| problems.push(format!("line {line}: {field}: {message}"));
        let Some(subject) = get(r, "subject_id").and_then(SubjectId::parse) else {
            problem("subject_id", "must be a subject id (UUID)".into());
            continue;
        };
        if !known_subjects.contains(&subject) {
            if !vault.subject_exists(subject).await? {
                problem("subject_id", format!("no subject {subject} in this installation"));
                continue;
            }
            known_subjects.insert(subject);
        }
        let requested = RequestedChange {
            purpose: get(r, "purpose").unwrap_or_default().to_string(),
            channel: get(r, "channel").map(str::to_string),
            action: get(r, "action").unwrap_or_default().to_string(),
        };
        let changes = match consent::check_changes(vault.catalog(), None, std::slice::from_ref(&requested)) {
            Ok(c) => c,
            Err(e) => {
                problem(e.field().trim_start_matches("changes[0]."), e.to_string());
                continue;
            }
        };
        let given_at = match get(r, "given_at").map(str::parse::<jiff::Timestamp>) {
            Some(Ok(t)) if t.as_millisecond() <= now + SKEW_MS => t.as_millisecond(),
            Some(Ok(_)) => {
                problem("given_at", "is in the future".into());
                continue;
            }
            _ => {
                problem("given_at", "must be an RFC 3339 time such as 2024-03-01T09:30:00Z".into());
                continue;
            }
        };
        let evidence = get(r, "evidence").map(str::to_string);
        if let Err(e) = consent::check_note(ActorKind::Operator, None, evidence.as_deref()) {
            problem("evidence", e.to_string());
            continue;
        }
        let purpose = &changes[0].slot.purpose;
        let notice_version = match (get(r, "notice_version"), &notice) {
            (Some(v), _) => v.to_string(),
            (None, NoticeDefault::Current) => vault.notices().version(purpose).to_string(),
            (None, NoticeDefault::Given(v)) => v.clone(),
            (None, NoticeDefault::Required) => {
                problem(
                    "notice_version",
                    "is empty: fill it in, or pass --notice-version current if these customers were shown the \
                     notice now in force (or --notice-version LABEL for an earlier one)"
                        .into(),
                );
                continue;
            }
        };
        lines.push(ImportLine { subject, changes, given_at, evidence, notice_version });
    }
    bar.finish_and_clear();
    if !problems.is_empty() {
        let n = problems.len();
        let mut report: Vec<String> = problems.into_iter().take(MAX_LISTED).collect();
        if n > MAX_LISTED {
            report.push(format!("... and {} more", n - MAX_LISTED));
        }
        bail!(
            "{}: {n} line{} cannot be imported; nothing was imported:\n{}",
            file.display(),
            if n == 1 { "" } else { "s" },
            report.join("\n")
        );
    }
    if lines.is_empty() {
        bail!("{}: no consent lines to import", file.display());
    }
    let bar = indicatif::ProgressBar::new(lines.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:10} {bar:40} {pos}/{len} lines").expect("progress template"),
    );
    bar.set_message("signing");
    let n = vault.import_consents(&system_actor(), lines, |done| bar.set_position(done)).await?;
    bar.finish_and_clear();
    println!(
        "imported {n} consent line{} from {} (one receipt and one log entry each)",
        if n == 1 { "" } else { "s" },
        file.display()
    );
    Ok(())
}
