//! `candor copy --from sqlite:PATH --to postgres://…`: move an installation to PostgreSQL with a
//! progress bar; ciphertext is copied as is and counts are verified at the end.

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

pub async fn run(from: &str, from_keys: &std::path::Path, to: &str) -> Result<()> {
    let Some(path) = from.strip_prefix("sqlite:") else {
        bail!("--from must be sqlite:<path to the SQLite file>");
    };
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL");
    }
    if !std::path::Path::new(path).exists() {
        bail!("{path} does not exist");
    }
    if !from_keys.exists() {
        bail!(
            "the key store {} does not exist; pass --from-keys with the installation's keys/keystore.db",
            from_keys.display()
        );
    }
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{msg:>16} {bar:40} {pos}/{len} rows").expect("template"));
    let report =
        candor_store::copy::sqlite_to_postgres(std::path::Path::new(path), from_keys, to, |table, done, total| {
            bar.set_message(table.to_string());
            bar.set_length(total);
            bar.set_position(done);
        })
        .await?;
    bar.finish_and_clear();
    for (table, rows) in &report {
        println!("{table:>16}: {rows} rows");
    }
    println!("copy verified: row counts and the log's root hash match");
    Ok(())
}
