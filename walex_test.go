package walex_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperURLEnv) != "" {
		// A consumer process that a test starts (and may kill) against
		// its own server: it needs no server of its own.
		os.Exit(m.Run())
	}
	pgtest.Main(m, pgtest.Options{})
}

// testDB creates a fresh database with the given setup SQL and returns its URL.
func testDB(tb testing.TB, setup string) string {
	tb.Helper()
	srv := pgtest.Shared()
	db := srv.NewDatabase(tb)
	if setup != "" {
		if err := srv.Exec(context.Background(), db, setup); err != nil {
			tb.Fatalf("setup SQL: %v", err)
		}
	}
	return srv.URL(db)
}

func exec(tb testing.TB, url, sql string, args ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		tb.Fatalf("exec %q: %v", sql, err)
	}
}

// queryRow returns a row as pgx's rows.Values() gives it: the oracle for
// decoded values.
func queryRow(tb testing.TB, url, sql string, args ...any) map[string]any {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		tb.Fatalf("query: %v", err)
	}
	defer rows.Close()
	if !rows.Next() {
		tb.Fatalf("query %q: no row (%v)", sql, rows.Err())
	}
	vals, err := rows.Values()
	if err != nil {
		tb.Fatalf("values: %v", err)
	}
	out := map[string]any{}
	for i, fd := range rows.FieldDescriptions() {
		out[fd.Name] = vals[i]
	}
	return out
}

// running starts c.Run in a goroutine; the returned function stops it and
// returns Run's error.
func running(tb testing.TB, c *walex.Client) (stop func() error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var stopped bool
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				result = errors.New("Run did not return within 30s of cancel")
			}
		}
		return result
	}
	tb.Cleanup(func() { _ = stop() })
	return stop
}

// waitSlot waits until the client's slot is streaming (so changes made
// after it are delivered).
func waitStreaming(tb testing.TB, url, slotPrefix string) {
	tb.Helper()
	waitSlots(tb, url, slotPrefix, 1)
}

// queryLSN runs a query whose one row has an "lsn" column in text form.
func queryLSN(tb testing.TB, url, sql string, args ...any) walex.LSN {
	tb.Helper()
	s, ok := queryRow(tb, url, sql, args...)["lsn"].(string)
	if !ok {
		tb.Fatalf("query %q: no lsn column", sql)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		tb.Fatal(err)
	}
	return lsn
}

func receive(tb testing.TB, ch <-chan []walex.Event, errc <-chan error) []walex.Event {
	tb.Helper()
	select {
	case evs := <-ch:
		return evs
	case err := <-errc:
		tb.Fatalf("Run returned early: %v", err)
	case <-time.After(30 * time.Second):
		tb.Fatalf("no events within 30s")
	}
	return nil
}

func TestInsertEndToEnd(t *testing.T) {
	url := testDB(t, `
		CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, score numeric, active bool, created timestamptz DEFAULT now(), tags text[], data jsonb);
		CREATE PUBLICATION events FOR TABLE users;`)
	c, err := walex.New(walex.Config{URL: url, Name: "e2e", Publication: "events", Subscriptions: []string{"users"}, StatusInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []walex.Event, 10)
	c.OnInsert("users", func(ctx context.Context, events []walex.Event) error {
		got <- events
		return nil
	})
	stop := running(t, c)
	waitStreaming(t, url, "e2e_walex")

	exec(t, url, `INSERT INTO users (name, score, active, tags, data) VALUES ('ann', 12.50, true, '{a,b}', '{"k": [1, "x"]}')`)
	evs := receive(t, got, nil)
	if got, want := len(evs), 1; got != want {
		t.Fatalf("len(events) = %d, want %d", got, want)
	}
	e := evs[0]
	if e.Type != walex.Insert || e.Name != "users" || e.Source.Schema != "public" || e.Source.Table != "users" {
		t.Errorf("event = %v, want insert into public.users", e)
	}
	if got, want := e.Source.Columns["score"], "numeric"; got != want {
		t.Errorf("Source.Columns[score] = %q, want %q", got, want)
	}
	want := queryRow(t, url, `SELECT * FROM users WHERE name = 'ann'`)
	for k, w := range want {
		if g := e.NewRecord[k]; !reflect.DeepEqual(g, w) {
			t.Errorf("NewRecord[%s] = %#v (%T), want %#v (%T)", k, g, g, w, w)
		}
	}
	if e.CommitLSN == 0 || e.ID() != fmt.Sprintf("%s:0", e.CommitLSN) {
		t.Errorf("ID() = %q, CommitLSN %s", e.ID(), e.CommitLSN)
	}
	if time.Since(e.Timestamp) > time.Minute || e.XID == 0 {
		t.Errorf("Timestamp %v, XID %d", e.Timestamp, e.XID)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run() = %v, want nil after cancel", err)
	}
}
