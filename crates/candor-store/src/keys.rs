//! The store seen from key rotation: which KEK version each live data key needs, and replacing
//! a wrapped data key with the same key wrapped under another KEK; which blind-index key made
//! each lookup row, and replacing a row with the same value's index under the newest key.

use async_trait::async_trait;
use candor_core::{BlindIndex, FieldName, StoredDek, SubjectId};

use crate::{Hash, StoreError};

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
    /// the store's order of customers, then field (PostgreSQL orders customers by id; SQLite by
    /// their internal number, in order of creation).
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

/// Customers the start-up check looks at, newest first, for a key store older than its data:
/// a key store copied before the data lacks the keys of the newest customers.
pub const NEWEST_CHECKED: u64 = 1000;

/// What the start-up check learns about a data store and its key store (cheap queries only:
/// indexes and the newest customers, never a scan of every customer).
///
/// Every data key row records `log_mark`: the data store's log size when the key was stored.
/// The customer's data commits after its key, with a log entry at that index or later, so a data
/// store holding the customer has a longer log than the mark. A live key whose mark is beyond the
/// data store's log therefore belongs to a customer created after that copy of the data was
/// made: the data store is older than its key store. (A crash between the key's commit and the
/// data's leaves an unused key whose mark is at most the log size, which is fine.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairCounts {
    /// The data store has no customer and no log entry.
    pub data_empty: bool,
    /// Key rows in the key store (live keys and tombstones).
    pub key_rows: u64,
    /// The data store's log size.
    pub log_size: u64,
    /// Live keys whose mark is beyond the data store's log.
    pub keys_ahead: u64,
    /// The largest such mark.
    pub max_mark: u64,
    /// Of the newest [`NEWEST_CHECKED`] customers (or all, if fewer), those with no key row at all.
    pub newest_without_key: u64,
    pub newest_checked: u64,
}

/// Refuses a data store and key store that do not belong together, with a message that says what
/// is wrong and what to do. `data` and `keys` name the two stores for the message.
pub fn check_pair(c: &PairCounts, data: &str, keys: &str) -> Result<(), StoreError> {
    if c.data_empty && c.key_rows > 0 {
        return Err(StoreError::Corrupt(format!(
            "the database {data} is empty (no customer, no log entry), but its key store {keys} holds the \
             data keys of {} customer(s): this is not the database that key store belongs to (a new or emptied data \
             file?). Put the installation's database back, or restore both from one backup with `candor restore \
             --from DIR`; to really start an empty installation, move the key store away as well",
            c.key_rows
        )));
    }
    if c.keys_ahead > 0 {
        return Err(StoreError::Corrupt(format!(
            "the database {data} is older than its key store {keys}: {} customer(s) have a data key created after \
             the database's last write (its log has {} entries; the key store's records need at least {}), so \
             their data is missing (was the database restored alone from an older copy?). Restore the database \
             and the key store together from one backup (`candor restore --from DIR --replace`, which keeps the \
             erasures made since), or put back the newer database",
            c.keys_ahead, c.log_size, c.max_mark
        )));
    }
    if c.newest_without_key > 0 {
        return Err(StoreError::Corrupt(format!(
            "the key store {keys} is older than the database {data}: {} of the {} newest customers have no data \
             key in it, so they could not be read (was the key store copied before the data, or restored alone \
             from an older copy?). Restore the database and the key store together from one backup (`candor \
             restore --from DIR`), or put back the newer key store",
            c.newest_without_key, c.newest_checked
        )));
    }
    Ok(())
}

