-- Candor PostgreSQL schema, version 9: the outbox of notices to recipients (see the SQLite
-- migration 0010).

CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    recipient        TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    kind             TEXT NOT NULL,
    fields           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    delivered_at     BIGINT,
    confirmed_at     BIGINT,
    last_error       TEXT
);
CREATE INDEX outbox_due ON outbox (delivered_at, next_attempt_at);
