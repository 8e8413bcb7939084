-- Scenario alter_table, recorded by internal/cmd/recordstream.
-- proto 4: ALTER TABLE between inserts (add column with default, drop column, type change, rename), also inside one transaction: Relation messages are re-sent

-- Setup, before the slot exists (not in the stream).
CREATE TABLE evolving (id int PRIMARY KEY, a text, b int);
CREATE PUBLICATION walex_rec FOR ALL TABLES;
SELECT pg_create_logical_replication_slot('walex_rec', 'pgoutput');

-- Recorded steps; sessions are separate connections that stay open.
-- A step without BEGIN/COMMIT runs in one implicit transaction.
-- After each step the recorder waits until the walsender has decoded it.

-- step 1, session 1
INSERT INTO evolving VALUES (1, 'x', 1);

-- step 2, session 1
ALTER TABLE evolving ADD COLUMN c text DEFAULT 'dflt';

-- step 3, session 1
INSERT INTO evolving (id, a, b) VALUES (2, 'y', 2);

-- step 4, session 1
UPDATE evolving SET b = 11 WHERE id = 1;

-- step 5, session 1
ALTER TABLE evolving DROP COLUMN a;

-- step 6, session 1
INSERT INTO evolving (id, b, c) VALUES (3, 3, 'z');

-- step 7, session 1
ALTER TABLE evolving ALTER COLUMN b TYPE bigint;

-- step 8, session 1
INSERT INTO evolving (id, b) VALUES (4, 9000000000);

-- step 9, session 1
ALTER TABLE evolving ALTER COLUMN b TYPE text USING b::text;

-- step 10, session 1
INSERT INTO evolving (id, b) VALUES (5, 'five');

-- step 11, session 1
BEGIN; INSERT INTO evolving (id, b) VALUES (6, 'six'); ALTER TABLE evolving ADD COLUMN d jsonb; INSERT INTO evolving (id, b, d) VALUES (7, 'seven', '{"seven": 7}'); ALTER TABLE evolving RENAME COLUMN c TO c2; UPDATE evolving SET c2 = 'renamed' WHERE id = 6; COMMIT;

-- Read while the steps run, with:
--   START_REPLICATION SLOT walex_rec LOGICAL 0/0 (proto_version '4', publication_names 'walex_rec')
