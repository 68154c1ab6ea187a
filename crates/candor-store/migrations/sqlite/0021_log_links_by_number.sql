-- Candor SQLite schema, version 21: the log's links to the customers its entries name are keyed
-- by the customer's internal number (subjects.no, version 20) while the customer exists, instead
-- of by their random public id. A new customer's links then land at the end of the B-tree
-- instead of on a random page: with a million customers an import batch of 4,096 rewrote about
-- 4,096 pages of log_subjects, one per new customer.
--
-- log_subjects keeps the links of ids that are not customers of this database: entries naming an
-- id that never existed (a refused or failed request), and the links of erased customers, which
-- the trigger below moves there, by id, before a customer's row is deleted — so a customer's
-- internal number, which SQLite may give again after the highest one is deleted, never names
-- someone else's entries. A customer's access log is the union of both. (A later migration that
-- rebuilds subjects must create the trigger again: dropping a table drops its triggers. The test
-- log_links_of_customers_are_keyed_by_number_and_outlive_an_erasure_by_id fails without it.)

CREATE TABLE log_customer_links (
    subject_no INTEGER NOT NULL REFERENCES subjects(no),
    idx        INTEGER NOT NULL,
    PRIMARY KEY (subject_no, idx)
) STRICT, WITHOUT ROWID;

INSERT INTO log_customer_links (subject_no, idx)
    SELECT s.no, l.idx FROM log_subjects l JOIN subjects s ON s.id = l.subject_id
    ORDER BY s.no, l.idx;
DELETE FROM log_subjects WHERE subject_id IN (SELECT id FROM subjects);

CREATE TRIGGER log_links_outlive_the_customer BEFORE DELETE ON subjects
BEGIN
    INSERT OR IGNORE INTO log_subjects (subject_id, idx)
        SELECT OLD.id, idx FROM log_customer_links WHERE subject_no = OLD.no;
    DELETE FROM log_customer_links WHERE subject_no = OLD.no;
END;
