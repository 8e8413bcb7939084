-- Scenario identity_full, recorded by internal/cmd/recordstream.
-- proto 4: REPLICA IDENTITY FULL on a table without primary key, many column types: whole old row ('O') on update and delete

-- Setup, before the slot exists (not in the stream).
CREATE TABLE items (
  id bigint GENERATED ALWAYS AS IDENTITY,
  sku text, price numeric(12,3), tags text[], attrs jsonb, uid uuid, active bool,
  data bytea, seen_at timestamptz, day date, ratio float8, small int2, flags int4[]
);
ALTER TABLE items REPLICA IDENTITY FULL;
CREATE PUBLICATION walex_rec FOR ALL TABLES;
SELECT pg_create_logical_replication_slot('walex_rec', 'pgoutput');

-- Recorded steps; sessions are separate connections that stay open.
-- A step without BEGIN/COMMIT runs in one implicit transaction.
-- After each step the recorder waits until the walsender has decoded it.

-- step 1, session 1
INSERT INTO items (sku, price, tags, attrs, uid, active, data, seen_at, day, ratio, small, flags) VALUES
  ('A-1', 9.990, '{red,"big one"}', '{"w": 1.5, "tags": ["x"], "n": null}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, '\x00ff10', '2024-05-06 07:08:09.5+02', '2024-05-06', 0.25, -3, '{1,NULL,3}'),
  ('B-2', NULL, '{}', '[]', NULL, false, NULL, NULL, NULL, 'NaN', NULL, NULL);

-- step 2, session 1
UPDATE items SET price = 10.000, active = NOT active WHERE sku = 'A-1';

-- step 3, session 1
UPDATE items SET attrs = attrs || '{"k": "v"}' WHERE sku = 'B-2';

-- step 4, session 1
DELETE FROM items WHERE sku = 'A-1';

-- Read while the steps run, with:
--   START_REPLICATION SLOT walex_rec LOGICAL 0/0 (proto_version '4', publication_names 'walex_rec')
