//! `candor import subjects`: bring customers in from a CRM export (CSV with a header, or JSON
//! Lines), with a minimisation report.
//!
//! The import itself is the vault's (`vault::import`, the same operation as `POST /v1/imports`):
//! every row goes through the vault as the given catalog role under the given purpose, with the
//! same policy decisions, checks and log entries as `POST /v1/subjects` (and `PATCH` for updates of
//! existing customers). This module adds the terminal: options, a progress bar with rows/s and
//! ETA, the report files (report.md and report.json, written before anything is stored) and a
//! checkpoint (`import.checkpoint.json` next to them) so a re-run after a crash or Ctrl-C continues
//! after the last batch committed. No personal value ever appears in the report, on the terminal
//! or in the log.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::vault::import::OnDuplicate;

/// `--on-duplicate`: what to do with a row whose unique field belongs to an existing customer.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OnDuplicateArg {
    /// Leave the existing customer as it is (a re-run after a crash continues where it stopped).
    Skip,
    /// Correct the existing customer's fields the purpose may write (each a logged correction).
    Update,
    /// Leave the customer as it is and list it (with its id) in the report for a decision.
    Report,
}

impl From<OnDuplicateArg> for OnDuplicate {
    fn from(arg: OnDuplicateArg) -> Self {
        match arg {
            OnDuplicateArg::Skip => OnDuplicate::Skip,
            OnDuplicateArg::Update => OnDuplicate::Update,
            OnDuplicateArg::Report => OnDuplicate::Report,
        }
    }
}
use crate::vault::import::{self, FileSource, Format, ImportOptions, LineNote, Report};
use crate::vault::{Principal, Vault};

/// The command's options.
pub struct Options {
    pub file: PathBuf,
    pub purpose: String,
    pub role: Option<String>,
    pub map: Option<String>,
    pub dry_run: bool,
    pub on_duplicate: OnDuplicate,
    pub report_dir: PathBuf,
    pub default_region: Option<String>,
    pub consent_source: Option<String>,
    pub consent_notice: Option<String>,
}

/// Lines listed per problem in the terminal summary (the report files list more).
const SHOWN_LINES: usize = 10;

/// The role to act as: the one given, or the first declared role that acts under the purpose.
fn choose_role(vault: &Vault, purpose: &str, role: Option<&str>) -> Result<String> {
    if let Some(r) = role {
        return Ok(r.to_string());
    }
    vault
        .catalog()
        .roles
        .iter()
        .find(|r| r.purposes.iter().any(|p| p.as_str() == purpose))
        .map(|r| r.id.to_string())
        .with_context(|| format!("no role in the catalog acts under purpose `{purpose}`; give one with --role"))
}

/// Where an interrupted import stopped: every row up to `line` is stored. Only for the same file
/// (size and modification time), purpose and role.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Checkpoint {
    file: String,
    size: u64,
    modified_ns: u128,
    purpose: String,
    role: String,
    line: u64,
}

fn fingerprint(file: &Path) -> Result<(u64, u128)> {
    let meta = std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    let modified = meta.modified().ok().and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok());
    Ok((meta.len(), modified.map_or(0, |d| d.as_nanos())))
}

/// Writes the checkpoint atomically (a temporary file renamed over it).
fn save_checkpoint(path: &Path, c: &Checkpoint) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(c).expect("JSON serialises"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The progress bar, and the checkpoint after every committed batch.
struct Terminal {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
    checkpoint: Option<(PathBuf, Checkpoint)>,
    warned: std::sync::atomic::AtomicBool,
}

impl import::Progress for Terminal {
    fn start(&self, phase: &'static str, total: Option<u64>) {
        let bar = match total {
            Some(n) => {
                let bar = indicatif::ProgressBar::new(n);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{msg:10} {bar:40} {pos}/{len} rows {per_sec} eta {eta}")
                        .expect("progress template"),
                );
                bar
            }
            None => {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{msg:10} {spinner} {pos} rows {per_sec}")
                        .expect("progress template"),
                );
                bar
            }
        };
        bar.set_message(phase);
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    fn advance(&self, rows: u64) {
        if let Some(bar) = &*self.bar.lock().expect("progress lock") {
            bar.inc(rows);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }

    fn committed(&self, line: u64) {
        let Some((path, c)) = &self.checkpoint else { return };
        let result = if line == u64::MAX {
            // Done: nothing to continue.
            std::fs::remove_file(path)
                .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
        } else {
            save_checkpoint(path, &Checkpoint { line, ..clone_checkpoint(c) })
        };
        if let Err(e) = result
            && !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            eprintln!(
                "warning: cannot write the checkpoint {}: {e} (a re-run finds stored rows through the blind index)",
                path.display()
            );
        }
    }
}

