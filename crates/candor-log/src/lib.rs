//! Candor's tamper-evident log, as a library that needs nothing of the server.
//!
//! * [`merkle`] — RFC 6962 / RFC 9162 hashing (`leaf = SHA-256(0x00 || entry)`,
//!   `node = SHA-256(0x01 || left || right)`), proofs built from stored complete-subtree hashes
//!   in O(log n) reads ([`merkle::NodeSource`]), their verification, and [`merkle::RootBuilder`]
//!   that recomputes a root from entries in one pass with O(log n) memory.
//! * [`note`] — checkpoints in the C2SP `tlog-checkpoint` format inside a C2SP `signed-note`,
//!   Ed25519, with verifier keys in the `name+id+key` form.
//! * [`entry`] — what one log entry says (ids, names, purposes, times; never a personal value)
//!   and its canonical bytes.
//! * [`witness`] — C2SP `tlog-witness` (`add-checkpoint`: the witness's checks, with the HTTP
//!   status each refusal gets) and `tlog-cosignature` (Ed25519 v1 cosignatures), and verifying a
//!   checkpoint cosigned by N of M trusted witnesses.
//! * [`map`] — the completeness map: a sparse Merkle tree from hidden per-customer keys to the
//!   state of each customer's history (entry count and hash chain), with proofs that a history
//!   is complete and that a later one extends an earlier one.
//! * [`history`] — a customer's history proof bundle (entries with inclusion proofs, map proof,
//!   cosigned checkpoint, keys) and its offline verification.
//!
//! ```
//! use candor_log::merkle::{leaf_hash, RootBuilder, verify_inclusion, inclusion_proof_from_leaves};
//! let entries: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i]).collect();
//! let mut b = RootBuilder::new();
//! for e in &entries { b.push(leaf_hash(e)); }
//! let root = b.root();
//! let leaves: Vec<_> = entries.iter().map(|e| leaf_hash(e)).collect();
//! let proof = inclusion_proof_from_leaves(&leaves, 3, 5).unwrap();
//! verify_inclusion(&leaf_hash(&entries[3]), 3, 5, &proof, &root).unwrap();
//! ```
#![forbid(unsafe_code)]

pub mod action;
pub mod actor;
pub mod entry;
pub mod history;
pub mod map;
pub mod merkle;
pub mod note;
pub mod tiles;
pub mod witness;

pub use action::Action;

/// A SHA-256 hash.
pub type Hash = [u8; 32];
