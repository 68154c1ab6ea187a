-- What an erasure must not take with it (see the SQLite migration 0014).

CREATE TABLE erased_messages (
    code_hash  BYTEA PRIMARY KEY,
    channel    TEXT NOT NULL,
    sent_at    BIGINT NOT NULL
);

CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);

INSERT INTO counters (name, value)
SELECT 'break_glass_opened', COUNT(*) FROM log_entries
WHERE position(convert_to('"action":"break_glass.open"', 'UTF8') in entry) > 0
  AND position(convert_to('"decision":"break_glass"', 'UTF8') in entry) > 0
HAVING COUNT(*) > 0;
