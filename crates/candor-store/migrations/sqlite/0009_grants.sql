-- Candor SQLite schema, version 9: grants (data rooms). A grant lets one recipient read named
-- fields of a set of customers under one purpose, until it expires, is revoked or its reads run
-- out. The recipient's credential is stored as its SHA-256 only. A customer leaves every grant
-- when they are erased (cascade).

CREATE TABLE grants (
    id               TEXT PRIMARY KEY,
    recipient        TEXT NOT NULL,
    purpose          TEXT NOT NULL,
    fields           TEXT NOT NULL,          -- field names, comma-separated
    credential_hash  BLOB NOT NULL UNIQUE,
    created_by       TEXT NOT NULL,          -- token id
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    max_reads        INTEGER,
    reads            INTEGER NOT NULL DEFAULT 0,
    revoked_at       INTEGER
) STRICT;

CREATE TABLE grant_subjects (
    grant_id    TEXT NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
    subject_id  TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    PRIMARY KEY (grant_id, subject_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX grant_subjects_by_subject ON grant_subjects (subject_id);