fn clone_checkpoint(c: &Checkpoint) -> Checkpoint {
    Checkpoint {
        file: c.file.clone(),
        size: c.size,
        modified_ns: c.modified_ns,
        purpose: c.purpose.clone(),
        role: c.role.clone(),
        line: c.line,
    }
}

/// Imports the file (see the module documentation).
pub async fn import(vault: &Vault, options: Options) -> Result<()> {
    let started = Instant::now();
    let catalog = vault.catalog();
    let purpose = catalog
        .purpose(&options.purpose)
        .with_context(|| format!("purpose `{}` is not declared in the catalog", options.purpose))?
        .clone();
    if purpose.needs_consent() {
        bail!(
            "purpose `{}` is consent-based: nobody is created under it. Import customers under the purpose their \
             data was collected for (for example account), with their consents as consent columns (--map \
             \"Column=consent:{}\") or with `candor import consents`",
            purpose.id,
            purpose.id
        );
    }
    let role = choose_role(vault, purpose.id.as_str(), options.role.as_deref())?;
    let principal = Principal { token_id: "cli:import".into(), role: role.clone(), origin: None };
    let auth = vault.authorize(principal, Some(purpose.id.as_str()), None).await?;
    let format = if options.file.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl")) {
        Format::Jsonl
    } else {
        Format::Csv
    };
    let (size, modified_ns) = fingerprint(&options.file)?;
    let name = options.file.display().to_string();
    let this = Checkpoint {
        file: name.clone(),
        size,
        modified_ns,
        purpose: purpose.id.to_string(),
        role: role.clone(),
        line: 0,
    };
    let checkpoint_path = options.report_dir.join("import.checkpoint.json");
    let resume_after = std::fs::read(&checkpoint_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Checkpoint>(&b).ok())
        .filter(|c| Checkpoint { line: 0, ..clone_checkpoint(c) } == this)
        .map_or(0, |c| c.line);
    let import_options = ImportOptions {
        map: options.map.clone(),
        on_duplicate: options.on_duplicate,
        default_region: options.default_region.clone(),
        consent_source: options.consent_source.clone(),
        consent_notice: options.consent_notice.clone(),
        resume_after,
    };
    let terminal = Terminal {
        bar: std::sync::Mutex::new(None),
        checkpoint: (!options.dry_run).then(|| (checkpoint_path.clone(), this)),
        warned: false.into(),
    };
    let source = FileSource(options.file.clone());
    let mut checked = vault.check_import(&auth, &source, format, &name, &import_options, &terminal).await?;
    checked.report.dry_run = options.dry_run;
    write_report(&options.report_dir, &checked.report)?;
    print_summary(&checked.report, &options.report_dir);
    if options.dry_run {
        println!("dry run: nothing was stored");
        return Ok(());
    }
    let report = vault.run_import(&auth, &source, checked, &terminal).await?;
    let outcome = report.outcome.as_ref().expect("an import has an outcome");
    let failed = outcome.failed.len();
    println!(
        "imported: {} created, {} updated, {} unchanged, {} failed; {} consents recorded, {} already held \
         ({:.0} rows/s; {:.1} s in all)",
        outcome.created,
        outcome.updated,
        outcome.unchanged,
        failed,
        outcome.consents_recorded,
        outcome.consents_already_recorded,
        outcome.rows_per_second,
        started.elapsed().as_secs_f64()
    );
    for f in outcome.failed.iter().take(SHOWN_LINES) {
        println!("  line {}: {}", f.line, f.reason.as_deref().unwrap_or_default());
    }
    write_report(&options.report_dir, &report)?;
    if failed > 0 {
        bail!("{failed} row{} could not be stored; see the report", if failed == 1 { "" } else { "s" });
    }
    Ok(())
}

