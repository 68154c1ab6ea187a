-- Candor SQLite schema, version 5: finding expired events without a full scan, and customer
-- requests (access, export, correction, erasure, restriction, objection) with their deadline.

CREATE INDEX events_by_type_and_time ON events (event_type, recorded_at);
CREATE INDEX field_values_by_field_and_time ON field_values (field, updated_at);

CREATE TABLE requests (
    id          TEXT PRIMARY KEY,
    subject_id  TEXT NOT NULL,           -- kept after an erasure: the request itself is the record
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    due_at      INTEGER NOT NULL,
    created_by  TEXT NOT NULL,           -- token id
    closed_at   INTEGER,
    closed_by   TEXT
) STRICT;
CREATE INDEX requests_by_status ON requests (status, due_at);
