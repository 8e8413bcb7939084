package walex_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

func durable(cfg *walex.Config) { cfg.DurableSlot = true }

// ids returns the id column of every event the recorder saw.
func (r *recorder) ids() []int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int32
	for _, evs := range r.evs {
		for _, e := range evs {
			out = append(out, e.NewRecord["id"].(int32))
		}
	}
	return out
}

func TestDurableSlotResumes(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	c1 := newClient(t, url, "durable", []string{"t"}, durable)
	r1 := newRecorder()
	c1.OnInsert("t", r1.handler("c1"))
	stop := running(t, c1)
	waitStreaming(t, url, "durable_walex")
	exec(t, url, `INSERT INTO t VALUES (1)`)
	r1.wait(t, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	exec(t, url, `INSERT INTO t VALUES (2)`) // while no client runs
	c2 := newClient(t, url, "durable", []string{"t"}, durable)
	r2 := newRecorder()
	c2.OnInsert("t", r2.handler("c2"))
	running(t, c2)
	r2.wait(t, 1)
	exec(t, url, `INSERT INTO t VALUES (3)`)
	r2.wait(t, 2)
	if got := r2.ids(); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Errorf("second client got ids %v, want [2 3] (1 was acknowledged before the restart)", got)
	}
}

func TestFailedTransactionRedelivered(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	c1 := newClient(t, url, "redeliver", []string{"t"}, durable)
	var failedID string
	c1.OnInsert("t", func(ctx context.Context, events []walex.Event) error {
		if events[0].NewRecord["id"] == int32(2) {
			failedID = events[0].ID()
			return errors.New("downstream unavailable")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c1.Run(ctx) }()
	waitStreaming(t, url, "redeliver_walex")
	exec(t, url, `INSERT INTO t VALUES (1)`)
	exec(t, url, `INSERT INTO t VALUES (2)`)
	exec(t, url, `INSERT INTO t VALUES (3)`)
	err := <-errc
	var he *walex.HandlerError
	if !errors.As(err, &he) || he.EventID != failedID {
		t.Fatalf("Run() = %v, want HandlerError for event %s", err, failedID)
	}
	c2 := newClient(t, url, "redeliver", []string{"t"}, durable)
	r := newRecorder()
	c2.OnInsert("t", r.handler("c2"))
	running(t, c2)
	r.wait(t, 2)
	if got := r.ids(); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Errorf("after restart got ids %v, want [2 3]", got)
	}
	if got := r.evs[0][0].ID(); got != failedID {
		t.Errorf("redelivered event ID %s, want %s (same ID for dedupe)", got, failedID)
	}
}

func TestSlotTakeover(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	a := newClient(t, url, "ha", []string{"t"}, durable)
	ra := newRecorder()
	a.OnInsert("t", ra.handler("a"))
	stopA := running(t, a)
	waitStreaming(t, url, "ha_walex")

	var logs bytes.Buffer
	var mu sync.Mutex
	b := newClient(t, url, "ha", []string{"t"}, durable, func(cfg *walex.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	})
	rb := newRecorder()
	b.OnInsert("t", rb.handler("b"))
	running(t, b)

	t.Run("timeout", func(t *testing.T) {
		c := newClient(t, url, "ha", []string{"t"}, durable, func(cfg *walex.Config) { cfg.SlotWaitTimeout = 500 * time.Millisecond })
		c.OnInsert("t", rb.handler("c"))
		err := c.Run(context.Background())
		if !errors.Is(err, walex.ErrSlotInUse) {
			t.Fatalf("Run() = %v, want ErrSlotInUse", err)
		}
	})

	exec(t, url, `INSERT INTO t VALUES (1)`)
	ra.wait(t, 1)
	mu.Lock()
	waiting := strings.Contains(logs.String(), "waiting for the replication slot") && strings.Contains(logs.String(), " pid=")
	mu.Unlock()
	if !waiting {
		t.Errorf("standby did not log that it waits for the slot:\n%s", logs.String())
	}
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	exec(t, url, `INSERT INTO t VALUES (2)`)
	rb.wait(t, 1)
	if d := time.Since(stopped); d > 10*time.Second {
		t.Errorf("takeover took %v", d)
	}
	if got := rb.ids(); len(got) != 1 || got[0] != 2 {
		t.Errorf("standby got %v, want [2]", got)
	}
}

func TestHeartbeatAdvancesIdleSlot(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE other (id int); CREATE PUBLICATION events FOR TABLE t;`)
	c := newClient(t, url, "hb", []string{"t"}, durable, func(cfg *walex.Config) { cfg.HeartbeatInterval = 100 * time.Millisecond })
	c.OnInsert("t", func(context.Context, []walex.Event) error { return nil })
	running(t, c)
	waitStreaming(t, url, "hb_walex")
	exec(t, url, `INSERT INTO other SELECT generate_series(1, 20000)`)
	target := currentWAL(t, url)
	waitFor(t, 20*time.Second, fmt.Sprintf("confirmed_flush_lsn at %s while the subscribed table is idle", target), func() (bool, error) {
		return slotFlushLSN(t, url, "hb_walex") >= target, nil
	})
	st := c.Stats()
	if !st.Connected || st.AckedLSN < target || st.ReceivedLSN < st.AckedLSN || st.Transactions != 0 {
		t.Errorf("Stats() = %+v", st)
	}
}

func currentWAL(tb testing.TB, url string) walex.LSN {
	tb.Helper()
	return queryLSN(tb, url, `SELECT pg_current_wal_lsn()::text AS lsn`)
}

// TestInvalidatedSlot: a durable slot whose WAL the server removed
// (max_slot_wal_keep_size exceeded) gives ErrSlotInvalidated at once.
func TestInvalidatedSlot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	srv, err := pgtest.Start(ctx, pgtest.Options{Settings: map[string]string{"max_slot_wal_keep_size": "1MB", "wal_keep_size": "0", "min_wal_size": "32MB", "max_wal_size": "32MB"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if srv.Version < 13 {
		t.Skipf("PostgreSQL %d has no max_slot_wal_keep_size", srv.Version)
	}
	url := srv.URL("postgres")
	if err := srv.Exec(ctx, "postgres", `CREATE TABLE t (id int PRIMARY KEY, pad text); CREATE PUBLICATION events FOR TABLE t`); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, url, "lost", []string{"t"}, durable)
	r := newRecorder()
	c.OnInsert("t", r.handler("c"))
	stop := running(t, c)
	waitStreaming(t, url, "lost_walex")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Write far more WAL than the slot may keep, switching segments, and
	// checkpoint until the server gives the slot up.
	deadline := time.Now().Add(60 * time.Second)
	for {
		row := queryRow(t, url, `SELECT coalesce(wal_status, '') AS s FROM pg_replication_slots WHERE slot_name = 'lost_walex'`)
		if row["s"] == "lost" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not invalidated; wal_status %v", row["s"])
		}
		if err := srv.Exec(ctx, "postgres", `INSERT INTO t SELECT g, repeat('x', 2000) FROM generate_series(1, 3000) g ON CONFLICT (id) DO UPDATE SET pad = excluded.pad || 'y'; SELECT pg_switch_wal(); CHECKPOINT`); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	err = c.Run(ctx)
	if !errors.Is(err, walex.ErrSlotInvalidated) || !walex.IsPermanent(err) || time.Since(start) > 10*time.Second {
		t.Fatalf("Run() = %v after %v, want ErrSlotInvalidated at once", err, time.Since(start))
	}
}

// TestAcknowledgementLatency commits 200 transactions a second for five
// seconds against a durable slot with the default status interval of 10 s,
// and measures, for each transaction, the time from its handler's return
// to the slot's confirmed_flush_lsn covering it: acknowledgements go out
// within milliseconds, not at the next periodic status update.
func TestAcknowledgementLatency(t *testing.T) {
	const (
		txns = 1000
		rate = 200 // transactions per second
		slot = "acklat_walex"
	)
	url := testDB(t, faultTable)
	type handled struct {
		commit walex.LSN
		at     time.Time
	}
	done := make(chan handled, txns)
	c := newClient(t, url, "acklat", []string{"t"}, durable, func(cfg *walex.Config) {
		cfg.StatusInterval = 0 // the default, 10 s
		cfg.Logger = testLogger(t)
	})
	c.OnInsert("t", func(ctx context.Context, evs []walex.Event) error {
		done <- handled{evs[0].CommitLSN, time.Now()}
		return nil
	})
	running(t, c)
	waitStreaming(t, url, slot)

	// The slot's position as the server has it, sampled every 2 ms.
	type sample struct {
		at    time.Time
		flush walex.LSN
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mon := connect(t, url)
	samples := make(chan []sample, 1)
	go func() {
		var ss []sample
		for ctx.Err() == nil {
			var f *string
			err := mon.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&f)
			if lsn, perr := parseLSN(f); err == nil && perr == nil {
				ss = append(ss, sample{time.Now(), lsn})
			}
			time.Sleep(2 * time.Millisecond)
		}
		samples <- ss
	}()
	w := &writer{url: url, rowsPerTxn: 1}
	start := time.Now()
	err := w.run(ctx, 0, txns, func(k int) error {
		time.Sleep(time.Until(start.Add(time.Duration(k) * time.Second / rate))) // the writer's pace
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var hs []handled
	for len(hs) < txns {
		select {
		case h := <-done:
			hs = append(hs, h)
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d transactions handled", len(hs), txns)
		}
	}
	last := hs[len(hs)-1].commit
	mon2 := connect(t, url) // mon is the sampler's
	waitFor(t, 30*time.Second, "the slot to confirm the last transaction", func() (bool, error) {
		var f *string
		if err := mon2.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&f); err != nil {
			return false, err
		}
		lsn, err := parseLSN(f)
		return lsn > last, err
	})
	time.Sleep(10 * time.Millisecond) // one more sample past it
	cancel()
	ss := <-samples
	var lat []time.Duration
	j := 0
	for _, h := range hs {
		for j < len(ss) && ss[j].flush <= h.commit {
			j++
		}
		if j == len(ss) {
			t.Fatalf("no sample of the slot covers transaction %s", h.commit)
		}
		lat = append(lat, max(0, ss[j].at.Sub(h.at)))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("handler return to confirmed_flush_lsn, %d transactions at %d/s: p50 %v, p99 %v, max %v (slot sampled every 2 ms)",
		txns, rate, p50.Round(time.Millisecond), p99.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	if p99 > time.Second {
		t.Errorf("p99 acknowledgement latency %v, want well under a second (the status interval is 10 s)", p99)
	}
}
