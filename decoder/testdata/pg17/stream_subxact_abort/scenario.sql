-- Scenario stream_subxact_abort, recorded by internal/cmd/recordstream.
-- proto 4 (streaming 'parallel') streamed transaction whose first changes (800 rows, streamed) are in a savepoint that is rolled back; then 600 rows at top level, a released savepoint (10 rows) and a rolled-back one (5 rows); a non-streamed change after

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
SAVEPOINT a;

-- step 3, session 1
INSERT INTO big SELECT i, 'row ' || i, i FROM generate_series(1, 800) i;

-- step 4, session 1
ROLLBACK TO SAVEPOINT a;

-- step 5, session 1
INSERT INTO big SELECT i, 'row ' || i, i FROM generate_series(1001, 1600) i;

-- step 6, session 1
SAVEPOINT b;

-- step 7, session 1
INSERT INTO big SELECT i, 'row ' || i, i FROM generate_series(2001, 2010) i;

-- step 8, session 1
RELEASE SAVEPOINT b;

-- step 9, session 1
SAVEPOINT c;

-- step 10, session 1
INSERT INTO big SELECT i, 'row ' || i, i FROM generate_series(3001, 3005) i;

-- step 11, session 1
ROLLBACK TO SAVEPOINT c;

-- step 12, session 1
COMMIT;

-- step 13, session 2
INSERT INTO big VALUES (9999, 'after', 0);

-- Read while the steps run, with:
--   SET logical_decoding_work_mem = '64kB' (startup parameter of the replication connection)
--   START_REPLICATION SLOT walex_rec LOGICAL 0/0 (proto_version '4', publication_names 'walex_rec', messages 'true', streaming 'parallel')