/// Everything a backup or a restore checks about a pair of stores, counted over every customer
/// (unlike the start-up check, this reads them all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairReport {
    /// The installation id written into both stores (`None` when they disagree or lack one).
    pub data_installation: Option<String>,
    pub keys_installation: Option<String>,
    pub log_size: u64,
    pub log_root: Hash,
    /// Customers in the data store.
    pub customers: u64,
    pub live_keys: u64,
    pub destroyed_keys: u64,
    /// Customers in the data store with no key row at all (unreadable).
    pub customers_without_key: u64,
    /// Customers in the data store whose key is destroyed: erasures the start-up pass completes.
    pub erasures_to_complete: u64,
    /// Live keys of customers the data store does not hold.
    pub keys_without_customer: u64,
    /// KEK versions the live keys need, ascending.
    pub kek_versions: Vec<u32>,
}

impl PairReport {
    /// Why these stores are not a usable pair, if they are not.
    pub fn problem(&self, data: &str, keys: &str) -> Option<String> {
        match (&self.data_installation, &self.keys_installation) {
            (Some(d), Some(k)) if d != k => {
                return Some(format!(
                    "{data} and {keys} do not belong together: the data store is of installation {d}, the key \
                     store of installation {k}"
                ));
            }
            (None, _) => return Some(format!("{data} carries no installation id: it is not a Candor data store")),
            (_, None) => return Some(format!("{keys} carries no installation id: it is not a Candor key store")),
            _ => {}
        }
        if self.customers_without_key > 0 {
            return Some(format!(
                "{keys} is older than {data}: {} of the {} customers in the data store have no data key in the key \
                 store (was the key store copied before the data?)",
                self.customers_without_key, self.customers
            ));
        }
        if self.keys_without_customer > 0 {
            return Some(format!(
                "{data} is older than {keys}: {} customers have a data key but no data (was the data store copied \
                 at another time than the key store?)",
                self.keys_without_customer
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_refused_for_what_is_wrong_with_it_and_the_message_says_what_to_do() {
        let fine = PairCounts { key_rows: 10, log_size: 40, newest_checked: 10, ..Default::default() };
        assert!(check_pair(&fine, "d", "k").is_ok());
        // A crash between a key's commit and its data's leaves a key with no data: fine.
        assert!(check_pair(&PairCounts { data_empty: false, ..fine.clone() }, "d", "k").is_ok());
        let empty = PairCounts { data_empty: true, key_rows: 3, ..Default::default() };
        let e = check_pair(&empty, "data/candor.db", "keys/keystore.db").unwrap_err().to_string();
        assert!(e.contains("data/candor.db is empty") && e.contains("holds the data keys of 3 customer(s)"), "{e}");
        assert!(e.contains("candor restore"), "{e}");
        // A new installation: nothing anywhere.
        assert!(check_pair(&PairCounts { data_empty: true, ..Default::default() }, "d", "k").is_ok());
        let older = PairCounts { keys_ahead: 2, max_mark: 57, ..fine.clone() };
        let e = check_pair(&older, "d", "k").unwrap_err().to_string();
        assert!(e.contains("d is older than its key store k: 2 customer(s)") && e.contains("at least 57"), "{e}");
        let keyless = PairCounts { newest_without_key: 4, ..fine };
        let e = check_pair(&keyless, "d", "k").unwrap_err().to_string();
        assert!(e.contains("the key store k is older than the database d: 4 of the 10 newest"), "{e}");
    }

    #[test]
    fn a_pair_report_names_the_mismatch() {
        let id = Some("abc".to_string());
        let fine = PairReport { data_installation: id.clone(), keys_installation: id.clone(), ..Default::default() };
        assert_eq!(fine.problem("d", "k"), None);
        let foreign = PairReport { keys_installation: Some("xyz".into()), ..fine.clone() };
        assert!(foreign.problem("d", "k").unwrap().contains("installation abc, the key store of installation xyz"));
        let keyless = PairReport { customers: 5, customers_without_key: 1, ..fine.clone() };
        assert!(keyless.problem("d", "k").unwrap().contains("k is older than d: 1 of the 5"));
        let older = PairReport { keys_without_customer: 2, ..fine };
        assert!(older.problem("d", "k").unwrap().contains("d is older than k: 2 customers"));
    }
}
