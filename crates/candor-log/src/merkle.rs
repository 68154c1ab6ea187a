//! RFC 6962 / RFC 9162 Merkle trees.
//!
//! Storage model: a log keeps the hash of every *complete aligned subtree*: node `(level, i)`
//! covers leaves `[i·2^level, (i+1)·2^level)`. Appending leaf `n` completes at most
//! `log2(n)+1` nodes ([`completed_nodes`]). Any subtree hash the proofs need is then a stored
//! node or a combination of O(log n) of them ([`subtree_hash`]), so proofs cost O(log² n)
//! reads at worst and never a rescan.

use aws_lc_rs::digest::{Context, SHA256};

use crate::Hash;

/// Why a proof or a tree operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {first} is larger than tree size {second}")]
    SizesOutOfOrder { first: u64, second: u64 },
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("node ({level}, {index}) is missing from the log's storage")]
    MissingNode { level: u32, index: u64 },
    #[error("storage error: {0}")]
    Storage(String),
}

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0x00]);
    c.update(entry);
    c.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0x01]);
    c.update(left);
    c.update(right);
    c.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    aws_lc_rs::digest::digest(&SHA256, b"").as_ref().try_into().expect("32 bytes")
}

/// Read access to stored complete-subtree hashes.
pub trait NodeSource {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, ProofError>;
}

/// An in-memory node source over leaf hashes (tests, small tools): computes nodes on demand.
pub struct LeafSource<'a>(pub &'a [Hash]);

impl NodeSource for LeafSource<'_> {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, ProofError> {
        let width = 1u64 << level;
        let start = index * width;
        if start + width > self.0.len() as u64 {
            return Err(ProofError::MissingNode { level, index });
        }
        let mut b = RootBuilder::new();
        for h in &self.0[start as usize..(start + width) as usize] {
            b.push(*h);
        }
        Ok(b.root())
    }
}

/// Records which nodes an algorithm reads, answering with placeholder hashes.
///
/// The proof and append algorithms here choose which nodes to read from indexes and sizes
/// only, never from hash values, so a backend whose reads are remote can run an algorithm once
/// with a recorder, fetch exactly the recorded nodes in one query, and run it again over a
/// [`MapSource`].
#[derive(Debug, Default)]
pub struct NodeRecorder {
    pub wanted: Vec<(u32, u64)>,
}

impl NodeSource for NodeRecorder {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, ProofError> {
        if !self.wanted.contains(&(level, index)) {
            self.wanted.push((level, index));
        }
        Ok([0u8; 32])
    }
}

/// Nodes held in memory.
#[derive(Debug, Default)]
pub struct MapSource(pub std::collections::HashMap<(u32, u64), Hash>);

