//! The log's Ed25519 signing key: signs checkpoints. The seed lives in an owner-only key file
//! (`candor-log-key v1 <base64 seed>`) or `CANDOR_LOG_KEY`.
//!
//! The same seed (the oldest one held, so that adding a newer signing key does not change it)
//! is the root of the completeness map's secret: HKDF-SHA-256 derives an HMAC key from it, and
//! a customer's map salt is HMAC-SHA-256 of their subject id under that key ([`LogSigner::map_salt`]).
//! Whoever can sign checkpoints can recompute the map; nobody else can tell whose key is whose.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use aws_lc_rs::{hkdf, hmac};

/// HKDF salt and info of the completeness map's secret.
const MAP_SALT: &[u8] = b"candor completeness map";
const MAP_INFO: &[u8] = b"candor-map-salt/v1";

use crate::keyfile::{KeyError, KeyMaterial};

/// Label of log-signing-key lines.
pub const LOG_KEY_LABEL: &str = "candor-log-key";

pub struct LogSigner {
    pair: Ed25519KeyPair,
    public: [u8; 32],
    /// The completeness map's HMAC key (aws-lc-rs keeps and zeroizes its bytes).
    map_key: hmac::Key,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSigner(<redacted>)")
    }
}

impl LogSigner {
    /// Uses the newest of the given keys.
    pub fn new(keys: &[KeyMaterial]) -> Result<Self, KeyError> {
        let k = keys.last().ok_or(KeyError::Empty { origin: "log signing keys".into(), label: LOG_KEY_LABEL })?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&k.bytes[..]).map_err(|_| KeyError::Format {
            origin: "log signing key".into(),
            line: 0,
            reason: "not a valid Ed25519 seed".into(),
        })?;
        let public = pair.public_key().as_ref().try_into().expect("Ed25519 public keys are 32 bytes");
        let first = keys.first().expect("not empty");
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, MAP_SALT).extract(&first.bytes[..]);
        let map_key = hmac::Key::from(prk.expand(&[MAP_INFO], hmac::HMAC_SHA256).expect("HKDF output of one block"));
        Ok(Self { pair, public, map_key })
    }

    /// The completeness-map salt of the customer with id `subject` (as log entries write it).
    pub fn map_salt(&self, subject: &str) -> [u8; 32] {
        hmac::sign(&self.map_key, subject.as_bytes()).as_ref().try_into().expect("HMAC-SHA-256 is 32 bytes")
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.pair.sign(message).as_ref().try_into().expect("Ed25519 signatures are 64 bytes")
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};

    use super::*;
    use crate::keyfile::{generate_key_line, parse_keys};

    #[test]
    fn signatures_verify_with_the_public_key() {
        let line = generate_key_line(LOG_KEY_LABEL, 1).unwrap();
        let signer = LogSigner::new(&parse_keys(&line, LOG_KEY_LABEL, "test").unwrap()).unwrap();
        let sig = signer.sign(b"checkpoint");
        UnparsedPublicKey::new(&ED25519, &signer.public_key()).verify(b"checkpoint", &sig).unwrap();
        assert!(UnparsedPublicKey::new(&ED25519, &signer.public_key()).verify(b"other", &sig).is_err());
        assert_eq!(format!("{signer:?}"), "LogSigner(<redacted>)");
    }

    #[test]
    fn map_salts_are_stable_per_subject_and_survive_a_newer_signing_key() {
        let first = generate_key_line(LOG_KEY_LABEL, 1).unwrap();
        let second = generate_key_line(LOG_KEY_LABEL, 2).unwrap();
        let one = LogSigner::new(&parse_keys(&first, LOG_KEY_LABEL, "test").unwrap()).unwrap();
        let both = LogSigner::new(
            &parse_keys(&format!("{}{}", first.as_str(), second.as_str()), LOG_KEY_LABEL, "test").unwrap(),
        )
        .unwrap();
        assert_eq!(one.map_salt("a"), both.map_salt("a"));
        assert_ne!(one.map_salt("a"), one.map_salt("b"));
        assert_ne!(one.public_key(), both.public_key());
        let other = LogSigner::new(&parse_keys(&second, LOG_KEY_LABEL, "test").unwrap()).unwrap();
        assert_ne!(one.map_salt("a"), other.map_salt("a"));
    }
}
