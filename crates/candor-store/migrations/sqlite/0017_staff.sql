-- Candor SQLite schema, version 17: staff signed in through the company's OpenID Connect
-- provider. `staff_people` lets `candor staff whois` resolve the pseudonym the log names to the
-- identity provider's issuer and subject (never a name or e-mail address); `staff_sessions`
-- holds SHA-256 hashes of session secrets.

CREATE TABLE staff_people (
    pseudonym      TEXT PRIMARY KEY,     -- keyed hash of issuer + subject, named in the log
    issuer         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    first_seen_at  INTEGER NOT NULL,
    last_seen_at   INTEGER NOT NULL,
    last_role      TEXT NOT NULL
) STRICT;

CREATE TABLE staff_sessions (
    id            TEXT PRIMARY KEY,      -- public id
    hash          BLOB NOT NULL UNIQUE,  -- SHA-256 of the cookie's secret
    pseudonym     TEXT NOT NULL REFERENCES staff_people(pseudonym),
    role          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL       -- signing out deletes the row
) STRICT;
CREATE INDEX staff_sessions_by_last_seen ON staff_sessions (last_seen_at);
