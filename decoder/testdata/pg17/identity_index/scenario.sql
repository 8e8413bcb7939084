-- Scenario identity_index, recorded by internal/cmd/recordstream.
-- proto 4: REPLICA IDENTITY USING INDEX on a unique (region, code) index: old key ('K') of the index columns when they change, and on delete

-- Setup, before the slot exists (not in the stream).
CREATE TABLE accounts (id serial PRIMARY KEY, region text NOT NULL, code text NOT NULL, balance int);
CREATE UNIQUE INDEX accounts_region_code ON accounts (region, code);
ALTER TABLE accounts REPLICA IDENTITY USING INDEX accounts_region_code;
CREATE PUBLICATION walex_rec FOR ALL TABLES;
SELECT pg_create_logical_replication_slot('walex_rec', 'pgoutput');

-- Recorded steps; sessions are separate connections that stay open.
-- A step without BEGIN/COMMIT runs in one implicit transaction.
-- After each step the recorder waits until the walsender has decoded it.

-- step 1, session 1
INSERT INTO accounts (region, code, balance) VALUES ('eu', 'a1', 100), ('us', 'b2', 200);

-- step 2, session 1
UPDATE accounts SET balance = balance - 30 WHERE code = 'a1';

-- step 3, session 1
UPDATE accounts SET code = 'a9' WHERE code = 'a1';

-- step 4, session 1
UPDATE accounts SET region = 'ap', balance = 0 WHERE code = 'b2';

-- step 5, session 1
DELETE FROM accounts WHERE code = 'a9';

-- Read while the steps run, with:
--   START_REPLICATION SLOT walex_rec LOGICAL 0/0 (proto_version '4', publication_names 'walex_rec')
