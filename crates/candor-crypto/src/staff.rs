//! Staff pseudonyms and the secrets of a staff sign-in in progress.
//!
//! A pseudonym is `stf_` and 32 hex digits: the first 128 bits of HMAC-SHA-256, under the
//! installation's staff key, of the identity provider's issuer and the person's subject. It is
//! stable (the same person at the same provider always gets the same one, on every server of
//! the installation), names nobody outside the installation, and is resolved only through the
//! table of people who signed in (`candor staff whois`). The key never changes: a new key would
//! give everyone a new pseudonym and cut the log's history of each person in two.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::keyfile::{KeyError, KeyMaterial};

/// Label of the staff key in its key file or environment variable.
pub const STAFF_KEY_LABEL: &str = "candor-staff-key";
/// What every staff pseudonym starts with.
pub const PSEUDONYM_PREFIX: &str = "stf_";

/// The installation's key for staff pseudonyms.
pub struct StaffKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for StaffKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaffKey(<redacted>)")
    }
}

impl StaffKey {
    /// The key from key text: exactly one version (see the module comment).
    pub fn new(keys: &[KeyMaterial], origin: &str) -> Result<Self, KeyError> {
        match keys {
            [one] => Ok(Self(one.bytes.clone())),
            [] => Err(KeyError::Empty { origin: origin.into(), label: STAFF_KEY_LABEL }),
            _ => Err(KeyError::Format {
                origin: origin.into(),
                line: 0,
                reason: "the staff key has exactly one version: a second would change every staff pseudonym".into(),
            }),
        }
    }

    /// The pseudonym of the person `subject` at the identity provider `issuer`.
    pub fn pseudonym(&self, issuer: &str, subject: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0[..]);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(b"candor staff pseudonym v1\0");
        ctx.update(&(issuer.len() as u64).to_be_bytes());
        ctx.update(issuer.as_bytes());
        ctx.update(subject.as_bytes());
        let tag = ctx.sign();
        let hex = crate::hex(&tag.as_ref()[..16]);
        format!("{PSEUDONYM_PREFIX}{hex}")
    }
}

/// Whether `text` has the shape of a staff pseudonym.
pub fn is_pseudonym(text: &str) -> bool {
    text.strip_prefix(PSEUDONYM_PREFIX)
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// A value derived from a sign-in's secret (kept in the browser's cookie) for one use (`state`,
/// `nonce`, the PKCE verifier): 43 URL-safe characters, HMAC-SHA-256 of `purpose` under the
/// secret, so one secret yields unrelated values and none of them reveals it.
pub fn derive_flow_value(secret: &str, purpose: &str) -> Zeroizing<String> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("candor staff sign-in v1\0{purpose}").as_bytes());
    Zeroizing::new(URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> StaffKey {
        StaffKey::new(&[KeyMaterial { version: 1, bytes: Zeroizing::new([byte; 32]) }], "test").unwrap()
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_separate_issuer_from_subject() {
        let k = key(7);
        let p = k.pseudonym("https://idp.example", "alice");
        assert!(is_pseudonym(&p), "{p}");
        assert_eq!(p, k.pseudonym("https://idp.example", "alice"));
        assert_ne!(p, k.pseudonym("https://idp.example", "bob"));
        assert_ne!(p, key(8).pseudonym("https://idp.example", "alice"));
        // The issuer's length is bound in, so the split between the two cannot move.
        assert_ne!(k.pseudonym("https://idp.examplea", "lice"), p);
        assert!(!format!("{k:?}").contains('7'));
    }

    #[test]
    fn flow_values_differ_by_purpose_and_secret() {
        let a = derive_flow_value("s1", "state");
        assert_eq!(a.len(), 43);
        assert_eq!(a, derive_flow_value("s1", "state"));
        assert_ne!(a, derive_flow_value("s1", "nonce"));
        assert_ne!(a, derive_flow_value("s2", "state"));
    }

    #[test]
    fn a_second_key_version_is_refused() {
        let two = [
            KeyMaterial { version: 1, bytes: Zeroizing::new([1; 32]) },
            KeyMaterial { version: 2, bytes: Zeroizing::new([2; 32]) },
        ];
        assert!(StaffKey::new(&two, "f").is_err());
        assert!(is_pseudonym("stf_0123456789abcdef0123456789abcdef"));
        assert!(!is_pseudonym("stf_0123456789ABCDEF0123456789abcdef"));
    }
}
