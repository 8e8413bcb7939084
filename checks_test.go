package walex_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

// TestNotPublished checks that a subscribed table the publication does not
// contain is a permanent error at start that names the table and the
// ALTER PUBLICATION to run, and that AddSubscriptions at runtime reports
// such a table (and a table that does not exist) the same way, changing
// nothing.
func TestNotPublished(t *testing.T) {
	url := testDB(t, `CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY);
		CREATE PUBLICATION events FOR TABLE a`)
	nop := func(context.Context, []walex.Event) error { return nil }

	c := newClient(t, url, "notpub", []string{"a", "b"})
	c.OnInsert("a", nop)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.Run(ctx)
	if !errors.Is(err, walex.ErrNotPublished) || !walex.IsPermanent(err) || !strings.Contains(err.Error(), "public.b") ||
		!strings.Contains(err.Error(), `ALTER PUBLICATION "events" ADD TABLE "public"."b"`) || strings.Contains(err.Error(), "public.a,") {
		t.Fatalf("Run() = %v, want a permanent ErrNotPublished naming public.b and the ALTER PUBLICATION that fixes it", err)
	}
	t.Logf("Run() = %v", err)

	c = newClient(t, url, "notpub", []string{"a"})
	rec := newRecorder()
	c.OnEvent(walex.AllTables, rec.handler("all"))
	running(t, c)
	waitStreaming(t, url, "notpub_walex")
	if err := c.AddSubscriptions("c"); !errors.Is(err, walex.ErrNotPublished) || !strings.Contains(err.Error(), `ADD TABLE "public"."c"`) {
		t.Errorf("AddSubscriptions(c) = %v, want ErrNotPublished with the fix", err)
	}
	if err := c.AddSubscriptions("nope"); !errors.Is(err, walex.ErrTableNotFound) {
		t.Errorf("AddSubscriptions(nope) = %v, want ErrTableNotFound", err)
	}
	exec(t, url, `ALTER PUBLICATION events ADD TABLE c`)
	if err := c.AddSubscriptions("c"); err != nil {
		t.Fatalf("AddSubscriptions(c) after ALTER PUBLICATION = %v", err)
	}
	exec(t, url, `INSERT INTO c VALUES (1)`)
	if got := rec.wait(t, 1); got[0] != "all[insert:c]" {
		t.Errorf("calls = %v, want the insert into c", got)
	}
}

// TestUnpublishedOperation registers OnUpdate and OnDelete for a table of a
// publication that publishes only inserts: one warning per handler and
// operation, naming both, even across reconnects.
func TestUnpublishedOperation(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t WITH (publish = 'insert')`)
	log, logs := captureLogs(t)
	c := newClient(t, url, "unpubop", []string{"t"}, func(cfg *walex.Config) { cfg.Logger = log })
	nop := func(context.Context, []walex.Event) error { return nil }
	c.OnInsert("t", nop)
	c.OnUpdate("t", nop, walex.WithName("onUpdate"))
	c.OnEvent("t", nop)
	running(t, c)
	waitStreaming(t, url, "unpubop_walex")
	c.Reconnect()
	waitStreaming(t, url, "unpubop_walex")
	exec(t, url, `INSERT INTO t VALUES (1)`) // a connection that streamed: the checks ran again on reconnect
	waitFor(t, 10*time.Second, "the second connection", func() (bool, error) { return c.Stats().Reconnects == 1, nil })
	msg := "operation the publication does not publish"
	if n := logs.count(msg, `handler="OnUpdate(\"public.t\") #2 (onUpdate)"`, "operation=update", "publication=events"); n != 1 {
		t.Errorf("%d warnings about OnUpdate and update, want 1:\n%s", n, logs)
	}
	if n := logs.count(msg); n != 1 {
		t.Errorf("%d warnings about unpublished operations, want 1 (OnInsert's is published, OnEvent takes what comes)", n)
	}
}

// TestReconnectDespiteLockedTable holds an ACCESS EXCLUSIVE lock on a table
// that walex does not read, of a FOR ALL TABLES publication (as a long
// migration would), and reconnects: the start-up checks must not wait for
// it, so that delivery of the subscribed table goes on.
func TestReconnectDespiteLockedTable(t *testing.T) {
	onVersions(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE other (id int); CREATE PUBLICATION events FOR ALL TABLES`, func(t *testing.T, srv *pgtest.Server, url string) {
		c := newClient(t, url, "locked", []string{"t"}, durable, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
		rec := newRecorder()
		c.OnInsert("t", rec.handler("t"))
		r := startRun(t, c)
		ctx := context.Background()
		mon := connect(t, url)
		if _, err := waitWalsender(ctx, mon, "locked_walex", 0, r.done); err != nil {
			t.Fatal(err)
		}
		lockTable(t, url, "other")
		c.Reconnect()
		start := time.Now()
		exec(t, url, `INSERT INTO t VALUES (1)`) // the durable slot keeps it for the next connection
		rec.wait(t, 1)
		t.Logf("PostgreSQL %d: delivered %v after a reconnect while another session locks an unsubscribed table", srv.Version, time.Since(start).Round(time.Millisecond))
		if c.Stats().Reconnects != 1 {
			t.Errorf("Stats().Reconnects = %d, want 1", c.Stats().Reconnects)
		}
	})
}

