-- Scenario toast_unchanged, recorded by internal/cmd/recordstream.
-- proto 4: updates that leave an out-of-line TOASTed column unchanged ('u'), under DEFAULT and FULL identity, and an update of the TOASTed column itself

-- Setup, before the slot exists (not in the stream).
CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE docs_full (id int PRIMARY KEY, title text, body text);
ALTER TABLE docs_full ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE docs_full REPLICA IDENTITY FULL;
CREATE PUBLICATION walex_rec FOR ALL TABLES;
SELECT pg_create_logical_replication_slot('walex_rec', 'pgoutput');

-- Recorded steps; sessions are separate connections that stay open.
-- A step without BEGIN/COMMIT runs in one implicit transaction.
-- After each step the recorder waits until the walsender has decoded it.

-- step 1, session 1
INSERT INTO docs VALUES (1, 't1', repeat('abcdefghij', 300)), (2, 'short', 'tiny');

-- step 2, session 1
INSERT INTO docs_full VALUES (1, 't1', repeat('0123456789', 300));

-- step 3, session 1
UPDATE docs SET title = 't1 edited' WHERE id = 1;

-- step 4, session 1
UPDATE docs SET title = 'short edited' WHERE id = 2;

-- step 5, session 1
UPDATE docs_full SET title = 't1 edited' WHERE id = 1;

-- step 6, session 1
UPDATE docs SET body = repeat('z', 2500) WHERE id = 1;

-- step 7, session 1
UPDATE docs SET id = 10 WHERE id = 1;

-- step 8, session 1
DELETE FROM docs_full WHERE id = 1;

-- Read while the steps run, with:
--   START_REPLICATION SLOT walex_rec LOGICAL 0/0 (proto_version '4', publication_names 'walex_rec')
