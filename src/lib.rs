//! Candor's server and operator tooling as a library, for the `candor` binary (`main.rs` parses
//! the command line and hands each command to these modules). The vault itself is the
//! `candor-vault` crate; this crate adds what runs around it: configuration and installation,
//! the HTTP API and pages, staff sign-in, background jobs, backups, the log verifier and the
//! command groups.
#![forbid(unsafe_code)]

pub mod backup;
pub mod breach;
pub mod cli;
pub mod config;
pub mod copy;
pub mod demo;
pub mod doctor;
pub mod hardening;
pub mod install;
pub mod jobs;
pub mod outbox;
pub mod ropa;
pub mod verify;
pub mod witness;

pub use candor_http::{self as http, identity as staff};
pub use candor_vault::{self as vault, clock};
