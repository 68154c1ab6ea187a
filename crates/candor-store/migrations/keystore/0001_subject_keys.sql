-- Candor key store (SQLite): each customer's wrapped data key, in a file kept apart from the
-- data (default keys/keystore.db). Erasing a customer destroys their key here (the row stays as
-- a tombstone without key bytes), so restoring an older copy of the data cannot make them
-- readable again.

CREATE TABLE IF NOT EXISTS key_store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS subject_keys (
    subject_id   TEXT PRIMARY KEY,
    kek_version  INTEGER,
    dek_version  INTEGER,
    wrapped_dek  BLOB,                 -- NULL once destroyed
    created_at   INTEGER NOT NULL,
    destroyed_at INTEGER,
    CHECK ((wrapped_dek IS NULL) = (destroyed_at IS NOT NULL))
) STRICT;