// TestCheckWaitsForLock makes a start-up check wait for a lock on a
// subscribed table: with CreatePublication, walex must add the table to
// the publication, which an ACCESS EXCLUSIVE lock of another session
// blocks. walex names the blocking backend in a warning, gives up after its
// lock_timeout, retries with backoff, and streams once the lock is gone.
func TestCheckWaitsForLock(t *testing.T) {
	onVersions(t, `CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE a`, func(t *testing.T, srv *pgtest.Server, url string) {
		lockerPID, release := lockTable(t, url, "b")

		log, logs := captureLogs(t)
		c := newClient(t, url, "lockwait", []string{"a", "b"}, fastReconnect, func(cfg *walex.Config) {
			cfg.CreatePublication = true
			cfg.Logger = log
		})
		rec := newRecorder()
		c.OnInsert("b", rec.handler("b"))
		running(t, c)
		blocker := fmt.Sprintf("pid %d (user postgres, idle in transaction", lockerPID)
		waitFor(t, 30*time.Second, "a warning naming the blocking backend", func() (bool, error) {
			return logs.count("waits for a lock held by another session", blocker) > 0, nil
		})
		waitFor(t, 30*time.Second, "a retry after the lock_timeout", func() (bool, error) {
			return logs.count("connection failed; reconnecting", "lock_timeout") > 0, nil
		})
		release()
		waitStreaming(t, url, "lockwait_walex")
		exec(t, url, `INSERT INTO b VALUES (1)`)
		rec.wait(t, 1)
	})
}

// TestSubscribedTableDropped drops one of two subscribed tables while Run
// runs, then reconnects: a warning names the table and delivery goes on
// for the other. Created again (and added to the publication again, which
// DROP TABLE had left), it is delivered again.
func TestSubscribedTableDropped(t *testing.T) {
	onVersions(t, `CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE a, b`, func(t *testing.T, srv *pgtest.Server, url string) {
		log, logs := captureLogs(t)
		c := newClient(t, url, "dropped", []string{"a", "b"}, durable, fastReconnect, func(cfg *walex.Config) { cfg.Logger = log })
		rec := newRecorder()
		c.OnEvent(walex.AllTables, rec.handler("all"))
		r := startRun(t, c)
		mon := connect(t, url)
		ctx := context.Background()
		pid, err := waitWalsender(ctx, mon, "dropped_walex", 0, r.done)
		if err != nil {
			t.Fatal(err)
		}
		exec(t, url, `INSERT INTO a VALUES (1); INSERT INTO b VALUES (1)`)
		var after string
		if err := mon.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&after); err != nil {
			t.Fatal(err)
		}
		rec.wait(t, 1)
		// The kill below must not bring the transaction again: wait until
		// the server has its acknowledgement.
		target, _ := parseLSN(&after)
		waitFor(t, 30*time.Second, "the acknowledgement of the first transaction", func() (bool, error) {
			_, flush, err := slotInfo(ctx, mon, "dropped_walex")
			return flush >= target, err
		})
		exec(t, url, `DROP TABLE b`)
		// A transient error: the next connection checks the tables again.
		if _, err := mon.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Fatal(err)
		}
		if pid, err = waitWalsender(ctx, mon, "dropped_walex", pid, r.done); err != nil {
			t.Fatalf("%v (Run: %v)", err, r.err)
		}
		exec(t, url, `INSERT INTO a VALUES (2)`)
		rec.wait(t, 2)
		if n := logs.count("subscribed table does not exist", "table=public.b"); n != 1 {
			t.Errorf("%d warnings naming the dropped table public.b, want 1:\n%s", n, logs)
		}
		exec(t, url, `CREATE TABLE b (id int PRIMARY KEY, note text); ALTER PUBLICATION events ADD TABLE b`)
		exec(t, url, `INSERT INTO b VALUES (2, 'back')`)
		got := rec.wait(t, 3)
		if want := "all[insert:a,insert:b] all[insert:a] all[insert:b]"; strings.Join(got, " ") != want {
			t.Errorf("calls = %v, want %s", got, want)
		}
		if ok, err := r.exited(); ok {
			t.Fatalf("Run returned %v", err)
		}
		// The first start of Run still insists on every table.
		exec(t, url, `DROP TABLE b`)
		c2 := newClient(t, url, "dropped2", []string{"a", "b"})
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := c2.Run(cctx); !errors.Is(err, walex.ErrTableNotFound) || !walex.IsPermanent(err) {
			t.Errorf("Run() of a new client = %v, want a permanent ErrTableNotFound", err)
		}
	})
}

// lockTable takes an ACCESS EXCLUSIVE lock on table in a transaction of
// its own, as a migration would, and holds it until release (or the end of
// the test). It returns the backend that holds it.
func lockTable(t *testing.T, url, table string) (pid uint32, release func()) {
	t.Helper()
	ctx := context.Background()
	locker := connect(t, url)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	release = func() { _ = tx.Rollback(ctx) }
	t.Cleanup(release)
	if _, err := tx.Exec(ctx, `LOCK TABLE `+table+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	return locker.PgConn().PID(), release
}
