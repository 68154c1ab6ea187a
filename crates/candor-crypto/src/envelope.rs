//! The key ring, per-subject data keys and AEAD sealing.
//!
//! Formats (all integers big-endian):
//! * wrapped DEK: `nonce(12) || AES-256-GCM(KEK, dek(32)) || tag(16)`, associated data
//!   `"candor/dek/v1" || subject(16) || kek_version(4) || dek_version(4)`;
//! * sealed value: `0x01 || dek_version(4) || nonce(12) || ciphertext || tag(16)`, associated
//!   data `"candor/field/v1" || subject(16) || dek_version(4) || field name` for fields and
//!   `"candor/event/v1" || subject(16) || dek_version(4) || event id(16) || event type` for
//!   event payloads. The variable-length name comes last, so the encoding is unambiguous.
//!
//! Nonces are 96 random bits. Each DEK protects one customer's values, far below the 2^32
//! random-nonce limit of NIST SP 800-38D; KEK usage is one wrap per customer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};
use aws_lc_rs::{hkdf, hmac};
use candor_core::{BlindIndex, Ciphertext, EventId, FieldName, StoredDek, SubjectId, WrappedDek};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::dek_cache::DekCache;
use crate::kek::{GCM_RANDOM_NONCE_LIMIT, KekProvider, LocalKeks, aes_key, stop_point};
use crate::keyfile::{self, INDEX_LABEL, KEK_LABEL, KeyError, KeyMaterial};

const TAG_LEN: usize = 16;
const SEALED_FORMAT: u8 = 1;
const SEALED_HEADER: usize = 1 + 4 + NONCE_LEN;
const DEK_AAD: &[u8] = b"candor/dek/v1";
const FIELD_AAD: &[u8] = b"candor/field/v1";
const EVENT_AAD: &[u8] = b"candor/event/v1";
const INDEX_SALT: &[u8] = b"candor/blind-index/v1";

/// The installation's keys: versioned KEKs from one or more providers (the highest version is
/// primary) and the blind-index keys (the highest version makes new indexes; lookups try all).
pub struct KeyRing {
    providers: Vec<Arc<dyn KekProvider>>,
    /// (KEK version, index into `providers`), ascending by version.
    versions: Vec<(u32, usize)>,
    /// (blind-index key version, HKDF pseudo-random key), ascending by version.
    indexes: Vec<(u32, hkdf::Prk)>,
    /// Wraps done by the primary KEK (as stored when the ring was given its budget, plus this
    /// process's since), and the number it stops at.
    primary_wraps: AtomicU64,
    wrap_limit: u64,
    /// Unwrapped data keys kept briefly (only when configured; see [`DekCache`]).
    dek_cache: Option<DekCache>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing(kek versions {:?}, <redacted>)", self.kek_versions())
    }
}

impl KeyRing {
    /// Builds a key ring from parsed KEKs (any number of versions) held in memory and index keys
    /// (the newest version makes new indexes; lookups try every version).
    pub fn new(keks: Vec<KeyMaterial>, index_keys: Vec<KeyMaterial>) -> Result<Self, KeyError> {
        Self::with_providers(vec![Arc::new(LocalKeks::new(&keks, "the key file"))], index_keys)
    }

    /// Builds a key ring whose KEKs come from `providers` (for example the key file's older
    /// versions and an HSM's newer ones). A version held by two providers is refused: every
    /// wrapped key must name exactly one KEK.
    pub fn with_providers(
        providers: Vec<Arc<dyn KekProvider>>,
        index_keys: Vec<KeyMaterial>,
    ) -> Result<Self, KeyError> {
        if index_keys.is_empty() {
            return Err(KeyError::Empty { origin: "index keys".into(), label: INDEX_LABEL });
        }
        let mut versions: Vec<(u32, usize)> = Vec::new();
        for (i, p) in providers.iter().enumerate() {
            for v in p.versions() {
                if let Some((_, other)) = versions.iter().find(|(w, _)| *w == v) {
                    return Err(KeyError::DuplicateVersion {
                        version: v,
                        first: providers[*other].name(),
                        second: p.name(),
                    });
                }
                versions.push((v, i));
            }
        }
        if versions.is_empty() {
            return Err(KeyError::Empty { origin: "key-encryption keys".into(), label: KEK_LABEL });
        }
        versions.sort_unstable();
        let mut indexes: Vec<(u32, hkdf::Prk)> = index_keys
            .iter()
            .map(|k| (k.version, hkdf::Salt::new(hkdf::HKDF_SHA256, INDEX_SALT).extract(&k.bytes[..])))
            .collect();
        indexes.sort_unstable_by_key(|(v, _)| *v);
        Ok(Self {
            providers,
            versions,
            indexes,
            primary_wraps: AtomicU64::new(0),
            wrap_limit: GCM_RANDOM_NONCE_LIMIT,
            dek_cache: None,
        })
    }

