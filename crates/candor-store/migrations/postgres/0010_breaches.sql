-- Candor PostgreSQL schema, version 10: breach records (see the SQLite migration 0011).

CREATE TABLE breaches (
    id                  TEXT PRIMARY KEY,
    detected_at         BIGINT NOT NULL,
    recorded_at         BIGINT NOT NULL,
    nature              TEXT NOT NULL,
    categories          TEXT NOT NULL,
    customers           BIGINT NOT NULL,
    consequences        TEXT NOT NULL,
    measures            TEXT NOT NULL,
    authority_notified_at BIGINT,
    closed_at           BIGINT
);

CREATE TABLE breach_subjects (
    breach_id   TEXT NOT NULL REFERENCES breaches(id) ON DELETE CASCADE,
    subject_id  TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    PRIMARY KEY (breach_id, subject_id)
);
CREATE INDEX breach_subjects_by_subject ON breach_subjects (subject_id);
