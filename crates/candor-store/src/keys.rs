//! The store seen from key rotation: which KEK version each live data key needs, and replacing
//! a wrapped data key with the same key wrapped under another KEK; which blind-index key made
//! each lookup row, and replacing a row with the same value's index under the newest key.

use async_trait::async_trait;
use candor_core::{BlindIndex, FieldName, StoredDek, SubjectId};

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

    /// Lookup-index rows per blind-index key version, oldest first (0: rows made before versions
    /// were recorded, by whichever key was newest then).
    async fn index_counts(&self) -> Result<Vec<(u32, u64)>, StoreError>;

    /// Up to `limit` lookup-index rows made under index key `key_version`, after `after` in
    /// (subject, field) order.
    async fn index_rows_under(
        &self,
        key_version: u32,
        after: Option<(SubjectId, FieldName)>,
        limit: u32,
    ) -> Result<Vec<(SubjectId, FieldName)>, StoreError>;

    /// Applies each replacement whose row is still as it was read (a concurrent correction or
    /// erasure wins). One transaction; durable when it returns. Returns how many were replaced.
    async fn replace_index_rows(&self, changes: Vec<IndexReplacement>) -> Result<u64, StoreError>;
}

/// One lookup-index row recomputed under a newer index key: the row of (`subject`, `field`)
/// stored under `key_version` whose token is one of `current` (the value as just decrypted,
/// indexed under each key that may have made the row) becomes `new`.
#[derive(Debug, Clone)]
pub struct IndexReplacement {
    pub subject: SubjectId,
    pub field: FieldName,
    pub key_version: u32,
    pub current: Vec<BlindIndex>,
    pub new: BlindIndex,
}
