//! The command groups of the `candor` command line, one module each; `main.rs` parses the
//! arguments and hands each command to its module.

use std::path::PathBuf;

pub mod args;
pub mod consent;
pub mod grants;
pub mod import;
pub mod keys;
pub mod keys_index;
pub mod policy;
mod progress;
pub mod retention;
pub mod serve;
pub mod staff;
pub mod tokens;
pub mod verify;

/// `--config`: the installation's config file.
#[derive(clap::Args)]
pub struct ConfigArg {
    /// The installation's config file.
    #[arg(long, env = "CANDOR_CONFIG", default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
}