    /// Sets the primary KEK's use so far (`used`: data keys stored under it, destroyed ones
    /// included) and its `limit` (at most [`GCM_RANDOM_NONCE_LIMIT`]). From then on the ring
    /// counts its own wraps and refuses to wrap once the primary reaches its stop point (90% of
    /// the limit) with [`CryptoError::KekBudgetExhausted`].
    pub fn with_wrap_budget(self, used: u64, limit: u64) -> Self {
        self.primary_wraps.store(used, Ordering::Relaxed);
        Self { wrap_limit: limit.min(GCM_RANDOM_NONCE_LIMIT), ..self }
    }

    /// Keeps unwrapped data keys for up to `ttl`, at most `capacity` of them (see
    /// [`DekCache`]): for providers where each unwrap is a round trip. A zero `ttl` keeps none.
    pub fn with_dek_cache(self, ttl: std::time::Duration, capacity: usize) -> Self {
        let dek_cache = (!ttl.is_zero() && capacity > 0).then(|| DekCache::new(ttl, capacity));
        Self { dek_cache, ..self }
    }

    /// Drops `subject`'s data key from the cache, if one is kept (after erasure).
    pub fn forget_subject_key(&self, subject: SubjectId) {
        if let Some(cache) = &self.dek_cache {
            cache.forget(subject);
        }
    }

    /// The primary KEK's wraps so far and its limit.
    pub fn primary_usage(&self) -> (u64, u64) {
        (self.primary_wraps.load(Ordering::Relaxed), self.wrap_limit)
    }

    /// Where KEK `version` lives, if the ring holds it.
    pub fn provider_of(&self, version: u32) -> Option<String> {
        self.versions.iter().find(|(v, _)| *v == version).map(|(_, i)| self.providers[*i].name())
    }

