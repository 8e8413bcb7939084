-- Scenario many_small, recorded by internal/cmd/recordstream.
-- proto 4: 65 small autocommit transactions (40 inserts, 20 updates, 5 deletes) on two published tables; writes to an unpublished table and empty transactions in between send nothing

-- Setup, before the slot exists (not in the stream).
CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
CREATE TABLE events (id serial PRIMARY KEY, kind text);
CREATE TABLE ignored (id int);
INSERT INTO counters VALUES (1, 0);
CREATE PUBLICATION walex_rec FOR TABLE counters, events;
SELECT pg_create_logical_replication_slot('walex_rec', 'pgoutput');

-- Recorded steps; sessions are separate connections that stay open.
-- A step without BEGIN/COMMIT runs in one implicit transaction.
-- After each step the recorder waits until the walsender has decoded it.

-- step 1, session 1
INSERT INTO events (kind) VALUES ('e1');

-- step 2, session 1
INSERT INTO events (kind) VALUES ('e2');

-- step 3, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 4, session 1
INSERT INTO events (kind) VALUES ('e3');

-- step 5, session 1
INSERT INTO events (kind) VALUES ('e4');

-- step 6, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 7, session 1
INSERT INTO events (kind) VALUES ('e5');

-- step 8, session 1
INSERT INTO ignored VALUES (5);

-- step 9, session 1
BEGIN; COMMIT;

-- step 10, session 1
INSERT INTO events (kind) VALUES ('e6');

-- step 11, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 12, session 1
INSERT INTO events (kind) VALUES ('e7');

-- step 13, session 1
INSERT INTO events (kind) VALUES ('e8');

-- step 14, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 15, session 1
DELETE FROM events WHERE id = 7;

-- step 16, session 1
INSERT INTO events (kind) VALUES ('e9');

-- step 17, session 1
INSERT INTO events (kind) VALUES ('e10');

-- step 18, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 19, session 1
INSERT INTO ignored VALUES (10);

-- step 20, session 1
BEGIN; COMMIT;

-- step 21, session 1
INSERT INTO events (kind) VALUES ('e11');

-- step 22, session 1
INSERT INTO events (kind) VALUES ('e12');

-- step 23, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 24, session 1
INSERT INTO events (kind) VALUES ('e13');

-- step 25, session 1
INSERT INTO events (kind) VALUES ('e14');

-- step 26, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 27, session 1
INSERT INTO events (kind) VALUES ('e15');

-- step 28, session 1
INSERT INTO ignored VALUES (15);

-- step 29, session 1
BEGIN; COMMIT;

-- step 30, session 1
INSERT INTO events (kind) VALUES ('e16');

-- step 31, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 32, session 1
DELETE FROM events WHERE id = 15;

-- step 33, session 1
INSERT INTO events (kind) VALUES ('e17');

-- step 34, session 1
INSERT INTO events (kind) VALUES ('e18');

-- step 35, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 36, session 1
INSERT INTO events (kind) VALUES ('e19');

-- step 37, session 1
INSERT INTO events (kind) VALUES ('e20');

-- step 38, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 39, session 1
INSERT INTO ignored VALUES (20);

-- step 40, session 1
BEGIN; COMMIT;

-- step 41, session 1
INSERT INTO events (kind) VALUES ('e21');

-- step 42, session 1
INSERT INTO events (kind) VALUES ('e22');

-- step 43, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 44, session 1
INSERT INTO events (kind) VALUES ('e23');

-- step 45, session 1
INSERT INTO events (kind) VALUES ('e24');

-- step 46, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 47, session 1
DELETE FROM events WHERE id = 23;

-- step 48, session 1
INSERT INTO events (kind) VALUES ('e25');

-- step 49, session 1
INSERT INTO ignored VALUES (25);

-- step 50, session 1
BEGIN; COMMIT;

-- step 51, session 1
INSERT INTO events (kind) VALUES ('e26');

-- step 52, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 53, session 1
INSERT INTO events (kind) VALUES ('e27');

-- step 54, session 1
INSERT INTO events (kind) VALUES ('e28');

-- step 55, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 56, session 1
INSERT INTO events (kind) VALUES ('e29');

-- step 57, session 1
INSERT INTO events (kind) VALUES ('e30');

-- step 58, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 59, session 1
INSERT INTO ignored VALUES (30);

-- step 60, session 1
BEGIN; COMMIT;

-- step 61, session 1
INSERT INTO events (kind) VALUES ('e31');

-- step 62, session 1
INSERT INTO events (kind) VALUES ('e32');

-- step 63, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 64, session 1
DELETE FROM events WHERE id = 31;

-- step 65, session 1
INSERT INTO events (kind) VALUES ('e33');

-- step 66, session 1
INSERT INTO events (kind) VALUES ('e34');

-- step 67, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 68, session 1
INSERT INTO events (kind) VALUES ('e35');

-- step 69, session 1
INSERT INTO ignored VALUES (35);

-- step 70, session 1
BEGIN; COMMIT;

-- step 71, session 1
INSERT INTO events (kind) VALUES ('e36');

-- step 72, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 73, session 1
INSERT INTO events (kind) VALUES ('e37');

-- step 74, session 1
INSERT INTO events (kind) VALUES ('e38');

-- step 75, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 76, session 1
INSERT INTO events (kind) VALUES ('e39');

-- step 77, session 1
INSERT INTO events (kind) VALUES ('e40');

-- step 78, session 1
UPDATE counters SET n = n + 1 WHERE id = 1;

-- step 79, session 1
INSERT INTO ignored VALUES (40);

-- step 80, session 1
BEGIN; COMMIT;

-- step 81, session 1
DELETE FROM events WHERE id = 39;

-- Read while the steps run, with:
--   START_REPLICATION SLOT walex_rec LOGICAL 0/0 (proto_version '4', publication_names 'walex_rec')
