//! `candor import subjects`: bring customers in from a CRM export (CSV with a header, or JSON
//! Lines), with a minimisation report.
//!
//! Every row goes through the vault as the given catalog role under the given purpose — the same
//! policy decisions, checks and log entries as `POST /v1/subjects` (and `PATCH` for updates of
//! existing customers, and `GET /v1/subjects?field=` for the duplicate check). Before anything is
//! stored, the report says what will and will not be imported and why: columns without a declared
//! field, values that fail the catalog's validation (line numbers only), duplicates inside the
//! file and against existing customers, fields the purpose may not write and consent columns.
//! No personal value ever appears in the report, on the terminal or in the log.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candor_core::SubjectId;
use candor_core::catalog::{Catalog, FieldType, Purpose};
use candor_core::value;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::vault::{Authorized, Principal, Vault, VaultError};

/// What to do with a row whose unique field (the example's e-mail) belongs to an existing customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    /// Leave the existing customer as it is (a re-run after a crash continues where it stopped).
    Skip,
    /// Correct the existing customer's fields the purpose may write (each a logged correction).
    Update,
    /// Leave the customer as it is and list it (with its id) in the report for a decision.
    Report,
}

/// The command's options.
pub struct Options {
    pub file: PathBuf,
    pub purpose: String,
    pub role: Option<String>,
    pub map: Option<String>,
    pub dry_run: bool,
    pub on_duplicate: OnDuplicate,
    pub report_dir: PathBuf,
}

/// What a report says about consent columns.
pub const CONSENT_COLUMN: &str =
    "consent columns are imported with `candor import consents`, which records their evidence";

/// The parts of a postal address value (as `candor_core::value` accepts them).
use candor_core::value::ADDRESS_KEYS as ADDRESS_PARTS;

/// Rows created or looked up concurrently (lets the store commit them together).
const IN_FLIGHT: usize = 32;

/// Lines listed per problem in the terminal summary (the report files list them all).
const SHOWN_LINES: usize = 10;

/// Where a column's values go.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// A declared field the purpose may write.
    Field(usize),
    /// A part of a declared postal address field the purpose may write.
    Part(usize, &'static str),
    /// A declared field (or part of one) the purpose may not write.
    NotWritable(usize),
    /// No declared field.
    Undeclared,
    /// A consent column (refused in this version).
    Consent,
    /// Left out with `--map "Column="`.
    Ignored,
}

/// The input: column names and rows of optional values, with their line numbers.
struct Table {
    columns: Vec<String>,
    rows: Vec<(u64, Vec<Option<Value>>)>,
}

fn read_table(file: &Path) -> Result<Table> {
    if file.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl")) { read_jsonl(file) } else { read_csv(file) }
}

fn read_csv(file: &Path) -> Result<Table> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let headers = reader.headers().with_context(|| format!("{}: no header line", file.display()))?;
    let columns: Vec<String> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| if i == 0 { h.trim_start_matches('\u{feff}') } else { h }.to_string())
        .collect();
    refuse_data_as_header(file, &columns)?;
    let mut rows = Vec::new();
    for record in reader.records() {
        // The csv crate's errors name positions and counts, never the content.
        let record = record.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let cells = record.iter().map(|c| (!c.is_empty()).then(|| Value::String(c.to_string()))).collect();
        rows.push((line, cells));
    }
    Ok(Table { columns, rows })
}

/// Column names appear in the report and on the terminal, so a first line that is a customer's
/// data (a file without a header) must not become them: a header cell that is an e-mail address
/// or a phone number, or an overlong one, stops the import before anything is printed.
fn refuse_data_as_header(file: &Path, columns: &[String]) -> Result<()> {
    use candor_core::catalog::FieldType;
    for (i, name) in columns.iter().enumerate() {
        let json = Value::String(name.clone());
        let looks_like_data = candor_core::value::validate(FieldType::Email, &json).is_ok()
            || candor_core::value::validate(FieldType::Phone, &json).is_ok()
            || name.chars().count() > 100;
        if looks_like_data {
            anyhow::bail!(
                "{}: column {} of the first line looks like a customer's data, not a column name: the file \
                 needs a header line naming its columns (nothing was imported or reported)",
                file.display(),
                i + 1
            );
        }
    }
    Ok(())
}

