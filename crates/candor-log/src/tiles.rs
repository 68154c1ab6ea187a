//! The Merkle tree stored as C2SP `tlog-tiles` hash tiles.
//!
//! A tile of level `L` holds up to 256 consecutive hashes of tree level `8·L`: tile `(L, N)`
//! holds the nodes `(8·L, 256·N)` to `(8·L, 256·N + 255)`, the leaf hashes themselves at level
//! 0. A tile is *full* once all 256 exist, and never changes after that; the last tile of each
//! level is *partial* and grows as the log grows (its first `W` hashes are the C2SP partial tile
//! of width `W`). A tree of `n` leaves therefore stores about `n/255` tiles instead of a row per
//! node, and the one writer appends a batch of entries by extending the partial tiles of the
//! right edge ([`Edge`]) and writing each changed tile once.
//!
//! Nodes of the levels between (`8·L + k`, `k` in 1..=7) are not stored: each is the root of
//! `2^k` hashes of one tile ([`TileSource`]), so every node a proof needs is one tile read and
//! at most 127 hashes away.
//!
//! Nothing here reads or writes storage: the store fetches the tiles named by [`tile_of`] or
//! [`partial_tiles`] and writes the ones [`Edge::finish`] returns.

use std::collections::{BTreeSet, HashMap};

use crate::Hash;
use crate::merkle::{NodeSource, ProofError, node_hash};

/// Tree levels per tile level.
pub const HEIGHT: u32 = 8;
/// Hashes in a full tile.
pub const WIDTH: u64 = 256;

/// One tile: its level, its index within the level, and its hashes (1 to 256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    pub level: u32,
    pub index: u64,
    pub hashes: Vec<Hash>,
}

/// The tile holding node `(level, index)`'s hashes (the node itself when `level` is a multiple
/// of 8, the hashes it is the root of otherwise), and where in it they start and how many.
pub fn tile_of(level: u32, index: u64) -> (u32, u64, usize, usize) {
    let (tile_level, k) = (level / HEIGHT, level % HEIGHT);
    let first = index << k;
    (tile_level, first / WIDTH, (first % WIDTH) as usize, 1usize << k)
}

/// The partial tiles of a tree of `size` leaves, as (level, index, width): the tiles an append
/// extends. Levels whose hashes exactly fill their tiles have none.
pub fn partial_tiles(size: u64) -> Vec<(u32, u64, usize)> {
    let mut out = Vec::new();
    let mut level = 0;
    while level < 8 && (size >> (HEIGHT * level)) > 0 {
        let count = size >> (HEIGHT * level);
        if !count.is_multiple_of(WIDTH) {
            out.push((level, count / WIDTH, (count % WIDTH) as usize));
        }
        level += 1;
    }
    out
}

/// The tree size a level-0 tile implies when it is the last one: `index · 256 + width`.
pub fn size_from_last_leaf_tile(index: u64, width: usize) -> u64 {
    index * WIDTH + width as u64
}