    fn provider(&self, version: u32) -> Result<&dyn KekProvider, CryptoError> {
        self.versions
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, i)| self.providers[*i].as_ref())
            .ok_or(CryptoError::UnknownKeyVersion(version))
    }

    /// Parses key texts (file contents or environment values; see [`keyfile`]).
    pub fn from_texts(
        kek_text: &str,
        kek_origin: &str,
        index_text: &str,
        index_origin: &str,
    ) -> Result<Self, KeyError> {
        Self::new(
            keyfile::parse_keys(kek_text, KEK_LABEL, kek_origin)?,
            keyfile::parse_keys(index_text, INDEX_LABEL, index_origin)?,
        )
    }

    /// A throw-away ring with fresh random keys (tests, benchmarks, examples).
    pub fn generate_in_memory() -> Self {
        let kek = keyfile::generate_key_line(KEK_LABEL, 1).expect("random");
        let index = keyfile::generate_key_line(INDEX_LABEL, 1).expect("random");
        Self::from_texts(&kek, "memory", &index, "memory").expect("generated keys parse")
    }

    /// The KEK version new data keys are wrapped with.
    pub fn primary_kek_version(&self) -> u32 {
        self.versions.last().map_or(0, |(v, _)| *v)
    }

    /// Creates a fresh data key for `subject`, returned usable and wrapped under the primary KEK.
    pub fn new_subject_key(&self, subject: SubjectId) -> Result<(SubjectKey, StoredDek), CryptoError> {
        let dek = random_key()?;
        let dek_version = 1;
        let stored = self.wrap_dek(subject, dek_version, &dek[..])?;
        Ok((SubjectKey { subject, version: dek_version, key: aes_key(&dek[..]) }, stored))
    }

    /// Wraps raw data-key bytes under the primary KEK.
    fn wrap_dek(&self, subject: SubjectId, dek_version: u32, dek: &[u8]) -> Result<StoredDek, CryptoError> {
        let version = self.primary_kek_version();
        let used = self.primary_wraps.fetch_add(1, Ordering::Relaxed);
        if used >= stop_point(self.wrap_limit) {
            self.primary_wraps.fetch_sub(1, Ordering::Relaxed);
            return Err(CryptoError::KekBudgetExhausted { version, used, limit: self.wrap_limit });
        }
        let aad = dek_aad(subject, version, dek_version);
        let nonce = random_nonce()?;
        let sealed = self.provider(version)?.seal(version, nonce, &aad, dek)?;
        if sealed.len() != 32 + TAG_LEN {
            return Err(CryptoError::Provider(format!("kek v{version} returned a wrapped key of the wrong size")));
        }
        let mut buf = Vec::with_capacity(NONCE_LEN + 32 + TAG_LEN);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(&sealed);
        Ok(StoredDek { kek_version: version, dek_version, wrapped: WrappedDek::from_bytes(buf) })
    }

    /// The KEK versions this ring holds, oldest first (the last is primary).
    pub fn kek_versions(&self) -> Vec<u32> {
        self.versions.iter().map(|(v, _)| *v).collect()
    }

    /// `stored` wrapped again under the primary KEK (the data key itself, and so every value
    /// sealed with it, stays the same), or `None` if it already is.
    pub fn rewrap(&self, subject: SubjectId, stored: &StoredDek) -> Result<Option<StoredDek>, CryptoError> {
        if stored.kek_version == self.primary_kek_version() {
            return Ok(None);
        }
        let dek = self.unwrap_dek(subject, stored)?;
        self.wrap_dek(subject, stored.dek_version, &dek).map(Some)
    }

    /// Unwraps `subject`'s data key. Fails if the wrapped key belongs to another subject, was
    /// altered, or needs a KEK version the ring does not hold.
    pub fn open_subject_key(&self, subject: SubjectId, stored: &StoredDek) -> Result<SubjectKey, CryptoError> {
        if let Some(dek) = self.dek_cache.as_ref().and_then(|c| c.get(subject, stored)) {
            return Ok(SubjectKey { subject, version: stored.dek_version, key: aes_key(&dek[..]) });
        }
        let dek = self.unwrap_dek(subject, stored)?;
        if let Some(cache) = &self.dek_cache {
            let bytes: &[u8; 32] = dek.as_slice().try_into().map_err(|_| CryptoError::Integrity("wrapped data key"))?;
            cache.put(subject, stored, bytes);
        }
        Ok(SubjectKey { subject, version: stored.dek_version, key: aes_key(&dek) })
    }

    fn unwrap_dek(&self, subject: SubjectId, stored: &StoredDek) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let provider = self.provider(stored.kek_version)?;
        let bytes = stored.wrapped.as_bytes();
        if bytes.len() != NONCE_LEN + 32 + TAG_LEN {
            return Err(CryptoError::Malformed("wrapped data key"));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed("wrapped data key"))?;
        let aad = dek_aad(subject, stored.kek_version, stored.dek_version);
        let dek = provider.open(stored.kek_version, nonce, &aad, sealed)?;
        if dek.len() != 32 {
            return Err(CryptoError::Integrity("wrapped data key"));
        }
        Ok(dek)
    }

    /// The blind index of a normalised lookup value of `field`, under the newest index key
    /// (what is stored).
    pub fn blind_index(&self, field: &FieldName, normalised: &[u8]) -> BlindIndex {
        let (version, prk) = self.indexes.last().expect("a ring has at least one index key");
        index_under(*version, prk, field, normalised)
    }

    /// The blind index of a normalised lookup value under every index key held, newest first:
    /// what a lookup searches for while the index key is being rotated.
    pub fn blind_indexes(&self, field: &FieldName, normalised: &[u8]) -> Vec<BlindIndex> {
        self.indexes.iter().rev().map(|(v, prk)| index_under(*v, prk, field, normalised)).collect()
    }

    /// The blind-index key versions held, ascending; the last makes new indexes.
    pub fn index_versions(&self) -> Vec<u32> {
        self.indexes.iter().map(|(v, _)| *v).collect()
    }

    /// The version of the index key that makes new indexes.
    pub fn primary_index_version(&self) -> u32 {
        self.indexes.last().map_or(0, |(v, _)| *v)
    }

    /// Whether lookup rows made under index key `version` must be recomputed: not when made
    /// under the primary, nor when made before versions were recorded (0) while only one index
    /// key is held — they were made by it, or no lookup could find them anyway.
    pub fn needs_reindex(&self, version: u32) -> bool {
        version != self.primary_index_version() && !(version == 0 && self.index_versions().len() == 1)
    }
}

