-- Candor PostgreSQL schema, version 8: grants (see the SQLite migration 0009).

CREATE TABLE grants (
    id               TEXT PRIMARY KEY,
    recipient        TEXT NOT NULL,
    purpose          TEXT NOT NULL,
    fields           TEXT NOT NULL,
    credential_hash  BYTEA NOT NULL UNIQUE,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    max_reads        BIGINT,
    reads            BIGINT NOT NULL DEFAULT 0,
    revoked_at       BIGINT
);

CREATE TABLE grant_subjects (
    grant_id    TEXT NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
    subject_id  TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    PRIMARY KEY (grant_id, subject_id)
);
CREATE INDEX grant_subjects_by_subject ON grant_subjects (subject_id);
