//! The completeness map: from a hidden per-customer key to the state of that customer's
//! history (how many log entries name them, and a hash chain over those entries), as a sparse
//! Merkle tree whose root a checkpoint can commit to.
//!
//! A customer who is shown their history and a [`MapProof`] against a signed root can check
//! that the list is *every* entry naming them up to that checkpoint (the count and the chain
//! match), and, with a later proof, that the earlier entries were neither removed nor altered
//! (the later chain extends the earlier one through the new entries only, [`extend_chain`]).
//! A proof holds only hashes of other parts of the tree: no other customer's key, count or
//! chain can be read from it.
//!
//! Why a sparse Merkle tree built here rather than the `akd` crate: see ARCHITECTURE.md
//! ("Completeness map"). It uses only SHA-256 (aws-lc-rs).
//!
//! # Format (version 1)
//!
//! All hashes are SHA-256; integers are 8-byte big-endian. `docs/proofs.md` describes the
//! same for writers of independent verifiers.
//!
//! * key of a customer: `H(0x06 || salt || subject id)` ([`subject_key`]), where the 32-byte
//!   `salt` is a keyed hash of the subject id under a secret the log operator keeps
//!   (HMAC-SHA-256, `candor-crypto`). The customer receives their salt with their proof and
//!   recomputes their key, so the key is bound to their id (the hash is collision-resistant),
//!   while nobody without the secret can compute another customer's key from an id.
//! * which entries name a customer: the distinct strings of the `subjects` array of the entry
//!   (as JSON, [`crate::entry::LogEntry`]); an entry that does not parse names nobody
//!   ([`entry_subjects`]).
//! * chain: `chain_0 = 32 zero bytes`; for the customer's i-th entry (log index `n`, entry
//!   bytes `e`): `chain_i = H(0x03 || chain_{i-1} || n || leaf_hash(e))` where `leaf_hash` is
//!   the RFC 6962 leaf hash of the log.
//! * a subtree holding no key hashes to 32 zero bytes;
//! * a subtree holding exactly one key `k` (at whatever depth) hashes to
//!   `H(0x05 || k || count || chain)`;
//! * any other subtree hashes to `H(0x04 || left || right)`; bit `d` of the key (most significant
//!   bit of byte 0 first) chooses the side at depth `d` (0: left).
//! * the map root is the hash of the whole tree (depth 0).
//!
//! A proof of a key is the list of sibling hashes from depth 0 down to the depth `d` where the
//! key's subtree holds one key or none, and what is there: the key's own state (it is in the
//! map), nothing, or one other key with its leaf hash (it is not).
//!
//! ```
//! use candor_log::map::{Map, MapValue, extend_chain, EMPTY_CHAIN};
//! let mut map = Map::new();
//! let alice = [0x11; 32];
//! let chain = extend_chain(&EMPTY_CHAIN, 0, &[7; 32]);
//! map.set(alice, MapValue { count: 1, chain });
//! map.set([0xee; 32], MapValue { count: 5, chain: [9; 32] });
//! let root = map.root();
//! let proof = map.prove(&alice);
//! assert_eq!(proof.verify(&alice, &root).unwrap(), Some(MapValue { count: 1, chain }));
//! ```

use std::sync::{Arc, OnceLock};

use aws_lc_rs::digest::{Context, SHA256};

use crate::Hash;

/// The chain of a customer with no entries.
pub const EMPTY_CHAIN: Hash = [0u8; 32];
/// The hash of a subtree holding no key.
pub const EMPTY_SUBTREE: Hash = [0u8; 32];
const CHAIN_TAG: u8 = 0x03;
const NODE_TAG: u8 = 0x04;
const LEAF_TAG: u8 = 0x05;
const KEY_TAG: u8 = 0x06;

/// A key in the map (a keyed hash of a customer id).
pub type MapKey = [u8; 32];

/// The state of one customer's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapValue {
    /// Log entries naming the customer.
    pub count: u64,
    /// Hash chain over those entries, in log order.
    pub chain: Hash,
}