/// HMAC-SHA-256 of `normalised` under the per-field key HKDF derives from one index key.
fn index_under(version: u32, prk: &hkdf::Prk, field: &FieldName, normalised: &[u8]) -> BlindIndex {
    let info = [field.as_str().as_bytes()];
    let okm = prk.expand(&info, hmac::HMAC_SHA256).expect("HKDF output of one block");
    let key = hmac::Key::from(okm);
    BlindIndex::new(version, hmac::sign(&key, normalised).as_ref().to_vec())
}

/// A subject's unwrapped data key, bound to that subject. Dropping it wipes the key.
pub struct SubjectKey {
    subject: SubjectId,
    version: u32,
    key: LessSafeKey,
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SubjectKey({}, v{}, <redacted>)", self.subject, self.version)
    }
}

impl SubjectKey {
    pub fn subject(&self) -> SubjectId {
        self.subject
    }

    /// Seals one field value.
    pub fn seal_field(&self, field: &FieldName, plaintext: &[u8]) -> Result<Ciphertext, CryptoError> {
        self.seal(&self.field_aad(field), plaintext)
    }

    /// Opens one field value; fails if it was sealed for another subject, field or key.
    pub fn open_field(&self, field: &FieldName, sealed: &Ciphertext) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.open(&self.field_aad(field), sealed, "field value")
    }

    /// Seals one event payload.
    pub fn seal_event(
        &self,
        event: EventId,
        event_type: &FieldName,
        plaintext: &[u8],
    ) -> Result<Ciphertext, CryptoError> {
        self.seal(&self.event_aad(event, event_type), plaintext)
    }

    /// Opens one event payload; fails if it was sealed for another subject, event or type.
    pub fn open_event(
        &self,
        event: EventId,
        event_type: &FieldName,
        sealed: &Ciphertext,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.open(&self.event_aad(event, event_type), sealed, "event payload")
    }

    fn field_aad(&self, field: &FieldName) -> Vec<u8> {
        let mut aad = Vec::with_capacity(FIELD_AAD.len() + 20 + field.as_str().len());
        aad.extend_from_slice(FIELD_AAD);
        aad.extend_from_slice(self.subject.as_bytes());
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad.extend_from_slice(field.as_str().as_bytes());
        aad
    }

    fn event_aad(&self, event: EventId, event_type: &FieldName) -> Vec<u8> {
        let mut aad = Vec::with_capacity(EVENT_AAD.len() + 36 + event_type.as_str().len());
        aad.extend_from_slice(EVENT_AAD);
        aad.extend_from_slice(self.subject.as_bytes());
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad.extend_from_slice(event.as_bytes());
        aad.extend_from_slice(event_type.as_str().as_bytes());
        aad
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Ciphertext, CryptoError> {
        let nonce = random_nonce()?;
        let mut out = Vec::with_capacity(SEALED_HEADER + plaintext.len() + TAG_LEN);
        out.push(SEALED_FORMAT);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[SEALED_HEADER..])
            .map_err(|_| CryptoError::Random)?;
        out.extend_from_slice(tag.as_ref());
        Ok(Ciphertext::from_bytes(out))
    }

    fn open(&self, aad: &[u8], sealed: &Ciphertext, what: &'static str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let bytes = sealed.as_bytes();
        if bytes.len() < SEALED_HEADER + TAG_LEN || bytes[0] != SEALED_FORMAT {
            return Err(CryptoError::Malformed(what));
        }
        let version = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"));
        if version != self.version {
            return Err(CryptoError::Integrity(what));
        }
        let nonce =
            Nonce::try_assume_unique_for_key(&bytes[5..SEALED_HEADER]).map_err(|_| CryptoError::Malformed(what))?;
        let mut buf = Zeroizing::new(bytes[SEALED_HEADER..].to_vec());
        let len =
            self.key.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| CryptoError::Integrity(what))?.len();
        buf.truncate(len);
        Ok(buf)
    }
}