/// The root of a complete subtree of `hashes` (their count a power of two).
pub fn perfect_root(hashes: &[Hash]) -> Hash {
    debug_assert!(hashes.len().is_power_of_two());
    if hashes.len() == 1 {
        return hashes[0];
    }
    let mut level: Vec<Hash> = hashes.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    while level.len() > 1 {
        level = level.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    level[0]
}

/// A tile's stored bytes: its hashes, concatenated (the C2SP tile body).
pub fn encode(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// A tile's hashes from its stored bytes.
pub fn decode(bytes: &[u8]) -> Result<Vec<Hash>, ProofError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(32) || bytes.len() as u64 > WIDTH * 32 {
        return Err(ProofError::Storage(format!("a stored tile is {} bytes, not 1 to 256 hashes", bytes.len())));
    }
    Ok(bytes.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect())
}

/// Nodes computed from tiles held in memory (the tiles [`tile_of`] names for each node), each
/// computed once however often an algorithm asks for it.
#[derive(Debug, Default)]
pub struct TileSource {
    tiles: HashMap<(u32, u64), Vec<Hash>>,
    computed: HashMap<(u32, u64), Hash>,
}

impl TileSource {
    pub fn new(tiles: HashMap<(u32, u64), Vec<Hash>>) -> Self {
        Self { tiles, computed: HashMap::new() }
    }
}

impl NodeSource for TileSource {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, ProofError> {
        if let Some(hash) = self.computed.get(&(level, index)) {
            return Ok(*hash);
        }
        let (tile_level, tile, start, count) = tile_of(level, index);
        let hashes = self
            .tiles
            .get(&(tile_level, tile))
            .and_then(|t| t.get(start..start + count))
            .ok_or(ProofError::MissingNode { level, index })?;
        let hash = perfect_root(hashes);
        self.computed.insert((level, index), hash);
        Ok(hash)
    }
}

/// The hashes `[start, end)` of one level, from that level's tiles covering the range as
/// (index, hashes) in index order: as far as they reach without a gap.
pub fn nodes_in_range(level_tiles: &[(u64, Vec<Hash>)], start: u64, end: u64) -> Vec<Hash> {
    let mut out = Vec::new();
    let mut next = start;
    for (index, hashes) in level_tiles {
        let tile_start = index * WIDTH;
        if tile_start > next || next >= end {
            break;
        }
        let from = (next - tile_start) as usize;
        let to = ((end - tile_start).min(hashes.len() as u64)) as usize;
        if from >= to {
            break;
        }
        out.extend_from_slice(&hashes[from..to]);
        next = tile_start + to as u64;
    }
    out
}

/// The tiles holding `nodes`, each once.
pub fn tiles_for(nodes: &[(u32, u64)]) -> Vec<(u32, u64)> {
    let set: BTreeSet<(u32, u64)> = nodes
        .iter()
        .map(|&(l, i)| {
            let (tl, t, ..) = tile_of(l, i);
            (tl, t)
        })
        .collect();
    set.into_iter().collect()
}

/// The right edge of the tree while one writer appends: the partial tile of each level, and
/// the tiles that changed since the edge was loaded.
#[derive(Debug)]
pub struct Edge {
    size: u64,
    /// Per tile level, the hashes of its partial tile (empty: none).
    partial: Vec<Vec<Hash>>,
    /// Tiles filled since loading, to be written once each.
    full: Vec<Tile>,
    /// Levels whose partial tile changed since loading.
    touched: BTreeSet<u32>,
}

impl Edge {
    /// The edge of a tree of `size` leaves, from its partial tiles (those [`partial_tiles`]
    /// names; a stored tile may hold more hashes than the width asked for, which are ignored).
    pub fn load(size: u64, tiles: &HashMap<(u32, u64), Vec<Hash>>) -> Result<Self, ProofError> {
        let mut partial = Vec::new();
        for (level, index, width) in partial_tiles(size) {
            let hashes = tiles
                .get(&(level, index))
                .filter(|t| t.len() >= width)
                .ok_or(ProofError::MissingNode { level: level * HEIGHT, index: index * WIDTH })?;
            partial.resize(level as usize + 1, Vec::new());
            partial[level as usize] = hashes[..width].to_vec();
        }
        Ok(Self { size, partial, full: Vec::new(), touched: BTreeSet::new() })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.size += 1;
        let mut hash = leaf;
        let mut level = 0u32;
        loop {
            if self.partial.len() <= level as usize {
                self.partial.push(Vec::new());
            }
            let tile = &mut self.partial[level as usize];
            tile.push(hash);
            if (tile.len() as u64) < WIDTH {
                self.touched.insert(level);
                return;
            }
            // The tile is full: written once, and its root is the next level's new hash.
            let hashes = std::mem::take(tile);
            hash = perfect_root(&hashes);
            let count = self.size >> (HEIGHT * level);
            self.full.push(Tile { level, index: count / WIDTH - 1, hashes });
            self.touched.remove(&level);
            level += 1;
        }
    }

    /// The tiles to write: every tile filled since loading, then the partial tiles that changed.
    pub fn finish(self) -> Vec<Tile> {
        let mut out = self.full;
        for level in self.touched {
            let hashes = self.partial[level as usize].clone();
            if !hashes.is_empty() {
                let index = (self.size >> (HEIGHT * level)) / WIDTH;
                out.push(Tile { level, index, hashes });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{self, RootBuilder, leaf_hash};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// Appends `n` leaves in batches of `batch`, as a store would (loading the edge from the
    /// tiles written so far each time), and returns the stored tiles.
    fn store(n: u64, batch: u64) -> HashMap<(u32, u64), Vec<Hash>> {
        let all = leaves(n);
        let mut stored: HashMap<(u32, u64), Vec<Hash>> = HashMap::new();
        let mut size = 0;
        while size < n {
            let mut edge = Edge::load(size, &stored).unwrap();
            for leaf in &all[size as usize..(size + batch).min(n) as usize] {
                edge.push(*leaf);
            }
            size = edge.size();
            for t in edge.finish() {
                if let Some(old) = stored.get(&(t.level, t.index)) {
                    assert!(old.len() < t.hashes.len() && t.hashes.starts_with(old), "a tile only grows");
                }
                stored.insert((t.level, t.index), t.hashes);
            }
        }
        stored
    }

    #[test]
    fn tiles_give_the_same_roots_and_proofs_as_the_leaves_whatever_the_batches() {
        for (n, batch) in [(1, 1), (255, 7), (256, 256), (257, 1), (70_000, 1000), (65_536, 65_536), (66_000, 333)] {
            let stored = store(n, batch);
            let all = leaves(n);
            let mut builder = RootBuilder::new();
            all.iter().for_each(|l| builder.push(*l));
            let mut src = TileSource::new(stored.clone());
            assert_eq!(merkle::root(&mut src, n).unwrap(), builder.root(), "n = {n}, batch = {batch}");
            for index in [0, n / 2, n - 1] {
                let proof = merkle::inclusion_proof(&mut src, index, n).unwrap();
                assert_eq!(proof, merkle::inclusion_proof_from_leaves(&all, index, n).unwrap());
                merkle::verify_inclusion(&all[index as usize], index, n, &proof, &builder.root()).unwrap();
            }
            // Older sizes are served by the same tiles.
            let first = n / 3 + 1;
            let proof = merkle::consistency_proof(&mut src, first, n).unwrap();
            let old = merkle::root(&mut src, first).unwrap();
            merkle::verify_consistency(first, n, &old, &builder.root(), &proof).unwrap();
        }
    }

    #[test]
    fn a_tree_stores_about_one_tile_per_255_leaves() {
        let stored = store(70_000, 500);
        // 273 full + 1 partial leaf tiles; 1 full + 1 partial level-1 tiles; the level-2 tile
        // with the root of the first 65,536 leaves.
        assert_eq!(stored.len(), 277);
        assert_eq!(stored[&(0, 273)].len(), 70_000 % 256);
        assert_eq!(stored[&(1, 1)].len(), 273 - 256);
        assert_eq!(partial_tiles(70_000), vec![(0, 273, 112), (1, 1, 17), (2, 0, 1)]);
        assert_eq!(partial_tiles(65_536), vec![(2, 0, 1)]);
        assert_eq!(size_from_last_leaf_tile(273, 112), 70_000);
    }

    #[test]
    fn a_missing_or_short_tile_is_named_not_guessed() {
        let mut stored = store(300, 300);
        assert_eq!(Edge::load(300, &stored).unwrap().size(), 300);
        stored.get_mut(&(0, 1)).unwrap().truncate(10);
        assert_eq!(Edge::load(300, &stored).unwrap_err(), ProofError::MissingNode { level: 0, index: 256 });
        let mut src = TileSource::new(stored);
        assert_eq!(src.node(0, 299).unwrap_err(), ProofError::MissingNode { level: 0, index: 299 });
        assert!(decode(&[0; 31]).is_err() && decode(&[]).is_err() && decode(&[0; 257 * 32]).is_err());
        assert_eq!(decode(&encode(&leaves(3))).unwrap(), leaves(3));
    }

    #[test]
    fn a_range_of_hashes_is_read_across_tiles_and_stops_at_a_gap() {
        let all = leaves(600);
        let tiles: Vec<(u64, Vec<Hash>)> = all.chunks(256).enumerate().map(|(i, c)| (i as u64, c.to_vec())).collect();
        assert_eq!(nodes_in_range(&tiles, 250, 520), all[250..520]);
        assert_eq!(nodes_in_range(&tiles, 0, 700), all);
        assert_eq!(nodes_in_range(&tiles[1..], 250, 520), Vec::<Hash>::new());
        assert_eq!(nodes_in_range(&[tiles[0].clone(), tiles[2].clone()], 0, 600), all[..256]);
    }
}