/// Why a map proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("the map proof has {0} sibling hashes; at most 256")]
    TooLong(usize),
    #[error("the map proof does not lead to the map root of the checkpoint")]
    RootMismatch,
    #[error("the map proof's other key shares the proven key's path, or is the key itself")]
    BadOtherKey,
    #[error("the map proof is not in its shortest form")]
    NotCanonical,
}

/// The map key of the customer with id `subject` (as written in log entries) and `salt`.
pub fn subject_key(salt: &Hash, subject: &str) -> MapKey {
    let mut c = Context::new(&SHA256);
    c.update(&[KEY_TAG]);
    c.update(salt);
    c.update(subject.as_bytes());
    c.finish().as_ref().try_into().expect("32 bytes")
}

/// The customers an entry names, for the map: the distinct `subjects` of the entry parsed as
/// JSON, in the order first written; none if the bytes do not parse.
pub fn entry_subjects(bytes: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(entry) = crate::entry::LogEntry::from_bytes(bytes) {
        for s in entry.subjects {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// `chain` extended by the entry at log index `index` whose RFC 6962 leaf hash is `leaf`.
pub fn extend_chain(chain: &Hash, index: u64, leaf: &Hash) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[CHAIN_TAG]);
    c.update(chain);
    c.update(&index.to_be_bytes());
    c.update(leaf);
    c.finish().as_ref().try_into().expect("32 bytes")
}

/// The hash of a subtree holding only `key` with `value`.
pub fn leaf_hash(key: &MapKey, value: &MapValue) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[LEAF_TAG]);
    c.update(key);
    c.update(&value.count.to_be_bytes());
    c.update(&value.chain);
    c.finish().as_ref().try_into().expect("32 bytes")
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[NODE_TAG]);
    c.update(left);
    c.update(right);
    c.finish().as_ref().try_into().expect("32 bytes")
}

fn bit(key: &MapKey, depth: usize) -> bool {
    key[depth / 8] & (0x80 >> (depth % 8)) != 0
}

/// What a proof finds at the bottom of the key's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Terminal {
    /// The key is in the map with this value.
    Found(MapValue),
    /// The key's subtree is empty: the key is not in the map.
    Empty,
    /// The key's subtree holds one other key (with this leaf hash): the key is not in the map.
    Other { key: MapKey, leaf: Hash },
}

/// A proof of what the map holds for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapProof {
    /// Sibling hashes from depth 0 down.
    pub siblings: Vec<Hash>,
    pub terminal: Terminal,
}

impl MapProof {
    /// Checks the proof against `root`: `Some(value)` if `key` is in the map, `None` if not.
    pub fn verify(&self, key: &MapKey, root: &Hash) -> Result<Option<MapValue>, MapError> {
        let depth = self.siblings.len();
        if depth > 256 {
            return Err(MapError::TooLong(depth));
        }
        let (mut h, found) = match &self.terminal {
            Terminal::Found(v) => (leaf_hash(key, v), Some(*v)),
            Terminal::Empty => (EMPTY_SUBTREE, None),
            Terminal::Other { key: other, leaf } => {
                if other == key || (0..depth).any(|d| bit(other, d) != bit(key, d)) {
                    return Err(MapError::BadOtherKey);
                }
                (*leaf, None)
            }
        };
        // Shortest form: a single key whose sibling is empty would sit one level up; an empty
        // subtree is only shown below a sibling that is not empty (or at the root).
        if let Some(last) = self.siblings.last()
            && *last == EMPTY_SUBTREE
        {
            return Err(MapError::NotCanonical);
        }
        for d in (0..depth).rev() {
            let s = &self.siblings[d];
            h = if bit(key, d) { node_hash(s, &h) } else { node_hash(&h, s) };
        }
        if &h != root {
            return Err(MapError::RootMismatch);
        }
        Ok(found)
    }

    /// Bytes of the proof on the wire (for size figures): 32 per sibling plus the terminal.
    pub fn encoded_len(&self) -> usize {
        32 * self.siblings.len()
            + match self.terminal {
                Terminal::Found(_) => 1 + 8 + 32,
                Terminal::Empty => 1,
                Terminal::Other { .. } => 1 + 32 + 32,
            }
    }
}

/// Keys a bucket holds before it splits in two (see [`Map`]).
const BUCKET: usize = 8;

