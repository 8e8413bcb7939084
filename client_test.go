package walex_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

// newClient returns a Client for url with fast status updates.
func newClient(tb testing.TB, url, name string, subs []string, edit ...func(*walex.Config)) *walex.Client {
	tb.Helper()
	cfg := walex.Config{URL: url, Name: name, Publication: "events", Subscriptions: subs, StatusInterval: 100 * time.Millisecond,
		RetryPolicy: walex.RetryPolicy{MaxAttempts: 3, InitialDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond}}
	for _, f := range edit {
		f(&cfg)
	}
	c, err := walex.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// recorder collects handler calls.
type recorder struct {
	mu    sync.Mutex
	calls []string
	evs   [][]walex.Event
	ch    chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1000)} }

func (r *recorder) handler(label string) walex.Handler {
	return func(ctx context.Context, events []walex.Event) error {
		r.mu.Lock()
		var ids []string
		for _, e := range events {
			ids = append(ids, fmt.Sprintf("%s:%s", e.Type, e.Source.Table))
		}
		r.calls = append(r.calls, label+"["+strings.Join(ids, ",")+"]")
		r.evs = append(r.evs, events)
		r.mu.Unlock()
		r.ch <- struct{}{}
		return nil
	}
}

// wait waits until n calls were recorded in all.
func (r *recorder) wait(tb testing.TB, n int) []string {
	tb.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		if len(r.calls) >= n {
			out := append([]string(nil), r.calls...)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		select {
		case <-r.ch:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			tb.Fatalf("waited for %d handler calls, got %d: %v", n, len(r.calls), r.calls)
		}
	}
}

func slotFlushLSN(tb testing.TB, url, prefix string) walex.LSN {
	tb.Helper()
	return queryLSN(tb, url, `SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name LIKE $1 || '%'`, prefix)
}

