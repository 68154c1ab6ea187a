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

/// Prefix of privacy-center sign-in link secrets and of session cookies.
pub const SIGN_IN_PREFIX: &str = "cndl_";
pub const SESSION_PREFIX: &str = "cnds_";

/// A fresh token, to be shown once and then forgotten.
pub fn generate_token() -> Result<Zeroizing<String>, CryptoError> {
    generate_secret(TOKEN_PREFIX)
}

/// 256 random bits, URL-safe, after `prefix` (also stored only as a SHA-256 hash).
pub fn generate_secret(prefix: &str) -> Result<Zeroizing<String>, CryptoError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut raw[..]).map_err(|_| CryptoError::Random)?;
    Ok(Zeroizing::new(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&raw[..]))))
}

/// The anti-forgery token of a privacy-center session: derived from the session's secret (which
/// only the HttpOnly cookie carries), so a page from another site can neither read nor guess it.
pub fn csrf_token(session_secret: &str) -> String {
    let mut input = Zeroizing::new(b"candor csrf v1\0".to_vec());
    input.extend_from_slice(session_secret.as_bytes());
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &input).as_ref())
}

/// Crockford's base-32 alphabet: no I, L, O or U, so a code read aloud or retyped survives.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a message verification code (5 bits each: 50 bits).
pub const MESSAGE_CODE_LEN: usize = 10;

/// A fresh verification code for a registered message, as printed: `7KQ2M-X9D4A`.
pub fn generate_message_code() -> Result<String, CryptoError> {
    let mut raw = [0u8; MESSAGE_CODE_LEN];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| CryptoError::Random)?;
    let chars: String = raw.iter().map(|b| CODE_ALPHABET[usize::from(b & 31)] as char).collect();
    Ok(format!("{}-{}", &chars[..5], &chars[5..]))
}

/// The stored form of a message code as a person typed it (case, spaces and dashes ignored;
/// O read as 0, I and L as 1), or `None` if it cannot be a code.
pub fn message_code_hash(typed: &str) -> Option<[u8; 32]> {
    let mut code = String::with_capacity(MESSAGE_CODE_LEN);
    for c in typed.chars().filter(|c| !c.is_whitespace() && *c != '-') {
        let c = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !CODE_ALPHABET.contains(&(c as u8)) || code.len() == MESSAGE_CODE_LEN {
            return None;
        }
        code.push(c);
    }
    if code.len() != MESSAGE_CODE_LEN {
        return None;
    }
    let mut input = b"candor message code v1\0".to_vec();
    input.extend_from_slice(code.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, &input).as_ref());
    Some(out)
}

/// Compares two secrets in constant time.
pub fn secrets_match(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
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

    #[test]
    fn message_codes_are_readable_and_forgiving_to_type() {
        let code = generate_message_code().unwrap();
        assert_eq!(code.len(), MESSAGE_CODE_LEN + 1);
        assert_ne!(code, generate_message_code().unwrap());
        let hash = message_code_hash(&code).unwrap();
        assert_eq!(message_code_hash(&code.to_lowercase().replace('-', " ")), Some(hash));
        assert_eq!(message_code_hash("0000011111"), message_code_hash("ooooo-IIIII"));
        assert_eq!(message_code_hash("00000-1111L"), message_code_hash("0000011111"));
        assert_eq!(message_code_hash("0000-0"), None, "too short");
        assert_eq!(message_code_hash("00000-000000"), None, "too long");
        assert_eq!(message_code_hash("0000U-00000"), None, "not in the alphabet");
        assert_eq!(message_code_hash("0000é-00000"), None);
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session_and_compared_whole() {
        let s = generate_secret(SESSION_PREFIX).unwrap();
        let other = generate_secret(SESSION_PREFIX).unwrap();
        assert!(s.starts_with(SESSION_PREFIX));
        let t = csrf_token(&s);
        assert_eq!(t, csrf_token(&s));
        assert_ne!(t, csrf_token(&other));
        assert!(!t.contains(&s[SESSION_PREFIX.len()..]), "the token does not reveal the session secret");
        assert!(secrets_match(&t, &csrf_token(&s)));
        assert!(!secrets_match(&t, &t[..t.len() - 1]));
        assert!(!secrets_match(&t, ""));
    }
}
