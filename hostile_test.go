package walex_test

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
)

// Hostile names: quotes of both kinds, spaces, unicode, dots, backslashes,
// commas and SQL fragments, each under PostgreSQL's 63-byte identifier
// limit. Any of them reaching SQL unquoted would be a syntax error or, for
// the fragments, would drop the canary table victims.
const (
	hostileSchema  = `Ünïcødé 表 "s" 'q'.x\y`
	hostileTable   = `x"; DROP TABLE victims; --`
	hostileLater   = `'); DROP TABLE victims; --`
	hostilePub     = `pub "x", \'; DROP TABLE victims; --`
	hostileName    = `App "x"; DROP TABLE victims; --`
	hostilePrefix  = `'); DROP TABLE victims; -- "x" \`
	hostileSnapTbl = `snap'; DROP TABLE victims; --`
)

// hostileCols are the columns of the hostile tables; the first is the key.
var hostileCols = []string{`i"d'`, `va'l; DROP TABLE victims; --`, `Ünïcødé.col\x`, `b y "t" es`}

// ident quotes a name as a SQL identifier (and as a subscription).
func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// TestHostileNames runs a client whose schema, tables, columns,
// publication, application name, snapshot table and message prefix are all
// hostile: durable slot, CreatePublication, an initial snapshot, heartbeats,
// a table added at runtime and snapshotted, inserts, updates and deletes.
// The database runs with standard_conforming_strings off, so a backslash in
// a string literal is an escape character: a literal quoted for the default
// setting only would let the publication's name end it early.
func TestHostileNames(t *testing.T) {
	tbl := ident(hostileSchema, hostileTable)
	later := ident("public", hostileLater)
	cols := make([]string, len(hostileCols))
	for i, c := range hostileCols {
		cols[i] = ident(c)
	}
	ddl := func(name string) string {
		return fmt.Sprintf(`CREATE TABLE %s (%s int PRIMARY KEY, %s text, %s int, %s bytea); ALTER TABLE %[1]s REPLICA IDENTITY FULL;`,
			name, cols[0], cols[1], cols[2], cols[3])
	}
	url := testDB(t, `CREATE TABLE victims (id int PRIMARY KEY); INSERT INTO victims VALUES (1), (2), (3);
		CREATE SCHEMA `+ident(hostileSchema)+`;`+ddl(tbl)+ddl(later)+
		`INSERT INTO `+tbl+` VALUES (1, 'before', 10, '\x00ff'), (2, 'before', 20, NULL);`)
	exec(t, url, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET standard_conforming_strings = off', current_database()); END $$`)
	if got := queryRow(t, url, `SHOW standard_conforming_strings`)["standard_conforming_strings"]; got != "off" {
		t.Fatalf("standard_conforming_strings = %v, want off", got)
	}

	logger, _ := captureLogs(t)
	c := newClient(t, url, hostileName, []string{ident(hostileSchema, hostileTable)}, durable, func(cfg *walex.Config) {
		cfg.Publication = hostilePub
		cfg.CreatePublication = true
		cfg.Snapshot = walex.SnapshotInitial
		cfg.SnapshotTable = ident(hostileSchema, hostileSnapTbl)
		cfg.HeartbeatInterval = 50 * time.Millisecond
		cfg.Logger = logger
	})
	slot := walex.DefaultSlotName(hostileName)
	var (
		mu   sync.Mutex
		evs  []walex.Event
		msgs []walex.Message
	)
	c.OnEvent(walex.AllTables, func(ctx context.Context, events []walex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		evs = append(evs, events...)
		return nil
	})
	c.OnMessage(hostilePrefix, func(ctx context.Context, m walex.Message) error {
		mu.Lock()
		defer mu.Unlock()
		msgs = append(msgs, m)
		return nil
	})
	// got returns the events so far as "type table key col=value ...".
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, e := range evs {
			rec := e.NewRecord
			if e.Type == walex.Delete {
				rec = e.OldRecord
			}
			s := fmt.Sprintf("%s %s.%s", e.Type, e.Source.Schema, e.Source.Table)
			for _, col := range hostileCols {
				s += fmt.Sprintf(" %s=%v", col, rec[col])
			}
			if cs := slices.Sorted(maps.Keys(e.Source.Columns)); !slices.Equal(cs, slices.Sorted(slices.Values(hostileCols))) {
				s += fmt.Sprintf(" columns=%q", cs)
			}
			out = append(out, s)
		}
		return out
	}
	runCtx, stop := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("Run() = %v", err)
		}
		// Checked even when the test failed early: the canary's rows.
		if n := queryRow(t, url, `SELECT count(*) AS n FROM pg_class WHERE relname = 'victims'`)["n"]; n != int64(1) {
			t.Errorf("the table victims was dropped")
		} else if n := queryRow(t, url, `SELECT count(*) AS n FROM victims`)["n"]; n != int64(3) {
			t.Errorf("victims has %v rows, want 3", n)
		}
	})
	waitEvents := func(n int) []string {
		t.Helper()
		waitFor(t, 30*time.Second, fmt.Sprintf("%d events", n), func() (bool, error) {
			select {
			case err := <-runErr:
				runErr <- err
				return false, fmt.Errorf("Run returned: %w", err)
			default:
			}
			return len(got()) >= n, nil
		})
		return got()
	}

	in := hostileSchema + "." + hostileTable
	want := []string{
		"read " + in + " " + hostileCols[0] + "=1 " + hostileCols[1] + "=before " + hostileCols[2] + "=10 " + hostileCols[3] + "=[0 255]",
		"read " + in + " " + hostileCols[0] + "=2 " + hostileCols[1] + "=before " + hostileCols[2] + "=20 " + hostileCols[3] + "=<nil>",
	}
	if g := waitEvents(2); !reflect.DeepEqual(g, want) {
		t.Fatalf("snapshot events:\n%s\nwant\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
	}

	exec(t, url, `INSERT INTO `+tbl+` VALUES (3, $1, 30, NULL)`, `'); DROP TABLE victims; --`)
	exec(t, url, `UPDATE `+tbl+` SET `+cols[1]+` = $1 WHERE `+cols[0]+` = 1`, `x"; DROP TABLE victims; --`)
	exec(t, url, `DELETE FROM `+tbl+` WHERE `+cols[0]+` = 2`)
	exec(t, url, `SELECT pg_logical_emit_message(true, $1, $2)`, hostilePrefix, `content '"\`)
	want = append(want,
		"insert "+in+" "+hostileCols[0]+"=3 "+hostileCols[1]+"='); DROP TABLE victims; -- "+hostileCols[2]+"=30 "+hostileCols[3]+"=<nil>",
		"update "+in+" "+hostileCols[0]+`=1 `+hostileCols[1]+`=x"; DROP TABLE victims; -- `+hostileCols[2]+"=10 "+hostileCols[3]+"=[0 255]",
		"delete "+in+" "+hostileCols[0]+"=2 "+hostileCols[1]+"=before "+hostileCols[2]+"=20 "+hostileCols[3]+"=<nil>",
	)
	if g := waitEvents(5); !reflect.DeepEqual(g, want) {
		t.Fatalf("stream events:\n%s\nwant\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
	}

	// A table added at runtime: added to the publication, then
	// snapshotted and streamed.
	exec(t, url, `INSERT INTO `+later+` VALUES (7, 'old', 70, NULL)`)
	if err := c.AddSubscriptions(later); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Snapshot(ctx, later); err != nil {
		t.Fatal(err)
	}
	exec(t, url, `INSERT INTO `+later+` VALUES (8, 'new', 80, $1)`, []byte{42})
	lt := "public." + hostileLater
	want = append(want,
		"read "+lt+" "+hostileCols[0]+"=7 "+hostileCols[1]+"=old "+hostileCols[2]+"=70 "+hostileCols[3]+"=<nil>",
		"insert "+lt+" "+hostileCols[0]+"=8 "+hostileCols[1]+"=new "+hostileCols[2]+"=80 "+hostileCols[3]+"=[42]",
	)
	if g := waitEvents(7); !reflect.DeepEqual(g, want) {
		t.Fatalf("events of the added table:\n%s\nwant\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
	}

	mu.Lock()
	if len(msgs) != 1 || msgs[0].Prefix != hostilePrefix || string(msgs[0].Content) != `content '"\` {
		t.Errorf("messages = %v, want one with prefix %q", msgs, hostilePrefix)
	}
	mu.Unlock()

	// The heartbeat moves the slot on while the tables are idle.
	before := queryLSN(t, url, `SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, slot)
	exec(t, url, `CREATE TABLE unrelated (id int); INSERT INTO unrelated VALUES (1)`)
	waitFor(t, 30*time.Second, "the heartbeat to advance the slot", func() (bool, error) {
		return queryLSN(t, url, `SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, slot) > before, nil
	})

	if n := queryRow(t, url, `SELECT count(*) AS n FROM `+ident(hostileSchema, hostileSnapTbl))["n"]; n == int64(0) {
		t.Errorf("snapshot table %s is empty", ident(hostileSchema, hostileSnapTbl))
	}
	if n := queryRow(t, url, `SELECT count(*) AS n FROM pg_publication WHERE pubname = $1`, hostilePub)["n"]; n != int64(1) {
		t.Errorf("publication %q: %v, want created", hostilePub, n)
	}
}

// TestHostileSlotName: a SlotName that is not a plain slot name is a
// ConfigError naming the field and the name to use instead, never sent to
// the server; an application Name of any kind makes a valid slot name.
func TestHostileSlotName(t *testing.T) {
	base := walex.Config{URL: "postgres://u@h/db", Name: "app", Publication: "p", Subscriptions: []string{"t"}}
	for _, slot := range []string{`x"; DROP TABLE victims; --`, `'); DROP TABLE victims; --`, "Ünïcødé 表", "a.b", `a\b`, "UPPER", "sp ace", strings.Repeat("a", 60)} {
		cfg := base
		cfg.SlotName = slot
		_, err := walex.New(cfg)
		var ce *walex.ConfigError
		if !errors.As(err, &ce) || ce.Field != "SlotName" {
			t.Errorf("New(SlotName %q) = %v, want a ConfigError for SlotName", slot, err)
			continue
		}
		if len(slot) < 54 && !strings.Contains(err.Error(), "lower-case letters, digits and _") {
			t.Errorf("New(SlotName %q): %v does not say what a slot name may contain", slot, err)
		}
	}
	for _, name := range []string{hostileName, hostileLater, "Ünïcødé 表", `a\b.c`} {
		cfg := base
		cfg.Name = name
		if _, err := walex.New(cfg); err != nil {
			t.Errorf("New(Name %q) = %v", name, err)
		}
		slot := walex.DefaultSlotName(name)
		if strings.Trim(slot, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Errorf("DefaultSlotName(%q) = %q", name, slot)
		}
	}
}

// heapPeak samples the heap every 10 ms until stop is called, which
// returns the highest HeapInuse seen.
func heapPeak() (stop func() uint64) {
	var peak uint64
	done, finished := make(chan struct{}), make(chan struct{})
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		sample()
		return peak
	}
}

// TestHugeValues: one row with a 100 MB text value and a 50 MB bytea value
// (stored uncompressed, so the stream carries all of it) is delivered
// whole, with a MemoryBudget of 4 MiB, and the heap grows by at most 3.5
// times the values' size (525 MB), under the race detector too (its shadow
// memory is not Go heap).
//
// The values must exist in memory once, as the event's string and []byte.
// On the way, the server's message that carries the row is read whole into
// one buffer, and as the server streams the transaction (PostgreSQL 14+: it
// is larger than logical_decoding_work_mem), walex spills the message to
// disk and reads it back whole at the commit to decode it. So up to 3
// copies can be alive at once when the garbage collector has not yet freed
// the first buffer (measured: 2.5×, 381 MiB); the bound leaves room for
// the collector's lag and fails if walex holds one copy more (as it did
// when it copied a message larger than the whole budget into memory
// before spilling it: 4×, 572 MiB).
func TestHugeValues(t *testing.T) {
	const (
		textLen  = 100_000_000
		byteaLen = 50_000_000
	)
	// A 1 MB block of hex digits, repeated: fast to build, and a value
	// whose parts came back out of order would not hash the same. STORAGE
	// EXTERNAL keeps the server from compressing it.
	url := testDB(t, `CREATE TABLE big (id int PRIMARY KEY, t text, b bytea);
		ALTER TABLE big ALTER COLUMN t SET STORAGE EXTERNAL, ALTER COLUMN b SET STORAGE EXTERNAL;
		CREATE TABLE small (id int PRIMARY KEY);
		CREATE PUBLICATION events FOR TABLE big, small;`)
	type got struct {
		tLen, bLen int
		tSum, bSum string
		err        string
	}
	results := make(chan got, 10)
	c := newClient(t, url, "huge", []string{"big", "small"}, func(cfg *walex.Config) {
		cfg.MemoryBudget = 4 << 20
		cfg.SpillDir = t.TempDir()
	})
	c.OnInsert("big", func(ctx context.Context, events []walex.Event) error {
		var g got
		tv, ok1 := events[0].NewRecord["t"].(string)
		bv, ok2 := events[0].NewRecord["b"].([]byte)
		if len(events) != 1 || !ok1 || !ok2 {
			g.err = fmt.Sprintf("%d events, t %T, b %T", len(events), events[0].NewRecord["t"], events[0].NewRecord["b"])
		}
		g.tLen, g.bLen = len(tv), len(bv)
		// Hashed in pieces: a copy of the whole string would count as
		// walex's memory.
		h := md5.New()
		for i := 0; i < len(tv); i += 1 << 20 {
			h.Write([]byte(tv[i:min(i+1<<20, len(tv))]))
		}
		g.tSum, g.bSum = fmt.Sprintf("%x", h.Sum(nil)), fmt.Sprintf("%x", md5.Sum(bv))
		results <- g
		return nil
	})
	c.OnInsert("small", func(ctx context.Context, events []walex.Event) error {
		results <- got{err: "small"}
		return nil
	})
	running(t, c)
	waitStreaming(t, url, "huge_walex")
	// The process's heap before the row: after the client started, with
	// the garbage collected.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	stop := heapPeak()
	start := time.Now()
	exec(t, url, `WITH blk AS (SELECT string_agg(md5(i::text), '' ORDER BY i) AS s FROM generate_series(1, 31250) i)
		INSERT INTO big SELECT 1, repeat(s, 100), decode(repeat(s, 100), 'hex') FROM blk`)
	var g got
	select {
	case g = <-results:
	case <-time.After(60 * time.Second):
		t.Fatal("the huge row was not delivered within 60 s")
	}
	peak := stop()
	t.Logf("delivered %d + %d bytes in %v; heap %d MiB before, peak %d MiB (+%d MiB)", g.tLen, g.bLen, time.Since(start).Round(time.Millisecond), base>>20, peak>>20, (peak-base)>>20)
	if g.err != "" {
		t.Fatal(g.err)
	}
	want := queryRow(t, url, `SELECT length(t) AS tl, md5(t) AS ts, length(b) AS bl, md5(b) AS bs FROM big`)
	if g.tLen != textLen || g.bLen != byteaLen || int64(g.tLen) != int64(want["tl"].(int32)) || int64(g.bLen) != int64(want["bl"].(int32)) ||
		g.tSum != want["ts"] || g.bSum != want["bs"] {
		t.Fatalf("got text %d bytes md5 %s, bytea %d bytes md5 %s; want %v", g.tLen, g.tSum, g.bLen, g.bSum, want)
	}
	// The stream goes on after it.
	exec(t, url, `INSERT INTO small VALUES (1)`)
	select {
	case g = <-results:
		if g.err != "small" {
			t.Fatalf("after the huge row: %+v, want the small row", g)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the row after the huge one was not delivered")
	}
	const hugeHeapFactor = 3.5
	if limit := uint64(hugeHeapFactor * (textLen + byteaLen)); peak > base+limit {
		t.Errorf("heap grew by %d MiB, more than %.1f× the values' %d MiB", (peak-base)>>20, hugeHeapFactor, (textLen+byteaLen)>>20)
	}
}

// subxactSQL is one transaction of 10,000 subtransactions (PL/pgSQL blocks
// with an EXCEPTION clause), each inserting a row: some roll back to their
// savepoint, some hold a nested subtransaction that rolls back alone, or
// that commits and then rolls back with its parent.
const subxactSQL = `BEGIN;
INSERT INTO sub VALUES (0);
DO $$
BEGIN
	FOR i IN 1..10000 LOOP
		BEGIN
			INSERT INTO sub VALUES (i);
			IF i % 100 = 25 THEN
				BEGIN INSERT INTO sub VALUES (-i); RAISE EXCEPTION 'inner'; EXCEPTION WHEN raise_exception THEN NULL; END;
			ELSIF i % 100 = 50 THEN
				BEGIN INSERT INTO sub VALUES (-i); EXCEPTION WHEN raise_exception THEN NULL; END;
				RAISE EXCEPTION 'outer';
			ELSIF i % 100 = 75 THEN
				BEGIN INSERT INTO sub VALUES (-i); EXCEPTION WHEN raise_exception THEN NULL; END;
			ELSIF i % 7 = 0 THEN
				RAISE EXCEPTION 'roll back';
			END IF;
		EXCEPTION WHEN raise_exception THEN NULL;
		END;
	END LOOP;
END $$;
INSERT INTO sub VALUES (10001);
COMMIT;`

// subxactRows are the ids subxactSQL leaves, in insertion order.
func subxactRows() []int32 {
	rows := []int32{0}
	for i := int32(1); i <= 10000; i++ {
		switch {
		case i%100 == 25:
			rows = append(rows, i)
		case i%100 == 50:
		case i%100 == 75:
			rows = append(rows, i, -i)
		case i%7 != 0:
			rows = append(rows, i)
		}
	}
	return append(rows, 10001)
}

// TestSubtransactions: a transaction of 10,000 subtransactions, some
// rolled back, is delivered as one transaction with exactly the rows that
// committed, in order: decoded at its commit, and streamed by the server
// while in progress (logical_decoding_work_mem at its minimum, spilled to
// disk past a small MemoryBudget), where each rolled-back subtransaction
// arrives as a Stream Abort of its own.
func TestSubtransactions(t *testing.T) {
	for _, streamed := range []bool{false, true} {
		t.Run(fmt.Sprintf("streamed=%t", streamed), func(t *testing.T) {
			url := testDB(t, `CREATE TABLE sub (id int PRIMARY KEY); CREATE TABLE next (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE sub, next;`)
			if streamed {
				exec(t, url, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET logical_decoding_work_mem = ''64kB''', current_database()); END $$`)
			}
			var (
				mu    sync.Mutex
				calls [][]walex.Event
			)
			done := make(chan struct{})
			log := &logs{}
			c := newClient(t, url, "subxact", []string{"sub", "next"}, func(cfg *walex.Config) {
				cfg.MemoryBudget = 64 << 10
				cfg.SpillDir = t.TempDir()
				cfg.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
			})
			c.OnInsert("sub", func(ctx context.Context, events []walex.Event) error {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, events)
				return nil
			})
			c.OnInsert("next", func(ctx context.Context, events []walex.Event) error {
				close(done)
				return nil
			})
			running(t, c)
			waitStreaming(t, url, "subxact_walex")
			exec(t, url, subxactSQL)
			exec(t, url, `INSERT INTO next VALUES (1)`)
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("the transaction after the subtransactions was not delivered within 60 s")
			}
			if spilled := log.count("spilled a streamed transaction"); streamed != (spilled > 0) {
				t.Fatalf("streamed %t, but %d spills logged", streamed, spilled)
			}
			mu.Lock()
			defer mu.Unlock()
			want := subxactRows()
			if table := subIDs(t, url); len(table) != len(want) {
				t.Fatalf("the table has %d rows, the test expects %d", len(table), len(want))
			}
			if len(calls) != 1 {
				t.Fatalf("%d handler calls, want 1 (one transaction of %d rows)", len(calls), len(want))
			}
			evs := calls[0]
			var got []int32
			for i, e := range evs {
				if e.XID != evs[0].XID || e.CommitLSN != evs[0].CommitLSN || e.Index != i {
					t.Fatalf("event %d: XID %d, commit LSN %s, index %d; want XID %d, commit LSN %s, index %d", i, e.XID, e.CommitLSN, e.Index, evs[0].XID, evs[0].CommitLSN, i)
				}
				got = append(got, e.NewRecord["id"].(int32))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got %d rows, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
			}
		})
	}
}

// subIDs returns the ids in the table sub.
func subIDs(tb testing.TB, url string) []int32 {
	tb.Helper()
	conn := connect(tb, url)
	rows, err := conn.Query(context.Background(), `SELECT id FROM sub`)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// firstDiff is the first index where a and b differ.
func firstDiff(a, b []int32) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