fn read_jsonl(file: &Path) -> Result<Table> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut columns: Vec<String> = Vec::new();
    let mut objects = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let object: Map<String, Value> = match serde_json::from_str(line) {
            Ok(Value::Object(o)) => o,
            Ok(_) => bail!("{}: line {n}: not a JSON object", file.display()),
            Err(e) => bail!("{}: line {n}: not JSON (column {})", file.display(), e.column()),
        };
        for key in object.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
        objects.push((n, object));
    }
    let rows = objects
        .into_iter()
        .map(|(n, mut o)| {
            let cells = columns
                .iter()
                .map(|c| match o.remove(c) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.trim().is_empty() => None,
                    Some(v) => Some(v),
                })
                .collect();
            (n, cells)
        })
        .collect();
    Ok(Table { columns, rows })
}

/// Lower case, letters and digits only: `E-Mail`, `e_mail` and `E MAIL` are the same header.
fn normalise(header: &str) -> String {
    header.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// The only declared field of type `ty`, if exactly one.
fn only_of_type(catalog: &Catalog, ty: FieldType) -> Option<usize> {
    let mut of_type = catalog.fields.iter().enumerate().filter(|(_, f)| f.field_type == ty);
    match (of_type.next(), of_type.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

fn field_index(catalog: &Catalog, name: &str) -> Option<usize> {
    catalog.fields.iter().position(|f| f.name.as_str() == name)
}

fn address_part(normalised: &str) -> Option<&'static str> {
    Some(match normalised {
        "street" | "streetaddress" | "address" | "address1" | "addressline1" => "street",
        "line2" | "address2" | "addressline2" => "line2",
        "postalcode" | "postcode" | "zip" | "zipcode" => "postal_code",
        "city" | "town" => "city",
        "region" | "state" | "county" | "province" => "region",
        "country" | "countrycode" => "country",
        _ => return None,
    })
}

/// The obvious field for a header, or `None`.
fn auto_target(catalog: &Catalog, header: &str) -> Option<Target> {
    let fields = &catalog.fields;
    if let Some((field, part)) = header.split_once('.') {
        let i = fields.iter().position(|f| normalise(f.name.as_str()) == normalise(field))?;
        let part = ADDRESS_PARTS.iter().find(|p| normalise(p) == normalise(part))?;
        return (fields[i].field_type == FieldType::PostalAddress).then_some(Target::Part(i, part));
    }
    let h = normalise(header);
    if let Some(i) = fields.iter().position(|f| normalise(f.name.as_str()) == h) {
        return Some(Target::Field(i));
    }
    let by_type_or_name = |name: &str, ty: Option<FieldType>| {
        field_index(catalog, name).or_else(|| ty.and_then(|t| only_of_type(catalog, t))).map(Target::Field)
    };
    match h.as_str() {
        "email" | "mail" | "emailaddress" | "mailaddress" => return by_type_or_name("email", Some(FieldType::Email)),
        "phone" | "telephone" | "tel" | "mobile" | "mobilephone" | "phonenumber" | "telephonenumber"
        | "mobilenumber" | "cell" | "cellphone" => return by_type_or_name("phone", Some(FieldType::Phone)),
        "name" | "fullname" | "customername" => {
            return field_index(catalog, "full_name").or_else(|| field_index(catalog, "name")).map(Target::Field);
        }
        _ => {}
    }
    let part = address_part(&h)?;
    only_of_type(catalog, FieldType::PostalAddress).map(|i| Target::Part(i, part))
}

/// Whether a column looks like a record of consent (a purpose's opt-in, a newsletter tick box).
fn is_consent_column(catalog: &Catalog, header: &str) -> bool {
    let h = normalise(header);
    const WORDS: [&str; 8] =
        ["consent", "optin", "optout", "newsletter", "subscribe", "gdpr", "permission", "marketing"];
    WORDS.iter().any(|w| h.contains(w))
        || catalog.purposes.iter().filter(|p| p.needs_consent()).any(|p| h.starts_with(&normalise(p.id.as_str())))
}

/// Resolves every column: `--map` first, then the obvious matches.
fn resolve_columns(catalog: &Catalog, purpose: &Purpose, columns: &[String], map: Option<&str>) -> Result<Vec<Target>> {
    let mut explicit: HashMap<&str, &str> = HashMap::new();
    for pair in map.unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((column, field)) = pair.rsplit_once('=') else {
            bail!("--map: `{pair}` is not COLUMN=FIELD (for example \"E-mail=email,Name=full_name\")");
        };
        let column = column.trim();
        if !columns.iter().any(|c| c == column) {
            bail!("--map: the file has no column `{column}`; its columns: {}", columns.join(", "));
        }
        explicit.insert(column, field.trim());
    }
    let mut targets = Vec::with_capacity(columns.len());
    for column in columns {
        let target = match explicit.get(column.as_str()) {
            Some(&"") => Target::Ignored,
            Some(field) => {
                let (name, part) = match field.split_once('.') {
                    Some((n, p)) => (n, Some(p)),
                    None => (*field, None),
                };
                let Some(i) = field_index(catalog, name) else {
                    bail!("--map: field `{name}` is not declared in the catalog (column `{column}`)");
                };
                match part {
                    None => Target::Field(i),
                    Some(p) => {
                        let Some(part) = ADDRESS_PARTS.iter().find(|a| **a == p) else {
                            bail!("--map: `{field}`: an address part is one of {}", ADDRESS_PARTS.join(", "));
                        };
                        if catalog.fields[i].field_type != FieldType::PostalAddress {
                            bail!("--map: `{field}`: field `{name}` is not a postal address");
                        }
                        Target::Part(i, part)
                    }
                }
            }
            None => match auto_target(catalog, column) {
                Some(t) => t,
                None if is_consent_column(catalog, column) => Target::Consent,
                None => Target::Undeclared,
            },
        };
        let target = match target {
            Target::Field(i) | Target::Part(i, _) if !catalog.fields[i].allows(&purpose.id) => Target::NotWritable(i),
            t => t,
        };
        targets.push(target);
    }
    // Two columns for the same field (or address part) would make the import guess.
    for (a, ta) in targets.iter().enumerate() {
        for (b, tb) in targets.iter().enumerate().skip(a + 1) {
            let same = match (ta, tb) {
                (Target::Field(x), Target::Field(y)) => x == y,
                (Target::Part(x, p), Target::Part(y, q)) => x == y && p == q,
                (Target::Field(x), Target::Part(y, _)) | (Target::Part(x, _), Target::Field(y)) => x == y,
                _ => false,
            };
            if same {
                bail!(
                    "columns `{}` and `{}` both go to field `{}`; say which one with --map (and leave the other out \
                     with \"{}=\")",
                    columns[a],
                    columns[b],
                    target_name(catalog, ta),
                    columns[b]
                );
            }
        }
    }
    Ok(targets)
}

fn target_name(catalog: &Catalog, t: &Target) -> String {
    match t {
        Target::Field(i) | Target::NotWritable(i) => catalog.fields[*i].name.to_string(),
        Target::Part(i, p) => format!("{}.{p}", catalog.fields[*i].name),
        _ => String::new(),
    }
}

/// The role to act as: the one given, or the first declared role that acts under the purpose.
fn choose_role(catalog: &Catalog, purpose: &str, role: Option<&str>) -> Result<String> {
    if let Some(r) = role {
        return Ok(r.to_string());
    }
    catalog
        .roles
        .iter()
        .find(|r| r.purposes.iter().any(|p| p.as_str() == purpose))
        .map(|r| r.id.to_string())
        .with_context(|| format!("no role in the catalog acts under purpose `{purpose}`; give one with --role"))
}

/// A cell's value as the field's type takes it: numbers and JSON parsed from CSV text.
fn typed(ty: FieldType, v: &Value) -> Result<Value, String> {
    match (ty, v) {
        (FieldType::Number, Value::String(s)) => {
            s.trim().parse::<serde_json::Number>().map(Value::Number).map_err(|_| "must be a number".to_string())
        }
        (FieldType::Json, Value::String(s)) => serde_json::from_str(s).map_err(|_| "must be JSON".to_string()),
        _ => Ok(v.clone()),
    }
}

// ---- the report ----

#[derive(Serialize, Default)]
struct ColumnReport {
    column: String,
    /// The field (or `field.part`) it goes to, if declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// imported, undeclared, not_writable, consent, ignored
    status: &'static str,
    rows_with_value: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize)]
