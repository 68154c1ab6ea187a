-- Erasures under way: the intent to erase, recorded (and committed) in the data store before the
-- customer's key is destroyed in the key store, and deleted in the transaction that deletes
-- their data. After a crash between the two, the row says an erasure must be completed and
-- holds what its certificate and log entry need: ids, names and a time, never a value.
CREATE TABLE pending_erasures (
    subject_id     TEXT PRIMARY KEY,
    requested_at   INTEGER NOT NULL,
    certificate_id TEXT NOT NULL,
    token_id       TEXT NOT NULL,
    role           TEXT NOT NULL,
    purpose        TEXT NOT NULL
) STRICT, WITHOUT ROWID;
