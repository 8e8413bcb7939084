package walex_test

// End-to-end decoding tests: replica identities,
// unchanged TOAST, multi-table TRUNCATE, schema changes between inserts,
// streamed (protocol v2) transactions — large, aborted and with
// savepoints — all through walex.Client against a real PostgreSQL.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

// decCollector runs a Client whose only handler is OnEvent(AllTables) and
// hands each handler call's events to the test.
type decCollector struct {
	c     *walex.Client
	calls chan []walex.Event
	done  chan struct{} // closed when Run returned
	err   error         // Run's result, valid once done is closed
	stop  func() error
}

// decStart starts a client on url streaming publication pub for tables,
// waits until its slot streams, and returns the collector. mod may adjust
// the Config before New. A decoding error ends Run at once
// (ReconnectPolicy.MaxAttempts = 1) so that tests fail fast with it.
func decStart(t *testing.T, url, pub string, tables []string, mod func(*walex.Config)) *decCollector {
	t.Helper()
	col := decNew(t, url, pub, tables, mod)
	col.start(t)
	waitStreaming(t, url, "dec_walex")
	return col
}

// decNew is decStart without the start, for tests that register more
// handlers first.
func decNew(t *testing.T, url, pub string, tables []string, mod func(*walex.Config)) *decCollector {
	t.Helper()
	cfg := walex.Config{
		URL: url, Name: "dec", Publication: pub, Subscriptions: tables,
		StatusInterval:  200 * time.Millisecond,
		ReconnectPolicy: walex.RetryPolicy{MaxAttempts: 1},
		RetryPolicy:     walex.RetryPolicy{MaxAttempts: 1},
		Logger:          slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := walex.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	col := &decCollector{c: c, calls: make(chan []walex.Event, 64), done: make(chan struct{})}
	c.OnEvent(walex.AllTables, func(ctx context.Context, events []walex.Event) error {
		select {
		case col.calls <- events:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	return col
}

func (col *decCollector) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		col.err = col.c.Run(ctx)
		close(col.done)
	}()
	var once sync.Once
	var result error
	col.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case <-col.done:
				result = col.err
			case <-time.After(30 * time.Second):
				result = errors.New("Run did not return within 30s of cancel")
			}
		})
		return result
	}
	t.Cleanup(func() {
		if err := col.stop(); err != nil {
			t.Errorf("Run() = %v, want nil after cancel", err)
		}
	})
}

// next returns the events of the next handler call.
func (col *decCollector) next(t *testing.T) []walex.Event {
	t.Helper()
	select {
	case evs := <-col.calls:
		return evs
	case <-col.done:
		t.Fatalf("Run returned early: %v", col.err)
	case <-time.After(30 * time.Second):
		t.Fatalf("no handler call within 30s")
	}
	return nil
}

// decExecErr runs sql (several statements allowed without args) and returns
// the error.
func decExecErr(t *testing.T, url, sql string, args ...any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// decStreamedTxns is the number of transactions the slot's walsender streamed
// (pg_stat_replication_slots.stream_txns, PostgreSQL 14+).
func decStreamedTxns(t *testing.T, url string) int64 {
	t.Helper()
	row := queryRow(t, url, `SELECT coalesce(sum(stream_txns), 0)::int8 AS n FROM pg_stat_replication_slots WHERE slot_name LIKE 'dec_walex%'`)
	return row["n"].(int64)
}

// decWaitStreamed waits until the slot has streamed at least n
// transactions: the proof that a test exercised streaming and not the
// plain (v1-style) path.
func decWaitStreamed(t *testing.T, url string, n int64) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("pg_stat_replication_slots.stream_txns >= %d (the walsender streams a transaction past logical_decoding_work_mem = 64kB)", n), func() (bool, error) {
		return decStreamedTxns(t, url) >= n, nil
	})
}

// decOpenStreamed inserts n rows into t (id, payload) in a transaction it
// leaves open, and waits until the walsender has streamed part of it.
func decOpenStreamed(t *testing.T, url string, n int) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, $1) g`, n); err != nil {
		t.Fatal(err)
	}
	decWaitStreamed(t, url, 1)
	return tx
}

// decStreamingDB is SQL that makes the walsender of the current database
// stream any transaction that needs more than 64 kB of decoding memory.
const decStreamingDB = `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET logical_decoding_work_mem = %L', current_database(), '64kB'); END $$;`

