-- Candor SQLite schema, version 20: every customer gets an internal number, in order of creation,
-- and their values and blind-index rows are keyed by it instead of by their random public id.
-- A new customer's rows then land at the end of those tables' B-trees instead of on a random
-- page each: an import of 100,000 customers rewrote every page of field_values and of two of
-- blind_index's indexes once per batch. The number never leaves the database (the API, the
-- log and the key store name customers by their random id); it is an INTEGER PRIMARY KEY, so
-- VACUUM and backups keep it.
--
-- Run with foreign keys off (the migration step in sqlite/mod.rs turns them off around this
-- transaction and checks every reference before it commits): the tables that name a customer
-- by id keep referencing subjects(id), now a UNIQUE column of the rebuilt table.

CREATE TABLE subjects_numbered (
    no         INTEGER PRIMARY KEY,       -- internal number, in order of creation
    id         TEXT NOT NULL UNIQUE,      -- random UUID v4: the customer's public id
    created_at INTEGER NOT NULL,          -- unix milliseconds
    updated_at INTEGER NOT NULL
) STRICT;
INSERT INTO subjects_numbered (no, id, created_at, updated_at)
    SELECT rowid, id, created_at, updated_at FROM subjects ORDER BY rowid;
DROP TABLE subjects;
ALTER TABLE subjects_numbered RENAME TO subjects;

CREATE TABLE field_values_numbered (
    subject_no INTEGER NOT NULL REFERENCES subjects(no) ON DELETE CASCADE,
    field      TEXT NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (subject_no, field)
) STRICT, WITHOUT ROWID;
INSERT INTO field_values_numbered (subject_no, field, ciphertext, updated_at)
    SELECT s.no, v.field, v.ciphertext, v.updated_at
    FROM field_values v JOIN subjects s ON s.id = v.subject_id
    ORDER BY s.no, v.field;
DROP TABLE field_values;
ALTER TABLE field_values_numbered RENAME TO field_values;
CREATE INDEX field_values_by_field_and_time ON field_values (field, updated_at);

CREATE TABLE blind_index_numbered (
    field       TEXT NOT NULL,
    token       BLOB NOT NULL,
    subject_no  INTEGER NOT NULL REFERENCES subjects(no) ON DELETE CASCADE,
    key_version INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (field, token, subject_no)
) STRICT, WITHOUT ROWID;
INSERT INTO blind_index_numbered (field, token, subject_no, key_version)
    SELECT b.field, b.token, s.no, b.key_version
    FROM blind_index b JOIN subjects s ON s.id = b.subject_id;
DROP TABLE blind_index;
ALTER TABLE blind_index_numbered RENAME TO blind_index;
CREATE INDEX blind_index_by_subject ON blind_index (subject_no, field);
CREATE INDEX blind_index_by_key_version ON blind_index (key_version, subject_no, field);
