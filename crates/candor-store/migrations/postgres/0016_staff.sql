-- Candor PostgreSQL schema, version 16: staff signed in through the company's OpenID Connect
-- provider (see the SQLite migration 0017).

CREATE TABLE staff_people (
    pseudonym      TEXT PRIMARY KEY,
    issuer         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    first_seen_at  BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    last_role      TEXT NOT NULL
);

CREATE TABLE staff_sessions (
    id            TEXT PRIMARY KEY,
    hash          BYTEA NOT NULL UNIQUE,
    pseudonym     TEXT NOT NULL REFERENCES staff_people(pseudonym),
    role          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
CREATE INDEX staff_sessions_by_last_seen ON staff_sessions (last_seen_at);
