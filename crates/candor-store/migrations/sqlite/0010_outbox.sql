-- Candor SQLite schema, version 10: the transactional outbox of notices to recipients (GDPR
-- Art. 19). When a customer is erased, corrected or restricted, one notice per recipient that
-- was given their data in a grant is written in the same transaction as the change, then sent
-- as a signed webhook until delivered. The notice id is the idempotency key. Notices hold ids
-- and field names only, and outlive the customer's erasure (as the log does).

CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    recipient        TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    kind             TEXT NOT NULL,          -- erasure | correction | restriction
    fields           TEXT NOT NULL,          -- field names, comma-separated (corrections)
    created_at       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    delivered_at     INTEGER,
    confirmed_at     INTEGER,
    last_error       TEXT
) STRICT;
CREATE INDEX outbox_due ON outbox (delivered_at, next_attempt_at);
