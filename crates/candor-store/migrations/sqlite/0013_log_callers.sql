-- The network address a staff or recipient request came from, per log entry it caused: kept
-- beside the log (not in its entries, which customers see and which can never be changed) so
-- it can be pruned after `[log] caller_address_days` and answered by `breach assess --ip-range`.
-- Customers' own privacy-center visits are never recorded here.
CREATE TABLE log_callers (
    idx         INTEGER PRIMARY KEY,
    address     TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
) STRICT;
CREATE INDEX log_callers_by_time ON log_callers (recorded_at);
