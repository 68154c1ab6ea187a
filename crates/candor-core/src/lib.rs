//! Candor's pure core: the vocabulary every other part of Candor speaks.
//!
//! * [`ids`] — newtypes for the identifiers that must not be confused
//!   ([`SubjectId`], [`FieldName`], [`PurposeId`], …) and the opaque byte shapes the vault
//!   stores ([`Ciphertext`], [`WrappedDek`], [`BlindIndex`]).
//! * [`catalog`] — the data map: organisation, purposes, fields, event types, recipients and
//!   roles, parsed from TOML and validated with `file:line:column` errors.
//! * [`value`] — what a valid value of each field type looks like, and the normalisation
//!   used for blind indexes.
//! * [`write`] — checking a write against the catalog and the declared purpose.
//! * [`access`] — which role may act under which purpose, and which fields and event types
//!   a purpose may touch.
//! * [`spreadsheet`] — CSV cells that cannot start a formula in a spreadsheet.
//!
//! This crate performs no I/O and holds no keys, so everything in it is tested directly.
//!
//! ```
//! use candor_core::catalog::Catalog;
//! let catalog = Catalog::from_toml_str(candor_core::catalog::EXAMPLE_CATALOG, "catalog.toml").unwrap();
//! let purpose = catalog.purpose("account").unwrap();
//! assert!(catalog.field("email").unwrap().allows(&purpose.id));
//! ```
#![forbid(unsafe_code)]

pub mod access;
pub mod breach_notice;
pub mod catalog;
pub mod consent;
pub mod field_type;
pub mod ids;
pub mod mask;
pub mod notice;
pub mod privacy_notice;
pub mod rights;
pub mod spreadsheet;
pub mod value;
pub mod write;

pub use ids::{BlindIndex, Ciphertext, EventId, FieldName, PurposeId, RoleId, StoredDek, SubjectId, WrappedDek};
