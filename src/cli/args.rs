//! The `candor` command line's arguments (clap): every command and its options, with the help
//! text users read. `main.rs` parses them and hands each command to its module.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::ConfigArg;

#[derive(Parser)]
#[command(
    name = "candor",
    version,
    about = "Customer-data vault: field-level encrypted personal data, purpose-bound access."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create an installation: config, example catalog, keys, database, admin token.
    Init {
        /// Directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Database to use instead of the embedded SQLite file, e.g. postgres://candor@db/candor.
        #[arg(long)]
        database: Option<String>,
    },
    /// Apply pending database migrations and exit (servers also apply them at start-up).
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Back up a running installation: the data store, then the key store, consistently, with a
    /// manifest of checksums. The key-encryption keys are not copied: keep them apart.
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// A new (or empty) directory to write the backup to.
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into this installation's place, after checking it is whole and one pair;
    /// ends with `log verify`.
    Restore {
        #[command(flatten)]
        config: ConfigArg,
        /// The directory `candor backup --to` wrote.
        #[arg(long)]
        from: PathBuf,
        /// Replace the installation's current database and key store (stop its servers first;
        /// the files are moved aside, and the erasures its key store records are kept).
        #[arg(long)]
        replace: bool,
    },
    /// Copy an installation's data from one database to another (ciphertext copied as is).
    Copy {
        /// Source, e.g. sqlite:data/candor.db
        #[arg(long)]
        from: String,
        /// Destination, e.g. postgres://candor@db/candor (must be empty).
        #[arg(long)]
        to: String,
        /// The source installation's key store (its data keys go to the `candor_keys` schema).
        #[arg(long, default_value = "keys/keystore.db")]
        from_keys: PathBuf,
    },
    /// Serve the HTTP API.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Address to listen on (overrides the config); port 0 picks a free port.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Create an installation with demo customers and serve it, printing URLs and tokens.
    Quickstart {
        /// Directory for the installation (default: a new temporary directory). An existing
        /// installation there is reused.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Address to listen on (default 127.0.0.1:8750); port 0 picks a free port.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Sign staff in at /console through this OpenID Connect provider (its issuer URL), for
        /// this run only; the client secret comes from CANDOR_OIDC_CLIENT_SECRET.
        /// `scripts/quickstart-idp.sh` runs the quickstart so with the bundled test provider.
        #[arg(long, requires = "staff_role")]
        staff_issuer: Option<String>,
        /// The client id Candor is registered under at that provider (default `candor`).
        #[arg(long, requires = "staff_issuer")]
        staff_client_id: Option<String>,
        /// A provider group and the catalog role its members sign in as, GROUP=ROLE (repeat it).
        #[arg(long, value_name = "GROUP=ROLE", requires = "staff_issuer")]
        staff_role: Vec<String>,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: super::tokens::TokenCommand,
    },
    /// Work with the catalog (data map).
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Explain and test access decisions (the catalog's rules plus your policy file).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Work with the tamper-evident log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Verify a customer's proof that their history is complete (offline).
    Verify {
        #[command(subcommand)]
        command: VerifyCommand,
    },
    /// Verify signed documents: consent receipts, erasure certificates, export manifests.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// Apply the catalog's retention periods.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Check the installation for what is unsafe or broken (key file permissions, keys a data
    /// key needs, TLS in front of the privacy center, keys in the environment).
    Doctor {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Assess a breach: which customers and which kinds of their data were exposed.
    Breach {
        #[command(subcommand)]
        command: BreachCommand,
    },
    /// Rotate keys: key-encryption keys (status, rotate, rewrap, retire) and the blind-index key
    /// (rotate-index, reindex, retire-index).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Work with recipients (companies data is shared with).
    Recipients {
        #[command(subcommand)]
        command: RecipientsCommand,
    },
    /// Staff signed in through the company's identity provider: resolve a log pseudonym.
    Staff {
        #[command(subcommand)]
        command: super::staff::StaffCommand,
    },
    /// List and revoke grants (data shared with recipients), whatever the catalog now says.
    Grants {
        #[command(subcommand)]
        command: super::grants::GrantsCommand,
    },
    /// Run a witness (C2SP tlog-witness) that cosigns checkpoints of the logs it is given, after
    /// checking each extends what it cosigned before.
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
    /// Import data collected elsewhere.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
}

#[derive(Subcommand)]
pub enum VerifyCommand {
    /// Check a history proof bundle (history-proof.json from the privacy center's Download):
    /// every entry about the customer up to a checkpoint, none left out, and the witnesses'
    /// cosignatures. Offline; exits non-zero, naming the checkpoint, if anything does not match.
    History {
        /// The bundle (JSON).
        bundle: PathBuf,
        /// The log's verifier key to trust (`name+id+key`, GET /v1/log/key), instead of the
        /// bundle's.
        #[arg(long)]
        log_key: Option<String>,
        /// A witness's verifier key to trust (repeatable), instead of the bundle's.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// How many witnesses must have cosigned (at least the bundle's own number).
        #[arg(long)]
        require: Option<usize>,
        /// An earlier bundle of the same customer: check too that every entry it listed is
        /// still there, unchanged, and that only newer entries were added.
        #[arg(long)]
        since: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum ReceiptCommand {
    /// Check a saved consent receipt, erasure certificate or export manifest: its signature,
    /// and what it records. Exits non-zero if it was altered or signed by another key.
    Verify {
        /// The receipt (JSON, as returned by the API).
        file: PathBuf,
        /// The verifier key to trust (`name+id+key`, from GET /v1/log/key); default: the
        /// installation's own (from --config).
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Delete values and events whose retention period has passed (customers under a legal
    /// hold are skipped); each deletion is logged with names and counts.
    Run {
        /// Only print what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Act as if it were this time (RFC 3339), e.g. to see what a later sweep will delete.
        #[arg(long)]
        now: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
pub enum BreachCommand {
    /// Which customers and categories of data the incident could have exposed, from the log
    /// (reads, reports, exports, recipients' reads) and, with --kek-version, the key store.
    /// Every filter given must match. Prints a JSON summary; --out also writes the customer ids.
    Assess {
        /// Start of the window (RFC 3339, inclusive).
        #[arg(long)]
        from: Option<String>,
        /// End of the window (RFC 3339, exclusive).
        #[arg(long)]
        to: Option<String>,
        /// A token id (as the log names it; `candor token list`), e.g. a leaked staff token.
        #[arg(long)]
        token: Option<String>,
        /// A staff pseudonym (stf_…, as the log and /console name a person signed in through the
        /// identity provider): everything that person read. (A service with the provider's
        /// access token: --token client:<client id>.)
        #[arg(long, conflicts_with = "token")]
        staff: Option<String>,
        /// A role: what every token of that role read.
        #[arg(long)]
        role: Option<String>,
        /// A recipient id: what it read through its grants.
        #[arg(long)]
        recipient: Option<String>,
        /// A field or event type of the catalog: only accesses that touched it.
        #[arg(long)]
        field: Option<String>,
        /// A data category, e.g. contact, financial.
        #[arg(long)]
        category: Option<String>,
        /// A leaked KEK version: every customer whose data key it wraps, with all they hold.
        #[arg(long)]
        kek_version: Option<u32>,
        /// Requests from this network (CIDR, e.g. 203.0.113.0/24, or one address); repeat for
        /// several. Matched against staff and recipient addresses kept beside the log.
        #[arg(long = "ip-range", value_name = "CIDR")]
        ip_ranges: Vec<String>,
        /// Count the affected customers per country, by this field (a postal address, or a
        /// two-letter country code): it is decrypted in memory for each of them, and logged.
        #[arg(long, value_name = "FIELD")]
        countries_from: Option<String>,
        /// Directory for assessment.json and customers.csv.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Record a breach from an assessment (GDPR Art. 33/34): keeps it with its 72-hour clock,
    /// registers a notice for each affected customer (shown in their privacy center, checkable as
    /// genuine), and writes authority-summary.md, customer-notice.txt and notices.csv to --out.
    Record {
        /// The assessment.json written by `candor breach assess --out DIR`.
        #[arg(long)]
        assessment: PathBuf,
        /// What happened, in plain words.
        #[arg(long)]
        nature: String,
        /// What it may mean for the people affected.
        #[arg(long)]
        consequences: String,
        /// What was done and will be done about it.
        #[arg(long)]
        measures: String,
        /// When you became aware of it (RFC 3339; default now): the 72 hours count from here.
        #[arg(long)]
        detected_at: Option<String>,
        /// Directory for authority-summary.md, customer-notice.txt and notices.csv.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Every breach with its 72-hour clock and status.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Mark a breach: the authority was notified, or it is closed.
    Update {
        /// The breach's id (from `candor breach list`).
        id: String,
        /// The supervisory authority has been notified (stops the 72-hour clock).
        #[arg(long, conflicts_with = "closed", required_unless_present = "closed")]
        authority_notified: bool,
        /// The breach is handled and closed.
        #[arg(long)]
        closed: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Each KEK version, how many customers' data keys need it, and which one is primary.
    Status {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Add a new KEK version to the key file; it becomes primary when servers restart.
    Rotate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Wrap every data key still under an older KEK again under the primary one, while the
    /// servers keep serving (restart them after `rotate` first). Resumes where it stopped.
    Rewrap {
        /// At most this many data keys a second (0: as fast as the database allows).
        #[arg(long, default_value_t = 0)]
        per_second: u32,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove an old KEK version from the key file; refused while any data key needs it.
    Retire {
        /// The version, e.g. 1 (as `status` prints it: kek v1).
        version: u32,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Add a new blind-index key version (exact-match lookups); it indexes new values once the
    /// servers restart, and lookups search under every version held.
    RotateIndex {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Recompute every lookup row made under an older index key (values are decrypted in memory
    /// only), while the servers keep serving (restart them after `rotate-index` first). Resumes
    /// where it stopped.
    Reindex {
        /// At most this many lookup rows a second (0: as fast as the database allows).
        #[arg(long, default_value_t = 0)]
        per_second: u32,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove an old index-key version from the index key file; refused while a lookup row
    /// needs it.
    RetireIndex {
        /// The version, e.g. 1 (as `status` prints it: index key v1).
        version: u32,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
pub enum RecipientsCommand {
    /// Make a new webhook signing secret for a recipient declared in the catalog, keep it in
    /// `[sharing] webhook_secrets` (owner-only) and print it once, to give to the recipient.
    /// Servers read the secrets at start-up.
    Secret {
        /// The recipient's id in the catalog, e.g. parcel_carrier.
        recipient: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Import consents with their original time and evidence from a CSV file with the columns
    /// subject_id,purpose,channel,action,given_at,evidence,notice_version. All lines or none:
    /// any bad line is reported with its number and nothing is imported.
    Consents {
        /// The CSV file to import.
        file: PathBuf,
        /// Notice version for lines that leave it empty: `current` (the notice in force now)
        /// or a label of your own. Without it such lines are refused.
        #[arg(long)]
        notice_version: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Import customers from a CRM export (CSV with a header, or JSON Lines if the file ends in
    /// .jsonl), through the vault as a catalog role under a purpose. A minimisation report
    /// (report.md, report.json) says what is not imported and why before anything is stored.
    Subjects {
        /// The file to import.
        file: PathBuf,
        /// The purpose the data was collected for (customers are created under it).
        #[arg(long)]
        purpose: String,
        /// The catalog role to act as (default: the first role that acts under the purpose).
        #[arg(long)]
        role: Option<String>,
        /// Columns to fields, e.g. "E-mail=email,Name=full_name,Land=shipping_address.country";
        /// "Column=" leaves a column out. Other headers are matched to fields by name.
        #[arg(long)]
        map: Option<String>,
        /// Write the report only; store nothing.
        #[arg(long)]
        dry_run: bool,
        /// What to do with a row of an existing customer (found by a unique field).
        #[arg(long, value_enum, default_value = "skip")]
        on_duplicate: super::import::OnDuplicateArg,
        /// Directory to write report.md and report.json into (and the checkpoint of an
        /// unfinished import, import.checkpoint.json, which a re-run continues from).
        #[arg(long, default_value = ".")]
        report: PathBuf,
        /// ISO 3166-1 region of phone numbers written without their country code (e.g. DE).
        #[arg(long)]
        default_region: Option<String>,
        /// What the consent columns' grants were given through (the form or document), unless a
        /// "<column> source" column says.
        #[arg(long)]
        consent_source: Option<String>,
        /// The notice version the consents were given on (`current`: the one in force), unless
        /// a "<column> notice" column says.
        #[arg(long)]
        consent_notice: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
pub enum WitnessCommand {
    /// Create a witness directory: `witness.toml`, an owner-only Ed25519 key, and print the
    /// witness's verifier key (give it to the log's operator for `[[log.witnesses]]`).
    Init {
        /// Directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The witness's name (its key name), e.g. witness.example/w1.
        #[arg(long)]
        name: String,
        /// Address to listen on (default 127.0.0.1:8760).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// A log to cosign: its verifier key (`name+id+key`, from GET /v1/log/key); repeatable.
        #[arg(long = "log")]
        logs: Vec<String>,
    },
    /// Serve the witness: POST /add-checkpoint, GET /<origin hash>/checkpoint, GET /key.
    Serve {
        /// The witness's config file.
        #[arg(long, default_value = crate::witness::server::CONFIG_FILE)]
        config: PathBuf,
        /// Address to listen on (overrides the config); port 0 picks a free port.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Print the witness's verifier key.
    Key {
        /// The witness's config file.
        #[arg(long, default_value = crate::witness::server::CONFIG_FILE)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum LogCommand {
    /// Recompute every entry of the log and every stored subtree hash, and check them against
    /// signed checkpoints (a fresh one when the log key is at hand, every one the installation
    /// kept, and one saved earlier). Names the first bad index if anything differs.
    Verify {
        /// Verify the installation's own database (default `./candor.toml`).
        #[arg(long, env = "CANDOR_CONFIG", conflicts_with = "url")]
        config: Option<PathBuf>,
        /// Verify a running server instead, e.g. http://127.0.0.1:8750.
        #[arg(long)]
        url: Option<String>,
        /// Token for reading entries from the server.
        #[arg(long, env = "CANDOR_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A checkpoint saved earlier (from GET /v1/log/checkpoint): the log must still extend it.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The verifier key to trust (`name+id+key`, from GET /v1/log/key), instead of the
        /// installation's or server's own.
        #[arg(long)]
        key: Option<String>,
        /// Pass even when the newest entries are not covered by any signed checkpoint (checked
        /// against their recorded hashes only). Without it they fail the check: with the
        /// installation's log key a checkpoint is signed first, so this matters for `--url`
        /// against a server whose checkpoint lags, or without the key.
        #[arg(long)]
        allow_unsigned_tail: bool,
    },
    /// Print the current signed checkpoint of the installation (to save for later checks).
    Checkpoint {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Check that a server's log is the one its witnesses saw: its cosigned checkpoint carries
    /// enough cosignatures of witnesses you trust, and its current log extends it (and, for a
    /// witness given with its URL, extends what that witness last cosigned).
    CheckWitnesses {
        /// The server, e.g. http://127.0.0.1:8750.
        #[arg(long)]
        url: String,
        /// A witness to trust: its verifier key, or `KEY=URL` to also ask it for its own view.
        #[arg(long = "witness", required = true)]
        witnesses: Vec<String>,
        /// How many of them must have cosigned (default: all).
        #[arg(long)]
        required: Option<usize>,
        /// The log verifier key to trust (default: the server's GET /v1/log/key).
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Print what a role gets of a field (or event type) under a purpose, and which policies decided.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// The role asking (declared in the catalog).
        #[arg(long)]
        role: String,
        /// The purpose it declares (declared in the catalog).
        #[arg(long)]
        purpose: String,
        /// A field or event type of the catalog (what the role gets of it).
        #[arg(long, required_unless_present = "power")]
        field: Option<String>,
        /// A power instead of a field: record_consent, erase, export, break_glass, audit, manage,
        /// or share (with --field).
        #[arg(long, value_parser = super::policy::POWERS)]
        power: Option<String>,
        /// Whether the customer has given consent (matters for consent purposes).
        #[arg(long, value_parser = ["yes", "no"], default_value = "yes")]
        consent: String,
        /// The customer's processing is restricted.
        #[arg(long)]
        restricted: bool,
        /// The caller opened a break-glass override for the customer.
        #[arg(long)]
        break_glass: bool,
    },
    /// Run a table of expected decisions (CSV); exits non-zero on any mismatch.
    Test {
        #[command(flatten)]
        config: ConfigArg,
        /// CSV: role,purpose[,consent,restricted,break_glass],<field or event type>… with
        /// full | masked | withheld | denied in each cell.
        file: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Validate the catalog; problems are printed as file:line:column with how to fix them.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write the record of processing activities (GDPR Art. 30) as ropa.md and ropa.csv.
    Ropa {
        #[command(flatten)]
        config: ConfigArg,
        /// Directory to write into.
        #[arg(long, default_value = ".")]
        out: std::path::PathBuf,
    },
}
