-- Candor SQLite schema, version 2: the tamper-evident log.
-- Entries are append-only; log_nodes holds the hash of every complete aligned subtree
-- (level 0 = leaf hashes), so proofs need O(log n) reads.

CREATE TABLE log_entries (
    idx   INTEGER PRIMARY KEY,            -- 0-based position in the log
    entry BLOB NOT NULL                   -- canonical entry bytes (no personal values)
) STRICT;

CREATE TABLE log_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;

-- Which entries concern which subject (for a customer's access log).
CREATE TABLE log_subjects (
    subject_id TEXT NOT NULL,
    idx        INTEGER NOT NULL,
    PRIMARY KEY (subject_id, idx)
) STRICT, WITHOUT ROWID;

CREATE TABLE log_checkpoints (
    size       INTEGER PRIMARY KEY,
    note       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
