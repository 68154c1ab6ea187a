-- Candor PostgreSQL schema, version 18: the log's Merkle tree as C2SP hash tiles.
-- A tile (level L, index N) holds up to 256 hashes of tree level 8·L, concatenated (32 bytes
-- each): full tiles never change, the last tile of each level grows with the log. It replaces
-- log_nodes (a row per complete subtree), from whose levels 0, 8, 16, … it is filled, keeping
-- exactly the hashes that were committed.
CREATE TABLE log_tiles (
    level  INTEGER NOT NULL,
    idx    BIGINT NOT NULL,
    hashes BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

INSERT INTO log_tiles (level, idx, hashes)
SELECT level / 8, idx / 256, string_agg(hash, ''::bytea ORDER BY idx)
FROM log_nodes WHERE level % 8 = 0
GROUP BY level / 8, idx / 256;

DROP TABLE log_nodes;
