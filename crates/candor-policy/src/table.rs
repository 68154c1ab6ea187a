//! Decision tables: an operator's authorization tests, kept next to the catalog as CSV.
//!
//! ```text
//! role,purpose,consent,restricted,break_glass,email,phone,purchase
//! support_agent,customer_support,,,,masked,masked,full
//! support_agent,customer_support,,,yes,full,full,full
//! marketing_tool,marketing,no,,,denied,denied,denied
//! ```
//!
//! `role` and `purpose` are required; `consent` (default yes), `restricted` (default no) and
//! `break_glass` (default no) describe the customer; every other column is a field or event type
//! whose expected outcome is `full`, `masked`, `withheld` or `denied` (the whole request is
//! refused). An empty cell is not checked.

use crate::{Outcome, PolicyEngine, Situation};

const SITUATION_COLUMNS: [&str; 3] = ["consent", "restricted", "break_glass"];

/// One row: a role acting under a purpose for a customer in a situation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Line in the file (the header is line 1).
    pub line: usize,
    pub role: String,
    pub purpose: String,
    pub situation: Situation,
    /// Field or event type, and the expected outcome name.
    pub expected: Vec<(String, String)>,
}

/// An outcome different from the one expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub line: usize,
    pub role: String,
    pub purpose: String,
    pub name: String,
    pub expected: String,
    pub actual: String,
}

const OUTCOMES: [&str; 4] = ["full", "masked", "withheld", "denied"];

fn yes_no(value: &str, default: bool, line: usize, column: &str) -> Result<bool, String> {
    match value.trim() {
        "" => Ok(default),
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        other => Err(format!("line {line}: column `{column}` must be yes or no, not `{other}`")),
    }
}

/// Parses a table; every problem is reported with its line.
pub fn parse(text: &str) -> Result<Vec<Case>, Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(false).from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(vec![format!("line 1: {e}")]),
    };
    let mut errors = Vec::new();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(role_col), Some(purpose_col)) = (col("role"), col("purpose")) else {
        return Err(vec!["line 1: the header needs columns `role` and `purpose`".to_string()]);
    };
    let outcome_cols: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| *h != "role" && *h != "purpose" && !SITUATION_COLUMNS.contains(h))
        .map(|(i, h)| (i, h.to_string()))
        .collect();
    if outcome_cols.is_empty() {
        errors.push("line 1: no field or event type columns to check".to_string());
    }
    let mut cases = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let cell = |c: Option<usize>| c.and_then(|c| record.get(c)).unwrap_or("");
        let flag = |name: &str, default: bool| yes_no(cell(col(name)), default, line, name);
        let situation = match (flag("consent", true), flag("restricted", false), flag("break_glass", false)) {
            (Ok(consent_given), Ok(restricted), Ok(break_glass)) => {
                Situation { consent_given, restricted, break_glass }
            }
            (a, b, c) => {
                errors.extend([a.err(), b.err(), c.err()].into_iter().flatten());
                continue;
            }
        };
        let mut expected = Vec::new();
        for (c, name) in &outcome_cols {
            let v = record.get(*c).unwrap_or("");
            if v.is_empty() {
                continue;
            }
            if !OUTCOMES.contains(&v) {
                errors.push(format!("line {line}: `{name}` must be one of {}, not `{v}`", OUTCOMES.join(", ")));
                continue;
            }
            expected.push((name.clone(), v.to_string()));
        }
        cases.push(Case {
            line,
            role: cell(Some(role_col)).to_string(),
            purpose: cell(Some(purpose_col)).to_string(),
            situation,
            expected,
        });
    }
    if errors.is_empty() { Ok(cases) } else { Err(errors) }
}

/// The outcome name the engine gives, `denied` when the role may not act at all.
pub fn actual(engine: &PolicyEngine, case: &Case, name: &str) -> Result<String, String> {
    let outcomes = engine.outcomes(&case.role, &case.purpose, case.situation).map_err(|e| e.to_string())?;
    if !outcomes.act.allowed {
        return Ok("denied".to_string());
    }
    let outcome = if let Some(i) = engine.fields.iter().position(|(f, _)| f == name) {
        outcomes.fields[i]
    } else if let Some(i) = engine.events.iter().position(|e| e == name) {
        outcomes.events[i]
    } else {
        return Err(format!("`{name}` is not a field or event type of the catalog"));
    };
    Ok(match outcome {
        Outcome::Masked(_) => "masked".to_string(),
        o => o.name().to_string(),
    })
}

/// Runs every case; returns how many cells were checked and the mismatches, or the first
/// unusable row (unknown role, purpose or field) as an error.
pub fn run(engine: &PolicyEngine, cases: &[Case]) -> Result<(usize, Vec<Mismatch>), String> {
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for case in cases {
        for (name, expected) in &case.expected {
            let actual = actual(engine, case, name).map_err(|e| format!("line {}: {e}", case.line))?;
            checked += 1;
            if &actual != expected {
                mismatches.push(Mismatch {
                    line: case.line,
                    role: case.role.clone(),
                    purpose: case.purpose.clone(),
                    name: name.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
    }
    Ok((checked, mismatches))
}
