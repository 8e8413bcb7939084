-- Scenario identity_default, recorded by internal/cmd/recordstream.
-- proto 4: insert/update/delete under REPLICA IDENTITY DEFAULT (primary key): old key only when the key changes, and on delete

-- Setup, before the slot exists (not in the stream).
CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, email text, score numeric(10,2), created_at timestamptz);
CREATE PUBLICATION walex_rec FOR ALL TABLES;
SELECT pg_create_logical_replication_slot('walex_rec', 'pgoutput');

-- Recorded steps; sessions are separate connections that stay open.
-- A step without BEGIN/COMMIT runs in one implicit transaction.
-- After each step the recorder waits until the walsender has decoded it.

-- step 1, session 1
INSERT INTO users VALUES (1, 'ann', 'ann@example.com', 12.50, '2024-01-02 03:04:05.123456+00'), (2, 'bob', NULL, NULL, NULL);

-- step 2, session 1
UPDATE users SET name = 'ann b', score = score + 1 WHERE id = 1;

-- step 3, session 1
UPDATE users SET id = 3 WHERE id = 2;

-- step 4, session 1
DELETE FROM users WHERE id = 1;

-- step 5, session 1
BEGIN; INSERT INTO users VALUES (10, 'cy', NULL, -0.01, '1999-12-31 23:59:59+00'); UPDATE users SET email = 'cy@example.com' WHERE id = 10; DELETE FROM users WHERE id = 3; COMMIT;

-- Read while the steps run, with:
--   START_REPLICATION SLOT walex_rec LOGICAL 0/0 (proto_version '4', publication_names 'walex_rec')