struct InvalidReport {
    field: String,
    reason: String,
    count: u64,
    lines: Vec<u64>,
}

#[derive(Serialize)]
struct FieldReport {
    field: String,
    values: u64,
    valid: u64,
    invalid: u64,
}

#[derive(Serialize)]
struct LineNote {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize, Default)]
struct Plan {
    create: u64,
    update: u64,
    skip_existing: u64,
    skip_duplicate_in_file: u64,
    skip_incomplete: u64,
    skip_empty: u64,
}

#[derive(Serialize, Default)]
struct Outcome {
    created: u64,
    updated: u64,
    unchanged: u64,
    failed: Vec<LineNote>,
    seconds: f64,
    rows_per_second: f64,
}

#[derive(Serialize)]
struct Report {
    file: String,
    format: &'static str,
    purpose: String,
    role: String,
    dry_run: bool,
    on_duplicate: OnDuplicate,
    rows: u64,
    columns: Vec<ColumnReport>,
    fields: Vec<FieldReport>,
    invalid_values: Vec<InvalidReport>,
    incomplete_rows: Vec<LineNote>,
    duplicates_in_file: Vec<LineNote>,
    existing_customers: Vec<LineNote>,
    unique_fields: Vec<String>,
    plan: Plan,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
}

/// What happens to one row.
enum Action {
    Create(Map<String, Value>),
    Update(SubjectId, Map<String, Value>),
}

