-- Candor PostgreSQL schema, version 5: break-glass overrides (see the SQLite migration 0006).

CREATE TABLE break_glass (
    id          TEXT PRIMARY KEY,
    subject_id  TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    token_id    TEXT NOT NULL,
    role        TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    reason      BYTEA NOT NULL,
    opened_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX break_glass_by_token ON break_glass (token_id, subject_id, expires_at);
CREATE INDEX break_glass_by_subject ON break_glass (subject_id, opened_at);

-- Every version of the public privacy notice, as published (JSON).
CREATE TABLE notice_versions (
    version      TEXT PRIMARY KEY,
    published_at BIGINT NOT NULL,
    notice       TEXT NOT NULL
);
