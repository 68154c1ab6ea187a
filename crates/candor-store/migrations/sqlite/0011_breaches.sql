-- Candor SQLite schema, version 11: breach records (GDPR Art. 33/34). Each record keeps what
-- the authority must be told, its 72-hour clock and status, and which customers it affects (so
-- their privacy center shows the notice). No personal value: the texts describe the incident.

CREATE TABLE breaches (
    id                  TEXT PRIMARY KEY,
    detected_at         INTEGER NOT NULL,
    recorded_at         INTEGER NOT NULL,
    nature              TEXT NOT NULL,
    categories          TEXT NOT NULL,       -- data categories, comma-separated
    customers           INTEGER NOT NULL,
    consequences        TEXT NOT NULL,
    measures            TEXT NOT NULL,
    authority_notified_at INTEGER,
    closed_at           INTEGER
) STRICT;

CREATE TABLE breach_subjects (
    breach_id   TEXT NOT NULL REFERENCES breaches(id) ON DELETE CASCADE,
    subject_id  TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    PRIMARY KEY (breach_id, subject_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX breach_subjects_by_subject ON breach_subjects (subject_id);
