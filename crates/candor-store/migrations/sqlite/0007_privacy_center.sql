-- Candor SQLite schema, version 7: signing in to the privacy center. The operator's backend asks
-- for a one-time sign-in link for a customer; using it starts a session. Only SHA-256 hashes of
-- the link and session secrets are stored; both go with the customer when they are erased.

CREATE TABLE privacy_links (
    hash        BLOB PRIMARY KEY,        -- SHA-256 of the link's secret
    subject_id  TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
) STRICT;
CREATE INDEX privacy_links_by_expiry ON privacy_links (expires_at);
CREATE INDEX privacy_links_by_subject ON privacy_links (subject_id);

CREATE TABLE privacy_sessions (
    id            TEXT PRIMARY KEY,      -- named in the log as the session's actor
    hash          BLOB NOT NULL UNIQUE,  -- SHA-256 of the cookie's secret
    subject_id    TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL   -- signing out deletes the row
) STRICT;
CREATE INDEX privacy_sessions_by_last_seen ON privacy_sessions (last_seen_at);
CREATE INDEX privacy_sessions_by_subject ON privacy_sessions (subject_id);
