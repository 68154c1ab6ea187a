//! Envelope encryption for Candor. This crate is the only place that ever holds a key or turns
//! plaintext into ciphertext.
//!
//! * A [`KeyRing`] holds versioned key-encryption keys (KEKs) and the blind-index key, loaded
//!   from owner-only files or the environment ([`keyfile`]).
//! * Every subject has a random data key (DEK), stored only wrapped by a KEK
//!   ([`KeyRing::new_subject_key`], [`KeyRing::open_subject_key`]).
//! * Each value is sealed with AES-256-GCM under the subject's DEK, with associated data binding
//!   it to (subject id, field or event, key version): a ciphertext moved to another row fails
//!   to open ([`SubjectKey`]).
//! * Lookup fields get a blind index: HMAC-SHA-256 of the normalised value under a per-field
//!   key derived with HKDF from the index key ([`KeyRing::blind_index`]).
//!
//! Raw key bytes live in [`zeroize::Zeroizing`] buffers and are wiped on drop; `Debug` of every
//! key type prints a redaction.
//!
//! ```
//! use candor_core::{FieldName, SubjectId};
//! use candor_crypto::KeyRing;
//! let ring = KeyRing::generate_in_memory();
//! let subject = SubjectId::random();
//! let (key, wrapped) = ring.new_subject_key(subject).unwrap();
//! let email = FieldName::new("email");
//! let sealed = key.seal_field(&email, b"\"ada@example.com\"").unwrap();
//! let reopened = ring.open_subject_key(subject, &wrapped).unwrap();
//! assert_eq!(&reopened.open_field(&email, &sealed).unwrap()[..], b"\"ada@example.com\"");
//! ```
#![forbid(unsafe_code)]

pub mod dek_cache;
mod envelope;
pub mod kek;
pub mod keyfile;
pub mod pkcs11;
mod signing;
pub mod spool;
pub mod staff;
mod token;
pub mod webhook;

pub use candor_core::StoredDek;
pub use envelope::{KeyRing, SubjectKey};
pub use keyfile::KeyError;
pub use signing::{LOG_KEY_LABEL, LogSigner};
pub use token::{
    MESSAGE_CODE_LEN, SESSION_PREFIX, SIGN_IN_PREFIX, TokenHash, csrf_token, generate_message_code, generate_secret,
    generate_token, hash_token, message_code_hash, secrets_match,
};

/// Incremental SHA-256 (fingerprints of streamed files, such as an export's).
pub struct Sha256(aws_lc_rs::digest::Context);

impl Default for Sha256 {
    fn default() -> Self {
        Self(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }
}

impl Sha256 {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finish().as_ref().try_into().expect("32 bytes")
    }
}

/// SHA-256 of `bytes` (content fingerprints such as the catalog's).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref().try_into().expect("32 bytes")
}

/// SHA-256 of `bytes` in lowercase hex (the `sha256:` fingerprints shown and logged).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha256(bytes))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cryptographic operation failed. Messages name what failed, never a value or a key.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: wrong key, or the ciphertext was altered or moved to another
    /// subject, field or event.
    #[error("{0} did not decrypt: wrong key, or the ciphertext was altered or moved from another record")]
    Integrity(&'static str),
    #[error("{0} is malformed (truncated or unknown format)")]
    Malformed(&'static str),
    #[error("key-encryption key version {0} is not in the key ring")]
    UnknownKeyVersion(u32),
    #[error("the system random number generator failed")]
    Random,
    /// The key provider (an HSM) failed; the message names the operation and the provider's
    /// error code, never key material.
    #[error("the key provider failed: {0}")]
    Provider(String),
    /// The primary KEK has wrapped as many data keys as its budget allows (random 96-bit
    /// nonces: NIST SP 800-38D caps one key at 2^32 encryptions); it wraps no more.
    #[error(
        "key-encryption key v{version} has used its wrapping budget ({used} of {limit} data keys): rotate it \
         (`candor keys rotate`, restart, `candor keys rewrap`)"
    )]
    KekBudgetExhausted { version: u32, used: u64, limit: u64 },
}
