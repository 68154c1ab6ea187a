-- Candor PostgreSQL schema, version 7: registered messages (see the SQLite migration 0008).

CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    subject_id    TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    purpose       TEXT NOT NULL,
    channel       TEXT NOT NULL,
    subject_line  BYTEA NOT NULL,
    body_sha256   BYTEA NOT NULL,
    code_hash     BYTEA NOT NULL UNIQUE,
    sent_at       BIGINT NOT NULL
);
CREATE INDEX messages_by_subject ON messages (subject_id, sent_at);
