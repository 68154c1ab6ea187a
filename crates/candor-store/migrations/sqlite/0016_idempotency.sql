-- Writes sent with an `Idempotency-Key` header. The row is written in the same transaction as
-- the change and its log entry, so a retry with the same key finds it exactly when the first
-- request was applied, and answers with the first outcome instead of applying it again.
-- Kept for a day (the retention sweep deletes older rows).
CREATE TABLE idempotency_keys (
    key         BLOB PRIMARY KEY,   -- SHA-256 of the caller's token id and the key it sent
    request     BLOB NOT NULL,      -- SHA-256 of method, path, purpose and body
    outcome     BLOB NOT NULL,      -- JSON of the ids the first answer named; never a value
    created_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- One row, rewritten by the readiness check while storage is full, to see whether writes
-- succeed again.
CREATE TABLE write_probe (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  INTEGER NOT NULL
) STRICT;