/// One customer in the map.
type Entry = (MapKey, MapValue);

/// The map in memory: a binary trie whose lower levels are buckets of up to [`BUCKET`] keys,
/// sorted, each hashed by the definition when asked; above them, inner nodes that cache their
/// hash until a change below them. A change costs O(depth) and the next root rehashes only the
/// changed paths (and the buckets at their ends); a proof reads the cached hashes of the inner
/// siblings and hashes at most two buckets. The buckets keep a customer at 72 bytes plus a
/// share of a pointer (a node of its own per customer cost ~280 bytes: 265 MiB at a million).
///
/// Nodes and buckets are shared (`Arc`): `clone` is O(1) and a change copies only its path, so
/// a server keeps the map as it was at each recent checkpoint to prove against it.
#[derive(Debug, Default, Clone)]
pub struct Map {
    root: Node,
    len: usize,
}

#[derive(Debug, Clone)]
enum Node {
    /// A subtree of at most [`BUCKET`] keys, sorted by key (which is their order bit by bit).
    Bucket(Arc<[Entry]>),
    /// A subtree of more keys (never fewer than two: keys are never removed).
    Inner(Arc<Inner>),
}

#[derive(Debug, Clone)]
struct Inner {
    /// The subtrees one level down, by the key's bit at this depth.
    children: [Node; 2],
    hash: OnceLock<Hash>,
}

impl Default for Node {
    fn default() -> Self {
        Node::Bucket(Arc::new([]))
    }
}

/// The hash of the subtree at `depth` holding exactly `entries` (sorted), by the definition.
fn subtree_hash(entries: &[Entry], depth: usize) -> Hash {
    match entries {
        [] => EMPTY_SUBTREE,
        [(key, value)] => leaf_hash(key, value),
        _ => {
            let (left, right) = split(entries, depth);
            node_hash(&subtree_hash(left, depth + 1), &subtree_hash(right, depth + 1))
        }
    }
}

/// Sorted entries sharing their first `depth` bits, split by the next one.
fn split(entries: &[Entry], depth: usize) -> (&[Entry], &[Entry]) {
    entries.split_at(entries.partition_point(|(k, _)| !bit(k, depth)))
}

impl Node {
    fn hash(&self, depth: usize) -> Hash {
        match self {
            Node::Bucket(entries) => subtree_hash(entries, depth),
            Node::Inner(inner) => *inner
                .hash
                .get_or_init(|| node_hash(&inner.children[0].hash(depth + 1), &inner.children[1].hash(depth + 1))),
        }
    }

    /// Sets `key`'s value to `f(current)`; returns whether the key is new.
    fn update(&mut self, depth: usize, key: MapKey, f: impl FnOnce(Option<MapValue>) -> MapValue) -> bool {
        match self {
            Node::Bucket(entries) => match entries.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(i) => {
                    let entries = Arc::make_mut(entries);
                    entries[i].1 = f(Some(entries[i].1));
                    false
                }
                Err(i) if entries.len() < BUCKET => {
                    let new = (key, f(None));
                    *entries = entries[..i].iter().copied().chain([new]).chain(entries[i..].iter().copied()).collect();
                    true
                }
                Err(_) => {
                    let (left, right) = split(entries, depth);
                    let children = [Node::Bucket(left.into()), Node::Bucket(right.into())];
                    *self = Node::Inner(Arc::new(Inner { children, hash: OnceLock::new() }));
                    self.update(depth, key, f)
                }
            },
            Node::Inner(inner) => {
                let inner = Arc::make_mut(inner);
                inner.hash = OnceLock::new();
                inner.children[bit(&key, depth) as usize].update(depth + 1, key, f)
            }
        }
    }
}

