package walex_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

// onVersions runs f on a database of the shared server and of a
// PostgreSQL 17 server (fetched with npm if needed): behaviours around the
// walsender's start-up differ between 15 and 16+.
func onVersions(t *testing.T, setup string, f func(t *testing.T, srv *pgtest.Server, url string)) {
	for _, v := range []int{pgtest.Shared().Version, 17} {
		t.Run(fmt.Sprintf("pg%d", v), func(t *testing.T) {
			srv := pgtest.Version(t, v)
			db := srv.NewDatabase(t)
			if err := srv.Exec(context.Background(), db, setup); err != nil {
				t.Fatal(err)
			}
			f(t, srv, srv.URL(db))
		})
		if pgtest.Shared().Version == 17 {
			break
		}
	}
}

// TestCommitAfterReconnect reconnects 100 times and commits one row right
// after each reconnect: every row must reach the handler within a second,
// with the default status interval of 10 s. On PostgreSQL 16 and later a
// walsender can miss the wake-up for WAL flushed while it gets ready to
// sleep, and then sleeps until its client sends something; it pings its
// client before every such sleep (widening that window) for as long as the
// client has not reported the position it was sent. walex reports the
// slot's position at once after START_REPLICATION and every
// acknowledgement within milliseconds, so a missed wake-up ends at the
// next acknowledgement instead of the next periodic status update.
func TestCommitAfterReconnect(t *testing.T) {
	onVersions(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`, func(t *testing.T, srv *pgtest.Server, url string) {
		const rounds = 100
		got := make(chan time.Time, rounds)
		c := newClient(t, url, "latecommit", []string{"t"}, durable, func(cfg *walex.Config) {
			cfg.StatusInterval = 0 // the default, 10 s
			cfg.Logger = testLogger(t)
		})
		c.OnInsert("t", func(ctx context.Context, evs []walex.Event) error {
			got <- time.Now()
			return nil
		})
		running(t, c)
		mon := connect(t, url)
		ctx := context.Background()
		// The test server commits asynchronously; the walsender sends only
		// WAL that is flushed.
		if _, err := mon.Exec(ctx, `SET synchronous_commit = on`); err != nil {
			t.Fatal(err)
		}
		walsender := func() (int32, error) {
			var pid *int32
			err := mon.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'latecommit_walex'`).Scan(&pid)
			if err != nil || pid == nil {
				return 0, nil
			}
			return *pid, nil
		}
		var delays []time.Duration
		for i := range rounds {
			if i == 0 {
				waitFor(t, 30*time.Second, "the walsender on the slot", func() (bool, error) {
					pid, err := walsender()
					return pid != 0, err
				})
			} else {
				// Commit at once, while the client reconnects: the new
				// walsender decodes it during its start-up or just after.
				c.Reconnect()
			}
			start := time.Now()
			if _, err := mon.Exec(ctx, `INSERT INTO t VALUES ($1)`, i); err != nil {
				t.Fatal(err)
			}
			select {
			case at := <-got:
				delays = append(delays, at.Sub(start))
			case <-time.After(30 * time.Second):
				t.Fatalf("round %d: the row committed after the reconnect did not arrive within 30 s", i)
			}
		}
		slices.Sort(delays)
		late := 0
		for _, d := range delays {
			if d > time.Second {
				late++
			}
		}
		t.Logf("PostgreSQL %d: commit-to-handler after a reconnect: p50 %v, p99 %v, max %v", srv.Version,
			delays[len(delays)/2].Round(time.Millisecond), delays[len(delays)*99/100].Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond))
		if late > 0 {
			t.Errorf("%d of %d commits after a reconnect took longer than 1 s to arrive (max %v)", late, rounds, delays[len(delays)-1])
		}
	})
}