func decNeedStreaming(t *testing.T) {
	t.Helper()
	if v := pgtest.Shared().Version; v < 14 {
		t.Skipf("PostgreSQL %d does not stream in-progress transactions", v)
	}
}

func decRecord(kv ...any) map[string]any {
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func decCheckRecord(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	if (got == nil) != (want == nil) || !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func decCheckChanges(t *testing.T, what string, got, want map[string]walex.Change) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func decChange(old, new any) walex.Change { return walex.Change{OldValue: old, NewValue: new} }

// TestIdentity checks what Insert, Update and Delete events carry under
// each REPLICA IDENTITY (the table in docs/replica-identity.md).
func TestIdentity(t *testing.T) {
	type step struct {
		sql         string
		typ         walex.EventType
		new, old    map[string]any
		changes     map[string]walex.Change
		description string
	}
	row := func(id int32, code, name string, n int32) map[string]any {
		return decRecord("id", id, "code", code, "name", name, "n", n)
	}
	// The same statements under each identity. The table's primary key is
	// id; its unique index t_code (over the NOT NULL column code) is the
	// identity index of USING INDEX.
	const (
		insert    = `INSERT INTO t VALUES (1, 'a', 'ann', 10)`
		updNonKey = `UPDATE t SET name = 'bob', n = 11 WHERE id = 1`
		updID     = `UPDATE t SET id = 2 WHERE id = 1`
		updCode   = `UPDATE t SET code = 'b', name = 'cat' WHERE id = 2`
		del       = `DELETE FROM t WHERE id = 2`
	)
	r1, r2, r3, r4 := row(1, "a", "ann", 10), row(1, "a", "bob", 11), row(2, "a", "bob", 11), row(2, "b", "cat", 11)
	cases := []struct {
		identity string
		steps    []step
	}{
		{"DEFAULT", []step{
			{insert, walex.Insert, r1, nil, nil, "insert"},
			{updNonKey, walex.Update, r2, nil, nil, "update, key unchanged"},
			{updID, walex.Update, r3, decRecord("id", int32(1)), map[string]walex.Change{"id": decChange(int32(1), int32(2))}, "update of the primary key"},
			{updCode, walex.Update, r4, nil, nil, "update of a non-key column"},
			{del, walex.Delete, nil, decRecord("id", int32(2)), nil, "delete"},
		}},
		{"USING INDEX t_code", []step{
			{insert, walex.Insert, r1, nil, nil, "insert"},
			{updNonKey, walex.Update, r2, nil, nil, "update, key unchanged"},
			{updID, walex.Update, r3, nil, nil, "update of the primary key (not the identity)"},
			{updCode, walex.Update, r4, decRecord("code", "a"), map[string]walex.Change{"code": decChange("a", "b")}, "update of the identity column"},
			{del, walex.Delete, nil, decRecord("code", "b"), nil, "delete"},
		}},
		{"FULL", []step{
			{insert, walex.Insert, r1, nil, nil, "insert"},
			{updNonKey, walex.Update, r2, r1, map[string]walex.Change{"name": decChange("ann", "bob"), "n": decChange(int32(10), int32(11))}, "update, key unchanged"},
			{updID, walex.Update, r3, r2, map[string]walex.Change{"id": decChange(int32(1), int32(2))}, "update of the primary key"},
			{updCode, walex.Update, r4, r3, map[string]walex.Change{"code": decChange("a", "b"), "name": decChange("bob", "cat")}, "update of a non-key column"},
			{del, walex.Delete, nil, r4, nil, "delete"},
		}},
	}
	for _, tc := range cases {
		t.Run(strings.Fields(tc.identity)[0], func(t *testing.T) {
			url := testDB(t, `
				CREATE TABLE t (id int4 PRIMARY KEY, code text NOT NULL, name text, n int4);
				CREATE UNIQUE INDEX t_code ON t (code);
				ALTER TABLE t REPLICA IDENTITY `+tc.identity+`;
				CREATE PUBLICATION events FOR TABLE t;`)
			col := decStart(t, url, "events", []string{"t"}, nil)
			for _, s := range tc.steps {
				exec(t, url, s.sql)
				evs := col.next(t)
				if len(evs) != 1 {
					t.Fatalf("%s: %d events, want 1: %v", s.description, len(evs), evs)
				}
				e := evs[0]
				if e.Type != s.typ || e.Source.Table != "t" || e.Index != 0 {
					t.Errorf("%s: event %v, want %s of t at index 0", s.description, e, s.typ)
				}
				decCheckRecord(t, s.description+": NewRecord", e.NewRecord, s.new)
				decCheckRecord(t, s.description+": OldRecord", e.OldRecord, s.old)
				decCheckChanges(t, s.description+": Changes", e.Changes, s.changes)
				if (s.typ == walex.Update) != (e.Changes != nil) {
					t.Errorf("%s: Changes = %#v: want a map for updates, nil otherwise", s.description, e.Changes)
				}
			}
		})
	}

	t.Run("NOTHING", func(t *testing.T) {
		url := testDB(t, `
			CREATE TABLE t (id int4 PRIMARY KEY, name text);
			ALTER TABLE t REPLICA IDENTITY NOTHING;
			CREATE TABLE nopk (id int4, name text);  -- DEFAULT without a primary key: no identity either
			CREATE TABLE ins (id int4 PRIMARY KEY, name text);
			ALTER TABLE ins REPLICA IDENTITY NOTHING;
			CREATE PUBLICATION events FOR TABLE t, nopk;
			CREATE PUBLICATION inserts FOR TABLE ins WITH (publish = 'insert');`)
		// A publication that publishes updates and deletes makes the
		// server refuse them on a table without a replica identity.
		for _, table := range []string{"t", "nopk"} {
			exec(t, url, `INSERT INTO `+table+` VALUES (1, 'ann')`)
			for _, stmt := range []struct{ sql, msg string }{
				{`UPDATE ` + table + ` SET name = 'bob'`, `cannot update table "` + table + `" because it does not have a replica identity and publishes updates`},
				{`DELETE FROM ` + table, `cannot delete from table "` + table + `" because it does not have a replica identity and publishes deletes`},
			} {
				err := decExecErr(t, url, stmt.sql)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "55000" || pgErr.Message != stmt.msg {
					t.Errorf("%s: err = %v, want SQLSTATE 55000 %q", stmt.sql, err, stmt.msg)
				}
			}
		}

		// With a publication that publishes inserts only, the same
		// identity lets updates and deletes run; only inserts arrive.
		col := decStart(t, url, "inserts", []string{"ins"}, nil)
		exec(t, url, `INSERT INTO ins VALUES (1, 'ann')`)
		evs := col.next(t)
		if len(evs) != 1 || evs[0].Type != walex.Insert || evs[0].OldRecord != nil {
			t.Fatalf("insert under NOTHING: events %v", evs)
		}
		decCheckRecord(t, "NewRecord", evs[0].NewRecord, decRecord("id", int32(1), "name", "ann"))
		if err := decExecErr(t, url, `UPDATE ins SET name = 'bob'; DELETE FROM ins; TRUNCATE ins`); err != nil {
			t.Fatalf("update/delete/truncate of a table published for inserts only: %v", err)
		}
		exec(t, url, `INSERT INTO ins VALUES (2, 'cat')`)
		evs = col.next(t)
		if len(evs) != 1 || evs[0].Type != walex.Insert {
			t.Fatalf("after update+delete: next events %v, want only the insert of id 2", evs)
		}
		decCheckRecord(t, "NewRecord", evs[0].NewRecord, decRecord("id", int32(2), "name", "cat"))
	})
}

// decRandomText returns n bytes of incompressible text.
func decRandomText(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n*3/4+3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)[:n]
}

// TestToast: a large, out-of-line column that an update does not touch
// arrives as walex.Unchanged in NewRecord and is not a change.
func TestToast(t *testing.T) {
	for _, identity := range []string{"DEFAULT", "FULL"} {
		t.Run(identity, func(t *testing.T) {
			url := testDB(t, `
				CREATE TABLE t (id int4 PRIMARY KEY, big text, n int4);
				ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;
				ALTER TABLE t REPLICA IDENTITY `+identity+`;
				CREATE PUBLICATION events FOR TABLE t;`)
			col := decStart(t, url, "events", []string{"t"}, nil)
			big, big2 := decRandomText(t, 150_000), decRandomText(t, 120_000)

			exec(t, url, `INSERT INTO t VALUES (1, $1, 1)`, big)
			// The premise: the value is stored out of line, uncompressed.
			st := queryRow(t, url, `SELECT pg_column_size(big) AS size, (SELECT count(*) FROM pg_class c JOIN pg_class x ON x.oid = c.reltoastrelid WHERE c.relname = 't') AS toast FROM t`)
			if st["size"].(int32) < 150_000 || st["toast"].(int64) != 1 {
				t.Fatalf("big is not stored as an uncompressed TOAST value: %v", st)
			}
			evs := col.next(t)
			if len(evs) != 1 {
				t.Fatalf("insert: %d events, want 1", len(evs))
			}
			if got, _ := evs[0].NewRecord["big"].(string); got != big {
				t.Fatalf("insert: NewRecord[big] is %d bytes (%T), want the %d-byte value", len(got), evs[0].NewRecord["big"], len(big))
			}

			exec(t, url, `UPDATE t SET n = 2 WHERE id = 1`)
			evs = col.next(t)
			if len(evs) != 1 || evs[0].Type != walex.Update {
				t.Fatalf("update: events %v", evs)
			}
			e := evs[0]
			if identity == "FULL" {
				// The new row is completed from the old one.
				decCheckRecord(t, "update NewRecord", e.NewRecord, decRecord("id", int32(1), "big", big, "n", int32(2)))
			} else {
				decCheckRecord(t, "update NewRecord", e.NewRecord, decRecord("id", int32(1), "big", walex.Unchanged, "n", int32(2)))
			}
			if _, ok := e.Changes["big"]; ok {
				t.Errorf("Changes has the unchanged TOAST column big")
			}
			if identity == "FULL" {
				// The old row is logged whole, TOAST values inlined.
				decCheckRecord(t, "update OldRecord", e.OldRecord, decRecord("id", int32(1), "big", big, "n", int32(1)))
				decCheckChanges(t, "update Changes", e.Changes, map[string]walex.Change{"n": decChange(int32(1), int32(2))})
			} else {
				decCheckRecord(t, "update OldRecord", e.OldRecord, nil)
				decCheckChanges(t, "update Changes", e.Changes, nil)
			}

			// Touching the column sends it.
			exec(t, url, `UPDATE t SET big = $1 WHERE id = 1`, big2)
			e = col.next(t)[0]
			if e.NewRecord["big"] != big2 {
				t.Errorf("update of big: NewRecord[big] is not the new value")
			}
			_, changed := e.Changes["big"]
			if changed != (identity == "FULL") {
				t.Errorf("update of big: big in Changes = %t, want %t", changed, identity == "FULL")
			}

			exec(t, url, `DELETE FROM t`)
			e = col.next(t)[0]
			if identity == "FULL" {
				decCheckRecord(t, "delete OldRecord", e.OldRecord, decRecord("id", int32(1), "big", big2, "n", int32(2)))
			} else {
				decCheckRecord(t, "delete OldRecord", e.OldRecord, decRecord("id", int32(1)))
			}
		})
	}
}

// TestTruncate: one TRUNCATE of several tables is one transaction with a
// Truncate event per table, delivered in one AllTables handler call.
func TestTruncate(t *testing.T) {
	url := testDB(t, `
		CREATE TABLE parent (id int4 PRIMARY KEY);
		CREATE TABLE child (id int4 PRIMARY KEY, parent_id int4 REFERENCES parent);
		CREATE TABLE other (id int4 GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
		CREATE TABLE unpublished (id int4);
		CREATE PUBLICATION events FOR TABLE parent, child, other;`)
	seed := `INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1); INSERT INTO other (v) VALUES ('x'); INSERT INTO unpublished VALUES (1);`
	col := decNew(t, url, "events", []string{"parent", "child", "other"}, nil)
	var childCalls [][]walex.Event
	var mu sync.Mutex
	col.c.OnTruncate("child", func(ctx context.Context, events []walex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		childCalls = append(childCalls, events)
		return nil
	})
	col.start(t)
	waitStreaming(t, url, "dec_walex")
	for _, tc := range []struct {
		sql   string
		flags walex.TruncateFlags
	}{
		{`TRUNCATE parent, other, unpublished CASCADE`, walex.TruncateFlags{Cascade: true}}, // child by cascade
		{`TRUNCATE parent, child, other, unpublished RESTART IDENTITY`, walex.TruncateFlags{RestartIdentity: true}},
		{`TRUNCATE other, parent, unpublished RESTART IDENTITY CASCADE`, walex.TruncateFlags{Cascade: true, RestartIdentity: true}},
	} {
		exec(t, url, seed)
		// The seed inserts come first, as one transaction.
		if evs := col.next(t); len(evs) != 3 || evs[0].Type != walex.Insert {
			t.Fatalf("seed: events %v", evs)
		}
		exec(t, url, tc.sql)
		evs := col.next(t)
		var tables []string
		for i, e := range evs {
			tables = append(tables, e.Source.Table)
			if e.Type != walex.Truncate || e.TruncateFlags != tc.flags || e.Index != i || e.CommitLSN != evs[0].CommitLSN || e.NewRecord != nil || e.OldRecord != nil {
				t.Errorf("%s: event %d = %v flags %+v new %v old %v", tc.sql, i, e, e.TruncateFlags, e.NewRecord, e.OldRecord)
			}
		}
		t.Logf("%s: tables in WAL order %v", tc.sql, tables)
		slices.Sort(tables)
		if !reflect.DeepEqual(tables, []string{"child", "other", "parent"}) {
			t.Errorf("%s: truncated tables %v, want child, other, parent in one call", tc.sql, tables)
		}
	}
	// Nothing else was delivered: the next call is the next transaction.
	exec(t, url, `INSERT INTO other (v) VALUES ('after')`)
	evs := col.next(t)
	if len(evs) != 1 || evs[0].Type != walex.Insert {
		t.Fatalf("after the truncates: events %v, want the insert", evs)
	}
	// The last TRUNCATE's RESTART IDENTITY took effect: the identity
	// restarted at 1 (without it, this would be id 4).
	decCheckRecord(t, "NewRecord", evs[0].NewRecord, decRecord("id", int32(1), "v", "after"))
	mu.Lock()
	defer mu.Unlock()
	if len(childCalls) != 3 {
		t.Fatalf("OnTruncate(child) called %d times, want 3", len(childCalls))
	}
	for _, c := range childCalls {
		if len(c) != 1 || c[0].Source.Table != "child" {
			t.Errorf("OnTruncate(child) got %v", c)
		}
	}
}

// TestAlter: inserts before and after ALTER TABLE arrive with the shape and
// Go types of their time, in separate transactions and within one.
func TestAlter(t *testing.T) {
	type shape struct {
		rec  map[string]any
		cols map[string]string
	}
	want := []shape{
		{decRecord("id", int32(1), "a", int32(10)), map[string]string{"id": "int4", "a": "int4"}},
		{decRecord("id", int32(2), "a", int32(20), "b", "x"), map[string]string{"id": "int4", "a": "int4", "b": "text"}},
		{decRecord("id", int32(3), "a", int32(30)), map[string]string{"id": "int4", "a": "int4"}},
		{decRecord("id", int32(4), "a", int64(40)), map[string]string{"id": "int4", "a": "int8"}},
	}
	stmts := []string{
		`INSERT INTO t VALUES (1, 10)`,
		`ALTER TABLE t ADD COLUMN b text; INSERT INTO t VALUES (2, 20, 'x')`,
		`ALTER TABLE t DROP COLUMN b; INSERT INTO t VALUES (3, 30)`,
		`ALTER TABLE t ALTER COLUMN a TYPE int8; INSERT INTO t VALUES (4, 40)`,
	}
	check := func(t *testing.T, i int, e walex.Event) {
		t.Helper()
		decCheckRecord(t, fmt.Sprintf("insert %d: NewRecord", i+1), e.NewRecord, want[i].rec)
		if !reflect.DeepEqual(e.Source.Columns, want[i].cols) {
			t.Errorf("insert %d: Source.Columns = %v, want %v", i+1, e.Source.Columns, want[i].cols)
		}
	}
	setup := `CREATE TABLE t (id int4 PRIMARY KEY, a int4); CREATE PUBLICATION events FOR TABLE t;`

	t.Run("separate transactions", func(t *testing.T) {
		url := testDB(t, setup)
		col := decStart(t, url, "events", []string{"t"}, nil)
		for i, s := range stmts {
			exec(t, url, s) // one implicit transaction each
			evs := col.next(t)
			if len(evs) != 1 {
				t.Fatalf("step %d: %d events", i+1, len(evs))
			}
			check(t, i, evs[0])
		}
	})
	t.Run("one transaction", func(t *testing.T) {
		url := testDB(t, setup)
		col := decStart(t, url, "events", []string{"t"}, nil)
		exec(t, url, "BEGIN; "+strings.Join(stmts, "; ")+"; COMMIT")
		evs := col.next(t)
		if len(evs) != len(want) {
			t.Fatalf("%d events, want %d", len(evs), len(want))
		}
		for i, e := range evs {
			check(t, i, e)
		}
	})
	t.Run("streamed transaction", func(t *testing.T) {
		decNeedStreaming(t)
		url := testDB(t, setup+decStreamingDB)
		col := decStart(t, url, "events", []string{"t"}, nil)
		const n = 5000 // rows before the ALTERs, enough to stream
		exec(t, url, fmt.Sprintf("BEGIN; INSERT INTO t SELECT g, g FROM generate_series(101, %d) g; %s; COMMIT", 100+n, strings.Join(stmts, "; ")))
		evs := col.next(t)
		if len(evs) != n+len(want) {
			t.Fatalf("%d events, want %d", len(evs), n+len(want))
		}
		for i, e := range evs[:n] {
			w := shape{decRecord("id", int32(101+i), "a", int32(101+i)), want[0].cols}
			if !reflect.DeepEqual(e.NewRecord, w.rec) || !reflect.DeepEqual(e.Source.Columns, w.cols) {
				t.Fatalf("event %d: %v %v, want %v %v", i, e.NewRecord, e.Source.Columns, w.rec, w.cols)
			}
		}
		for i, e := range evs[n:] {
			check(t, i, e)
		}
		decWaitStreamed(t, url, 1)
		// The shape the streamed transaction ended with is the current one.
		exec(t, url, `INSERT INTO t VALUES (5, 50)`)
		evs = col.next(t)
		if len(evs) != 1 {
			t.Fatalf("%d events after the streamed transaction", len(evs))
		}
		decCheckRecord(t, "NewRecord", evs[0].NewRecord, decRecord("id", int32(5), "a", int64(50)))
	})
}

// TestStreamLarge: a 200,000-row transaction that the walsender streams
// arrives complete and in order, in handler calls of at most
// MaxBatchEvents, while the spooled stream goes to a spill file and the
// heap stays bounded.
func TestStreamLarge(t *testing.T) {
	decNeedStreaming(t)
	const rows = 200_000
	const maxBatch = 10_000 // the default of Config.MaxBatchEvents
	url := testDB(t, `CREATE TABLE big (id int4 PRIMARY KEY, payload text NOT NULL);
		CREATE PUBLICATION events FOR TABLE big;`+decStreamingDB)
	spillDir := t.TempDir()
	if d, err := filepath.EvalSymlinks(spillDir); err == nil {
		spillDir = d
	}

	var (
		mu        sync.Mutex
		failure   string // first problem seen by the handler
		next      int    // next expected Index
		calls     int
		commitLSN walex.LSN
		spilled   bool
		maxHeap   uint64
		after     []walex.Event
	)
	done := make(chan struct{})
	fail := func(format string, args ...any) {
		if failure == "" {
			failure = fmt.Sprintf(format, args...)
		}
	}
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)

	cfg := walex.Config{
		URL: url, Name: "dec", Publication: "events", Subscriptions: []string{"big"},
		StatusInterval:  200 * time.Millisecond,
		ReconnectPolicy: walex.RetryPolicy{MaxAttempts: 1},
		RetryPolicy:     walex.RetryPolicy{MaxAttempts: 1},
		Logger:          slog.New(slog.DiscardHandler),
		MemoryBudget:    1 << 20,
		SpillDir:        spillDir,
	}
	c, err := walex.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.OnEvent(walex.AllTables, func(ctx context.Context, events []walex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if next >= rows {
			after = append(after, events...)
			return nil
		}
		calls++
		if len(events) == 0 || len(events) > maxBatch {
			fail("handler call %d has %d events, want 1..%d", calls, len(events), maxBatch)
		}
		if calls == 1 {
			commitLSN = events[0].CommitLSN
			// The first chunk is handled while the decoder is still
			// replaying the spooled transaction: its spill file is open.
			spilled = decSpillFileOpen(spillDir)
		}
		for i := range events {
			e := &events[i]
			if e.Index != next || e.CommitLSN != commitLSN || e.Type != walex.Insert || e.NewRecord["id"] != int32(next+1) {
				fail("event %d: %v id %v, want index %d, commit LSN %s, id %d", next, e, e.NewRecord["id"], next, commitLSN, next+1)
			}
			next++
		}
		events = nil
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		maxHeap = max(maxHeap, ms.HeapInuse)
		if next == rows {
			close(done)
		}
		return nil
	})
	col := &decCollector{c: c, done: make(chan struct{})}
	col.start(t)
	waitStreaming(t, url, "dec_walex")

	start := time.Now()
	exec(t, url, `INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 200000) g`)
	t.Logf("INSERT took %v", time.Since(start))
	select {
	case <-done:
	case <-col.done:
		t.Fatalf("Run returned early: %v", col.err)
	case <-time.After(60 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("only %d of %d rows within 60s (%d calls; first problem: %s)", next, rows, calls, failure)
	}
	t.Logf("PostgreSQL %d: 200k rows delivered %v after the INSERT in %d calls", pgtest.Shared().Version, time.Since(start), calls)
	decWaitStreamed(t, url, 1)

	// A small transaction on the same table afterwards: the server
	// considers the table described by the streamed transaction's Relation
	// message and does not send another.
	exec(t, url, `INSERT INTO big VALUES (0, 'after')`)
	waitCtx, cancelWait := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelWait()
	err = poll(waitCtx, col.done, "the insert after the streamed transaction", func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(after) > 0, nil
	})
	if err != nil {
		t.Fatalf("%v (Run: %v)", err, col.err)
	}

	mu.Lock()
	defer mu.Unlock()
	if failure != "" {
		t.Error(failure)
	}
	if calls < rows/maxBatch {
		t.Errorf("%d handler calls, want at least %d", calls, rows/maxBatch)
	}
	if len(after) != 1 || after[0].CommitLSN == commitLSN || after[0].Index != 0 || !reflect.DeepEqual(after[0].NewRecord, decRecord("id", int32(0), "payload", "after")) {
		t.Errorf("transaction after the streamed one: %v", after)
	}
	if runtime.GOOS == "linux" && !spilled {
		t.Errorf("no spill file open in %s while the 200k-row transaction was delivered (MemoryBudget 1 MiB)", spillDir)
	}
	// Bound: with the spool on disk, what is live is at most the batches
	// in flight — the one being built, the 4 the client queues, the one
	// the handler holds — of 10,000 events each. An event here (Event
	// struct ~200 B, decoder.Change ~50 B, two-entry record map ~310 B,
	// 32-byte string) takes about 600 B, so 6 × 10,000 × 600 B ≈ 36 MB,
	// plus the 256 KiB spill file buffers, bounds the growth over the heap
	// before the transaction; holding the whole transaction's 200,000
	// events would take about 120 MB. (Measured: ~15 MiB spilled, ~30 MiB
	// when the spool stays in memory, which the spill file check catches.)
	const bound = 64 << 20
	growth := int64(maxHeap) - int64(base.HeapInuse)
	t.Logf("heap in use: before %d MiB, max after GC while handling %d MiB", base.HeapInuse>>20, maxHeap>>20)
	if growth > bound {
		t.Errorf("heap in use grew by %d MiB while handling the streamed transaction, want <= %d MiB", growth>>20, bound>>20)
	}
}