impl Map {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &MapKey) -> Option<&MapValue> {
        let (entries, _) = self.bucket_of(key, |_, _| {});
        entries.binary_search_by(|(k, _)| k.cmp(key)).ok().map(|i| &entries[i].1)
    }

    pub fn set(&mut self, key: MapKey, value: MapValue) {
        if self.root.update(0, key, |_| value) {
            self.len += 1;
        }
    }

    /// Appends the log entry at `index` (RFC 6962 leaf hash `leaf`) to `key`'s history.
    pub fn append(&mut self, key: MapKey, index: u64, leaf: &Hash) {
        let new = self.root.update(0, key, |v| {
            let v = v.unwrap_or(MapValue { count: 0, chain: EMPTY_CHAIN });
            MapValue { count: v.count + 1, chain: extend_chain(&v.chain, index, leaf) }
        });
        if new {
            self.len += 1;
        }
    }

    /// The map root.
    pub fn root(&self) -> Hash {
        self.root.hash(0)
    }

    /// The bucket on `key`'s path and its depth, calling `sibling` with each inner node's other
    /// child on the way down (and its depth).
    fn bucket_of(&self, key: &MapKey, mut sibling: impl FnMut(&Node, usize)) -> (&[Entry], usize) {
        let mut node = &self.root;
        let mut depth = 0;
        loop {
            match node {
                Node::Bucket(entries) => return (entries, depth),
                Node::Inner(inner) => {
                    let side = bit(key, depth) as usize;
                    sibling(&inner.children[1 - side], depth + 1);
                    node = &inner.children[side];
                    depth += 1;
                }
            }
        }
    }

    /// A proof of what the map holds for `key`.
    pub fn prove(&self, key: &MapKey) -> MapProof {
        let mut siblings = Vec::new();
        let (mut entries, mut depth) = self.bucket_of(key, |other, depth| siblings.push(other.hash(depth)));
        // Inside the bucket, the trie of the definition, hashed as it goes.
        let terminal = loop {
            match entries {
                [] => break Terminal::Empty,
                [(k, v)] if k == key => break Terminal::Found(*v),
                [(k, v)] => break Terminal::Other { key: *k, leaf: leaf_hash(k, v) },
                _ => {
                    let (left, right) = split(entries, depth);
                    let (mine, other) = if bit(key, depth) { (right, left) } else { (left, right) };
                    siblings.push(subtree_hash(other, depth + 1));
                    entries = mine;
                    depth += 1;
                }
            }
        };
        MapProof { siblings, terminal }
    }
}

