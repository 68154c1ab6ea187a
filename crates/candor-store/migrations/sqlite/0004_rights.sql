-- Candor SQLite schema, version 4: wrapped data keys leave this file for the key store
-- (keys/keystore.db, attached as `keys`; copied there before this migration runs), and the
-- tables of customer rights: legal holds, restrictions, erasure certificates.

ALTER TABLE subjects DROP COLUMN wrapped_dek;
ALTER TABLE subjects DROP COLUMN kek_version;
ALTER TABLE subjects DROP COLUMN dek_version;

-- A legal hold blocks erasure. The reason is sealed with the customer's data key.
CREATE TABLE legal_holds (
    subject_id TEXT PRIMARY KEY REFERENCES subjects(id) ON DELETE CASCADE,
    placed_at  INTEGER NOT NULL,
    note       BLOB NOT NULL
) STRICT;

-- A restricted customer's data is kept but not used (GDPR Art. 18).
CREATE TABLE restrictions (
    subject_id TEXT PRIMARY KEY REFERENCES subjects(id) ON DELETE CASCADE,
    since      INTEGER NOT NULL,
    note       BLOB
) STRICT;

-- Signed erasure certificates (ids, times, names and counts only), so that repeating an
-- erasure returns the same certificate.
CREATE TABLE erasures (
    subject_id  TEXT PRIMARY KEY,
    erased_at   INTEGER NOT NULL,
    certificate TEXT NOT NULL
) STRICT;