// decSpillFileOpen reports whether the process holds a walex spill file
// from dir open (the file is unlinked at once, so only /proc shows it).
func decSpillFileOpen(dir string) bool {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)+"walex-xid") {
			return true
		}
	}
	return false
}

// TestStreamAborted: a streamed transaction that rolls back delivers
// nothing; the next transaction is delivered.
func TestStreamAborted(t *testing.T) {
	decNeedStreaming(t)
	url := testDB(t, `CREATE TABLE t (id int4 PRIMARY KEY, payload text);
		CREATE PUBLICATION events FOR TABLE t;`+decStreamingDB)
	col := decStart(t, url, "events", []string{"t"}, nil)
	// Roll back only once the walsender has streamed part of the
	// transaction: PostgreSQL 18 skips decoding transactions it already
	// knows to be aborted, which would leave nothing to test.
	ctx := context.Background()
	tx := decOpenStreamed(t, url, 20000)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	exec(t, url, `INSERT INTO t VALUES (-1, 'small')`)
	evs := col.next(t)
	if len(evs) != 1 || evs[0].Index != 0 {
		t.Fatalf("first handler call after the aborted streamed transaction has %d events, want only the small insert", len(evs))
	}
	decCheckRecord(t, "NewRecord", evs[0].NewRecord, decRecord("id", int32(-1), "payload", "small"))
}

