-- What an erasure must not take with it.
--
-- A registered message stays recognisable as genuine after its customer's erasure: the hash of
-- its code (a random code, not personal), how it was sent and when: what the public check
-- answers. Nothing about whom it was sent to: no customer id, no message id (the log links
-- those to the customer), no purpose, no subject line, no body hash.
CREATE TABLE erased_messages (
    code_hash  BLOB PRIMARY KEY,
    channel    TEXT NOT NULL,
    sent_at    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Counters that only go up, kept apart from the rows an erasure deletes (for `_total` metrics).
CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Break-glass overrides ever opened, from the log (rows of erased customers are gone).
INSERT INTO counters (name, value)
SELECT 'break_glass_opened', COUNT(*) FROM log_entries
WHERE CAST(entry AS TEXT) LIKE '%"action":"break_glass.open"%'
  AND CAST(entry AS TEXT) LIKE '%"decision":"break_glass"%'
HAVING COUNT(*) > 0;
