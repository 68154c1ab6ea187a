//! Importing customers from a CRM export (CSV with a header, or JSON Lines): the one vault
//! operation behind `candor import subjects` and `POST /v1/imports`.
//!
//! Two passes over the source, each streaming (never the whole file in memory):
//! 1. [`Vault::check_import`] reads every row, validates and normalises its values (phone numbers
//!    to E.164 with the `phonenumber` crate, country names to ISO 3166-1 codes), finds duplicates
//!    inside the file and, through the blind index, existing customers, and returns the
//!    minimisation report and a compact plan (one byte per row, plus the ids of matched customers
//!    that will be updated or given a consent).
//! 2. [`Vault::run_import`] reads the rows again and stores what the plan says, in batches that the
//!    store commits together (group commit), each row through the same vault operation and log
//!    entry as a single create or correction, consents through the vault's consent import (one
//!    signed receipt and log entry each). After each batch it reports the last line done, for a
//!    checkpoint: a re-run continues after it, and rows committed after the checkpoint are found
//!    again through the blind index, so nobody is doubled.
//!
//! The source is read once per pass, from the start: a file ([`FileSource`], the CLI), or a
//! streamed upload spooled to a sealed temporary file ([`Spool`] → [`SpooledSource`], the HTTP
//! API), so neither holds the file in memory.
//!
//! Nothing here puts a personal value in the report, an error or the log: only column and field
//! names, counts, line numbers and customer ids.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::sync::Arc;

use candor_core::SubjectId;
use candor_core::catalog::{Catalog, Channel, FieldType};
use candor_core::consent::{self, ActorKind, CheckedChange, ConsentAction, RequestedChange};
use candor_core::value::{self, ADDRESS_KEYS as ADDRESS_PARTS};
use candor_policy::{Action, Situation, Target as PolicyTarget};
use candor_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Authorized, ImportLine, Vault, VaultError, countries};

/// Rows stored per batch: the store writes a batch's new customers in one transaction (with
/// their log records) and the checkpoint moves after each batch.
pub const BATCH: usize = 4096;
/// Rows whose existing customers are looked up together (one query per unique field).
const LOOKUP_BATCH: usize = 4096;
/// Line numbers listed per problem in the report (the counts are always complete).
pub const LISTED_LINES: usize = 1000;
/// Clock skew tolerated for "a consent was not given in the future".
const SKEW_MS: i64 = 5 * 60 * 1000;

/// What to do with a row whose unique field (the example's e-mail) belongs to an existing customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    /// Leave the existing customer as it is (a re-run after a crash continues where it stopped).
    #[default]
    Skip,
    /// Correct the existing customer's fields the purpose may write (each a logged correction).
    Update,
    /// Leave the customer as it is and list it (with its id) in the report for a decision.
    Report,
}

/// CSV with a header line, or JSON Lines (one object per line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Jsonl,
}

/// Where the rows come from: read once per pass.
pub trait Source: Send + Sync {
    fn open(&self) -> std::io::Result<Box<dyn BufRead + Send + '_>>;
}

/// A file on disk (the CLI).
pub struct FileSource(pub std::path::PathBuf);

impl Source for FileSource {
    fn open(&self) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(&self.0)?)))
    }
}

/// Bytes held in memory, wiped when dropped (small files in tests and tools).
pub struct BytesSource(pub zeroize::Zeroizing<Vec<u8>>);

impl Source for BytesSource {
    fn open(&self) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        Ok(Box::new(&self.0[..]))
    }
}

/// A streamed upload being written to a spool: an unnamed temporary file (gone when closed,
/// even after a crash) sealed chunk by chunk under a key held only in this process's memory
/// (`candor_crypto::spool`), so the body is never whole in memory and never plaintext on disk.
/// [`Spool::finish`] turns it into the [`SpooledSource`] each pass reads from the start.
pub struct Spool(candor_crypto::spool::SpoolWriter<std::io::BufWriter<std::fs::File>>);

fn spool_error(e: std::io::Error) -> VaultError {
    VaultError::Store(candor_store::StoreError::Internal(format!("the import's temporary spool failed: {}", e.kind())))
}

impl Spool {
    /// A spool in the system's temporary directory (`$TMPDIR`).
    pub fn new() -> Result<Self, VaultError> {
        let file = tempfile::tempfile().map_err(spool_error)?;
        let writer = std::io::BufWriter::with_capacity(1 << 17, file);
        Ok(Self(candor_crypto::spool::SpoolWriter::new(writer)?))
    }

    /// Appends a piece of the body.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), VaultError> {
        self.0.write(bytes).map_err(spool_error)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The body, ready to be read (once per pass).
    pub fn finish(self) -> Result<SpooledSource, VaultError> {
        let (writer, key) = self.0.finish().map_err(spool_error)?;
        let file = writer.into_inner().map_err(|e| spool_error(e.into_error()))?;
        Ok(SpooledSource { file, key })
    }
}

/// A finished [`Spool`]: each [`Source::open`] decrypts it from the start, 64 KiB at a time.
pub struct SpooledSource {
    file: std::fs::File,
    key: candor_crypto::spool::SpoolKey,
}

/// Reads a file from `pos` on without moving a shared cursor (each pass has its own).
struct At<'a> {
    file: &'a std::fs::File,
    pos: u64,
}

impl std::io::Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_read(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Source for SpooledSource {
    fn open(&self) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        let plain = self.key.reader(At { file: &self.file, pos: 0 });
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, plain)))
    }
}

/// What the import is asked to do.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `Column=field,Column=field.part,Column=consent:purpose/channel,Column=` (left out).
    pub map: Option<String>,
    pub on_duplicate: OnDuplicate,
    /// ISO 3166-1 region for phone numbers written without their country code.
    pub default_region: Option<String>,
    /// The source of every consent column's grants (the form or document), unless a column says.
    pub consent_source: Option<String>,
    /// The notice version consents were given on (`current`: the one in force now), unless a
    /// column says.
    pub consent_notice: Option<String>,
    /// Lines up to this one were stored by an earlier run (its checkpoint).
    pub resume_after: u64,
}

/// Told how the import advances (a progress bar, a checkpoint).
pub trait Progress: Send + Sync {
    /// A pass starts; `total` rows if known.
    fn start(&self, _phase: &'static str, _total: Option<u64>) {}
    fn advance(&self, _rows: u64) {}
    fn finish(&self) {}
    /// Every row up to `line` is stored, durably, with its log entries.
    fn committed(&self, _line: u64) {}
}

/// No progress shown.
pub struct Quiet;
impl Progress for Quiet {}

// ---- the report ----

#[derive(Serialize, Default, Clone, utoipa::ToSchema)]
pub struct ColumnReport {
    pub column: String,
    /// The field (or `field.part`, or `consent:purpose/channel`) it goes to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// imported, undeclared, not_writable, consent, consent_refused, consent_evidence, ignored
    pub status: &'static str,
    pub rows_with_value: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Serialize, Clone, utoipa::ToSchema)]
pub struct InvalidReport {
    pub field: String,
    pub reason: String,
    pub count: u64,
    /// The first lines (at most `lines_listed_at_most`).
    pub lines: Vec<u64>,
}

#[derive(Serialize, Clone, utoipa::ToSchema)]
pub struct FieldReport {
    pub field: String,
    pub values: u64,
    pub valid: u64,
    pub invalid: u64,
}

