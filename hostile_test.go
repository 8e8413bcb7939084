package walex_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
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