// TestSavepoint: rows of rolled-back subtransactions never arrive; rows of
// released savepoints do, in order — for a small transaction and for one
// the walsender streams (with the spool in memory and spilled).
func TestSavepoint(t *testing.T) {
	script := func(n int) (sql string, want []int32) {
		sql = fmt.Sprintf(`BEGIN;
			INSERT INTO t VALUES (1);
			SAVEPOINT a;
			INSERT INTO t SELECT g FROM generate_series(100001, 100000 + %[1]d) g;
			ROLLBACK TO SAVEPOINT a;
			SAVEPOINT b;
			INSERT INTO t SELECT g FROM generate_series(200001, 200000 + %[1]d) g;
			RELEASE SAVEPOINT b;
			INSERT INTO t VALUES (2);
			SAVEPOINT c;
			SAVEPOINT d;
			INSERT INTO t SELECT g FROM generate_series(300001, 300000 + %[1]d) g;
			RELEASE SAVEPOINT d;
			ROLLBACK TO SAVEPOINT c;
			SAVEPOINT e;
			INSERT INTO t VALUES (3);
			RELEASE SAVEPOINT e;
			COMMIT`, n)
		want = []int32{1}
		for i := range n {
			want = append(want, int32(200001+i))
		}
		return sql, append(want, 2, 3)
	}
	run := func(t *testing.T, url string, col *decCollector, n int) {
		t.Helper()
		sql, want := script(n)
		exec(t, url, sql)
		evs := col.next(t)
		var got []int32
		for i, e := range evs {
			if e.Index != i || e.CommitLSN != evs[0].CommitLSN {
				t.Errorf("event %d: Index %d, CommitLSN %s", i, e.Index, e.CommitLSN)
			}
			got = append(got, e.NewRecord["id"].(int32))
		}
		if !slices.Equal(got, want) {
			t.Errorf("ids delivered: %d (%v ... ), want %d (%v ...)", len(got), got[:min(len(got), 5)], len(want), want[:min(len(want), 5)])
		}
	}
	const setup = `CREATE TABLE t (id int4 PRIMARY KEY); CREATE TABLE t2 (id int4 PRIMARY KEY);
		CREATE PUBLICATION events FOR TABLE t, t2;`

	t.Run("small", func(t *testing.T) {
		url := testDB(t, setup)
		col := decStart(t, url, "events", []string{"t"}, nil)
		run(t, url, col, 3)
	})
	for _, mode := range []struct {
		name   string
		budget int64
	}{{"streamed", 0}, {"streamed spilled", 1}} {
		t.Run(mode.name, func(t *testing.T) {
			decNeedStreaming(t)
			url := testDB(t, setup+decStreamingDB)
			col := decStart(t, url, "events", []string{"t", "t2"}, func(cfg *walex.Config) {
				cfg.MemoryBudget = mode.budget
				cfg.SpillDir = t.TempDir()
			})
			run(t, url, col, 5000)
			decWaitStreamed(t, url, 1)

			// The first change of t2 in this session is in a subtransaction
			// that rolls back after it was streamed: the Relation message
			// describing t2 went out inside it, and the server does not
			// repeat it for the rest of the transaction nor afterwards.
			exec(t, url, `BEGIN;
				SAVEPOINT a;
				INSERT INTO t2 SELECT g FROM generate_series(1000, 6000) g;
				ROLLBACK TO SAVEPOINT a;
				INSERT INTO t2 VALUES (1), (2);
				COMMIT`)
			decWaitStreamed(t, url, 2)
			exec(t, url, `INSERT INTO t2 VALUES (3)`)
			var got []any
			for len(got) < 3 {
				for _, e := range col.next(t) {
					got = append(got, e.NewRecord["id"])
				}
			}
			if want := []any{int32(1), int32(2), int32(3)}; !reflect.DeepEqual(got, want) {
				t.Errorf("t2 ids delivered %v, want %v", got, want)
			}
		})
	}
}

// TestStreamInterleaved: a small transaction that commits while a large
// one is being streamed is delivered first (commit order); the large one
// follows, whole.
func TestStreamInterleaved(t *testing.T) {
	decNeedStreaming(t)
	url := testDB(t, `CREATE TABLE t (id int4 PRIMARY KEY, payload text);
		CREATE PUBLICATION events FOR TABLE t;`+decStreamingDB)
	col := decStart(t, url, "events", []string{"t"}, nil)
	ctx := context.Background()
	const n = 15000
	tx := decOpenStreamed(t, url, n)
	exec(t, url, `INSERT INTO t VALUES (-1, 'small')`)
	evs := col.next(t)
	if len(evs) != 1 || evs[0].NewRecord["id"] != int32(-1) {
		t.Fatalf("first call: %d events, want the small transaction", len(evs))
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var got int
	for got < n {
		for _, e := range col.next(t) {
			if e.Index != got || e.NewRecord["id"] != int32(got+1) {
				t.Fatalf("event %d: Index %d id %v", got, e.Index, e.NewRecord["id"])
			}
			got++
		}
	}
	if got != n {
		t.Errorf("%d events of the large transaction, want %d", got, n)
	}
}