fn lines_text(lines: &[u64]) -> String {
    let shown: Vec<String> = lines.iter().take(SHOWN_LINES).map(u64::to_string).collect();
    let more = lines.len().saturating_sub(SHOWN_LINES);
    if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_summary(r: &Report, dir: &Path) {
    println!("{}: {} under purpose {} as role {}", r.file, plural(r.rows, "row", "rows"), r.purpose, r.role);
    for c in r.columns.iter().filter(|c| c.note.is_some() && !matches!(c.status, "imported" | "consent_evidence")) {
        println!(
            "  column `{}`: {} with a value, not imported ({})",
            c.column,
            c.rows_with_value,
            c.note.as_deref().unwrap_or_default()
        );
    }
    for i in &r.invalid_values {
        println!(
            "  field {}: {} (lines {}), left out: {}",
            i.field,
            plural(i.count, "invalid value", "invalid values"),
            lines_text(&i.lines),
            i.reason
        );
    }
    let lines = |notes: &[LineNote]| notes.iter().map(|n| n.line).collect::<Vec<_>>();
    if !r.incomplete_rows.is_empty() {
        println!(
            "  {} without a required field or any value, not imported (lines {})",
            plural(r.incomplete_rows.len() as u64, "row", "rows"),
            lines_text(&lines(&r.incomplete_rows))
        );
    }
    if !r.duplicates_in_file.is_empty() {
        println!(
            "  {} repeating an earlier row's {} (the first wins; lines {})",
            plural(r.duplicates_in_file.len() as u64, "row", "rows"),
            r.unique_fields.join("/"),
            lines_text(&lines(&r.duplicates_in_file))
        );
    }
    if !r.existing_customers.is_empty() {
        let what = match r.on_duplicate {
            OnDuplicate::Skip => "skipped",
            OnDuplicate::Update => "updated",
            OnDuplicate::Report => "listed in the report",
        };
        println!(
            "  {} of existing customers, {what} (lines {})",
            plural(r.existing_customers.len() as u64, "row", "rows"),
            lines_text(&lines(&r.existing_customers))
        );
    }
    for c in &r.consents {
        let channel = c.channel.as_deref().map(|ch| format!("/{ch}")).unwrap_or_default();
        println!(
            "  consent column `{}` ({}{channel}): {} to record",
            c.column,
            c.purpose,
            plural(c.grants, "grant", "grants")
        );
        for i in &c.invalid {
            println!(
                "    {} (lines {}), not recorded: {}",
                plural(i.count, "row", "rows"),
                lines_text(&i.lines),
                i.reason
            );
        }
    }
    if let Some(line) = r.resumed_after_line {
        println!(
            "  continuing after line {line}: {} stored by an earlier run",
            plural(r.plan.done_earlier, "row", "rows")
        );
    }
    if r.unique_fields.is_empty() {
        println!("  no field is declared unique: existing customers cannot be recognised, duplicates are not checked");
    }
    let p = &r.plan;
    println!("  to create: {}, to update: {}, consents to record: {}", p.create, p.update, p.consents);
    println!("report: {} and {}", dir.join("report.md").display(), dir.join("report.json").display());
}

fn write_report(dir: &Path, r: &Report) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json = serde_json::to_string_pretty(r).expect("the report serialises");
    std::fs::write(dir.join("report.json"), json + "\n")
        .with_context(|| format!("cannot write {}", dir.join("report.json").display()))?;
    std::fs::write(dir.join("report.md"), markdown(r))
        .with_context(|| format!("cannot write {}", dir.join("report.md").display()))?;
    Ok(())
}

fn all_lines(lines: impl Iterator<Item = u64>) -> String {
    lines.map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
}

