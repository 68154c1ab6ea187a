-- Candor PostgreSQL schema, version 6: signing in to the privacy center (see the SQLite
-- migration 0007).

CREATE TABLE privacy_links (
    hash        BYTEA PRIMARY KEY,
    subject_id  TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX privacy_links_by_expiry ON privacy_links (expires_at);
CREATE INDEX privacy_links_by_subject ON privacy_links (subject_id);

CREATE TABLE privacy_sessions (
    id            TEXT PRIMARY KEY,
    hash          BYTEA NOT NULL UNIQUE,
    subject_id    TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
CREATE INDEX privacy_sessions_by_last_seen ON privacy_sessions (last_seen_at);
CREATE INDEX privacy_sessions_by_subject ON privacy_sessions (subject_id);
