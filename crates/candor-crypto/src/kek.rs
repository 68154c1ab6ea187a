//! Key-encryption-key providers: where the KEKs live and where wrapping happens.
//!
//! A [`KekProvider`] holds versioned AES-256 KEKs and runs AES-256-GCM with them; the
//! [`KeyRing`](crate::KeyRing) only chooses the version, the nonce and the associated data, so the
//! wrapped-key format is the same whatever the provider and a provider can be swapped (or two
//! combined while moving from one to the other) without touching stored data keys.
//!
//! * [`LocalKeks`]: keys from the owner-only key file or the environment, in this process's
//!   memory (zeroized by AWS-LC when dropped);
//! * [`Pkcs11Keks`](crate::pkcs11::Pkcs11Keks): keys inside a PKCS#11 token (an HSM); the key
//!   bytes never leave it.
//!
//! A new provider (a cloud KMS) implements this trait; nothing else changes.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::keyfile::KeyMaterial;

/// Versioned AES-256-GCM keys that never hand out their bytes.
pub trait KekProvider: Send + Sync {
    /// Where the keys are, for messages and `candor keys status` ("key file", "PKCS#11 token …").
    fn name(&self) -> String;

    /// The versions held, ascending.
    fn versions(&self) -> Vec<u32>;

    /// AES-256-GCM of `plaintext` under KEK `version`: ciphertext followed by the 16-byte tag.
    fn seal(&self, version: u32, nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError>;

    /// The inverse of [`seal`](Self::seal); fails with [`CryptoError::Integrity`] when the tag
    /// does not verify.
    fn open(
        &self,
        version: u32,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
}

/// KEKs held in memory, from the key file or the environment.
pub struct LocalKeks {
    origin: String,
    keys: Vec<(u32, LessSafeKey)>,
}

impl LocalKeks {
    /// `origin` says where the keys came from (a path or a variable name).
    pub fn new(keys: &[KeyMaterial], origin: &str) -> Self {
        let mut keys: Vec<(u32, LessSafeKey)> = keys.iter().map(|k| (k.version, aes_key(&k.bytes[..]))).collect();
        keys.sort_by_key(|(v, _)| *v);
        Self { origin: origin.to_string(), keys }
    }

    fn key(&self, version: u32) -> Result<&LessSafeKey, CryptoError> {
        self.keys.iter().find(|(v, _)| *v == version).map(|(_, k)| k).ok_or(CryptoError::UnknownKeyVersion(version))
    }
}

impl KekProvider for LocalKeks {
    fn name(&self) -> String {
        self.origin.clone()
    }

    fn versions(&self) -> Vec<u32> {
        self.keys.iter().map(|(v, _)| *v).collect()
    }

    fn seal(&self, version: u32, nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = plaintext.to_vec();
        self.key(version)?
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
            .map_err(|_| CryptoError::Random)?;
        Ok(buf)
    }

    fn open(
        &self,
        version: u32,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = self.key(version)?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let len = key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
            .map_err(|_| CryptoError::Integrity("wrapped data key"))?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// NIST SP 800-38D §8.3: with random 96-bit nonces a key may perform at most 2^32 encryptions.
pub const GCM_RANDOM_NONCE_LIMIT: u64 = 1 << 32;

/// A KEK stops wrapping at this share of its limit (percent). The rest is margin: several
/// servers each count their own wraps between restarts, so the sum can run past what one saw.
pub const KEK_STOP_PERCENT: u64 = 90;

/// Where a KEK's use stands against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekUsage {
    /// Below half the limit.
    Fine,
    /// Half the limit or more: plan the rotation.
    RotateSoon,
    /// At the stop point: it wraps no more new data keys.
    Exhausted,
}

/// The state of a KEK that has wrapped `used` data keys, of `limit` allowed.
pub fn kek_usage(used: u64, limit: u64) -> KekUsage {
    if used >= stop_point(limit) {
        KekUsage::Exhausted
    } else if used.saturating_mul(2) >= limit {
        KekUsage::RotateSoon
    } else {
        KekUsage::Fine
    }
}

/// The number of wraps after which a KEK with `limit` stops.
pub fn stop_point(limit: u64) -> u64 {
    (limit / 100).saturating_mul(KEK_STOP_PERCENT) + (limit % 100) * KEK_STOP_PERCENT / 100
}

/// An AES-256-GCM key from 32 bytes.
pub(crate) fn aes_key(bytes: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("AES-256 keys are 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kek_stops_wrapping_at_ninety_percent_of_its_limit_and_warns_from_half() {
        assert_eq!(stop_point(GCM_RANDOM_NONCE_LIMIT), 3_865_470_566);
        assert_eq!(stop_point(10), 9);
        assert_eq!(kek_usage(4, 10), KekUsage::Fine);
        assert_eq!(kek_usage(5, 10), KekUsage::RotateSoon);
        assert_eq!(kek_usage(8, 10), KekUsage::RotateSoon);
        assert_eq!(kek_usage(9, 10), KekUsage::Exhausted);
        assert_eq!(kek_usage(0, GCM_RANDOM_NONCE_LIMIT), KekUsage::Fine);
        assert_eq!(kek_usage(1 << 31, GCM_RANDOM_NONCE_LIMIT), KekUsage::RotateSoon);
    }
}