/// Recomputes a customer's map value from their entries, oldest first: (log index, RFC 6962
/// leaf hash). What a customer's tool compares with a proven value.
pub fn value_of(entries: &[(u64, Hash)]) -> MapValue {
    let mut chain = EMPTY_CHAIN;
    for (index, leaf) in entries {
        chain = extend_chain(&chain, *index, leaf);
    }
    MapValue { count: entries.len() as u64, chain }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The map root by the definition, from sorted leaves: the reference the trie must match.
    fn reference_root(leaves: &std::collections::BTreeMap<MapKey, MapValue>) -> Hash {
        fn subtree(leaves: &[(&MapKey, &MapValue)], depth: usize) -> Hash {
            match leaves.len() {
                0 => EMPTY_SUBTREE,
                1 => leaf_hash(leaves[0].0, leaves[0].1),
                _ => {
                    let split = leaves.partition_point(|(k, _)| !bit(k, depth));
                    let (left, right) = leaves.split_at(split);
                    node_hash(&subtree(left, depth + 1), &subtree(right, depth + 1))
                }
            }
        }
        subtree(&leaves.iter().collect::<Vec<_>>(), 0)
    }

    fn key(i: u64) -> MapKey {
        aws_lc_rs::digest::digest(&SHA256, &i.to_be_bytes()).as_ref().try_into().unwrap()
    }

    fn leaf(i: u64) -> Hash {
        crate::merkle::leaf_hash(&i.to_be_bytes())
    }

    /// A random log: entry i names customer `owners[i]`.
    fn build(owners: &[u8]) -> (Map, Vec<Vec<(u64, Hash)>>) {
        let mut map = Map::new();
        let mut histories = vec![Vec::new(); 256];
        for (i, o) in owners.iter().enumerate() {
            map.append(key(*o as u64), i as u64, &leaf(i as u64));
            histories[*o as usize].push((i as u64, leaf(i as u64)));
        }
        (map, histories)
    }

    #[test]
    fn an_empty_map_proves_every_key_absent() {
        let map = Map::new();
        assert_eq!(map.root(), EMPTY_SUBTREE);
        assert_eq!(map.prove(&key(1)).verify(&key(1), &map.root()), Ok(None));
    }

    #[test]
    fn a_clone_keeps_the_map_as_it_was_while_the_original_changes() {
        let (mut map, _) = build(&[1, 2, 3, 1]);
        let snapshot = map.clone();
        let (root, proof) = (map.root(), map.prove(&key(2)));
        map.append(key(2), 4, &leaf(4));
        map.append(key(9), 5, &leaf(5));
        assert_ne!(map.root(), root);
        assert_eq!(snapshot.root(), root);
        assert_eq!(snapshot.prove(&key(2)), proof);
        assert_eq!(snapshot.len() + 1, map.len());
    }

    #[test]
    fn a_map_of_many_buckets_has_the_root_and_the_proofs_of_the_definition() {
        let mut map = Map::new();
        let mut reference = std::collections::BTreeMap::new();
        for i in 0..2000u64 {
            let k = key(i % 1500);
            map.append(k, i, &leaf(i));
            let v = reference.entry(k).or_insert(MapValue { count: 0, chain: EMPTY_CHAIN });
            *v = MapValue { count: v.count + 1, chain: extend_chain(&v.chain, i, &leaf(i)) };
        }
        let root = map.root();
        assert_eq!(root, reference_root(&reference));
        assert_eq!(map.len(), 1500);
        for (k, v) in reference.iter().step_by(7) {
            assert_eq!(map.get(k), Some(v));
            assert_eq!(map.prove(k).verify(k, &root), Ok(Some(*v)));
        }
        for i in 1500..1600 {
            assert_eq!(map.get(&key(i)), None);
            assert_eq!(map.prove(&key(i)).verify(&key(i), &root), Ok(None));
        }
    }

    #[test]
    fn keys_bind_salt_and_subject_and_entries_name_each_subject_once() {
        let (a, b) = ("7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70", "0b1c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f71");
        assert_ne!(subject_key(&[1; 32], a), subject_key(&[1; 32], b));
        assert_ne!(subject_key(&[1; 32], a), subject_key(&[2; 32], a));
        let bytes = format!(
            r#"{{"v":1,"time":"t","action":"subject.read","actor":{{"token":"t","role":"r"}},"subjects":["{a}","{b}","{a}"]}}"#
        );
        assert_eq!(entry_subjects(bytes.as_bytes()), vec![a.to_string(), b.to_string()]);
        assert!(entry_subjects(b"not json").is_empty());
    }

    #[test]
    fn a_non_canonical_or_foreign_proof_is_refused() {
        let (map, _) = build(&[1, 2, 3, 1]);
        let root = map.root();
        let mut p = map.prove(&key(1));
        p.siblings.push(EMPTY_SUBTREE);
        assert!(p.verify(&key(1), &root).is_err());
        // Another key's proof does not prove this key.
        assert!(map.prove(&key(2)).verify(&key(1), &root).is_err());
        let long = MapProof { siblings: vec![[1; 32]; 257], terminal: Terminal::Empty };
        assert_eq!(long.verify(&key(1), &root), Err(MapError::TooLong(257)));
    }

    proptest! {
        /// The trie, changed in any order, always has the root the definition gives, and keys
        /// sharing long prefixes (the chains of one-sided inner nodes) are handled.
        #[test]
        fn the_trie_root_matches_the_definition(ops in proptest::collection::vec((0u8..40, any::<u8>()), 0..200)) {
            let mut map = Map::new();
            let mut reference = std::collections::BTreeMap::new();
            for (i, (who, tweak)) in ops.iter().enumerate() {
                // Keys that differ only in their last byte share a 248-bit prefix.
                let mut k = if who % 2 == 0 { key(*who as u64) } else { key(1) };
                if who % 2 == 1 { k[31] = *who; }
                map.append(k, i as u64, &leaf(*tweak as u64));
                let v = reference.entry(k).or_insert(MapValue { count: 0, chain: EMPTY_CHAIN });
                *v = MapValue { count: v.count + 1, chain: extend_chain(&v.chain, i as u64, &leaf(*tweak as u64)) };
                if i % 17 == 0 {
                    prop_assert_eq!(map.root(), reference_root(&reference));
                }
            }
            prop_assert_eq!(map.root(), reference_root(&reference));
            prop_assert_eq!(map.len(), reference.len());
            for (k, v) in &reference {
                prop_assert_eq!(map.get(k), Some(v));
                prop_assert_eq!(map.prove(k).verify(k, &map.root()).unwrap(), Some(*v));
            }
        }

        /// Every customer's history verifies against the root; an absent one is proven absent.
        #[test]
        fn every_history_verifies_and_absent_customers_are_proven_absent(owners in proptest::collection::vec(0u8..24, 0..120)) {
            let (map, histories) = build(&owners);
            let root = map.root();
            for c in 0u8..32 {
                let proven = map.prove(&key(c as u64)).verify(&key(c as u64), &root).unwrap();
                let h = &histories[c as usize];
                if h.is_empty() {
                    prop_assert_eq!(proven, None);
                } else {
                    prop_assert_eq!(proven, Some(value_of(h)));
                }
            }
        }

        /// Omitting, reordering or altering any entry of a customer's history no longer matches
        /// the proven value.
        #[test]
        fn any_change_to_a_history_is_detected(owners in proptest::collection::vec(0u8..6, 2..80), pick in any::<prop::sample::Index>(), change in 0u8..3) {
            let (map, histories) = build(&owners);
            let c = owners[0];
            let proven = map.prove(&key(c as u64)).verify(&key(c as u64), &map.root()).unwrap().unwrap();
            let mut shown = histories[c as usize].clone();
            prop_assume!(shown.len() >= 2 || change != 1);
            let i = pick.index(shown.len());
            match change {
                0 => { shown.remove(i); }
                1 => { let j = (i + 1) % shown.len(); shown.swap(i, j); }
                _ => { shown[i].1[0] ^= 1; }
            }
            prop_assert_ne!(value_of(&shown), proven);
        }

        /// A proof for customer B is the same whatever A's count: it reveals nothing about A
        /// beyond hashes, and never holds A's entries.
        #[test]
        fn a_proof_for_one_customer_does_not_depend_on_the_contents_of_a_far_one(extra in 1usize..20) {
            let base: Vec<u8> = (0..30u8).collect();
            let (map1, _) = build(&base);
            let mut more = base.clone();
            more.extend(std::iter::repeat_n(7u8, extra));
            let (map2, _) = build(&more);
            let b = key(3);
            let (p1, p2) = (map1.prove(&b), map2.prove(&b));
            // Same shape and same terminal: B's own part of the proof is unchanged.
            prop_assert_eq!(p1.siblings.len(), p2.siblings.len());
            prop_assert_eq!(&p1.terminal, &p2.terminal);
            // Only the sibling over A's side changed, to an opaque hash.
            let differing = p1.siblings.iter().zip(&p2.siblings).filter(|(x, y)| x != y).count();
            prop_assert_eq!(differing, 1);
        }

        /// Over time: the later chain extends the earlier one through exactly the new entries,
        /// and a history rewritten in between does not.
        #[test]
        fn a_later_proof_extends_an_earlier_one_only_if_nothing_was_removed(owners in proptest::collection::vec(0u8..4, 1..60), later in proptest::collection::vec(0u8..4, 1..40)) {
            let (m1, h1) = build(&owners);
            let mut all = owners.clone();
            all.extend(&later);
            let (m2, h2) = build(&all);
            let c = later[0];
            let k = key(c as u64);
            let v1 = m1.prove(&k).verify(&k, &m1.root()).unwrap().unwrap_or(MapValue { count: 0, chain: EMPTY_CHAIN });
            let v2 = m2.prove(&k).verify(&k, &m2.root()).unwrap().unwrap();
            let new_entries = &h2[c as usize][h1[c as usize].len()..];
            let mut chain = v1.chain;
            for (i, l) in new_entries { chain = extend_chain(&chain, *i, l); }
            prop_assert_eq!(chain, v2.chain);
            prop_assert_eq!(v1.count + new_entries.len() as u64, v2.count);
        }
    }
}
