//! API tokens: high-entropy random strings, stored only as SHA-256 hashes.
//!
//! Tokens are 256-bit random values, so a fast hash is enough (no password hashing needed):
//! guessing a token or inverting its hash is infeasible either way.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::CryptoError;

/// The prefix makes leaked tokens easy to recognise (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "cnd_";

/// The SHA-256 of a token: what the store keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A fresh token, to be shown once and then forgotten.
pub fn generate_token() -> Result<Zeroizing<String>, CryptoError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut raw[..]).map_err(|_| CryptoError::Random)?;
    Ok(Zeroizing::new(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(&raw[..]))))
}

pub fn hash_token(token: &str) -> TokenHash {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    TokenHash(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hashed() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(*a, *b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
