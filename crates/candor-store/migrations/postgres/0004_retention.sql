-- Candor PostgreSQL schema, version 4 (see the SQLite migration 0005).

CREATE INDEX events_by_type_and_time ON events (event_type, recorded_at);
CREATE INDEX field_values_by_field_and_time ON field_values (field, updated_at);

CREATE TABLE requests (
    id          TEXT PRIMARY KEY,
    subject_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    due_at      BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    closed_at   BIGINT,
    closed_by   TEXT
);
CREATE INDEX requests_by_status ON requests (status, due_at);