#[derive(Serialize, Clone, utoipa::ToSchema)]
pub struct LineNote {
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl LineNote {
    fn new(line: u64) -> Self {
        Self { line, field: None, first_line: None, subject_id: None, reason: None }
    }
}

/// A consent column mapped to a consent slot.
#[derive(Serialize, Clone, utoipa::ToSchema)]
pub struct ConsentReport {
    pub column: String,
    pub purpose: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Where each grant's time, source and notice version come from.
    pub given_at_from: String,
    pub source_from: String,
    pub notice_version_from: String,
    /// Rows saying yes, with complete evidence.
    pub grants: u64,
    /// Rows saying no or nothing (nothing is recorded: consent is opt-in).
    pub not_given: u64,
    /// Rows whose value or evidence is invalid: no consent recorded for them.
    pub invalid: Vec<InvalidReport>,
}

#[derive(Serialize, Default, Clone, utoipa::ToSchema)]
pub struct Plan {
    pub create: u64,
    pub update: u64,
    pub skip_existing: u64,
    pub skip_duplicate_in_file: u64,
    pub skip_incomplete: u64,
    pub skip_empty: u64,
    /// Rows up to the checkpoint, stored by an earlier run.
    pub done_earlier: u64,
    /// Consent grants to record (on customers created, updated or found), unless already in the ledger.
    pub consents: u64,
}

#[derive(Serialize, Default, Clone, utoipa::ToSchema)]
pub struct Outcome {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub consents_recorded: u64,
    /// Grants the ledger already held (same slot, time and notice): not recorded twice.
    pub consents_already_recorded: u64,
    pub failed: Vec<LineNote>,
    pub seconds: f64,
    pub rows_per_second: f64,
}

/// The minimisation report: what the file holds, what is imported and what is not, and why.
#[derive(Serialize, Clone, utoipa::ToSchema)]
pub struct Report {
    pub file: String,
    pub format: Format,
    pub purpose: String,
    pub role: String,
    pub dry_run: bool,
    pub on_duplicate: OnDuplicate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_region: Option<String>,
    pub rows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_after_line: Option<u64>,
    pub lines_listed_at_most: usize,
    pub columns: Vec<ColumnReport>,
    pub fields: Vec<FieldReport>,
    pub invalid_values: Vec<InvalidReport>,
    pub consents: Vec<ConsentReport>,
    pub incomplete_rows: Vec<LineNote>,
    pub duplicates_in_file: Vec<LineNote>,
    pub existing_customers: Vec<LineNote>,
    pub unique_fields: Vec<String>,
    pub plan: Plan,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

// ---- columns ----

/// Where a column's values go.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// A declared field the purpose may write.
    Field(usize),
    /// A part of a declared postal address field the purpose may write.
    Part(usize, &'static str),
    /// A declared field (or part of one) the purpose may not write.
    NotWritable(usize, Option<&'static str>),
    /// No declared field.
    Undeclared,
    /// Looks like a consent, but is not mapped to one.
    Consent,
    /// Mapped to a consent slot (index into `Layout::consents`).
    ConsentSlot(usize),
    /// Mapped to a consent slot, but refused (the note says why).
    ConsentRefused(String),
    /// The date, source or notice version of a consent column.
    Evidence(String),
    /// Left out with `--map "Column="`.
    Ignored,
}

/// One consent column and where its evidence comes from.
struct ConsentColumn {
    column: usize,
    label: String,
    changes: Vec<CheckedChange>,
    date: usize,
    source: Evidence,
    notice: Evidence,
}

enum Evidence {
    Column(usize),
    Given(String),
}

/// What the header and options resolve to.
struct Layout {
    columns: Vec<String>,
    targets: Vec<Target>,
    consents: Vec<ConsentColumn>,
    unique: Vec<usize>,
    region: Option<phonenumber::country::Id>,
    /// JSON Lines: column name -> index.
    index: HashMap<String, usize>,
}

/// Lower case, letters and digits only: `E-Mail`, `e_mail` and `E MAIL` are the same header.
fn normalise(header: &str) -> String {
    header.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

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

fn map_error(message: String) -> VaultError {
    VaultError::InvalidInput { field: "map", message }
}

fn source_error(message: String) -> VaultError {
    VaultError::InvalidInput { field: "file", message }
}

/// `Newsletter date`, `Newsletter given_at`…: the evidence column of `column` named `suffix`.
fn evidence_column(columns: &[String], column: &str, suffixes: &[&str]) -> Option<usize> {
    let base = normalise(column);
    columns.iter().position(|c| suffixes.iter().any(|s| normalise(c) == format!("{base}{s}")))
}

fn target_name(catalog: &Catalog, t: &Target) -> Option<String> {
    match t {
        Target::Field(i) | Target::NotWritable(i, None) => Some(catalog.fields[*i].name.to_string()),
        Target::Part(i, p) | Target::NotWritable(i, Some(p)) => Some(format!("{}.{p}", catalog.fields[*i].name)),
        _ => None,
    }
}

impl Vault {
    /// Whether the caller may import customers under its purpose at all (before a body is read):
    /// the purpose is not consent-based (nobody is created under one), the role may write every
    /// required field (what a single create needs), and, when a field is declared unique, may use
    /// it to recognise existing customers (what a lookup needs). Refusals are logged like those
    /// of a single create.
    pub async fn may_import(&self, auth: &Authorized) -> Result<(), VaultError> {
        self.refuse_create_under_consent(auth).await?;
        let purpose = self.purpose(auth);
        if let Some(decl) = self.catalog.fields.iter().find(|f| f.required && !f.allows(&purpose.id)) {
            let audit = self.audit(auth, candor_log::Action::SubjectCreate, &[]).fields([decl.name.as_str()]);
            let error = VaultError::Write(candor_core::write::WriteError::RequiredOutsidePurpose {
                field: decl.name.to_string(),
                purpose: purpose.id.to_string(),
            });
            return self.refuse(audit, error).await;
        }
        let required: Vec<&candor_core::FieldName> =
            self.catalog.fields.iter().filter(|f| f.required).map(|f| &f.name).collect();
        self.check_writes(auth, None, &required, Situation::NEUTRAL).await?;
        for decl in self.catalog.fields.iter().filter(|f| f.unique && f.lookup) {
            let may = |action| self.decide(auth, action, PolicyTarget::Field(decl.name.as_str()), Situation::NEUTRAL);
            if !may(Action::Read).allowed && !may(Action::ReadMasked).allowed {
                let audit = self.audit(auth, candor_log::Action::SubjectLookup, &[]).fields([decl.name.as_str()]);
                let error =
                    VaultError::LookupNotAllowed { field: decl.name.to_string(), purpose: auth.purpose.to_string() };
                return self.refuse(audit, error).await;
            }
        }
        Ok(())
    }

    async fn layout(
        &self,
        auth: &Authorized,
        columns: Vec<String>,
        options: &ImportOptions,
    ) -> Result<Layout, VaultError> {
        let catalog = &self.catalog;
        let region = match options.default_region.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            None => None,
            Some(r) => Some(r.to_ascii_uppercase().parse::<phonenumber::country::Id>().map_err(|_| {
                VaultError::InvalidInput {
                    field: "default_region",
                    message: "must be a two-letter ISO 3166-1 region such as DE".into(),
                }
            })?),
        };
        let mut explicit: HashMap<&str, &str> = HashMap::new();
        for pair in options.map.as_deref().unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((column, field)) = pair.rsplit_once('=') else {
                return Err(map_error(format!(
                    "`{pair}` is not COLUMN=FIELD (for example \"E-mail=email,Name=full_name\")"
                )));
            };
            let column = column.trim();
            if !columns.iter().any(|c| c == column) {
                return Err(map_error(format!(
                    "the file has no column `{column}`; its columns: {}",
                    columns.join(", ")
                )));
            }
            explicit.insert(column, field.trim());
        }
        let writable = |i: usize| {
            catalog.fields[i].allows(&auth.purpose)
                && self
                    .decide(
                        auth,
                        Action::Write,
                        PolicyTarget::Field(catalog.fields[i].name.as_str()),
                        Situation::NEUTRAL,
                    )
                    .allowed
        };
        let mut targets = Vec::with_capacity(columns.len());
        let mut consent_maps = Vec::new();
        for (c, column) in columns.iter().enumerate() {
            let target = match explicit.get(column.as_str()) {
                Some(&"") => Target::Ignored,
                Some(field) if field.starts_with("consent:") => {
                    consent_maps.push((c, field.trim_start_matches("consent:").to_string()));
                    Target::Consent
                }
                Some(field) => {
                    let (name, part) = match field.split_once('.') {
                        Some((n, p)) => (n, Some(p)),
                        None => (*field, None),
                    };
                    let Some(i) = field_index(catalog, name) else {
                        return Err(map_error(format!(
                            "field `{name}` is not declared in the catalog (column `{column}`)"
                        )));
                    };
                    match part {
                        None => Target::Field(i),
                        Some(p) => {
                            let Some(part) = ADDRESS_PARTS.iter().find(|a| **a == p) else {
                                return Err(map_error(format!(
                                    "`{field}`: an address part is one of {}",
                                    ADDRESS_PARTS.join(", ")
                                )));
                            };
                            if catalog.fields[i].field_type != FieldType::PostalAddress {
                                return Err(map_error(format!("`{field}`: field `{name}` is not a postal address")));
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
                Target::Field(i) if !writable(i) => Target::NotWritable(i, None),
                Target::Part(i, p) if !writable(i) => Target::NotWritable(i, Some(p)),
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
                    return Err(map_error(format!(
                        "columns `{}` and `{}` both go to field `{}`; say which one with --map (and leave the other \
                         out with \"{}=\")",
                        columns[a],
                        columns[b],
                        target_name(catalog, ta).unwrap_or_default(),
                        columns[b]
                    )));
                }
            }
        }
        // Consent columns: a slot, and the evidence the ledger requires, or refused.
        let mut consents = Vec::new();
        for (c, slot) in consent_maps {
            let column = &columns[c];
            let (purpose, channel) = match slot.split_once('/') {
                Some((p, ch)) => (p.to_string(), Some(ch.to_string())),
                None => (slot.clone(), None),
            };
            let requested = RequestedChange { purpose, channel, action: ConsentAction::Grant.name().to_string() };
            let changes = consent::check_changes(catalog, None, std::slice::from_ref(&requested))
                .map_err(|e| map_error(format!("column `{column}`: {e}")))?;
            if changes.len() != 1 {
                return Err(map_error(format!(
                    "column `{column}`: purpose `{}` is consented per channel: map it to one, as \
                     consent:{}/CHANNEL",
                    requested.purpose, requested.purpose
                )));
            }
            let date = evidence_column(&columns, column, &["date", "givenat", "dategiven"]);
            let source =
                evidence_column(&columns, column, &["source", "evidence"]).map(Evidence::Column).or_else(|| {
                    options
                        .consent_source
                        .as_deref()
                        .filter(|s| !s.trim().is_empty())
                        .map(|s| Evidence::Given(s.into()))
                });
            let notice =
                evidence_column(&columns, column, &["notice", "noticeversion"]).map(Evidence::Column).or_else(|| {
                    options.consent_notice.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(|s| {
                        Evidence::Given(if s == "current" {
                            self.notices.version(&changes[0].slot.purpose).to_string()
                        } else {
                            s.to_string()
                        })
                    })
                });
            if let Some(i) = date {
                targets[i] = Target::Evidence(format!("date of consent column `{column}`"));
            }
            if let Some(Evidence::Column(i)) = &source {
                targets[*i] = Target::Evidence(format!("source of consent column `{column}`"));
            }
            if let Some(Evidence::Column(i)) = &notice {
                targets[*i] = Target::Evidence(format!("notice version of consent column `{column}`"));
            }
            let missing = match (date, &source, &notice) {
                (None, _, _) => Some(format!(
                    "no date column (`{column} date`, RFC 3339 or YYYY-MM-DD): when the customer gave it is required"
                )),
                (_, None, _) => Some(format!(
                    "no source: a column `{column} source` or --consent-source naming the form or document it was \
                     given through is required"
                )),
                (_, _, None) => Some(format!(
                    "no notice version: a column `{column} notice` or --consent-notice (a version, or `current`) \
                     is required"
                )),
                _ => None,
            };
            match (missing, date, source, notice) {
                (None, Some(date), Some(source), Some(notice)) => {
                    targets[c] = Target::ConsentSlot(consents.len());
                    consents.push(ConsentColumn {
                        column: c,
                        label: changes[0].slot.label(),
                        changes,
                        date,
                        source,
                        notice,
                    });
                }
                (note, ..) => targets[c] = Target::ConsentRefused(note.unwrap_or_default()),
            }
        }
        if !consents.is_empty() {
            // Recording a grant on the customer's behalf is the catalog's `record_consent` power,
            // as for `POST /v1/subjects/{id}/consents`.
            let d = self.decide(auth, Action::RecordConsent, PolicyTarget::Purpose, Situation::NEUTRAL);
            if !d.allowed {
                let audit = self.audit(auth, candor_log::Action::ConsentRecordOnBehalf, &[]).detail("import");
                if d.operator_forbid().is_some() {
                    return self.refuse_decision(auth, audit, &d).await;
                }
                let error = VaultError::ConsentRecordingNotAllowed {
                    role: auth.principal.role.clone(),
                    purpose: auth.purpose.to_string(),
                };
                return self.refuse(audit, error).await;
            }
        }
        let unique = catalog.fields.iter().enumerate().filter(|(_, f)| f.unique && f.lookup).map(|(i, _)| i).collect();
        let index = columns.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
        Ok(Layout { columns, targets, consents, unique, region, index })
    }
}

// ---- reading rows ----

/// Column names appear in the report and on the terminal, so a first line that is a customer's
/// data (a file without a header) must not become them: a header cell that is an e-mail address
/// or a phone number, or an overlong one, stops the import before anything is printed.
fn refuse_data_as_header(columns: &[String]) -> Result<(), VaultError> {
    for (i, name) in columns.iter().enumerate() {
        let json = Value::String(name.clone());
        let looks_like_data = value::validate(FieldType::Email, &json).is_ok()
            || value::validate(FieldType::Phone, &json).is_ok()
            || name.chars().count() > 100;
        if looks_like_data {
            return Err(source_error(format!(
                "column {} of the first line looks like a customer's data, not a column name: the file needs a \
                 header line naming its columns (nothing was imported or reported)",
                i + 1
            )));
        }
    }
    Ok(())
}

fn io_error(e: std::io::Error) -> VaultError {
    source_error(format!("cannot be read: {}", e.kind()))
}

/// The column names: the CSV header, or every key of the JSON Lines objects in first-seen order
/// (one streaming pass that also checks each line is an object).
fn read_columns(source: &dyn Source, format: Format) -> Result<Vec<String>, VaultError> {
    let columns: Vec<String> = match format {
        Format::Csv => {
            let mut reader =
                csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(source.open().map_err(io_error)?);
            let headers = reader.headers().map_err(|e| source_error(format!("no header line ({e})")))?;
            headers
                .iter()
                .enumerate()
                .map(|(i, h)| if i == 0 { h.trim_start_matches('\u{feff}') } else { h }.to_string())
                .collect()
        }
        Format::Jsonl => {
            let mut columns = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut rows = Rows::open(source, format)?;
            while let Some((_, object)) = rows.next_object()? {
                for key in object.keys() {
                    if !seen.contains(key) {
                        seen.insert(key.clone());
                        columns.push(key.clone());
                    }
                }
            }
            columns
        }
    };
    if columns.is_empty() || columns.iter().all(|c| c.trim().is_empty()) {
        return Err(source_error("has no columns".into()));
    }
    refuse_data_as_header(&columns)?;
    Ok(columns)
}

/// A JSON Lines object and its line.
type Object = (u64, Map<String, Value>);
/// A row's line and its cells (one per column; empty cells are `None`).
type Cells = (u64, Vec<Option<Value>>);

/// A streaming reader of a source's rows.
enum Rows<'a> {
    Csv(csv::Reader<Box<dyn BufRead + Send + 'a>>, csv::StringRecord),
    Jsonl(Box<dyn BufRead + Send + 'a>, u64, String),
}

impl<'a> Rows<'a> {
    fn open(source: &'a dyn Source, format: Format) -> Result<Self, VaultError> {
        let input = source.open().map_err(io_error)?;
        Ok(match format {
            Format::Csv => {
                Rows::Csv(csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input), csv::StringRecord::new())
            }
            Format::Jsonl => Rows::Jsonl(input, 0, String::new()),
        })
    }

    fn next_object(&mut self) -> Result<Option<Object>, VaultError> {
        let Rows::Jsonl(input, line, buf) = self else { unreachable!("JSON Lines only") };
        loop {
            buf.clear();
            if input.read_line(buf).map_err(io_error)? == 0 {
                return Ok(None);
            }
            *line += 1;
            if buf.trim().is_empty() {
                continue;
            }
            // serde_json's errors name a line and column, never the content.
            return match serde_json::from_str(buf) {
                Ok(Value::Object(o)) => Ok(Some((*line, o))),
                Ok(_) => Err(source_error(format!("line {line}: not a JSON object"))),
                Err(e) => Err(source_error(format!("line {line}: not JSON (column {})", e.column()))),
            };
        }
    }

    /// The next row's line and cells (one per column; empty cells are `None`).
    fn next(&mut self, layout: &Layout) -> Result<Option<Cells>, VaultError> {
        match self {
            Rows::Csv(reader, record) => {
                // The csv crate's errors name positions and counts, never the content.
                if !reader.read_record(record).map_err(|e| source_error(e.to_string()))? {
                    return Ok(None);
                }
                let line = record.position().map_or(0, |p| p.line());
                let cells = record.iter().map(|c| (!c.is_empty()).then(|| Value::String(c.to_string()))).collect();
                Ok(Some((line, cells)))
            }
            Rows::Jsonl(..) => {
                let Some((line, object)) = self.next_object()? else { return Ok(None) };
                let mut cells = vec![None; layout.columns.len()];
                for (k, v) in object {
                    let v = match v {
                        Value::Null => continue,
                        Value::String(s) if s.trim().is_empty() => continue,
                        v => v,
                    };
                    if let Some(&i) = layout.index.get(&k) {
                        cells[i] = Some(v);
                    }
                }
                Ok(Some((line, cells)))
            }
        }
    }
}

// ---- one row ----

/// A cell's value as the field's type takes it: numbers and JSON parsed from CSV text.
fn typed(ty: FieldType, v: Value) -> Result<Value, String> {
    match (ty, v) {
        (FieldType::Number, Value::String(s)) => {
            s.trim().parse::<serde_json::Number>().map(Value::Number).map_err(|_| "must be a number".to_string())
        }
        (FieldType::Json, Value::String(s)) => serde_json::from_str(&s).map_err(|_| "must be JSON".to_string()),
        (_, v) => Ok(v),
    }
}

/// A phone number in E.164 (`+442038600001`), read with libphonenumber's metadata (the
/// `phonenumber` crate): national forms need the default region.
fn e164(text: &str, region: Option<phonenumber::country::Id>) -> Result<String, String> {
    let parsed = std::panic::catch_unwind(|| phonenumber::parse(region, text.trim()))
        .map_err(|_| "is not a phone number".to_string())?;
    let Ok(number) = parsed else {
        return Err(if region.is_some() {
            "is not a phone number".into()
        } else {
            "must be in international form (+44 20 …); numbers in national form need a default region".into()
        });
    };
    if !phonenumber::is_valid(&number) {
        return Err("is not a valid number for its country (libphonenumber's metadata)".into());
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// An address's country as its ISO 3166-1 code: a code in any case, or an English country name
/// or alpha-3 code ("Germany", "DEU" -> DE). Anything else is left for validation to refuse.
fn country(part: &mut Value) {
    let Value::String(s) = part else { return };
    if value::iso_country(s).is_some() {
        return;
    }
    let key = normalise(s);
    if let Ok(i) = countries::NAMES.binary_search_by(|(name, _)| (*name).cmp(key.as_str())) {
        *s = countries::NAMES[i].1.to_string();
    }
}

/// Why a consent cell records nothing.
const NOT_GIVEN: &str = "";

/// A grant with its evidence.
struct Grant {
    column: usize,
    given_at: i64,
    evidence: String,
    notice_version: String,
}

/// What a row holds, checked.
#[derive(Default)]
struct Examined {
    fields: Map<String, Value>,
    /// Field index with a value, and its problem if invalid.
    values: Vec<(usize, Option<String>)>,
    grants: Vec<Grant>,
    /// Consent column index, and its problem (`NOT_GIVEN`: no consent in this row).
    consent_problems: Vec<(usize, String)>,
}

fn given_at(text: &str, now: i64) -> Result<i64, String> {
    let t = text.trim();
    let at = match t.parse::<jiff::Timestamp>() {
        Ok(ts) => ts.as_millisecond(),
        Err(_) => match t.parse::<jiff::civil::Date>() {
            Ok(d) => d
                .to_zoned(jiff::tz::TimeZone::UTC)
                .map_err(|_| "date is out of range".to_string())?
                .timestamp()
                .as_millisecond(),
            Err(_) => return Err("date must be an RFC 3339 time (2024-03-01T09:30:00Z) or a date (2024-03-01)".into()),
        },
    };
    if at > now + SKEW_MS {
        return Err("date is in the future".into());
    }
    Ok(at)
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Layout {
    fn examine(&self, catalog: &Catalog, cells: Vec<Option<Value>>, now: i64) -> Examined {
        let mut out = Examined::default();
        let mut raw: BTreeMap<usize, Value> = BTreeMap::new();
        let mut consent_cells: Vec<Option<Value>> = vec![None; self.consents.len()];
        let mut cells: Vec<Option<Value>> = cells;
        for (c, target) in self.targets.iter().enumerate() {
            let Some(cell) = cells.get_mut(c).and_then(Option::take) else { continue };
            match target {
                Target::Field(i) => {
                    raw.insert(*i, cell);
                }
                Target::Part(i, p) => {
                    let entry = raw.entry(*i).or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(parts) = entry {
                        parts.insert((*p).to_string(), cell);
                    }
                }
                Target::ConsentSlot(k) => consent_cells[*k] = Some(cell),
                _ => {
                    // Evidence cells are read below; other columns are not imported.
                    cells[c] = Some(cell);
                }
            }
        }
        for (i, v) in raw {
            let decl = &catalog.fields[i];
            let checked = typed(decl.field_type, v).and_then(|mut v| {
                match (decl.field_type, &mut v) {
                    (FieldType::Phone, Value::String(s)) => *s = e164(s, self.region)?,
                    (FieldType::PostalAddress, Value::Object(parts)) => {
                        if let Some(c) = parts.get_mut("country") {
                            country(c);
                        }
                    }
                    _ => {}
                }
                value::validate(decl.field_type, &v).map_err(|e| e.0)
            });
            match checked {
                Ok(v) => {
                    out.fields.insert(decl.name.to_string(), v.into_json());
                    out.values.push((i, None));
                }
                Err(reason) => out.values.push((i, Some(reason))),
            }
        }
        for (k, cc) in self.consents.iter().enumerate() {
            let cell = |e: &Evidence| match e {
                Evidence::Column(i) => cells.get(*i).and_then(Option::as_ref).and_then(text_of),
                Evidence::Given(v) => Some(v.clone()),
            };
            let answer = match consent_cells[k].take() {
                None => Ok(false),
                Some(Value::Bool(b)) => Ok(b),
                Some(v) => match text_of(&v).map(|t| normalise(&t)).as_deref() {
                    Some("yes" | "y" | "true" | "1" | "x" | "granted" | "optin" | "optedin" | "subscribed" | "on") => {
                        Ok(true)
                    }
                    Some("no" | "n" | "false" | "0" | "optout" | "optedout" | "unsubscribed" | "off") => Ok(false),
                    _ => Err("must be yes or no (true/false, 1/0)".to_string()),
                },
            };
            let grant = answer.and_then(|yes| {
                if !yes {
                    return Err(NOT_GIVEN.to_string());
                }
                let date = cells.get(cc.date).and_then(Option::as_ref).and_then(text_of);
                let given_at = given_at(&date.ok_or("date is empty: a consent needs the time it was given")?, now)?;
                let evidence = cell(&cc.source).ok_or("source is empty: a consent needs what it was given through")?;
                consent::check_note(ActorKind::Operator, None, Some(&evidence)).map_err(|e| e.to_string())?;
                let notice_version = cell(&cc.notice).ok_or("notice version is empty")?;
                if notice_version.chars().count() > 200 {
                    return Err("notice version is longer than 200 characters".into());
                }
                Ok(Grant { column: k, given_at, evidence, notice_version })
            });
            match grant {
                Ok(g) => out.grants.push(g),
                Err(reason) => out.consent_problems.push((k, reason)),
            }
        }
        out
    }
}

// ---- pass 1: the report and the plan ----

/// What pass 2 does with a row (one byte per row of the file).
const SKIP: u8 = 0;
const CREATE: u8 = 1;
const UPDATE: u8 = 2;
/// An existing customer left as it is, given the row's consents (unless the ledger holds them).
const CONSENT_ONLY: u8 = 3;

/// Rows read between two yields to the runtime: an import running inside a server (a background
/// one, `POST /v1/imports`) leaves the worker thread to other requests now and then.
const ROWS_PER_YIELD: usize = 256;

async fn share_the_thread(ordinal: usize) {
    if ordinal % ROWS_PER_YIELD == ROWS_PER_YIELD - 1 {
        tokio::task::yield_now().await;
    }
}

/// The checked import: its report, and what to store.
pub struct Checked {
    pub report: Report,
    format: Format,
    layout: Layout,
    decisions: Vec<u8>,
    /// Matched existing customers to update or give consents, by line: id, and the field matched.
    matched: HashMap<u64, (SubjectId, usize)>,
}

/// A line list that keeps the first `LISTED_LINES`.
fn push_capped<T>(list: &mut Vec<T>, item: T) {
    if list.len() < LISTED_LINES {
        list.push(item);
    }
}

#[derive(Default)]
struct Tally {
    with_value: Vec<u64>,
    values: Vec<u64>,
    valid: Vec<u64>,
    invalid: BTreeMap<(String, String), (u64, Vec<u64>)>,
    consent_grants: Vec<u64>,
    consent_not_given: Vec<u64>,
    consent_invalid: Vec<BTreeMap<String, (u64, Vec<u64>)>>,
    incomplete: Vec<LineNote>,
    in_file: Vec<LineNote>,
    existing: Vec<LineNote>,
    plan: Plan,
}

/// A row waiting for its existing-customer lookup.
struct Pending {
    ordinal: usize,
    line: u64,
    keys: Vec<(usize, candor_core::FieldName, Vec<candor_core::BlindIndex>)>,
    grants: u64,
}

impl Vault {
    /// Pass 1: reads the source, and returns the minimisation report and the plan. Stores
    /// nothing (lookups of existing customers are logged, as a lookup is).
    pub async fn check_import(
        &self,
        auth: &Authorized,
        source: &dyn Source,
        format: Format,
        name: &str,
        options: &ImportOptions,
        progress: &dyn Progress,
    ) -> Result<Checked, VaultError> {
        self.may_import(auth).await?;
        let catalog = self.catalog.clone();
        let columns = read_columns(source, format)?;
        let layout = self.layout(auth, columns, options).await?;
        let now = self.now_millis();
        let mut t = Tally {
            with_value: vec![0; layout.columns.len()],
            values: vec![0; catalog.fields.len()],
            valid: vec![0; catalog.fields.len()],
            consent_grants: vec![0; layout.consents.len()],
            consent_not_given: vec![0; layout.consents.len()],
            consent_invalid: vec![BTreeMap::new(); layout.consents.len()],
            ..Tally::default()
        };
        // In-file duplicates, per unique field, by the first 12 bytes of each value's blind index
        // (an HMAC: two different values share them with a chance of about n²/2⁹⁷, 10⁻¹⁷ for a
        // million rows) and the line it was first seen on. No value is kept in memory, and an
        // entry is 16 bytes: a million rows take about 34 MB (the table's 2²¹ slots).
        let mut seen: Vec<HashMap<[u8; 12], u32>> = vec![HashMap::new(); layout.unique.len()];
        let mut decisions: Vec<u8> = Vec::new();
        let mut matched = HashMap::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut rows = Rows::open(source, format)?;
        progress.start("checking", None);
        while let Some((line, cells)) = rows.next(&layout)? {
            let ordinal = decisions.len();
            decisions.push(SKIP);
            progress.advance(1);
            share_the_thread(ordinal).await;
            for (c, cell) in cells.iter().enumerate() {
                if cell.is_some() && c < t.with_value.len() {
                    t.with_value[c] += 1;
                }
            }
            let row = layout.examine(&catalog, cells, now);
            for (i, problem) in &row.values {
                t.values[*i] += 1;
                match problem {
                    None => t.valid[*i] += 1,
                    Some(reason) => {
                        let e = t.invalid.entry((catalog.fields[*i].name.to_string(), reason.clone())).or_default();
                        e.0 += 1;
                        push_capped(&mut e.1, line);
                    }
                }
            }
            for (k, reason) in &row.consent_problems {
                if reason == NOT_GIVEN {
                    t.consent_not_given[*k] += 1;
                } else {
                    let e = t.consent_invalid[*k].entry(reason.clone()).or_default();
                    e.0 += 1;
                    push_capped(&mut e.1, line);
                }
            }
            for g in &row.grants {
                t.consent_grants[g.column] += 1;
            }
            if row.fields.is_empty() {
                t.plan.skip_empty += 1;
                push_capped(
                    &mut t.incomplete,
                    LineNote { reason: Some("no value to import".into()), ..LineNote::new(line) },
                );
                continue;
            }
            if let Some(missing) =
                catalog.fields.iter().find(|f| f.required && !row.fields.contains_key(f.name.as_str()))
            {
                t.plan.skip_incomplete += 1;
                push_capped(
                    &mut t.incomplete,
                    LineNote {
                        field: Some(missing.name.to_string()),
                        reason: Some("required field empty or invalid: row not imported".into()),
                        ..LineNote::new(line)
                    },
                );
                continue;
            }
            let mut keys = Vec::new();
            let mut duplicate = None;
            for (u, &i) in layout.unique.iter().enumerate() {
                let decl = &catalog.fields[i];
                let Some(key) = row.fields.get(decl.name.as_str()).and_then(|v| value::lookup_key(decl.field_type, v))
                else {
                    continue;
                };
                // Newest index key first: the entry a new customer would be stored with.
                let indexes = self.keys.blind_indexes(&decl.name, &key);
                let mut short = [0u8; 12];
                short.copy_from_slice(&indexes[0].as_bytes()[..12]);
                if let Some(first) = seen[u].get(&short) {
                    duplicate = Some((decl.name.to_string(), u64::from(*first)));
                    break;
                }
                seen[u].insert(short, u32::try_from(line).unwrap_or(u32::MAX));
                keys.push((i, decl.name.clone(), indexes));
            }
            if let Some((field, first)) = duplicate {
                t.plan.skip_duplicate_in_file += 1;
                push_capped(
                    &mut t.in_file,
                    LineNote { field: Some(field), first_line: Some(first), ..LineNote::new(line) },
                );
                continue;
            }
            if line <= options.resume_after {
                t.plan.done_earlier += 1;
                continue;
            }
            pending.push(Pending { ordinal, line, keys, grants: row.grants.len() as u64 });
            if pending.len() >= LOOKUP_BATCH {
                self.match_existing(auth, std::mem::take(&mut pending), options, &mut t, &mut decisions, &mut matched)
                    .await?;
            }
        }
        self.match_existing(auth, pending, options, &mut t, &mut decisions, &mut matched).await?;
        drop(seen);
        progress.finish();

        let columns = layout
            .columns
            .iter()
            .zip(&layout.targets)
            .zip(&t.with_value)
            .map(|((column, target), &n)| {
                let (status, note) = match target {
                    Target::Field(_) | Target::Part(..) => ("imported", None),
                    Target::NotWritable(..) => (
                        "not_writable",
                        Some(format!("role `{}` may not write this field under purpose `{}`: not imported", auth.principal.role, auth.purpose)),
                    ),
                    Target::Undeclared => ("undeclared", Some("no declared field: not imported".into())),
                    Target::Consent => (
                        "consent",
                        Some(format!(
                            "looks like a consent: not imported; map it with --map \"{column}=consent:PURPOSE/CHANNEL\" \
                             and give its date, source and notice version"
                        )),
                    ),
                    Target::ConsentSlot(_) => ("consent", None),
                    Target::ConsentRefused(why) => ("consent_refused", Some(format!("{why}: not imported"))),
                    Target::Evidence(what) => ("consent_evidence", Some(what.clone())),
                    Target::Ignored => ("ignored", Some("left out with --map".into())),
                };
                let field = match target {
                    Target::ConsentSlot(k) => Some(format!("consent:{}", layout.consents[*k].label)),
                    t => target_name(&catalog, t),
                };
                ColumnReport { column: column.clone(), field, status, rows_with_value: n, note }
            })
            .collect();
        let consents = layout
            .consents
            .iter()
            .enumerate()
            .map(|(k, cc)| {
                let from = |e: &Evidence, what: &str| match e {
                    Evidence::Column(i) => format!("column `{}`", layout.columns[*i]),
                    Evidence::Given(_) => format!("--consent-{what}"),
                };
                let slot = &cc.changes[0].slot;
                ConsentReport {
                    column: layout.columns[cc.column].clone(),
                    purpose: slot.purpose.to_string(),
                    channel: slot.channel.map(|c: Channel| c.name().to_string()),
                    given_at_from: format!("column `{}`", layout.columns[cc.date]),
                    source_from: from(&cc.source, "source"),
                    notice_version_from: from(&cc.notice, "notice"),
                    grants: t.consent_grants[k],
                    not_given: t.consent_not_given[k],
                    invalid: std::mem::take(&mut t.consent_invalid[k])
                        .into_iter()
                        .map(|(reason, (count, lines))| InvalidReport {
                            field: layout.columns[cc.column].clone(),
                            reason,
                            count,
                            lines,
                        })
                        .collect(),
                }
            })
            .collect();
        let report = Report {
            file: name.to_string(),
            format,
            purpose: auth.purpose.to_string(),
            role: auth.principal.role.clone(),
            dry_run: false,
            on_duplicate: options.on_duplicate,
            default_region: layout.region.map(|r| r.as_ref().to_string()),
            rows: decisions.len() as u64,
            resumed_after_line: (options.resume_after > 0).then_some(options.resume_after),
            lines_listed_at_most: LISTED_LINES,
            columns,
            fields: catalog
                .fields
                .iter()
                .enumerate()
                .filter(|(i, _)| t.values[*i] > 0)
                .map(|(i, f)| FieldReport {
                    field: f.name.to_string(),
                    values: t.values[i],
                    valid: t.valid[i],
                    invalid: t.values[i] - t.valid[i],
                })
                .collect(),
            invalid_values: t
                .invalid
                .into_iter()
                .map(|((field, reason), (count, lines))| InvalidReport { field, reason, count, lines })
                .collect(),
            consents,
            incomplete_rows: t.incomplete,
            duplicates_in_file: t.in_file,
            existing_customers: t.existing,
            unique_fields: layout.unique.iter().map(|&i| catalog.fields[i].name.to_string()).collect(),
            plan: t.plan,
            outcome: None,
        };
        Ok(Checked { report, format, layout, decisions, matched })
    }

    /// Looks the pending rows' unique values up through the blind index (concurrently), decides
    /// each row, and logs one lookup entry naming the customers found.
    async fn match_existing(
        &self,
        auth: &Authorized,
        pending: Vec<Pending>,
        options: &ImportOptions,
        t: &mut Tally,
        decisions: &mut [u8],
        matched: &mut HashMap<u64, (SubjectId, usize)>,
    ) -> Result<(), VaultError> {
        if pending.is_empty() {
            return Ok(());
        }
        // One lookup per unique field for the whole batch (every row's entries under every index
        // key held); a row is matched by its first unique field that finds anyone.
        let mut results: Vec<Option<(usize, Vec<SubjectId>)>> = vec![None; pending.len()];
        // The unique fields in the layout's order (every row lists its keys in that order).
        let mut fields: Vec<usize> = Vec::new();
        for (f, ..) in pending.iter().flat_map(|p| &p.keys) {
            if !fields.contains(f) {
                fields.push(*f);
            }
        }
        for &field in &fields {
            let mut tokens = Vec::new();
            let mut owner = Vec::new();
            for (n, p) in pending.iter().enumerate() {
                if results[n].is_some() {
                    continue;
                }
                for (_, _, indexes) in p.keys.iter().filter(|(f, ..)| *f == field) {
                    for t in indexes {
                        tokens.push(t.clone());
                        owner.push(n);
                    }
                }
            }
            if tokens.is_empty() {
                continue;
            }
            let name = &self.catalog.fields[field].name;
            let mut found: Vec<(usize, SubjectId)> = self
                .store
                .find_many_by_index(name, &tokens)
                .await?
                .into_iter()
                .map(|(i, subject)| (owner[i], subject))
                .collect();
            found.sort_unstable();
            found.dedup();
            for (n, subject) in found {
                results[n].get_or_insert_with(|| (field, Vec::new())).1.push(subject);
            }
        }
        let mut found_ids = Vec::new();
        let mut fields_used = std::collections::BTreeSet::new();
        for (p, found) in pending.into_iter().zip(results) {
            let Some((field, ids)) = found else {
                decisions[p.ordinal] = CREATE;
                t.plan.create += 1;
                t.plan.consents += p.grants;
                continue;
            };
            let name = self.catalog.fields[field].name.to_string();
            fields_used.insert(name.clone());
            found_ids.extend(ids.iter().copied());
            let single = (ids.len() == 1).then(|| ids[0]);
            let update = options.on_duplicate == OnDuplicate::Update && single.is_some();
            let reason = match (options.on_duplicate, update) {
                (_, true) => "existing customer: updated with the fields the purpose may write",
                (OnDuplicate::Update, false) => "several customers hold this value: not updated",
                (OnDuplicate::Report, _) => "existing customer: left as it is, for your decision",
                _ => "existing customer: skipped",
            };
            push_capped(
                &mut t.existing,
                LineNote {
                    field: Some(name),
                    subject_id: (options.on_duplicate == OnDuplicate::Report || update)
                        .then(|| ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")),
                    reason: Some(reason.into()),
                    ..LineNote::new(p.line)
                },
            );
            match single {
                Some(id) if update => {
                    decisions[p.ordinal] = UPDATE;
                    matched.insert(p.line, (id, field));
                    t.plan.update += 1;
                    t.plan.consents += p.grants;
                }
                Some(id) if options.on_duplicate == OnDuplicate::Skip && p.grants > 0 => {
                    decisions[p.ordinal] = CONSENT_ONLY;
                    matched.insert(p.line, (id, field));
                    t.plan.skip_existing += 1;
                    t.plan.consents += p.grants;
                }
                _ => t.plan.skip_existing += 1,
            }
        }
        if !found_ids.is_empty() {
            found_ids.sort();
            found_ids.dedup();
            let records = self
                .audit(auth, candor_log::Action::SubjectLookup, &found_ids)
                .fields(fields_used)
                .decision("full")
                .detail("import: existing customers recognised through the blind index")
                .records();
            self.store.append_log(records).await?;
        }
        Ok(())
    }
}

// ---- pass 2: storing ----

enum Job {
    Create(Map<String, Value>),
    Update(SubjectId, Map<String, Value>),
    ConsentOnly(SubjectId),
}

enum Stored {
    Created(SubjectId),
    Updated(SubjectId),
    Unchanged(SubjectId),
}

/// A batch handed to the store, and what is left to do once its new customers are committed.
struct InFlight {
    /// The store writing the batch's new customers (while the next batch is read and sealed).
    creates: tokio::task::JoinHandle<Result<Vec<Option<candor_core::FieldName>>, candor_store::StoreError>>,
    /// Line, id and grants of each customer in `creates`, in the same order.
    created: Vec<(u64, SubjectId, Vec<Grant>)>,
    /// Rows through the vault's single-customer operations afterwards: updates, existing
    /// customers given consents, and creates the batch cannot take (refused: they are refused,
    /// and logged, exactly as a single create is).
    others: Vec<(u64, Job, Vec<Grant>)>,
    /// The checkpoint once the batch is done (the last line read for it), and the rows read.
    line: u64,
    read: u64,
}

impl Vault {
    /// Pass 2: stores what `checked` plans, in batches; returns the report with its outcome.
    ///
    /// Pipelined: while the store commits one batch (its customers, index entries and log records
    /// in one transaction), the next is read, validated, sealed and blind-indexed. A batch's
    /// updates and consents follow its commit, and only then does the checkpoint move past it.
    pub async fn run_import(
        &self,
        auth: &Authorized,
        source: &dyn Source,
        checked: Checked,
        progress: &dyn Progress,
    ) -> Result<Report, VaultError> {
        let Checked { mut report, format, layout, decisions, matched } = checked;
        self.refuse_create_under_consent(auth).await?;
        let catalog = self.catalog.clone();
        let now = self.now_millis();
        let started = std::time::Instant::now();
        let mut outcome = Outcome::default();
        let mut rows = Rows::open(source, format)?;
        let mut batch: Vec<(u64, Job, Vec<Grant>)> = Vec::with_capacity(BATCH);
        let mut ordinal = 0usize;
        let mut read = 0u64;
        let mut in_flight: Option<InFlight> = None;
        progress.start("importing", Some(decisions.len() as u64));
        while let Some((line, cells)) = rows.next(&layout)? {
            let decision = decisions.get(ordinal).copied().unwrap_or(SKIP);
            share_the_thread(ordinal).await;
            ordinal += 1;
            read += 1;
            if decision != SKIP {
                let row = layout.examine(&catalog, cells, now);
                let job = match (decision, matched.get(&line)) {
                    (CREATE, _) => Job::Create(row.fields),
                    (UPDATE, Some((id, field))) => {
                        // The value it was found by stays as stored (no re-spelling of the key).
                        let mut fields = row.fields;
                        fields.remove(catalog.fields[*field].name.as_str());
                        Job::Update(*id, fields)
                    }
                    (_, Some((id, _))) => Job::ConsentOnly(*id),
                    _ => continue,
                };
                batch.push((line, job, row.grants));
            }
            if batch.len() >= BATCH {
                let next = self.submit(auth, std::mem::take(&mut batch), line, std::mem::take(&mut read))?;
                if let Some(done) = in_flight.replace(next) {
                    self.finish(auth, &layout, done, &mut outcome, progress).await?;
                }
            }
        }
        let last = self.submit(auth, batch, u64::MAX, read)?;
        if let Some(done) = in_flight.replace(last) {
            self.finish(auth, &layout, done, &mut outcome, progress).await?;
        }
        if let Some(done) = in_flight.take() {
            self.finish(auth, &layout, done, &mut outcome, progress).await?;
        }
        progress.finish();
        outcome.failed.sort_by_key(|f| f.line);
        let seconds = started.elapsed().as_secs_f64();
        outcome.seconds = (seconds * 1000.0).round() / 1000.0;
        let stored = outcome.created + outcome.updated + outcome.unchanged;
        outcome.rows_per_second = if seconds > 0.0 { (stored as f64 / seconds).round() } else { 0.0 };
        report.outcome = Some(outcome);
        Ok(report)
    }

    /// A new customer of the batch, checked, sealed and blind-indexed as a single create does
    /// it (the same validation, policy decisions, key, sealing, index entries and log record);
    /// `None` when the single create would refuse it (it then goes through that create, which
    /// refuses and logs it).
    fn prepare_create(
        &self,
        auth: &Authorized,
        fields: &Map<String, Value>,
    ) -> Result<Option<candor_store::ImportRow>, VaultError> {
        let Ok(checked) = candor_core::write::check_write(
            &self.catalog,
            self.purpose(auth),
            fields,
            candor_core::write::WriteMode::Create,
        ) else {
            return Ok(None);
        };
        let may_write = |name: &str| self.decide(auth, Action::Write, PolicyTarget::Field(name), Situation::NEUTRAL);
        if checked.set.iter().any(|(d, _)| !may_write(d.name.as_str()).allowed) {
            return Ok(None);
        }
        let unique = checked
            .set
            .iter()
            .filter(|(d, _)| d.unique && d.lookup)
            .filter_map(|(d, v)| {
                value::lookup_key(d.field_type, v.as_json())
                    .map(|k| (d.name.clone(), self.keys.blind_indexes(&d.name, &k)))
            })
            .collect();
        let (subject, log) = self.new_subject(auth, &checked.set)?;
        Ok(Some(candor_store::ImportRow { subject, log, unique }))
    }

    /// Seals the batch's new customers and hands them to the store (which writes them while the
    /// caller goes on); everything else waits for [`Vault::finish`].
    fn submit(
        &self,
        auth: &Authorized,
        batch: Vec<(u64, Job, Vec<Grant>)>,
        line: u64,
        read: u64,
    ) -> Result<InFlight, VaultError> {
        let mut rows = Vec::with_capacity(batch.len());
        let mut created = Vec::with_capacity(batch.len());
        let mut others = Vec::new();
        for (line, job, grants) in batch {
            match job {
                // A write carrying an idempotency key is stored with it: one create per key.
                Job::Create(fields) if auth.idempotency.is_none() => match self.prepare_create(auth, &fields)? {
                    Some(row) => {
                        created.push((line, row.subject.id, grants));
                        rows.push(row);
                    }
                    None => others.push((line, Job::Create(fields), grants)),
                },
                job => others.push((line, job, grants)),
            }
        }
        let store: Arc<dyn Store> = self.store.clone();
        let creates =
            tokio::spawn(
                async move { if rows.is_empty() { Ok(Vec::new()) } else { store.import_subjects(rows).await } },
            );
        Ok(InFlight { creates, created, others, line, read })
    }

    /// Waits for a batch's new customers to be committed, then stores its other rows (each
    /// through the vault's create or correction) and its consents (through the vault's consent
    /// import, one transaction), and moves the checkpoint past it.
    async fn finish(
        &self,
        auth: &Authorized,
        layout: &Layout,
        batch: InFlight,
        outcome: &mut Outcome,
        progress: &dyn Progress,
    ) -> Result<(), VaultError> {
        let InFlight { creates, created, others, line, read } = batch;
        let conflicts = creates
            .await
            .map_err(|_| VaultError::Store(candor_store::StoreError::Internal("import task".into())))??;
        let mut consent_rows: Vec<(u64, SubjectId, bool, Vec<Grant>)> = Vec::new();
        for ((line, id, grants), conflict) in created.into_iter().zip(conflicts) {
            match conflict {
                None => {
                    outcome.created += 1;
                    if !grants.is_empty() {
                        consent_rows.push((line, id, true, grants));
                    }
                }
                // Another customer took the value since the check (another writer): refused and
                // logged as a single create's duplicate is.
                Some(field) => {
                    let audit = self.audit(auth, candor_log::Action::SubjectCreate, &[]).fields([field.as_str()]);
                    let refused = self.refuse::<()>(audit, VaultError::DuplicateValue(field.to_string()));
                    match refused.await {
                        Err(VaultError::Store(e)) => return Err(VaultError::Store(e)),
                        Err(e) => push_capped(
                            &mut outcome.failed,
                            LineNote { reason: Some(e.to_string()), ..LineNote::new(line) },
                        ),
                        Ok(()) => {}
                    }
                }
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        let mut grants_of: HashMap<u64, Vec<Grant>> = HashMap::new();
        for (line, job, grants) in others {
            if !grants.is_empty() {
                grants_of.insert(line, grants);
            }
            let (vault, auth) = (self.clone(), auth.clone());
            tasks.spawn(async move {
                let stored = match job {
                    Job::Create(fields) => vault.create_subject(&auth, &fields).await.map(Stored::Created),
                    Job::Update(id, fields) if fields.is_empty() => Ok(Stored::Unchanged(id)),
                    Job::Update(id, fields) => {
                        vault.correct_subject(&auth, id, &fields).await.map(|_| Stored::Updated(id))
                    }
                    Job::ConsentOnly(id) => Ok(Stored::Unchanged(id)),
                };
                (line, stored)
            });
        }
        while let Some(r) = tasks.join_next().await {
            let (line, stored) =
                r.map_err(|_| VaultError::Store(candor_store::StoreError::Internal("import task".into())))?;
            let (id, created) = match stored {
                Ok(Stored::Created(id)) => {
                    outcome.created += 1;
                    (id, true)
                }
                Ok(Stored::Updated(id)) => {
                    outcome.updated += 1;
                    (id, false)
                }
                Ok(Stored::Unchanged(id)) => {
                    outcome.unchanged += 1;
                    (id, false)
                }
                // Vault errors name fields and rules, never values.
                Err(e) => {
                    push_capped(&mut outcome.failed, LineNote { reason: Some(e.to_string()), ..LineNote::new(line) });
                    continue;
                }
            };
            if let Some(grants) = grants_of.remove(&line) {
                consent_rows.push((line, id, created, grants));
            }
        }
        self.record_grants(auth, layout, consent_rows, outcome).await?;
        progress.advance(read);
        progress.committed(line);
        Ok(())
    }

    /// Records the consents of a batch's rows (sorted by line) through the vault's consent
    /// import, leaving out grants the ledger already holds.
    async fn record_grants(
        &self,
        auth: &Authorized,
        layout: &Layout,
        mut consent_rows: Vec<(u64, SubjectId, bool, Vec<Grant>)>,
        outcome: &mut Outcome,
    ) -> Result<(), VaultError> {
        if consent_rows.is_empty() {
            return Ok(());
        }
        consent_rows.sort_by_key(|r| r.0);
        let mut lines = Vec::new();
        let mut for_lines = Vec::new();
        for (line, id, created, grants) in consent_rows {
            // A customer found existing may already hold the grant (an earlier run stopped between
            // its customers and their consents, or it was imported before): never recorded twice.
            let history = if created { Vec::new() } else { self.store.consent_history(id, None).await? };
            for g in grants {
                let change = &layout.consents[g.column].changes[0];
                let held = history.iter().any(|h| {
                    h.purpose == change.slot.purpose
                        && h.channel == change.slot.channel
                        && h.action == change.action
                        && h.given_at == g.given_at
                        && h.notice_version == g.notice_version
                });
                if held {
                    outcome.consents_already_recorded += 1;
                    continue;
                }
                for_lines.push(line);
                lines.push(ImportLine {
                    subject: id,
                    changes: layout.consents[g.column].changes.clone(),
                    given_at: g.given_at,
                    evidence: Some(g.evidence),
                    notice_version: g.notice_version,
                });
            }
        }
        if lines.is_empty() {
            return Ok(());
        }
        match self.import_consents(&auth.principal, lines, |_| {}).await {
            Ok(n) => outcome.consents_recorded += n as u64,
            Err(e) => {
                for line in for_lines {
                    push_capped(
                        &mut outcome.failed,
                        LineNote { reason: Some(format!("consent not recorded: {e}")), ..LineNote::new(line) },
                    );
                }
            }
        }
        Ok(())
    }
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
        let name = |h: &str| auto_target(&c, h).and_then(|t| target_name(&c, &t));
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
    fn phone_numbers_become_e164_with_the_default_region_for_national_forms() {
        let de = Some(phonenumber::country::Id::DE);
        assert_eq!(e164("+44 20 3860 0001", None).unwrap(), "+442038600001");
        assert_eq!(e164("030 1234567", de).unwrap(), "+49301234567");
        assert_eq!(e164("+49 (0)30 1234567", None).unwrap(), "+49301234567");
        assert!(e164("030 1234567", None).unwrap_err().contains("international form"));
        assert!(e164("12345", de).is_err());
        assert!(e164("call me maybe", de).is_err());
        // Whatever it is given, the crate's failures are answered, never a panic.
        for odd in ["+", "++49", "+0", "+999999999999999999999999", "\u{0}", "+49 30 ١٢٣٤٥٦٧"] {
            let _ = e164(odd, de);
        }
    }

    #[test]
    fn country_names_become_iso_codes_and_nothing_is_guessed() {
        let code = |s: &str| {
            let mut v = Value::String(s.into());
            country(&mut v);
            v.as_str().unwrap().to_string()
        };
        assert_eq!(code("Germany"), "DE");
        assert_eq!(code("germany "), "DE");
        assert_eq!(code("DEU"), "DE");
        assert_eq!(code("United Kingdom"), "GB");
        assert_eq!(code("UK"), "GB");
        assert_eq!(code("de"), "de", "a code is left for validation to put in capitals");
        assert_eq!(code("Germanland"), "Germanland", "no guessing: validation refuses it");
        assert!(countries::NAMES.windows(2).all(|w| w[0].0 < w[1].0), "sorted for the binary search");
        for (_, c) in countries::NAMES {
            assert!(value::iso_country(c).is_some(), "{c}");
        }
    }

    #[test]
    fn consent_dates_are_times_or_days_and_never_in_the_future() {
        let now = jiff::Timestamp::now().as_millisecond();
        assert_eq!(
            given_at("2024-03-01", now).unwrap(),
            "2024-03-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond()
        );
        assert!(given_at("2024-03-01T09:30:00Z", now).is_ok());
        assert_eq!(given_at("2999-01-01", now).unwrap_err(), "date is in the future");
        assert!(given_at("last spring", now).unwrap_err().contains("RFC 3339"));
    }
}
