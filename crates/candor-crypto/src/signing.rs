//! The log's Ed25519 signing key: signs checkpoints. The seed lives in an owner-only key file
//! (`candor-log-key v1 <base64 seed>`) or `CANDOR_LOG_KEY`.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

use crate::keyfile::{KeyError, KeyMaterial};

/// Label of log-signing-key lines.
pub const LOG_KEY_LABEL: &str = "candor-log-key";

pub struct LogSigner {
    pair: Ed25519KeyPair,
    public: [u8; 32],
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
        Ok(Self { pair, public })
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
}
