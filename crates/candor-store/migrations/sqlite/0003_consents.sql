-- Candor SQLite schema, version 3: the consent ledger.
-- Append-only: a grant or withdrawal is a new row; the current state is derived from the rows.
-- No personal values: ids, purpose and channel names, notice versions, times. The staff reason
-- and evidence reference of a change are sealed with the customer's data key (`note`).

CREATE TABLE consent_receipts (
    id          TEXT PRIMARY KEY,             -- random UUID v4, the receipt id
    subject_id  TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    recorded_at INTEGER NOT NULL,
    body        TEXT NOT NULL,                -- the signed receipt (JSON)
    note        BLOB                          -- reason and evidence, AEAD-sealed
) STRICT;
CREATE INDEX consent_receipts_by_subject ON consent_receipts (subject_id);

CREATE TABLE consents (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id     TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    purpose        TEXT NOT NULL,
    channel        TEXT NOT NULL,             -- '' for a purpose without channels
    action         TEXT NOT NULL CHECK (action IN ('grant', 'withdraw')),
    notice_version TEXT NOT NULL,             -- sha256:<hex> of the purpose's notice text
    method         TEXT NOT NULL,
    actor_kind     TEXT NOT NULL,
    actor_token    TEXT,                      -- id of the token that transmitted it, if any
    given_at       INTEGER NOT NULL,          -- when the customer chose (imports: original time)
    recorded_at    INTEGER NOT NULL,
    receipt_id     TEXT NOT NULL REFERENCES consent_receipts(id) ON DELETE CASCADE
) STRICT;
CREATE INDEX consents_by_subject ON consents (subject_id, seq);
-- The audience of a slot, in subject order, each subject's entries in the order that decides.
CREATE INDEX consents_by_slot ON consents (purpose, channel, subject_id, given_at, seq);

-- The ledger is append-only.
CREATE TRIGGER consents_append_only BEFORE UPDATE ON consents
BEGIN
    SELECT RAISE(ABORT, 'the consent ledger is append-only');
END;
CREATE TRIGGER consent_receipts_append_only BEFORE UPDATE ON consent_receipts
BEGIN
    SELECT RAISE(ABORT, 'consent receipts are never changed');
END;

-- Every notice text a consent was recorded against, by version.
CREATE TABLE consent_notices (
    version    TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    text       TEXT NOT NULL,
    first_seen INTEGER NOT NULL
) STRICT;
