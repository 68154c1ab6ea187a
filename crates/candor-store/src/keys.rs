//! The key store seen from key rotation: which KEK version each live data key needs, and
//! replacing a wrapped data key with the same key wrapped under another KEK.

use async_trait::async_trait;
use candor_core::{StoredDek, SubjectId};

use crate::StoreError;

#[async_trait]
pub trait KeyRingStore: Send + Sync {
    /// Live (not destroyed) data keys per KEK version, oldest version first.
    async fn dek_counts(&self) -> Result<Vec<(u32, u64)>, StoreError>;

    /// Data keys ever wrapped under each KEK version and still recorded (erased customers'
    /// destroyed keys included, which keep their version): a KEK's use count against its nonce
    /// budget. Oldest first; version 0 counts tombstones written before erasures kept the
    /// version (callers count those against the primary, to be safe).
    async fn kek_wraps(&self) -> Result<Vec<(u32, u64)>, StoreError>;

    /// Up to `limit` live data keys not wrapped under `kek_version`, after `after` in id order.
    async fn deks_not_under(
        &self,
        kek_version: u32,
        after: Option<SubjectId>,
        limit: u32,
    ) -> Result<Vec<(SubjectId, StoredDek)>, StoreError>;

    /// For each (subject, old, new): replaces `old` with `new` if `old` is still what is stored
    /// (a concurrent erasure or rewrap wins). One transaction; durable when it returns. Returns
    /// how many were replaced.
    async fn replace_deks(&self, changes: Vec<(SubjectId, StoredDek, StoredDek)>) -> Result<u64, StoreError>;
}
