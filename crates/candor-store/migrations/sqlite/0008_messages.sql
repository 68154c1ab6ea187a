-- Candor SQLite schema, version 8: messages the company registered as sent to a customer, so the
-- customer can check a message is genuine. The subject line is sealed with the customer's data
-- key; the verification code is stored as its SHA-256 only.

CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    subject_id    TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    purpose       TEXT NOT NULL,
    channel       TEXT NOT NULL,
    subject_line  BLOB NOT NULL,
    body_sha256   BLOB NOT NULL,
    code_hash     BLOB NOT NULL UNIQUE,
    sent_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_by_subject ON messages (subject_id, sent_at);
