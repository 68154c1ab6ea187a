-- Candor SQLite schema, version 6: break-glass overrides. A token's holder unmasks one
-- customer's data for a short time, with a written reason sealed with the customer's data key
-- (so it is erased with them). Each override and each read under it is also in the log.

CREATE TABLE break_glass (
    id          TEXT PRIMARY KEY,
    subject_id  TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    token_id    TEXT NOT NULL,
    role        TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    reason      BLOB NOT NULL,
    opened_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX break_glass_by_token ON break_glass (token_id, subject_id, expires_at);
CREATE INDEX break_glass_by_subject ON break_glass (subject_id, opened_at);

-- Every version of the public privacy notice, as published (JSON), so the notice can show what
-- changed and when.
CREATE TABLE notice_versions (
    version      TEXT PRIMARY KEY,       -- sha256: of the notice's canonical JSON
    published_at INTEGER NOT NULL,
    notice       TEXT NOT NULL
) STRICT;
