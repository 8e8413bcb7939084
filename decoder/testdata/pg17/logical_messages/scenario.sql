-- Scenario logical_messages, recorded by internal/cmd/recordstream.
-- proto 4: pg_logical_emit_message, transactional and not (messages 'true'): outside a transaction, between inserts, alone in a transaction, in a rolled-back transaction, bytea content

-- Setup, before the slot exists (not in the stream).
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE PUBLICATION walex_rec FOR ALL TABLES;
SELECT pg_create_logical_replication_slot('walex_rec', 'pgoutput');

-- Recorded steps; sessions are separate connections that stay open.
-- A step without BEGIN/COMMIT runs in one implicit transaction.
-- After each step the recorder waits until the walsender has decoded it.

-- step 1, session 1
SELECT pg_logical_emit_message(false, 'walex-test', 'non-transactional, outside a transaction');

-- step 2, session 1
BEGIN; INSERT INTO t VALUES (1, 'one'); SELECT pg_logical_emit_message(true, 'walex-test', 'transactional, between inserts'); INSERT INTO t VALUES (2, 'two'); COMMIT;

-- step 3, session 1
BEGIN; SELECT pg_logical_emit_message(true, 'walex-test', 'transactional, alone'); COMMIT;

-- step 4, session 1
BEGIN; INSERT INTO t VALUES (3, 'rolled back'); SELECT pg_logical_emit_message(false, 'walex-test', 'non-transactional, in a rolled-back transaction'); SELECT pg_logical_emit_message(true, 'walex-test', 'transactional, rolled back'); ROLLBACK;

-- step 5, session 1
SELECT pg_logical_emit_message(true, 'walex-bin', '\x00015c'::bytea);

-- Read while the steps run, with:
--   START_REPLICATION SLOT walex_rec LOGICAL 0/0 (proto_version '4', publication_names 'walex_rec', messages 'true')
