-- Scenario identity_nothing, recorded by internal/cmd/recordstream.
-- proto 4: REPLICA IDENTITY NOTHING with a publication of inserts and truncates only: updates and deletes run but are not published; while another publication publishing updates includes the table, an UPDATE fails on the server

-- Setup, before the slot exists (not in the stream).
CREATE TABLE notes (id int, body text);
ALTER TABLE notes REPLICA IDENTITY NOTHING;
CREATE PUBLICATION walex_rec FOR TABLE notes WITH (publish = 'insert, truncate');
SELECT pg_create_logical_replication_slot('walex_rec', 'pgoutput');

-- Recorded steps; sessions are separate connections that stay open.
-- A step without BEGIN/COMMIT runs in one implicit transaction.
-- After each step the recorder waits until the walsender has decoded it.

-- step 1, session 1
INSERT INTO notes VALUES (1, 'one'), (2, 'two');

-- step 2, session 1
UPDATE notes SET body = 'uno' WHERE id = 1;

-- step 3, session 1
DELETE FROM notes WHERE id = 2;

-- step 4, session 1
CREATE PUBLICATION walex_rec_updates FOR TABLE notes;

-- step 5, session 1, fails with: ...because it does not have a replica identity and publishes updates...
UPDATE notes SET body = 'fails' WHERE id = 1;

-- step 6, session 1
DROP PUBLICATION walex_rec_updates;

-- step 7, session 1
INSERT INTO notes VALUES (3, 'three');

-- step 8, session 1
TRUNCATE notes;

-- Read while the steps run, with:
--   START_REPLICATION SLOT walex_rec LOGICAL 0/0 (proto_version '4', publication_names 'walex_rec')
