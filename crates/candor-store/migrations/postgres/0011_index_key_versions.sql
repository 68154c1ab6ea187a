-- Which blind-index key made each index row, so the index key can be rotated: new rows are
-- made under the newest key, lookups try every key held, `candor keys reindex` recomputes old
-- rows. 0 = made before versions were recorded (by whichever key was newest then).
ALTER TABLE blind_index ADD COLUMN key_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX blind_index_by_key_version ON blind_index (key_version, subject_id, field);
