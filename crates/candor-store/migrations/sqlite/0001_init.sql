-- Candor SQLite schema, version 1.
-- Personal values are stored only as AEAD ciphertexts; lookups go through blind indexes.

CREATE TABLE subjects (
    id          TEXT PRIMARY KEY,          -- random UUID v4
    kek_version INTEGER NOT NULL,          -- KEK that wrapped the data key
    dek_version INTEGER NOT NULL,          -- generation of the data key
    wrapped_dek BLOB NOT NULL,             -- the subject's data key, wrapped
    created_at  INTEGER NOT NULL,          -- unix milliseconds
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE field_values (
    subject_id TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    field      TEXT NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (subject_id, field)
) STRICT, WITHOUT ROWID;

CREATE TABLE blind_index (
    field      TEXT NOT NULL,
    token      BLOB NOT NULL,
    subject_id TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    PRIMARY KEY (field, token, subject_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX blind_index_by_subject ON blind_index (subject_id, field);

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    subject_id  TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    event_type  TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    payload     BLOB NOT NULL
) STRICT;
CREATE INDEX events_by_subject ON events (subject_id, seq);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    hash        BLOB NOT NULL UNIQUE,      -- SHA-256 of the token; the token itself is never stored
    role        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
) STRICT;