fn markdown(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "# Import report: {}\n", r.file);
    let _ = writeln!(
        s,
        "{} ({}), purpose `{}`, role `{}`, existing customers: {}.{}\n",
        plural(r.rows, "row", "rows"),
        match r.format {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        },
        r.purpose,
        r.role,
        match r.on_duplicate {
            OnDuplicate::Skip => "skip",
            OnDuplicate::Update => "update",
            OnDuplicate::Report => "report",
        },
        if r.dry_run { " Dry run: nothing stored." } else { "" }
    );
    let _ = writeln!(
        s,
        "No value from the file appears in this report: only column names, counts and line numbers (at most {} \
         listed per problem; the counts are complete).\n",
        r.lines_listed_at_most
    );
    let _ = writeln!(s, "## Columns\n\n| column | field | rows with a value | imported |\n|---|---|---|---|");
    for c in &r.columns {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            c.column,
            c.field.as_deref().unwrap_or("—"),
            c.rows_with_value,
            c.note.as_deref().map_or("yes".to_string(), |n| format!("no: {n}"))
        );
    }
    let _ = writeln!(s, "\n## Values per field\n\n| field | values | valid | invalid (left out) |\n|---|---|---|---|");
    for f in &r.fields {
        let _ = writeln!(s, "| {} | {} | {} | {} |", f.field, f.values, f.valid, f.invalid);
    }
    if !r.invalid_values.is_empty() {
        let _ = writeln!(s, "\n## Invalid values (not imported)\n");
        for i in &r.invalid_values {
            let _ = writeln!(
                s,
                "- `{}` {}: {} — lines {}",
                i.field,
                i.reason,
                plural(i.count, "value", "values"),
                all_lines(i.lines.iter().copied())
            );
        }
    }
    if !r.incomplete_rows.is_empty() {
        let _ = writeln!(s, "\n## Rows not imported\n");
        for n in &r.incomplete_rows {
            let field = n.field.as_deref().map(|f| format!(" `{f}`")).unwrap_or_default();
            let _ = writeln!(s, "- line {}:{field} {}", n.line, n.reason.as_deref().unwrap_or_default());
        }
    }
    let _ = writeln!(s, "\n## Duplicates\n");
    if r.unique_fields.is_empty() {
        let _ = writeln!(s, "No field is declared `unique`: duplicates are not recognised.");
    } else {
        let _ = writeln!(s, "Recognised by: {} (through the blind index).\n", r.unique_fields.join(", "));
    }
    for n in &r.duplicates_in_file {
        let _ = writeln!(
            s,
            "- line {}: same `{}` as line {} (the first wins; not imported)",
            n.line,
            n.field.as_deref().unwrap_or_default(),
            n.first_line.unwrap_or_default()
        );
    }
    for n in &r.existing_customers {
        let id = n.subject_id.as_deref().map(|i| format!(" ({i})")).unwrap_or_default();
        let _ = writeln!(
            s,
            "- line {}: `{}` of an existing customer{id}: {}",
            n.line,
            n.field.as_deref().unwrap_or_default(),
            n.reason.as_deref().unwrap_or_default()
        );
    }
    if !r.consents.is_empty() {
        let _ = writeln!(
            s,
            "\n## Consents\n\nRecorded with method `import`, the importing role and token in the log entry, a signed \
             receipt each; the evidence is sealed with the customer's key.\n\n| column | consent | given at from | \
             source from | notice version from | grants | no or empty |\n|---|---|---|---|---|---|---|"
        );
        for c in &r.consents {
            let channel = c.channel.as_deref().map(|ch| format!("/{ch}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "| {} | {}{channel} | {} | {} | {} | {} | {} |",
                c.column, c.purpose, c.given_at_from, c.source_from, c.notice_version_from, c.grants, c.not_given
            );
        }
        for c in &r.consents {
            for i in &c.invalid {
                let _ = writeln!(
                    s,
                    "- `{}` {}: {}, no consent recorded — lines {}",
                    c.column,
                    i.reason,
                    plural(i.count, "row", "rows"),
                    all_lines(i.lines.iter().copied())
                );
            }
        }
    }
    let p = &r.plan;
    let _ = writeln!(
        s,
        "\n## Plan\n\n- create: {}\n- update: {}\n- skip, existing customer: {}\n- skip, duplicate in the file: {}\n- \
         skip, required field missing or invalid: {}\n- skip, nothing to import: {}\n- stored by an earlier run \
         (checkpoint): {}\n- consents to record: {}",
        p.create,
        p.update,
        p.skip_existing,
        p.skip_duplicate_in_file,
        p.skip_incomplete,
        p.skip_empty,
        p.done_earlier,
        p.consents
    );
    if let Some(o) = &r.outcome {
        let _ = writeln!(
            s,
            "\n## Outcome\n\n- created: {}\n- updated: {}\n- unchanged: {}\n- failed: {}\n- consents recorded: {}\n- \
             consents already held: {}\n- {:.0} rows/s",
            o.created,
            o.updated,
            o.unchanged,
            o.failed.len(),
            o.consents_recorded,
            o.consents_already_recorded,
            o.rows_per_second
        );
        for f in &o.failed {
            let _ = writeln!(s, "  - line {}: {}", f.line, f.reason.as_deref().unwrap_or_default());
        }
    }
    s
}