/// Imports the file (see the module documentation).
pub async fn import(vault: &Vault, options: Options) -> Result<()> {
    let catalog = vault.catalog();
    let purpose = catalog
        .purpose(&options.purpose)
        .with_context(|| format!("purpose `{}` is not declared in the catalog", options.purpose))?
        .clone();
    if purpose.needs_consent() {
        bail!(
            "purpose `{}` is consent-based: nobody is created under it. Import customers under the purpose their \
             data was collected for (for example account), then their consents with `candor import consents`",
            purpose.id
        );
    }
    let role = choose_role(catalog, purpose.id.as_str(), options.role.as_deref())?;
    let principal = Principal { token_id: "cli:import".into(), role: role.clone(), origin: None };
    let auth = vault.authorize(principal, Some(purpose.id.as_str()), None).await?;
    if let Some(decl) = catalog.fields.iter().find(|f| f.required && !f.allows(&purpose.id)) {
        bail!(
            "field `{}` is required, but purpose `{}` may not write it: import under a purpose that covers every \
             required field",
            decl.name,
            purpose.id
        );
    }

    let table = read_table(&options.file)?;
    let targets = resolve_columns(catalog, &purpose, &table.columns, options.map.as_deref())?;
    let unique: Vec<usize> =
        catalog.fields.iter().enumerate().filter(|(_, f)| f.unique && f.lookup).map(|(i, _)| i).collect();

    // Check every row: validation, required fields, duplicates inside the file.
    let mut with_value = vec![0u64; table.columns.len()];
    let mut values = vec![0u64; catalog.fields.len()];
    let mut valid = vec![0u64; catalog.fields.len()];
    let mut invalid: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    let mut incomplete = Vec::new();
    let mut in_file = Vec::new();
    let mut plan = Plan::default();
    let mut seen: HashMap<(usize, Vec<u8>), u64> = HashMap::new();
    let mut candidates: Vec<(u64, Map<String, Value>)> = Vec::new();
    for (line, cells) in &table.rows {
        let mut parts: BTreeMap<usize, Map<String, Value>> = BTreeMap::new();
        let mut raw: BTreeMap<usize, Value> = BTreeMap::new();
        for (c, cell) in cells.iter().enumerate() {
            let Some(cell) = cell else { continue };
            with_value[c] += 1;
            match targets.get(c) {
                Some(Target::Field(i)) => {
                    raw.insert(*i, cell.clone());
                }
                Some(Target::Part(i, p)) => {
                    parts.entry(*i).or_default().insert((*p).to_string(), cell.clone());
                }
                _ => {}
            }
        }
        for (i, p) in parts {
            raw.insert(i, Value::Object(p));
        }
        let mut fields = Map::new();
        for (i, v) in raw {
            let decl = &catalog.fields[i];
            values[i] += 1;
            match typed(decl.field_type, &v).and_then(|v| value::validate(decl.field_type, &v).map_err(|e| e.0)) {
                Ok(v) => {
                    valid[i] += 1;
                    fields.insert(decl.name.to_string(), v.into_json());
                }
                Err(reason) => invalid.entry((decl.name.to_string(), reason)).or_default().push(*line),
            }
        }
        if fields.is_empty() {
            plan.skip_empty += 1;
            incomplete.push(LineNote {
                line: *line,
                field: None,
                first_line: None,
                subject_id: None,
                reason: Some("no value to import".into()),
            });
            continue;
        }
        if let Some(missing) = catalog.fields.iter().find(|f| f.required && !fields.contains_key(f.name.as_str())) {
            plan.skip_incomplete += 1;
            incomplete.push(LineNote {
                line: *line,
                field: Some(missing.name.to_string()),
                first_line: None,
                subject_id: None,
                reason: Some("required field empty or invalid: row not imported".into()),
            });
            continue;
        }
        let mut duplicate = None;
        for &i in &unique {
            let decl = &catalog.fields[i];
            let Some(key) = fields.get(decl.name.as_str()).and_then(|v| value::lookup_key(decl.field_type, v)) else {
                continue;
            };
            if let Some(first) = seen.get(&(i, key.clone())) {
                duplicate = Some((decl.name.to_string(), *first));
                break;
            }
            seen.insert((i, key), *line);
        }
        if let Some((field, first)) = duplicate {
            plan.skip_duplicate_in_file += 1;
            in_file.push(LineNote {
                line: *line,
                field: Some(field),
                first_line: Some(first),
                subject_id: None,
                reason: None,
            });
            continue;
        }
        candidates.push((*line, fields));
    }
    drop(seen);

    // Existing customers, through the vault's (logged) lookup by each unique field.
    let started = Instant::now();
    let bar = progress(candidates.len() as u64, "checking");
    let mut existing: Vec<Option<(String, Vec<SubjectId>)>> = Vec::with_capacity(candidates.len());
    for chunk in candidates.chunks(IN_FLIGHT) {
        let mut tasks = tokio::task::JoinSet::new();
        for (n, (_, fields)) in chunk.iter().enumerate() {
            let queries: Vec<(String, String)> = unique
                .iter()
                .map(|&i| &catalog.fields[i])
                .filter_map(|d| {
                    fields.get(d.name.as_str()).and_then(Value::as_str).map(|v| (d.name.to_string(), v.to_string()))
                })
                .collect();
            let (vault, auth) = (vault.clone(), auth.clone());
            tasks.spawn(async move {
                for (field, v) in queries {
                    let found = vault.lookup(&auth, &field, &v).await?;
                    if !found.is_empty() {
                        return Ok::<_, VaultError>((n, Some((field, found))));
                    }
                }
                Ok((n, None))
            });
        }
        let mut results = vec![None; chunk.len()];
        while let Some(r) = tasks.join_next().await {
            let (n, found) = r.context("lookup task")??;
            results[n] = found;
        }
        existing.extend(results);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();

    let mut existing_report = Vec::new();
    let mut actions: Vec<(u64, Action)> = Vec::with_capacity(candidates.len());
    for ((line, mut fields), found) in candidates.into_iter().zip(existing) {
        let Some((field, ids)) = found else {
            plan.create += 1;
            actions.push((line, Action::Create(fields)));
            continue;
        };
        let single = (ids.len() == 1).then(|| ids[0]);
        let update = options.on_duplicate == OnDuplicate::Update && single.is_some();
        existing_report.push(LineNote {
            line,
            field: Some(field.clone()),
            first_line: None,
            subject_id: (options.on_duplicate == OnDuplicate::Report || update)
                .then(|| ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")),
            reason: Some(
                match (options.on_duplicate, update) {
                    (_, true) => "existing customer: updated with the fields the purpose may write",
                    (OnDuplicate::Update, false) => "several customers hold this value: not updated",
                    (OnDuplicate::Report, _) => "existing customer: left as it is, for your decision",
                    _ => "existing customer: skipped",
                }
                .into(),
            ),
        });
        match single.filter(|_| update) {
            Some(id) => {
                // The value it was found by stays as stored (no re-spelling of the key).
                fields.remove(&field);
                plan.update += 1;
                actions.push((line, Action::Update(id, fields)));
            }
            None => plan.skip_existing += 1,
        }
    }

    let columns = table
        .columns
        .iter()
        .zip(&targets)
        .zip(&with_value)
        .map(|((column, target), &n)| {
            let (status, note) = match target {
                Target::Field(_) | Target::Part(..) => ("imported", None),
                Target::NotWritable(_) => {
                    ("not_writable", Some(format!("purpose `{}` may not write this field: not imported", purpose.id)))
                }
                Target::Undeclared => ("undeclared", Some("no declared field: not imported".into())),
                Target::Consent => ("consent", Some(format!("{CONSENT_COLUMN}: not imported"))),
                Target::Ignored => ("ignored", Some("left out with --map".into())),
            };
            let field = match target {
                Target::Field(_) | Target::Part(..) | Target::NotWritable(_) => Some(target_name(catalog, target)),
                _ => None,
            };
            ColumnReport { column: column.clone(), field, status, rows_with_value: n, note }
        })
        .collect();
    let mut report = Report {
        file: options.file.display().to_string(),
        format: if options.file.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl")) { "jsonl" } else { "csv" },
        purpose: purpose.id.to_string(),
        role,
        dry_run: options.dry_run,
        on_duplicate: options.on_duplicate,
        rows: table.rows.len() as u64,
        columns,
        fields: catalog
            .fields
            .iter()
            .enumerate()
            .filter(|(i, _)| values[*i] > 0)
            .map(|(i, f)| FieldReport {
                field: f.name.to_string(),
                values: values[i],
                valid: valid[i],
                invalid: values[i] - valid[i],
            })
            .collect(),
        invalid_values: invalid
            .into_iter()
            .map(|((field, reason), lines)| InvalidReport { field, reason, count: lines.len() as u64, lines })
            .collect(),
        incomplete_rows: incomplete,
        duplicates_in_file: in_file,
        existing_customers: existing_report,
        unique_fields: unique.iter().map(|&i| catalog.fields[i].name.to_string()).collect(),
        plan,
        outcome: None,
    };
    write_report(&options.report_dir, &report)?;
    print_summary(&report, &options.report_dir);
    if options.dry_run {
        println!("dry run: nothing was stored");
        return Ok(());
    }

    // Store: every row through the vault, as a single create or correction would be.
    let total = actions.len() as u64;
    let bar = progress(total, "importing");
    let started_store = Instant::now();
    let mut outcome = Outcome::default();
    let mut actions = actions.into_iter();
    loop {
        let chunk: Vec<(u64, Action)> = actions.by_ref().take(IN_FLIGHT).collect();
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len() as u64;
        let mut tasks = tokio::task::JoinSet::new();
        for (line, action) in chunk {
            let (vault, auth) = (vault.clone(), auth.clone());
            tasks.spawn(async move { (line, store_row(&vault, &auth, action).await) });
        }
        while let Some(r) = tasks.join_next().await {
            match r.context("import task")? {
                (_, Ok(Stored::Created)) => outcome.created += 1,
                (_, Ok(Stored::Updated)) => outcome.updated += 1,
                (_, Ok(Stored::Unchanged)) => outcome.unchanged += 1,
                // Vault errors name fields and rules, never values.
                (line, Err(e)) => outcome.failed.push(LineNote {
                    line,
                    field: None,
                    first_line: None,
                    subject_id: None,
                    reason: Some(e.to_string()),
                }),
            }
        }
        bar.inc(n);
    }
    bar.finish_and_clear();
    outcome.failed.sort_by_key(|f| f.line);
    let seconds = started_store.elapsed().as_secs_f64();
    outcome.seconds = (seconds * 1000.0).round() / 1000.0;
    outcome.rows_per_second = if seconds > 0.0 { (total as f64 / seconds).round() } else { 0.0 };
    let failed = outcome.failed.len();
    println!(
        "imported: {} created, {} updated, {} unchanged, {} failed ({:.0} rows/s; {:.1} s in all)",
        outcome.created,
        outcome.updated,
        outcome.unchanged,
        failed,
        outcome.rows_per_second,
        started.elapsed().as_secs_f64()
    );
    for f in outcome.failed.iter().take(SHOWN_LINES) {
        println!("  line {}: {}", f.line, f.reason.as_deref().unwrap_or_default());
    }
    report.outcome = Some(outcome);
    write_report(&options.report_dir, &report)?;
    if failed > 0 {
        bail!("{failed} row{} could not be stored; see the report", if failed == 1 { "" } else { "s" });
    }
    Ok(())
}

enum Stored {
    Created,
    Updated,
    Unchanged,
}

async fn store_row(vault: &Vault, auth: &Authorized, action: Action) -> Result<Stored, VaultError> {
    match action {
        Action::Create(fields) => vault.create_subject(auth, &fields).await.map(|_| Stored::Created),
        Action::Update(_, fields) if fields.is_empty() => Ok(Stored::Unchanged),
        Action::Update(id, fields) => vault.correct_subject(auth, id, &fields).await.map(|_| Stored::Updated),
    }
}

fn progress(len: u64, message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:10} {bar:40} {pos}/{len} rows {per_sec} eta {eta}")
            .expect("progress template"),
    );
    bar.set_message(message);
    bar
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
    for c in r.columns.iter().filter(|c| c.status != "imported") {
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
    if r.unique_fields.is_empty() {
        println!("  no field is declared unique: existing customers cannot be recognised, duplicates are not checked");
    }
    let p = &r.plan;
    println!("  to create: {}, to update: {}", p.create, p.update);
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
        r.format,
        r.purpose,
        r.role,
        match r.on_duplicate {
            OnDuplicate::Skip => "skip",
            OnDuplicate::Update => "update",
            OnDuplicate::Report => "report",
        },
        if r.dry_run { " Dry run: nothing stored." } else { "" }
    );
    let _ = writeln!(s, "No value from the file appears in this report: only column names, counts and line numbers.\n");
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
    let p = &r.plan;
    let _ = writeln!(
        s,
        "\n## Plan\n\n- create: {}\n- update: {}\n- skip, existing customer: {}\n- skip, duplicate in the file: {}\n- \
         skip, required field missing or invalid: {}\n- skip, nothing to import: {}",
        p.create, p.update, p.skip_existing, p.skip_duplicate_in_file, p.skip_incomplete, p.skip_empty
    );
    if let Some(o) = &r.outcome {
        let _ = writeln!(
            s,
            "\n## Outcome\n\n- created: {}\n- updated: {}\n- unchanged: {}\n- failed: {}\n- {:.0} rows/s",
            o.created,
            o.updated,
            o.unchanged,
            o.failed.len(),
            o.rows_per_second
        );
        for f in &o.failed {
            let _ = writeln!(s, "  - line {}: {}", f.line, f.reason.as_deref().unwrap_or_default());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use candor_core::catalog::EXAMPLE_CATALOG;

    use super::*;

    fn catalog() -> Catalog {
        Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap()
    }

    #[test]
    fn headers_match_fields_obviously() {
        let c = catalog();
        let name = |h: &str| auto_target(&c, h).map(|t| target_name(&c, &t));
        assert_eq!(name("E-Mail").as_deref(), Some("email"));
        assert_eq!(name("mail").as_deref(), Some("email"));
        assert_eq!(name("Full Name").as_deref(), Some("full_name"));
        assert_eq!(name("Name").as_deref(), Some("full_name"));
        assert_eq!(name("Mobile").as_deref(), Some("phone"));
        assert_eq!(name("Telephone").as_deref(), Some("phone"));
        assert_eq!(name("DATE_OF_BIRTH").as_deref(), Some("date_of_birth"));
        assert_eq!(name("Country").as_deref(), Some("shipping_address.country"));
        assert_eq!(name("ZIP").as_deref(), Some("shipping_address.postal_code"));
        assert_eq!(name("shipping_address.city").as_deref(), Some("shipping_address.city"));
        assert_eq!(name("shoe size"), None);
        assert!(is_consent_column(&c, "Newsletter opt-in"));
        assert!(is_consent_column(&c, "marketing_email"));
        assert!(!is_consent_column(&c, "religion"));
    }

    #[test]
    fn map_overrides_and_refuses_what_it_cannot_place() {
        let c = catalog();
        let p = c.purpose("order_fulfilment").unwrap().clone();
        let cols: Vec<String> = ["Contact", "Born", "Mail 2"].iter().map(|s| s.to_string()).collect();
        let t = resolve_columns(&c, &p, &cols, Some("Contact=email, Born=date_of_birth, Mail 2=")).unwrap();
        assert_eq!(t[0], Target::Field(0));
        assert!(matches!(t[1], Target::NotWritable(_)));
        assert_eq!(t[2], Target::Ignored);
        assert!(resolve_columns(&c, &p, &cols, Some("Nope=email")).is_err());
        assert!(resolve_columns(&c, &p, &cols, Some("Contact=shoe_size")).is_err());
        let twice: Vec<String> = ["Email", "E-mail"].iter().map(|s| s.to_string()).collect();
        let e = resolve_columns(&c, &p, &twice, None).unwrap_err().to_string();
        assert!(e.contains("both go to field `email`"), "{e}");
    }
}
