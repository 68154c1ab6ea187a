-- Candor SQLite schema, version 19: the log's Merkle tree as C2SP hash tiles.
-- A tile (level L, index N) holds up to 256 hashes of tree level 8·L, concatenated (32 bytes
-- each): full tiles never change, the last tile of each level grows with the log. It replaces
-- log_nodes (a row per complete subtree); the migration step in Rust
-- (sqlite/tiles.rs, tiles_from_nodes) fills it from the stored nodes of levels 0, 8, 16, …
-- and then drops log_nodes.
CREATE TABLE log_tiles (
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hashes BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) STRICT;