impl NodeSource for MapSource {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, ProofError> {
        self.0.get(&(level, index)).copied().ok_or(ProofError::MissingNode { level, index })
    }
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Hash of the subtree over leaves `[start, end)` (RFC 6962 MTH of that range), from stored nodes.
pub fn subtree_hash(src: &mut dyn NodeSource, start: u64, end: u64) -> Result<Hash, ProofError> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return src.node(n.trailing_zeros(), start / n);
    }
    let k = split(n);
    let left = subtree_hash(src, start, start + k)?;
    let right = subtree_hash(src, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// Root of the tree of the first `size` leaves.
pub fn root(src: &mut dyn NodeSource, size: u64) -> Result<Hash, ProofError> {
    subtree_hash(src, 0, size)
}

/// The nodes that become complete when leaf `index` (with hash `leaf`) is appended, level 0
/// (the leaf itself) first. Reads the left siblings from `src`.
pub fn completed_nodes(src: &mut dyn NodeSource, index: u64, leaf: Hash) -> Result<Vec<(u32, u64, Hash)>, ProofError> {
    let mut out = vec![(0, index, leaf)];
    let mut current = leaf;
    let mut level = 0u32;
    let mut i = index;
    while i % 2 == 1 {
        let left = src.node(level, i - 1)?;
        current = node_hash(&left, &current);
        level += 1;
        i /= 2;
        out.push((level, i, current));
    }
    Ok(out)
}

/// Inclusion proof for leaf `index` in the tree of size `size` (RFC 6962 §2.1.1 PATH).
pub fn inclusion_proof(src: &mut dyn NodeSource, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(src, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path(src: &mut dyn NodeSource, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), ProofError> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(subtree_hash(src, start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(subtree_hash(src, start, start + k)?);
    }
    Ok(())
}

/// Consistency proof between tree sizes `first` and `second` (RFC 6962 §2.1.2 PROOF).
/// Empty when the sizes are equal or `first` is 0.
pub fn consistency_proof(src: &mut dyn NodeSource, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    let mut proof = Vec::new();
    if first == 0 || first == second {
        return Ok(proof);
    }
    subproof(src, first, 0, second, true, &mut proof)?;
    Ok(proof)
}

fn subproof(
    src: &mut dyn NodeSource,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(subtree_hash(src, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, start, start + k, whole, out)?;
        out.push(subtree_hash(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(subtree_hash(src, start, start + k)?);
    }
    Ok(())
}

/// Convenience for tools that hold all leaf hashes in memory.
pub fn inclusion_proof_from_leaves(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    inclusion_proof(&mut LeafSource(&leaves[..size.min(leaves.len() as u64) as usize]), index, size)
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if first_root == second_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    if first == 0 {
        // Every tree is consistent with the empty tree; a proof is meaningless.
        return Err(ProofError::WrongLength);
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != first_root || &sr != second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Recomputes a root from leaf hashes pushed in order, keeping only O(log n) hashes.
#[derive(Clone, Default)]
pub struct RootBuilder {
    /// Roots of the complete subtrees of the current range, largest first (the "compact range").
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl RootBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, leaf: Hash) {
        self.push_reporting(leaf, |_, _, _| {});
    }

    /// [`RootBuilder::push`], telling `completed` each complete subtree (level ≥ 1, index at that
    /// level, hash) the leaf finishes — what a verifier compares with stored nodes.
    pub fn push_reporting(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, Hash)) {
        let size = self.size + 1;
        let mut node = (0u32, leaf);
        while let Some(&(level, left)) = self.stack.last() {
            if level != node.0 {
                break;
            }
            self.stack.pop();
            node = (level + 1, node_hash(&left, &node.1));
            completed(node.0, (size >> node.0) - 1, node.1);
        }
        self.stack.push(node);
        self.size = size;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn h(s: &str) -> Hash {
        let mut out = [0u8; 32];
        for i in 0..32 {
            out[i] = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    // Test vectors from the reference implementation of RFC 6962 proofs:
    // github.com/transparency-dev/merkle, testonly/constants.go (LeafInputs, RootHashes) and
    // proof/verify_test.go (inclusionProofs, consistencyProofs; their leaf numbers are 1-based).
    fn leaf_inputs() -> Vec<Vec<u8>> {
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
            .iter()
            .map(|x| (0..x.len() / 2).map(|i| u8::from_str_radix(&x[2 * i..2 * i + 2], 16).unwrap()).collect())
            .collect()
    }

    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn vector_leaves() -> Vec<Hash> {
        leaf_inputs().iter().map(|l| leaf_hash(l)).collect()
    }

    #[test]
    fn roots_match_the_reference_vectors() {
        assert_eq!(empty_root(), h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        let leaves = vector_leaves();
        let mut b = RootBuilder::new();
        for (size, leaf) in leaves.iter().enumerate() {
            b.push(*leaf);
            assert_eq!(b.root(), h(ROOTS[size]), "size {}", size + 1);
            assert_eq!(root(&mut LeafSource(&leaves), size as u64 + 1).unwrap(), h(ROOTS[size]));
        }
    }

    #[test]
    fn inclusion_proofs_match_the_reference_vectors() {
        let leaves = vector_leaves();
        let vectors: [(u64, u64, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in vectors {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            let got = inclusion_proof(&mut LeafSource(&leaves), index, size).unwrap();
            assert_eq!(got, want, "index {index} size {size}");
            let root = h(ROOTS[size as usize - 1]);
            verify_inclusion(&leaves[index as usize], index, size, &want, &root).unwrap();
            // Misuse: wrong index, wrong size, wrong leaf, truncated or padded proof.
            assert!(verify_inclusion(&leaves[index as usize], index ^ 1, size, &want, &root).is_err());
            assert!(verify_inclusion(&leaves[index as usize], index, size * 2, &want, &root).is_err());
            assert!(verify_inclusion(&leaf_hash(b"WrongLeaf"), index, size, &want, &root).is_err());
            assert!(verify_inclusion(&leaves[index as usize], index, size, &want[..want.len() - 1], &root).is_err());
            let mut padded = want.clone();
            padded.push(root);
            assert!(verify_inclusion(&leaves[index as usize], index, size, &padded, &root).is_err());
        }
        // A one-leaf tree: the root is the leaf hash, the proof is empty.
        verify_inclusion(&leaves[0], 0, 1, &[], &leaves[0]).unwrap();
        assert!(verify_inclusion(&leaves[0], 0, 0, &[], &leaves[0]).is_err());
    }

    #[test]
    fn consistency_proofs_match_the_reference_vectors() {
        let leaves = vector_leaves();
        let vectors: [(u64, u64, &[&str]); 5] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                6,
                7,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (first, second, want) in vectors {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            assert_eq!(consistency_proof(&mut LeafSource(&leaves), first, second).unwrap(), want, "{first}->{second}");
            let (r1, r2) = (h(ROOTS[first as usize - 1]), h(ROOTS[second as usize - 1]));
            verify_consistency(first, second, &r1, &r2, &want).unwrap();
            if !want.is_empty() {
                assert!(verify_consistency(first, second, &r2, &r1, &want).is_err(), "swapped roots");
                assert!(verify_consistency(first, second, &r1, &r2, &[]).is_err(), "empty proof");
                assert!(verify_consistency(first, second, &r1, &r2, &want[..want.len() - 1]).is_err(), "truncated");
                assert!(verify_consistency(first - 1, second, &r1, &r2, &want).is_err(), "size1 - 1");
                assert!(verify_consistency(first, second * 2, &r1, &r2, &want).is_err(), "size2 * 2");
            }
        }
        let (a, b) = (h(ROOTS[0]), h(ROOTS[1]));
        assert!(verify_consistency(0, 1, &a, &b, &[]).is_err(), "size1 zero");
        assert!(verify_consistency(2, 1, &a, &b, &[]).is_err(), "time travel");
        assert!(verify_consistency(1, 1, &a, &b, &[]).is_err(), "equal sizes, different roots");
        verify_consistency(0, 0, &a, &a, &[]).unwrap();
    }

    /// Applies appends to an in-memory node store the way a log's storage does.
    fn stored_nodes(leaves: &[Hash]) -> std::collections::HashMap<(u32, u64), Hash> {
        let mut map = MapSource(Default::default());
        for (i, leaf) in leaves.iter().enumerate() {
            for (level, index, hash) in completed_nodes(&mut map, i as u64, *leaf).unwrap() {
                map.0.insert((level, index), hash);
            }
        }
        map.0
    }

    #[test]
    fn a_recorder_names_exactly_the_nodes_a_proof_reads() {
        let leaves: Vec<Hash> = (0..37u8).map(|i| leaf_hash(&[i])).collect();
        let all = stored_nodes(&leaves);
        for (index, size) in [(0, 37), (17, 37), (36, 37), (5, 16)] {
            let mut rec = NodeRecorder::default();
            inclusion_proof(&mut rec, index, size).unwrap();
            let mut only = MapSource(rec.wanted.iter().map(|k| (*k, all[k])).collect());
            assert_eq!(
                inclusion_proof(&mut only, index, size).unwrap(),
                inclusion_proof(&mut MapSource(all.clone()), index, size).unwrap()
            );
        }
        let mut rec = NodeRecorder::default();
        consistency_proof(&mut rec, 11, 37).unwrap();
        root(&mut rec, 37).unwrap();
        let mut only = MapSource(rec.wanted.iter().map(|k| (*k, all[k])).collect());
        assert!(consistency_proof(&mut only, 11, 37).is_ok());
        assert!(root(&mut only, 37).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_sequence_of_appends_gives_proofs_that_verify(entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 1..70)) {
            let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
            let mut src = MapSource(stored_nodes(&leaves));
            let n = leaves.len() as u64;
            let mut roots = Vec::new();
            let mut b = RootBuilder::new();
            for l in &leaves { b.push(*l); roots.push(b.root()); }
            for size in 1..=n {
                prop_assert_eq!(root(&mut src, size).unwrap(), roots[size as usize - 1]);
            }
            for size in [1, n / 2 + 1, n] {
                for index in 0..size {
                    let proof = inclusion_proof(&mut src, index, size).unwrap();
                    prop_assert!(verify_inclusion(&leaves[index as usize], index, size, &proof, &roots[size as usize - 1]).is_ok());
                }
                for first in 1..=size {
                    let proof = consistency_proof(&mut src, first, size).unwrap();
                    prop_assert!(verify_consistency(first, size, &roots[first as usize - 1], &roots[size as usize - 1], &proof).is_ok());
                }
            }
        }

        #[test]
        fn changing_dropping_reordering_or_truncating_entries_changes_the_root(
            entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..16), 2..40),
            pick in any::<proptest::sample::Index>(),
            byte in any::<proptest::sample::Index>(),
        ) {
            let root_of = |es: &[Vec<u8>]| { let mut b = RootBuilder::new(); for e in es { b.push(leaf_hash(e)); } b.root() };
            let original = root_of(&entries);
            let i = pick.index(entries.len());
            let mut changed = entries.clone();
            let j = byte.index(changed[i].len());
            changed[i][j] ^= 0x01;
            prop_assert_ne!(root_of(&changed), original, "changed byte");
            let mut dropped = entries.clone();
            dropped.remove(i);
            prop_assert_ne!(root_of(&dropped), original, "dropped entry");
            prop_assert_ne!(root_of(&entries[..entries.len() - 1]), original, "truncated");
            let k = (i + 1) % entries.len();
            if entries[i] != entries[k] {
                let mut swapped = entries.clone();
                swapped.swap(i, k);
                prop_assert_ne!(root_of(&swapped), original, "reordered");
            }
        }
    }
}
