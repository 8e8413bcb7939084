-- Scenario stream_abort, recorded by internal/cmd/recordstream.
-- proto 4 (streaming 'parallel') streamed transaction (1,000 inserts) rolled back, with a small transaction of another session committed meanwhile and one after

-- Setup, before the slot exists (not in the stream).
CREATE TABLE big (id int PRIMARY KEY, payload text, n int);
CREATE TABLE side (id int PRIMARY KEY, note text);
CREATE PUBLICATION walex_rec FOR ALL TABLES;
SELECT pg_create_logical_replication_slot('walex_rec', 'pgoutput');

-- Recorded steps; sessions are separate connections that stay open.
-- A step without BEGIN/COMMIT runs in one implicit transaction.
-- After each step the recorder waits until the walsender has decoded it.

-- step 1, session 1
BEGIN;

-- step 2, session 1
INSERT INTO big SELECT i, 'row ' || i, i FROM generate_series(1, 1000) i;

-- step 3, session 2
INSERT INTO side VALUES (1, 'committed while big streams');

-- step 4, session 1
ROLLBACK;

-- step 5, session 1
INSERT INTO big VALUES (1, 'kept', 1);

-- Read while the steps run, with:
--   SET logical_decoding_work_mem = '64kB' (startup parameter of the replication connection)
--   START_REPLICATION SLOT walex_rec LOGICAL 0/0 (proto_version '4', publication_names 'walex_rec', messages 'true', streaming 'parallel')
