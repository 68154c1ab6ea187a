//! A short-lived cache of unwrapped data keys, for key providers where every unwrap is a round
//! trip (a network HSM or a cloud KMS). Off unless configured (`[keys] dek_cache_seconds`).
//!
//! Bounded in time and size: an entry lives at most `ttl` and the cache holds at most
//! `capacity` keys, the oldest leaving first. Each key sits in its own heap allocation (so the
//! map moving entries around never copies key bytes) and is wiped when it leaves. An entry is
//! found only by the exact wrapped key it was unwrapped from (subject, versions and wrapped
//! bytes, hashed), so an altered or swapped wrapped key in the database misses the cache and
//! fails as it would without it; erasure removes the customer's key at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use candor_core::{StoredDek, SubjectId};
use zeroize::Zeroizing;

/// Which wrapped key an entry was unwrapped from.
type CacheKey = [u8; 32];

struct Entry {
    subject: SubjectId,
    key: Box<Zeroizing<[u8; 32]>>,
    inserted: Instant,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<CacheKey, Entry>,
    /// Insertion order (entries replaced or forgotten leave stale items, skipped on eviction).
    order: VecDeque<(CacheKey, Instant)>,
}

/// See the module documentation.
pub struct DekCache {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for DekCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DekCache(ttl {:?}, capacity {}, <redacted>)", self.ttl, self.capacity)
    }
}

fn cache_key(subject: SubjectId, stored: &StoredDek) -> CacheKey {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"candor/dek-cache/v1");
    ctx.update(subject.as_bytes());
    ctx.update(&stored.kek_version.to_be_bytes());
    ctx.update(&stored.dek_version.to_be_bytes());
    ctx.update(stored.wrapped.as_bytes());
    ctx.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

impl DekCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity: capacity.max(1), inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The data key unwrapped from exactly `stored`, if it was cached less than `ttl` ago.
    pub fn get(&self, subject: SubjectId, stored: &StoredDek) -> Option<Zeroizing<[u8; 32]>> {
        self.get_at(subject, stored, Instant::now())
    }

    /// [`DekCache::get`] as of `now` (tests move time instead of sleeping).
    fn get_at(&self, subject: SubjectId, stored: &StoredDek, now: Instant) -> Option<Zeroizing<[u8; 32]>> {
        let key = cache_key(subject, stored);
        let mut inner = self.lock();
        self.evict(&mut inner, now);
        inner.entries.get(&key).map(|e| Zeroizing::new(**e.key))
    }

    /// Keeps `dek`, unwrapped from `stored`.
    pub fn put(&self, subject: SubjectId, stored: &StoredDek, dek: &[u8; 32]) {
        self.put_at(subject, stored, dek, Instant::now())
    }

    fn put_at(&self, subject: SubjectId, stored: &StoredDek, dek: &[u8; 32], now: Instant) {
        let key = cache_key(subject, stored);
        let mut inner = self.lock();
        inner.entries.insert(key, Entry { subject, key: Box::new(Zeroizing::new(*dek)), inserted: now });
        inner.order.push_back((key, now));
        self.evict(&mut inner, now);
    }

    /// Removes every key of `subject` (on erasure).
    pub fn forget(&self, subject: SubjectId) {
        self.lock().entries.retain(|_, e| e.subject != subject);
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops (and so wipes) entries past their time, then the oldest while over capacity.
    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some(&(key, inserted)) = inner.order.front() {
            let current = inner.entries.get(&key).is_some_and(|e| e.inserted == inserted);
            let expired = now.duration_since(inserted) >= self.ttl;
            if current && !expired && inner.entries.len() <= self.capacity {
                break;
            }
            inner.order.pop_front();
            if current {
                inner.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::WrappedDek;

    fn stored(wrapped: u8) -> StoredDek {
        StoredDek { kek_version: 1, dek_version: 1, wrapped: WrappedDek::from_bytes(vec![wrapped; 60]) }
    }

    #[test]
    fn a_key_is_found_only_by_the_exact_wrapped_key_until_it_expires() {
        let cache = DekCache::new(Duration::from_secs(60), 10);
        let (a, b) = (SubjectId::random(), SubjectId::random());
        let t0 = Instant::now();
        cache.put_at(a, &stored(1), &[7; 32], t0);
        let later = t0 + Duration::from_secs(59);
        assert_eq!(cache.get_at(a, &stored(1), later).as_deref(), Some(&[7; 32]));
        assert!(cache.get_at(b, &stored(1), later).is_none(), "another customer's row");
        assert!(cache.get_at(a, &stored(2), later).is_none(), "altered wrapped bytes");
        let rewrapped = StoredDek { kek_version: 2, ..stored(1) };
        assert!(cache.get_at(a, &rewrapped, later).is_none(), "another KEK version");
        assert!(cache.get_at(a, &stored(1), t0 + Duration::from_secs(60)).is_none(), "expired");
        assert!(cache.is_empty(), "expired keys are dropped, not just hidden");
    }

    #[test]
    fn the_oldest_leave_first_when_full_and_erasure_forgets_at_once() {
        let cache = DekCache::new(Duration::from_secs(60), 3);
        let ids: Vec<SubjectId> = (0..5).map(|_| SubjectId::random()).collect();
        for (i, id) in ids.iter().enumerate() {
            cache.put(*id, &stored(i as u8), &[i as u8; 32]);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(ids[0], &stored(0)).is_none() && cache.get(ids[1], &stored(1)).is_none());
        assert!(cache.get(ids[4], &stored(4)).is_some());
        // Caching the same key again does not make it leave early.
        cache.put(ids[2], &stored(2), &[2; 32]);
        cache.put(ids[3], &stored(3), &[3; 32]);
        assert_eq!(cache.len(), 3);
        cache.forget(ids[4]);
        assert!(cache.get(ids[4], &stored(4)).is_none());
        assert_eq!(cache.len(), 2);
    }
}
