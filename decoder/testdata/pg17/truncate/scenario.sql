-- Scenario truncate, recorded by internal/cmd/recordstream.
-- proto 4: TRUNCATE of several tables in one statement with RESTART IDENTITY CASCADE (cascading to a referencing table), a plain one, and one inside a transaction between inserts

-- Setup, before the slot exists (not in the stream).
CREATE TABLE parents (id serial PRIMARY KEY, name text);
CREATE TABLE children (id serial PRIMARY KEY, parent_id int REFERENCES parents (id), name text);
CREATE TABLE logs (id bigserial PRIMARY KEY, line text);
CREATE PUBLICATION walex_rec FOR ALL TABLES;
SELECT pg_create_logical_replication_slot('walex_rec', 'pgoutput');

-- Recorded steps; sessions are separate connections that stay open.
-- A step without BEGIN/COMMIT runs in one implicit transaction.
-- After each step the recorder waits until the walsender has decoded it.

-- step 1, session 1
INSERT INTO parents (name) VALUES ('p1'), ('p2'); INSERT INTO children (parent_id, name) VALUES (1, 'c1'), (2, 'c2'); INSERT INTO logs (line) VALUES ('l1');

-- step 2, session 1
TRUNCATE parents, logs RESTART IDENTITY CASCADE;

-- step 3, session 1
INSERT INTO parents (name) VALUES ('p3'); INSERT INTO logs (line) VALUES ('l2');

-- step 4, session 1
TRUNCATE logs;

-- step 5, session 1
TRUNCATE children, logs CONTINUE IDENTITY RESTRICT;

-- step 6, session 1
BEGIN; INSERT INTO logs (line) VALUES ('l3'); TRUNCATE children RESTART IDENTITY; INSERT INTO children (parent_id, name) VALUES (1, 'c3'); COMMIT;

-- Read while the steps run, with:
--   START_REPLICATION SLOT walex_rec LOGICAL 0/0 (proto_version '4', publication_names 'walex_rec')
