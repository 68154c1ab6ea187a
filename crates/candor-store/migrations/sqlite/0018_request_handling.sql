-- Candor SQLite schema, version 18: handling a customer request. Who on the privacy team has it
-- (a staff pseudonym or a token id), whether its clock is paused while the customer proves who
-- they are (GDPR Art. 12(6): the month runs from when the controller can act), how long it was
-- paused in all (the deadline moved by as much), and the reason a refusal gave (a code from a
-- fixed list, never free text: the customer reads it, and it must hold no personal value).

ALTER TABLE requests ADD COLUMN assignee TEXT;
ALTER TABLE requests ADD COLUMN waiting_since INTEGER;
ALTER TABLE requests ADD COLUMN paused_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN reason TEXT;
CREATE INDEX requests_by_subject ON requests (subject_id, received_at);
