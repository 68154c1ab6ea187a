//! Witnesses against a split view.
//!
//! * [`server`] — `candor witness init` / `candor witness serve`: a standalone C2SP
//!   `tlog-witness` with its own Ed25519 key (owner-only file) and its own durable state (the
//!   latest cosigned size and root per log origin), for a partner, an auditor or a regulator to
//!   run. The decisions are `candor_log::witness::check_add_checkpoint`; this module adds HTTP,
//!   the key and the state file.
//! * [`client`] — Candor's side: pushes each new checkpoint to the configured witnesses
//!   (`[[log.witnesses]]`), keeps the checkpoint cosigned by at least `[log] witnesses_required`
//!   of them for `GET /v1/log/checkpoint/cosigned`, and reports a witness that refuses because
//!   the log is not consistent with what it cosigned before (a fork or a rollback).
//! * [`check`] — `candor log check-witnesses`: what a verifier runs against a server, requiring
//!   N of the M witnesses it trusts.

pub mod check;
pub use candor_http::witnesses as client;
pub mod server;
