package walex_test

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
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
