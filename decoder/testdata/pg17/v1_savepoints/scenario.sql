-- Scenario v1_savepoints, recorded by internal/cmd/recordstream.
-- proto 1 transactions with released and rolled-back (nested) savepoints, including one whose first change to a table is rolled back

-- Setup, before the slot exists (not in the stream).
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE TABLE u (id int PRIMARY KEY, v text);
CREATE PUBLICATION walex_rec FOR ALL TABLES;
SELECT pg_create_logical_replication_slot('walex_rec', 'pgoutput');

-- Recorded steps; sessions are separate connections that stay open.
-- A step without BEGIN/COMMIT runs in one implicit transaction.
-- After each step the recorder waits until the walsender has decoded it.

-- step 1, session 1
BEGIN; INSERT INTO t VALUES (1, 'kept');
SAVEPOINT a; INSERT INTO t VALUES (2, 'rolled back'); ROLLBACK TO SAVEPOINT a;
INSERT INTO t VALUES (3, 'kept');
SAVEPOINT b; INSERT INTO t VALUES (4, 'released'); RELEASE SAVEPOINT b;
SAVEPOINT c; INSERT INTO t VALUES (5, 'kept in c'); SAVEPOINT d; INSERT INTO t VALUES (6, 'rolled back in d'); UPDATE t SET v = 'rolled back update' WHERE id = 1; ROLLBACK TO SAVEPOINT d; RELEASE SAVEPOINT c;
COMMIT;

-- step 2, session 1
BEGIN; SAVEPOINT a; INSERT INTO u VALUES (1, 'rolled back'); ROLLBACK TO SAVEPOINT a; INSERT INTO u VALUES (2, 'kept'); COMMIT;

-- step 3, session 1
BEGIN; SAVEPOINT a; INSERT INTO u SELECT i, 'rolled back' FROM generate_series(100, 199) i; ROLLBACK TO SAVEPOINT a; INSERT INTO u SELECT i, 'kept' FROM generate_series(200, 219) i; COMMIT;

-- step 4, session 1
BEGIN; SAVEPOINT a; DELETE FROM t; ROLLBACK TO SAVEPOINT a; COMMIT;

-- Read while the steps run, with:
--   START_REPLICATION SLOT walex_rec LOGICAL 0/0 (proto_version '1', publication_names 'walex_rec')
