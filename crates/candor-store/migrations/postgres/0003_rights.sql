-- Candor PostgreSQL schema, version 3: wrapped data keys move to their own schema, the key
-- store (back it up separately from the data: restoring an older copy of the data must not
-- bring back an erased customer's key), and the tables of customer rights. See the SQLite
-- migrations 0004 and keystore/0001 for the meaning of each column.

CREATE SCHEMA candor_keys;

CREATE TABLE candor_keys.subject_keys (
    subject_id   TEXT PRIMARY KEY,
    kek_version  INTEGER,
    dek_version  INTEGER,
    wrapped_dek  BYTEA,
    created_at   BIGINT NOT NULL,
    destroyed_at BIGINT,
    CHECK ((wrapped_dek IS NULL) = (destroyed_at IS NOT NULL))
);

INSERT INTO candor_keys.subject_keys (subject_id, kek_version, dek_version, wrapped_dek, created_at)
SELECT id, kek_version, dek_version, wrapped_dek, created_at FROM subjects;

ALTER TABLE subjects DROP COLUMN wrapped_dek, DROP COLUMN kek_version, DROP COLUMN dek_version;

CREATE TABLE legal_holds (
    subject_id TEXT PRIMARY KEY REFERENCES subjects(id) ON DELETE CASCADE,
    placed_at  BIGINT NOT NULL,
    note       BYTEA NOT NULL
);

CREATE TABLE restrictions (
    subject_id TEXT PRIMARY KEY REFERENCES subjects(id) ON DELETE CASCADE,
    since      BIGINT NOT NULL,
    note       BYTEA
);

CREATE TABLE erasures (
    subject_id  TEXT PRIMARY KEY,
    erased_at   BIGINT NOT NULL,
    certificate TEXT NOT NULL
);
