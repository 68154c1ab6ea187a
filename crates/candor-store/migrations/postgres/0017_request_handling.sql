-- Candor PostgreSQL schema, version 17: handling a customer request (see the SQLite migration
-- 0018).

ALTER TABLE requests ADD COLUMN assignee TEXT;
ALTER TABLE requests ADD COLUMN waiting_since BIGINT;
ALTER TABLE requests ADD COLUMN paused_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN reason TEXT;
CREATE INDEX requests_by_subject ON requests (subject_id, received_at);