fn random_key() -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut k = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut k[..]).map_err(|_| CryptoError::Random)?;
    Ok(k)
}

fn random_nonce() -> Result<[u8; NONCE_LEN], CryptoError> {
    let mut n = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut n).map_err(|_| CryptoError::Random)?;
    Ok(n)
}

fn dek_aad(subject: SubjectId, kek_version: u32, dek_version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DEK_AAD.len() + 24);
    aad.extend_from_slice(DEK_AAD);
    aad.extend_from_slice(subject.as_bytes());
    aad.extend_from_slice(&kek_version.to_be_bytes());
    aad.extend_from_slice(&dek_version.to_be_bytes());
    aad
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The checks every KEK provider must pass, given a ring holding only KEK v1 and a ring
    /// holding v1 and v2 (primary) from the same provider(s). Run with the key file below and
    /// with SoftHSM2 in `pkcs11::tests`.
    pub(crate) fn provider_suite(v1: &KeyRing, v1_v2: &KeyRing) {
        assert_eq!(v1.kek_versions(), [1]);
        assert_eq!(v1_v2.kek_versions(), [1, 2]);
        let email = FieldName::new("email");
        // Wrap under v1, seal a value, unwrap again, open it.
        let subject = SubjectId::random();
        let (key, stored) = v1.new_subject_key(subject).unwrap();
        assert_eq!(stored.kek_version, 1);
        assert_eq!(stored.wrapped.as_bytes().len(), NONCE_LEN + 32 + TAG_LEN);
        let sealed = key.seal_field(&email, b"ada@example.com").unwrap();
        let again = v1.open_subject_key(subject, &stored).unwrap();
        assert_eq!(&again.open_field(&email, &sealed).unwrap()[..], b"ada@example.com");
        // Two wraps of new keys never repeat a nonce or a wrapped key.
        let (_, other) = v1.new_subject_key(subject).unwrap();
        assert_ne!(other.wrapped.as_bytes()[..NONCE_LEN], stored.wrapped.as_bytes()[..NONCE_LEN]);
        // Bound to its subject; every altered byte is refused; an unknown version is named.
        let r = v1.open_subject_key(SubjectId::random(), &stored);
        assert!(matches!(r, Err(CryptoError::Integrity(_))), "{r:?}");
        for i in 0..stored.wrapped.as_bytes().len() {
            let mut bytes = stored.wrapped.as_bytes().to_vec();
            bytes[i] ^= 0x01;
            let altered = StoredDek { wrapped: WrappedDek::from_bytes(bytes), ..stored.clone() };
            assert!(v1.open_subject_key(subject, &altered).is_err(), "byte {i} altered");
        }
        let truncated =
            StoredDek { wrapped: WrappedDek::from_bytes(stored.wrapped.as_bytes()[..40].to_vec()), ..stored.clone() };
        assert!(matches!(v1.open_subject_key(subject, &truncated), Err(CryptoError::Malformed(_))));
        let bumped = StoredDek { kek_version: 7, ..stored.clone() };
        assert!(matches!(v1.open_subject_key(subject, &bumped), Err(CryptoError::UnknownKeyVersion(7))));
        // Rewrap to the primary v2: same data key, values still open; v1 alone cannot open it.
        assert!(v1.rewrap(subject, &stored).unwrap().is_none());
        let moved = v1_v2.rewrap(subject, &stored).unwrap().expect("moved to v2");
        assert_eq!((moved.kek_version, moved.dek_version), (2, stored.dek_version));
        let reopened = v1_v2.open_subject_key(subject, &moved).unwrap();
        assert_eq!(&reopened.open_field(&email, &sealed).unwrap()[..], b"ada@example.com");
        assert!(matches!(v1.open_subject_key(subject, &moved), Err(CryptoError::UnknownKeyVersion(2))));
        assert_eq!(v1_v2.new_subject_key(subject).unwrap().1.kek_version, 2, "new keys go to the primary");
        // Concurrent wraps and unwraps (servers do this on every request).
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        let s = SubjectId::random();
                        let (k, w) = v1_v2.new_subject_key(s).unwrap();
                        let c = k.seal_field(&email, b"x").unwrap();
                        assert_eq!(&v1_v2.open_subject_key(s, &w).unwrap().open_field(&email, &c).unwrap()[..], b"x");
                    }
                });
            }
        });
    }

    #[test]
    fn the_primary_kek_stops_wrapping_at_its_budget_and_a_rotated_ring_starts_afresh() {
        let ring = KeyRing::generate_in_memory().with_wrap_budget(7, 10);
        assert_eq!(ring.primary_usage(), (7, 10));
        let s = SubjectId::random();
        let (_, kept) = ring.new_subject_key(s).unwrap();
        ring.new_subject_key(SubjectId::random()).unwrap();
        let refused = ring.new_subject_key(SubjectId::random()).unwrap_err();
        assert!(matches!(refused, CryptoError::KekBudgetExhausted { version: 1, used: 9, limit: 10 }), "{refused}");
        assert!(refused.to_string().contains("candor keys rotate"));
        assert_eq!(ring.primary_usage().0, 9, "a refused wrap is not counted");
        // Unwrapping is not limited: existing customers stay readable.
        ring.open_subject_key(s, &kept).unwrap();
        // The budget cannot be set above the NIST limit.
        assert_eq!(KeyRing::generate_in_memory().with_wrap_budget(0, u64::MAX).primary_usage().1, 1 << 32);
    }

    #[test]
    fn the_key_file_passes_the_provider_suite() {
        let v1 = keyfile::generate_key_line(KEK_LABEL, 1).unwrap();
        let v2 = keyfile::generate_key_line(KEK_LABEL, 2).unwrap();
        let index = keyfile::generate_key_line(INDEX_LABEL, 1).unwrap();
        let old = KeyRing::from_texts(&v1, "t", &index, "t").unwrap();
        let both = KeyRing::from_texts(&format!("{}{}", v1.as_str(), v2.as_str()), "t", &index, "t").unwrap();
        provider_suite(&old, &both);
    }

    fn field(n: &str) -> FieldName {
        FieldName::new(n)
    }

    #[test]
    fn a_sealed_value_opens_with_its_own_key_and_context() {
        let ring = KeyRing::generate_in_memory();
        let s = SubjectId::random();
        let (key, stored) = ring.new_subject_key(s).unwrap();
        let c = key.seal_field(&field("email"), b"ada@example.com").unwrap();
        assert!(!c.as_bytes().windows(3).any(|w| w == b"ada"));
        let reopened = ring.open_subject_key(s, &stored).unwrap();
        assert_eq!(&reopened.open_field(&field("email"), &c).unwrap()[..], b"ada@example.com");
        // Two seals of the same value differ (random nonce).
        assert_ne!(key.seal_field(&field("email"), b"x").unwrap(), key.seal_field(&field("email"), b"x").unwrap());
    }

    #[test]
    fn a_ciphertext_moved_to_another_field_or_subject_fails_loudly() {
        let ring = KeyRing::generate_in_memory();
        let (a, _) = ring.new_subject_key(SubjectId::random()).unwrap();
        let (b, _) = ring.new_subject_key(SubjectId::random()).unwrap();
        let c = a.seal_field(&field("email"), b"ada@example.com").unwrap();
        assert!(matches!(a.open_field(&field("phone"), &c), Err(CryptoError::Integrity(_))));
        assert!(matches!(b.open_field(&field("email"), &c), Err(CryptoError::Integrity(_))));
    }

    #[test]
    fn a_wrapped_key_moved_to_another_subject_does_not_unwrap() {
        let ring = KeyRing::generate_in_memory();
        let (_, stored) = ring.new_subject_key(SubjectId::random()).unwrap();
        assert!(matches!(ring.open_subject_key(SubjectId::random(), &stored), Err(CryptoError::Integrity(_))));
        let other_ring = KeyRing::generate_in_memory();
        assert!(other_ring.open_subject_key(SubjectId::random(), &stored).is_err());
        let bumped = StoredDek { kek_version: 9, ..stored };
        assert!(matches!(ring.open_subject_key(SubjectId::random(), &bumped), Err(CryptoError::UnknownKeyVersion(9))));
    }

    #[test]
    fn event_payloads_are_bound_to_their_event() {
        let ring = KeyRing::generate_in_memory();
        let (k, _) = ring.new_subject_key(SubjectId::random()).unwrap();
        let (e1, e2) = (EventId::random(), EventId::random());
        let c = k.seal_event(e1, &field("purchase"), b"{}").unwrap();
        assert_eq!(&k.open_event(e1, &field("purchase"), &c).unwrap()[..], b"{}");
        assert!(k.open_event(e2, &field("purchase"), &c).is_err());
        assert!(k.open_event(e1, &field("page_view"), &c).is_err());
    }

    /// A provider that counts its unwraps (a remote HSM's round trips).
    struct Counting(LocalKeks, std::sync::atomic::AtomicUsize);

    impl KekProvider for Counting {
        fn name(&self) -> String {
            "counting".into()
        }
        fn versions(&self) -> Vec<u32> {
            self.0.versions()
        }
        fn seal(&self, v: u32, n: [u8; NONCE_LEN], aad: &[u8], p: &[u8]) -> Result<Vec<u8>, CryptoError> {
            self.0.seal(v, n, aad, p)
        }
        fn open(&self, v: u32, n: [u8; NONCE_LEN], aad: &[u8], s: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.open(v, n, aad, s)
        }
    }

    #[test]
    fn with_a_dek_cache_a_customer_s_key_is_unwrapped_once_and_forgotten_on_erasure() {
        let kek = keyfile::parse_keys(&keyfile::generate_key_line(KEK_LABEL, 1).unwrap(), KEK_LABEL, "t").unwrap();
        let index =
            keyfile::parse_keys(&keyfile::generate_key_line(INDEX_LABEL, 1).unwrap(), INDEX_LABEL, "t").unwrap();
        let counting = Arc::new(Counting(LocalKeks::new(&kek, "t"), Default::default()));
        let ring = KeyRing::with_providers(vec![counting.clone()], index)
            .unwrap()
            .with_dek_cache(std::time::Duration::from_secs(60), 100);
        let id = SubjectId::random();
        let (key, stored) = ring.new_subject_key(id).unwrap();
        let sealed = key.seal_field(&field("email"), b"x").unwrap();
        for _ in 0..3 {
            let k = ring.open_subject_key(id, &stored).unwrap();
            assert_eq!(&k.open_field(&field("email"), &sealed).unwrap()[..], b"x");
        }
        assert_eq!(counting.1.load(Ordering::Relaxed), 1, "unwrapped once");
        // A swapped or altered wrapped key still fails: the cache answers only the exact bytes.
        let mut bytes = stored.wrapped.as_bytes().to_vec();
        bytes[20] ^= 1;
        let altered = StoredDek { wrapped: WrappedDek::from_bytes(bytes), ..stored.clone() };
        assert!(ring.open_subject_key(id, &altered).is_err());
        assert!(ring.open_subject_key(SubjectId::random(), &stored).is_err());
        ring.forget_subject_key(id);
        ring.open_subject_key(id, &stored).unwrap();
        assert_eq!(counting.1.load(Ordering::Relaxed), 4, "after forgetting, unwrapped again");
        // Without a cache, every open unwraps.
        let plain = KeyRing::generate_in_memory().with_dek_cache(std::time::Duration::ZERO, 100);
        assert!(plain.dek_cache.is_none());
    }

    #[test]
    fn a_rotated_index_key_makes_new_indexes_and_lookups_try_both_versions() {
        let kek = keyfile::generate_key_line(KEK_LABEL, 1).unwrap();
        let i1 = keyfile::generate_key_line(INDEX_LABEL, 1).unwrap();
        let i2 = keyfile::generate_key_line(INDEX_LABEL, 2).unwrap();
        let old = KeyRing::from_texts(&kek, "t", &i1, "t").unwrap();
        // Versions are ordered by number, not by their place in the file.
        let both = KeyRing::from_texts(&kek, "t", &format!("{}{}", i2.as_str(), i1.as_str()), "t").unwrap();
        let email = field("email");
        let before = old.blind_index(&email, b"ada@example.com");
        let after = both.blind_index(&email, b"ada@example.com");
        assert_eq!((before.key_version(), after.key_version()), (1, 2));
        assert_ne!(before.as_bytes(), after.as_bytes());
        assert_eq!(both.blind_indexes(&email, b"ada@example.com"), vec![after, before]);
        assert_eq!((both.index_versions(), both.primary_index_version()), (vec![1, 2], 2));
    }

    #[test]
    fn truncated_or_tampered_ciphertexts_are_refused() {
        let ring = KeyRing::generate_in_memory();
        let (k, _) = ring.new_subject_key(SubjectId::random()).unwrap();
        let c = k.seal_field(&field("f"), b"value").unwrap();
        let bytes = c.as_bytes();
        for cut in [0, 1, 5, SEALED_HEADER, bytes.len() - 1] {
            assert!(k.open_field(&field("f"), &Ciphertext::from_bytes(bytes[..cut].to_vec())).is_err(), "cut {cut}");
        }
        for i in 0..bytes.len() {
            let mut t = bytes.to_vec();
            t[i] ^= 0x40;
            assert!(k.open_field(&field("f"), &Ciphertext::from_bytes(t)).is_err(), "byte {i}");
        }
    }

    #[test]
    fn blind_indexes_are_deterministic_per_field_and_key() {
        let ring = KeyRing::generate_in_memory();
        let a = ring.blind_index(&field("email"), b"ada@example.com");
        assert_eq!(a, ring.blind_index(&field("email"), b"ada@example.com"));
        assert_ne!(a, ring.blind_index(&field("phone"), b"ada@example.com"));
        assert_ne!(a, ring.blind_index(&field("email"), b"bob@example.com"));
        assert_ne!(a, KeyRing::generate_in_memory().blind_index(&field("email"), b"ada@example.com"));
        assert_eq!(a.as_bytes().len(), 32);
    }

    #[test]
    fn debug_output_never_shows_keys() {
        let ring = KeyRing::generate_in_memory();
        let (k, _) = ring.new_subject_key(SubjectId::random()).unwrap();
        assert!(format!("{ring:?}").contains("<redacted>"));
        assert!(format!("{k:?}").contains("<redacted>"));
    }

    #[test]
    fn rewrapping_moves_a_data_key_to_the_primary_kek_and_its_values_still_open() {
        let v1 = keyfile::generate_key_line(KEK_LABEL, 1).unwrap();
        let v2 = keyfile::generate_key_line(KEK_LABEL, 2).unwrap();
        let index = keyfile::generate_key_line(INDEX_LABEL, 1).unwrap();
        let old = KeyRing::from_texts(&v1, "t", &index, "t").unwrap();
        let both = KeyRing::from_texts(&format!("{}{}", v1.as_str(), v2.as_str()), "t", &index, "t").unwrap();
        let only_new = KeyRing::from_texts(&v2, "t", &index, "t").unwrap();
        assert_eq!(both.kek_versions(), [1, 2]);
        let subject = SubjectId::random();
        let (key, stored) = old.new_subject_key(subject).unwrap();
        let sealed = key.seal_field(&FieldName::new("email"), b"ada@example.com").unwrap();
        assert!(old.rewrap(subject, &stored).unwrap().is_none(), "already under the primary KEK");

        let moved = both.rewrap(subject, &stored).unwrap().expect("moved to v2");
        assert_eq!((moved.kek_version, moved.dek_version), (2, stored.dek_version));
        assert_ne!(moved.wrapped.as_bytes(), stored.wrapped.as_bytes());
        let reopened = only_new.open_subject_key(subject, &moved).unwrap();
        assert_eq!(&reopened.open_field(&FieldName::new("email"), &sealed).unwrap()[..], b"ada@example.com");
        assert!(both.open_subject_key(SubjectId::random(), &moved).is_err(), "bound to its subject");
        assert!(matches!(old.open_subject_key(subject, &moved), Err(CryptoError::UnknownKeyVersion(2))));
        assert!(matches!(only_new.open_subject_key(subject, &stored), Err(CryptoError::UnknownKeyVersion(1))));
    }
}