func TestAcknowledgeOnlyAfterHandlerReturns(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	c := newClient(t, url, "ack", []string{"t"})
	entered := make(chan walex.Event, 1)
	release := make(chan struct{})
	c.OnInsert("t", func(ctx context.Context, events []walex.Event) error {
		entered <- events[0]
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	running(t, c)
	waitStreaming(t, url, "ack_walex")
	exec(t, url, `INSERT INTO t VALUES (1)`)
	var e walex.Event
	select {
	case e = <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("handler not called")
	}
	// Status updates keep coming while the handler runs (one every 100 ms):
	// the slot must not move past the transaction.
	since := time.Now()
	mon := connect(t, url)
	waitFor(t, 10*time.Second, "three status updates after the handler was called", func() (bool, error) {
		var last *time.Time
		err := mon.QueryRow(context.Background(), `SELECT max(reply_time) FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name LIKE 'ack_walex%'`).Scan(&last)
		return last != nil && last.After(since.Add(300*time.Millisecond)), err
	})
	if got := slotFlushLSN(t, url, "ack_walex"); got >= e.CommitLSN {
		t.Fatalf("confirmed_flush_lsn %s >= commit LSN %s while the handler is still running", got, e.CommitLSN)
	}
	close(release)
	waitFor(t, 10*time.Second, "confirmed_flush_lsn past the commit LSN after the handler returned", func() (bool, error) {
		return slotFlushLSN(t, url, "ack_walex") > e.CommitLSN, nil
	})
}

func TestDispatchOrderAndAllTables(t *testing.T) {
	url := testDB(t, `
		CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY);
		ALTER TABLE a REPLICA IDENTITY FULL;
		CREATE PUBLICATION events FOR TABLE a, b, c;`)
	cl := newClient(t, url, "order", []string{"a", "b", "public.c"})
	r := newRecorder()
	cl.OnInsert("a", r.handler("insA1"))
	cl.OnEvent(walex.AllTables, r.handler("all"))
	cl.OnInsert("a", r.handler("insA2"))
	cl.OnEvent("b", r.handler("evB"))
	cl.OnUpdate("a", r.handler("updA"))
	cl.OnDelete("c", r.handler("delC"))
	var mwCalls []string
	var mwMu sync.Mutex
	for _, name := range []string{"outer", "inner"} {
		cl.Use(func(next walex.Handler) walex.Handler {
			return func(ctx context.Context, events []walex.Event) error {
				mwMu.Lock()
				mwCalls = append(mwCalls, name+">")
				mwMu.Unlock()
				err := next(ctx, events)
				mwMu.Lock()
				mwCalls = append(mwCalls, "<"+name)
				mwMu.Unlock()
				return err
			}
		})
	}
	running(t, cl)
	waitStreaming(t, url, "order_walex")
	exec(t, url, `BEGIN; INSERT INTO a VALUES (1, 'x'); INSERT INTO b VALUES (1); INSERT INTO c VALUES (1); INSERT INTO a VALUES (2, 'y'); UPDATE a SET v = 'z' WHERE id = 1; DELETE FROM c; COMMIT`)
	got := r.wait(t, 6)
	want := []string{
		"insA1[insert:a,insert:a]",
		"all[insert:a,insert:b,insert:c,insert:a,update:a,delete:c]",
		"insA2[insert:a,insert:a]",
		"evB[insert:b]",
		"updA[update:a]",
		"delC[delete:c]",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("calls =\n%v\nwant\n%v", got, want)
	}
	all := r.evs[1]
	for i, e := range all {
		if e.Index != i || e.CommitLSN != all[0].CommitLSN {
			t.Errorf("event %d: Index %d CommitLSN %s", i, e.Index, e.CommitLSN)
		}
	}
	// The recorder sees a call before the middleware returns from it.
	want6 := strings.Repeat("outer>inner><inner<outer", 6)
	waitFor(t, 10*time.Second, "24 middleware calls", func() (bool, error) {
		mwMu.Lock()
		defer mwMu.Unlock()
		return len(mwCalls) >= 24, nil
	})
	mwMu.Lock()
	defer mwMu.Unlock()
	if got, want := strings.Join(mwCalls, ""), want6; got != want {
		t.Errorf("middleware calls = %s, want %s", got, want)
	}
}

func TestFilters(t *testing.T) {
	url := testDB(t, `
		CREATE TABLE full_t (id int PRIMARY KEY, subscribed bool, name text, updated_at int);
		CREATE TABLE def_t (id int PRIMARY KEY, subscribed bool, name text, updated_at int);
		ALTER TABLE full_t REPLICA IDENTITY FULL;
		CREATE PUBLICATION events FOR TABLE full_t, def_t;`)
	var logs bytes.Buffer
	var logMu sync.Mutex
	c := newClient(t, url, "filters", []string{"full_t", "def_t"}, func(cfg *walex.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	})
	r := newRecorder()
	filters := walex.WithFilters(walex.Filters{
		UnwatchedRecords: map[string]any{"subscribed": false, "id": 99},
		UnwatchedFields:  []string{"updated_at"},
	})
	c.OnEvent("full_t", r.handler("full"), filters)
	c.OnEvent("def_t", r.handler("def"), filters)
	running(t, c)
	waitStreaming(t, url, "filters_walex")
	for _, tbl := range []string{"full_t", "def_t"} {
		exec(t, url, fmt.Sprintf(`BEGIN;
			INSERT INTO %[1]s VALUES (1, true, 'a', 0);   -- kept
			INSERT INTO %[1]s VALUES (99, false, 'b', 0); -- dropped: all unwatched values match
			INSERT INTO %[1]s VALUES (98, false, 'c', 0); -- kept: id differs
			UPDATE %[1]s SET updated_at = 1 WHERE id = 1; -- dropped under FULL; kept under DEFAULT (cannot judge)
			UPDATE %[1]s SET name = 'x', updated_at = 2 WHERE id = 1; -- kept
			DELETE FROM %[1]s WHERE id = 99;             -- dropped under FULL (old record matches); kept under DEFAULT (only the key is known)
			COMMIT`, tbl))
	}
	r.wait(t, 2)
	got := map[string][]string{}
	for _, evs := range r.evs {
		for _, e := range evs {
			got[e.Source.Table] = append(got[e.Source.Table], fmt.Sprintf("%s%v", e.Type, e.Index))
		}
	}
	if g, w := strings.Join(got["full_t"], " "), "insert0 insert2 update4"; g != w {
		t.Errorf("full_t events = %s, want %s", g, w)
	}
	if g, w := strings.Join(got["def_t"], " "), "insert0 insert2 update3 update4 delete5"; g != w {
		t.Errorf("def_t events = %s, want %s", g, w)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "public.def_t") || !strings.Contains(logs.String(), "REPLICA IDENTITY FULL") || strings.Contains(logs.String(), "public.full_t") {
		t.Errorf("want one warning naming public.def_t and REPLICA IDENTITY FULL; logs:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestFunctions(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	c := newClient(t, url, "funcs", []string{"t"})
	var mu sync.Mutex
	seen := map[int32]int{}
	record := func(ctx context.Context, e walex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen[e.NewRecord["id"].(int32)]++
		return nil
	}
	c.OnInsert("t", func(ctx context.Context, events []walex.Event) error { return nil }, walex.WithFunctions(record, record), walex.WithConcurrency(3))
	stop := running(t, c)
	waitStreaming(t, url, "funcs_walex")
	exec(t, url, `INSERT INTO t SELECT generate_series(1, 50)`)
	waitFor(t, 30*time.Second, "the functions to see 50 events", func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 50, nil
	})
	mu.Lock()
	for id := int32(1); id <= 50; id++ {
		if seen[id] != 2 {
			t.Errorf("row %d: functions ran %d times, want 2", id, seen[id])
		}
	}
	mu.Unlock()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestFailingFunctionFailsHandler(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	c := newClient(t, url, "funcfail", []string{"t"})
	var handlerCalls, otherCalls int
	var mu sync.Mutex
	boom := errors.New("crm is down")
	c.OnInsert("t", func(ctx context.Context, events []walex.Event) error {
		mu.Lock()
		handlerCalls++
		mu.Unlock()
		return nil
	}, walex.WithFunctions(func(ctx context.Context, e walex.Event) error {
		if e.NewRecord["id"] == int32(2) {
			return boom
		}
		return nil
	}), walex.WithName("addToCRM"))
	c.OnInsert("t", func(ctx context.Context, events []walex.Event) error {
		mu.Lock()
		otherCalls++
		mu.Unlock()
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	waitStreaming(t, url, "funcfail_walex")
	exec(t, url, `INSERT INTO t VALUES (1), (2), (3)`)
	err := <-errc
	var he *walex.HandlerError
	if !errors.As(err, &he) || !errors.Is(err, boom) {
		t.Fatalf("Run() = %v, want *HandlerError wrapping %v", err, boom)
	}
	if he.Table != "public.t" || !strings.Contains(he.Handler, "addToCRM") || !strings.HasSuffix(he.EventID, ":0") || he.Attempts != 3 {
		t.Errorf("HandlerError = %+v", he)
	}
	if !walex.IsPermanent(err) {
		t.Error("IsPermanent(HandlerError) = false")
	}
	mu.Lock()
	defer mu.Unlock()
	if handlerCalls != 3 || otherCalls != 0 {
		t.Errorf("handler calls %d (want 3 attempts), later handler calls %d (want 0)", handlerCalls, otherCalls)
	}
}

func TestPanickingHandlerRetriedThenSucceeds(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	c := newClient(t, url, "panics", []string{"t"}, func(cfg *walex.Config) { cfg.RetryPolicy.MaxAttempts = 5 })
	attempts := 0
	r := newRecorder()
	c.OnInsert("t", func(ctx context.Context, events []walex.Event) error {
		attempts++
		if attempts <= 3 {
			panic("flaky")
		}
		return nil
	})
	c.OnInsert("t", r.handler("second"))
	running(t, c)
	waitStreaming(t, url, "panics_walex")
	exec(t, url, `INSERT INTO t VALUES (1)`)
	r.wait(t, 1)
	if attempts != 4 {
		t.Errorf("attempts = %d, want 4", attempts)
	}
	if got := c.Stats().Retries; got != 3 {
		t.Errorf("Stats().Retries = %d, want 3", got)
	}
}

func TestTwoClientsIsolated(t *testing.T) {
	url1 := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE u (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t, u;`)
	url2 := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	c1 := newClient(t, url1, "same", []string{"t"})
	c2 := newClient(t, url2, "same", []string{"t"})
	c3 := newClient(t, url1, "same", []string{"u"}) // same name and database: a temporary slot gets a unique name
	r1, r2, r3 := newRecorder(), newRecorder(), newRecorder()
	c1.OnEvent(walex.AllTables, r1.handler("c1"))
	c2.OnEvent(walex.AllTables, r2.handler("c2"))
	c3.OnEvent(walex.AllTables, r3.handler("c3"))
	running(t, c1)
	running(t, c2)
	running(t, c3)
	waitSlots(t, url1, "same_walex", 2)
	waitSlots(t, url2, "same_walex", 1)
	exec(t, url1, `INSERT INTO t VALUES (1); INSERT INTO u VALUES (10)`)
	exec(t, url2, `INSERT INTO t VALUES (2)`)
	// Rows in each table after those: whatever a client should not get
	// would have come before them.
	exec(t, url1, `INSERT INTO t VALUES (100); INSERT INTO u VALUES (100)`)
	exec(t, url2, `INSERT INTO t VALUES (100)`)
	if got := r1.wait(t, 2); strings.Join(got, " ") != "c1[insert:t] c1[insert:t]" || r1.evs[0][0].NewRecord["id"] != int32(1) {
		t.Errorf("client 1 got %v", got)
	}
	if got := r2.wait(t, 2); strings.Join(got, " ") != "c2[insert:t] c2[insert:t]" || r2.evs[0][0].NewRecord["id"] != int32(2) {
		t.Errorf("client 2 got %v", got)
	}
	if got := r3.wait(t, 2); strings.Join(got, " ") != "c3[insert:u] c3[insert:u]" || r3.evs[0][0].NewRecord["id"] != int32(10) {
		t.Errorf("client 3 got %v", got)
	}
}

// waitSlots waits until n slots whose names start with prefix stream.
func waitSlots(tb testing.TB, url, prefix string, n int) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	waitFor(tb, 30*time.Second, fmt.Sprintf("%d active slots %s*", n, prefix), func() (bool, error) {
		var got int
		// Replication must have started: a slot that is still being
		// created is listed as active too, and is gone if its creation
		// is cut short.
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
			WHERE s.slot_name LIKE $1 || '%' AND s.database = current_database() AND r.state IN ('catchup', 'streaming')`, prefix).Scan(&got)
		return got >= n, err
	})
}

func TestAddAndRemoveSubscriptions(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE later (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t, later;`)
	c := newClient(t, url, "subs", []string{"t"})
	r := newRecorder()
	c.OnEvent(walex.AllTables, r.handler("all"))
	running(t, c)
	waitStreaming(t, url, "subs_walex")
	exec(t, url, `INSERT INTO later VALUES (1); INSERT INTO t VALUES (1)`)
	r.wait(t, 1)
	if err := c.AddSubscriptions("later"); err != nil {
		t.Fatal(err)
	}
	c.OnInsert("later", r.handler("later"))
	exec(t, url, `INSERT INTO later VALUES (2)`)
	r.wait(t, 3)
	if err := c.RemoveSubscriptions("t"); err != nil {
		t.Fatal(err)
	}
	exec(t, url, `INSERT INTO t VALUES (2); INSERT INTO later VALUES (3)`)
	got := r.wait(t, 5)
	want := "all[insert:t] all[insert:later] later[insert:later] all[insert:later] later[insert:later]"
	if strings.Join(got, " ") != want {
		t.Errorf("calls = %v\nwant %s", got, want)
	}
}

func TestHandlerForUnsubscribedTable(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	c := newClient(t, url, "unsub", []string{"t"})
	c.OnInsert("t", func(context.Context, []walex.Event) error { return nil })
	c.OnInsert("other", func(context.Context, []walex.Event) error { return nil })
	err := c.Run(context.Background())
	if !errors.Is(err, walex.ErrNotSubscribed) || !strings.Contains(err.Error(), "public.other") {
		t.Fatalf("Run() = %v, want ErrNotSubscribed naming public.other", err)
	}
}

func TestPermanentErrors(t *testing.T) {
	srv := pgtest.Shared()
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY);`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("missing publication", func(t *testing.T) {
		c := newClient(t, url, "nopub", []string{"t"})
		start := time.Now()
		err := c.Run(ctx)
		if !errors.Is(err, walex.ErrPublicationNotFound) || !walex.IsPermanent(err) || time.Since(start) > 10*time.Second {
			t.Fatalf("Run() = %v after %v, want ErrPublicationNotFound at once", err, time.Since(start))
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		const pw = "right-Secret-123"
		exec(t, url, `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'walex_pw') THEN CREATE ROLE walex_pw LOGIN REPLICATION; END IF; END $$`)
		exec(t, url, `ALTER ROLE walex_pw PASSWORD '`+pw+`'`)
		exec(t, url, `CREATE PUBLICATION events FOR TABLE t`)
		var logs bytes.Buffer
		var mu sync.Mutex
		logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		db := dbName(url)
		wrong := fmt.Sprintf("postgres://walex_pw:%s@%s:%d/%s?sslmode=disable", "wrong-"+pw, srv.Host, srv.Port, db)
		c := newClient(t, wrong, "pw", []string{"t"}, func(cfg *walex.Config) { cfg.Logger = logger })
		err := c.Run(ctx)
		if err == nil || !walex.IsPermanent(err) {
			t.Fatalf("Run() with a wrong password = %v, want a permanent error", err)
		}
		right := fmt.Sprintf("postgres://walex_pw:%s@%s:%d/%s?sslmode=disable", pw, srv.Host, srv.Port, db)
		c2 := newClient(t, right, "pw", []string{"t"}, func(cfg *walex.Config) { cfg.Logger = logger })
		c2.OnInsert("t", func(context.Context, []walex.Event) error { return nil })
		stop := running(t, c2)
		waitStreaming(t, url, "pw_walex")
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), logs.String(), fmt.Sprintf("%+v", c.Stats())} {
			if strings.Contains(s, pw) {
				t.Errorf("password appears in %q", s)
			}
		}
	})

	t.Run("wal_level replica", func(t *testing.T) {
		replica, err := pgtest.Start(ctx, pgtest.Options{Settings: map[string]string{"wal_level": "replica"}})
		if err != nil {
			t.Fatal(err)
		}
		defer replica.Stop()
		if err := replica.Exec(ctx, "postgres", `CREATE TABLE t (id int); CREATE PUBLICATION events FOR TABLE t`); err != nil {
			t.Fatal(err)
		}
		c := newClient(t, replica.URL("postgres"), "wl", []string{"t"})
		err = c.Run(ctx)
		if !errors.Is(err, walex.ErrWALLevel) || !walex.IsPermanent(err) || !strings.Contains(err.Error(), "wal_level") {
			t.Fatalf("Run() = %v, want ErrWALLevel", err)
		}
	})
}

func TestCreatePublication(t *testing.T) {
	url := testDB(t, `CREATE TABLE "Order Items" (id int PRIMARY KEY); CREATE SCHEMA "Sales"; CREATE TABLE "Sales"."Q1" (id int PRIMARY KEY); CREATE TABLE later (id int PRIMARY KEY);`)
	c := newClient(t, url, "createpub", []string{"Order Items", `Sales.Q1`}, func(cfg *walex.Config) {
		cfg.Publication = `My "Pub"`
		cfg.CreatePublication = true
	})
	r := newRecorder()
	c.OnEvent(walex.AllTables, r.handler("all"))
	running(t, c)
	waitStreaming(t, url, "createpub_walex")
	exec(t, url, `INSERT INTO "Order Items" VALUES (1); INSERT INTO "Sales"."Q1" VALUES (2)`)
	r.wait(t, 1)
	if err := c.AddSubscriptions("later"); err != nil {
		t.Fatal(err)
	}
	exec(t, url, `INSERT INTO later VALUES (3)`)
	got := r.wait(t, 2)
	if want := "all[insert:Order Items,insert:Q1] all[insert:later]"; strings.Join(got, " ") != want {
		t.Errorf("calls = %v, want %s", got, want)
	}
}

func TestMissingTable(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	c := newClient(t, url, "missing", []string{"t", "nope"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.Run(ctx)
	if !errors.Is(err, walex.ErrTableNotFound) || !strings.Contains(err.Error(), "public.nope") || !walex.IsPermanent(err) {
		t.Fatalf("Run() = %v, want permanent ErrTableNotFound naming public.nope", err)
	}
}

func TestUpdateConfigAndReconnect(t *testing.T) {
	srv := pgtest.Shared()
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	db := dbName(url)
	exec(t, url, `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'walex_pw') THEN CREATE ROLE walex_pw LOGIN REPLICATION; END IF; END $$`)
	exec(t, url, `ALTER ROLE walex_pw PASSWORD 'first-pass'`)
	c := newClient(t, "", "rotate", []string{"t"}, func(cfg *walex.Config) {
		cfg.URL = ""
		cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database = srv.Host, uint16(srv.Port), "walex_pw", "first-pass", db
		cfg.ReconnectPolicy = walex.RetryPolicy{InitialDelay: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond}
	})
	r := newRecorder()
	c.OnInsert("t", r.handler("ins"))
	running(t, c)
	waitStreaming(t, url, "rotate_walex")
	exec(t, url, `INSERT INTO t VALUES (1)`)
	r.wait(t, 1)

	// Rotate the password: the running connection is unaffected; the new
	// one (forced by Reconnect) must use the new password.
	exec(t, url, `ALTER ROLE walex_pw PASSWORD 'second-pass'`)
	if err := c.UpdateConfig(func(cfg *walex.Config) { cfg.Password = "second-pass" }); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateConfig(func(cfg *walex.Config) { cfg.Name = "" }); !errors.Is(err, walex.ErrInvalidConfig) {
		t.Fatalf("UpdateConfig(invalid) = %v, want ErrInvalidConfig", err)
	}
	before := c.Stats().Reconnects
	c.Reconnect()
	waitFor(t, 20*time.Second, "a reconnect", func() (bool, error) {
		st := c.Stats()
		return st.Reconnects != before && st.Connected, nil
	})
	waitStreaming(t, url, "rotate_walex")
	exec(t, url, `INSERT INTO t VALUES (2)`)
	r.wait(t, 2)
	if st := c.Stats(); st.LastError == nil || !st.Connected {
		t.Errorf("Stats() = %+v, want connected, with the reconnect recorded as LastError", st)
	}
}

// TestDatabaseOutputSettings: values decode whatever output settings the
// database or role sets (the replication connection pins its own).
func TestDatabaseOutputSettings(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY, d date, ts timestamp, b bytea, iv interval, f float8); CREATE PUBLICATION events FOR TABLE t;`)
	db := dbName(url)
	exec(t, url, fmt.Sprintf(`ALTER DATABASE %q SET DateStyle = 'SQL, DMY'`, db))
	exec(t, url, fmt.Sprintf(`ALTER DATABASE %q SET bytea_output = 'escape'`, db))
	exec(t, url, fmt.Sprintf(`ALTER DATABASE %q SET IntervalStyle = 'sql_standard'`, db))
	exec(t, url, fmt.Sprintf(`ALTER DATABASE %q SET extra_float_digits = -3`, db))
	c := newClient(t, url, "settings", []string{"t"})
	got := make(chan []walex.Event, 1)
	c.OnInsert("t", func(ctx context.Context, events []walex.Event) error { got <- events; return nil })
	running(t, c)
	waitStreaming(t, url, "settings_walex")
	exec(t, url, `INSERT INTO t VALUES (1, '2026-03-04', '2026-03-04 05:06:07.891', '\x00ff10', '1 year 2 mons 3 days 04:05:06.7', 0.1 + 0.2)`)
	e := receive(t, got, nil)[0]
	want := queryRow(t, url, `SELECT * FROM t`)
	for k, w := range want {
		if g := e.NewRecord[k]; !reflect.DeepEqual(g, w) {
			t.Errorf("%s = %#v, want %#v", k, g, w)
		}
	}
}

func TestSkipOriginChanges(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	// Replication origins are cluster-wide: name it after the database and
	// drop it afterwards.
	origin := "upstream_" + url[strings.LastIndex(url, "/")+1:]
	if i := strings.Index(origin, "?"); i >= 0 {
		origin = origin[:i]
	}
	exec(t, url, `SELECT pg_replication_origin_create($1)`, origin)
	t.Cleanup(func() { exec(t, url, `SELECT pg_replication_origin_drop($1)`, origin) })
	for _, skip := range []bool{false, true} {
		t.Run(fmt.Sprint("skip=", skip), func(t *testing.T) {
			exec(t, url, `TRUNCATE t`)
			name := fmt.Sprintf("origin%t", skip)
			c := newClient(t, url, name, []string{"t"}, func(cfg *walex.Config) { cfg.SkipOriginChanges = skip })
			r := newRecorder()
			c.OnInsert("t", r.handler("ins"))
			running(t, c)
			waitStreaming(t, url, name+"_walex")
			// A change applied by "another replication system": the session
			// has a replication origin.
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, `SELECT pg_replication_origin_session_setup($1)`, origin); err != nil {
				t.Fatal(err)
			}
			for _, sql := range []string{`INSERT INTO t VALUES (1)`, `SELECT pg_replication_origin_session_reset()`, `INSERT INTO t VALUES (2)`} {
				if _, err := conn.Exec(ctx, sql); err != nil {
					t.Fatal(err)
				}
			}
			want := []int32{1, 2}
			if skip {
				want = []int32{2}
			}
			// Row 2 came last: once it is there, row 1 has come before it
			// or never will.
			waitFor(t, 30*time.Second, "row 2", func() (bool, error) { return slices.Contains(r.ids(), 2), nil })
			if got := r.ids(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("ids = %v, want %v", got, want)
			}
		})
	}
}

func TestRunTwice(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	c := newClient(t, url, "twice", []string{"t"})
	running(t, c)
	waitStreaming(t, url, "twice_walex")
	if err := c.Run(context.Background()); !errors.Is(err, walex.ErrAlreadyRunning) {
		t.Fatalf("second Run() = %v, want ErrAlreadyRunning", err)
	}
	// Changing the logger while Run runs is safe (the race detector checks).
	if err := c.UpdateConfig(func(cfg *walex.Config) { cfg.Logger = slog.New(slog.DiscardHandler) }); err != nil {
		t.Fatal(err)
	}
	exec(t, url, `INSERT INTO t VALUES (1)`)
}
