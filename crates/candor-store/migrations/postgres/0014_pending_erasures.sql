-- Erasures under way (see the SQLite migration 0015). On PostgreSQL an erasure is one
-- transaction, so a row is only ever left behind by a step run on its own.
CREATE TABLE pending_erasures (
    subject_id     TEXT PRIMARY KEY,
    requested_at   BIGINT NOT NULL,
    certificate_id TEXT NOT NULL,
    token_id       TEXT NOT NULL,
    role           TEXT NOT NULL,
    purpose        TEXT NOT NULL
);
