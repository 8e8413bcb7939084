package walex_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/walex-go/walex"
)

// TestReconnectBackoff checks the reconnect policy: the backoff starts
// again from its initial delay after every connection that streamed, so
// that a client whose connections keep working for a while never reaches
// MaxAttempts and never waits long; Reconnect is not a failure at all.
func TestReconnectBackoff(t *testing.T) {
	url := testDB(t, faultTable)
	log, logs := captureLogs(t)
	c := newClient(t, url, "backoff", []string{"t"}, durable, func(cfg *walex.Config) {
		cfg.ReconnectPolicy = walex.RetryPolicy{MaxAttempts: 3, InitialDelay: 200 * time.Millisecond, MaxDelay: 20 * time.Second}
		cfg.Logger = log
	})
	rec := newRecorder()
	c.OnInsert("t", rec.handler("t"))
	r := startRun(t, c)
	mon := connect(t, url)
	ctx := context.Background()
	pid, err := waitWalsender(ctx, mon, "backoff_walex", 0, r.done)
	if err != nil {
		t.Fatal(err)
	}
	const kills = 6
	for i := 1; i <= kills; i++ {
		// The connection streams: a row arrives.
		exec(t, url, `INSERT INTO t VALUES ($1, 0)`, i)
		rec.wait(t, i)
		if _, err := mon.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		if pid, err = waitWalsender(ctx, mon, "backoff_walex", pid, r.done); err != nil {
			t.Fatalf("after kill %d: %v (Run: %v)", i, err, r.err)
		}
		// Without the reset the waits would double: 0.2, 0.4, ... 6.4 s,
		// and Run would give up at the third failure.
		if took := time.Since(killed); took > 3*time.Second {
			t.Errorf("kill %d: reconnected after %v, want about the initial delay of 200 ms", i, took.Round(time.Millisecond))
		}
	}
	if n := logs.count(`msg="walex: connection failed; reconnecting"`, "attempt=1 ", "delay=", "err="); n != kills {
		t.Errorf("%d reconnect records with attempt=1, a delay and the cause; want %d:\n%s", n, kills, logs)
	}

	for i := range 5 {
		c.Reconnect()
		if pid, err = waitWalsender(ctx, mon, "backoff_walex", pid, r.done); err != nil {
			t.Fatalf("after Reconnect %d: %v (Run: %v)", i+1, err, r.err)
		}
	}
	if ok, err := r.exited(); ok {
		t.Fatalf("Run returned %v, want it running (%d kills and 5 Reconnects with MaxAttempts 3)", err, kills)
	}
	if st := c.Stats(); st.Reconnects != kills+5 {
		t.Errorf("Stats().Reconnects = %d, want %d", st.Reconnects, kills+5)
	}
}

// TestUpdateConfigWhileDispatching changes the configuration in a loop
// while transactions are dispatched (run it with -race, as make test does):
// handlers see a consistent retry policy, and every event arrives.
func TestUpdateConfigWhileDispatching(t *testing.T) {
	url := testDB(t, faultTable)
	c := newClient(t, url, "updrace", []string{"t"}, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
	l := newLedger()
	c.OnInsert("t", l.handler(func() uint64 { return 0 }, nil, 0))
	r := startRun(t, c)
	waitStreaming(t, url, "updrace_walex")
	stop := make(chan struct{})
	updated := make(chan int)
	go func() {
		n := 0
		defer func() { updated <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			n++
			err := c.UpdateConfig(func(cfg *walex.Config) {
				cfg.RetryPolicy.MaxAttempts = 2 + n%5
				cfg.StatusInterval = time.Duration(100+n%50) * time.Millisecond
			})
			if err != nil {
				t.Errorf("UpdateConfig: %v", err)
				return
			}
		}
	}()
	const txns, rows = 50, 4
	w := &writer{url: url, rowsPerTxn: rows}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.run(ctx, 0, txns, func(int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := l.waitRows(ctx, txns*rows, r.done); err != nil {
		t.Fatal(err)
	}
	close(stop)
	t.Logf("%d configuration updates while %d transactions were dispatched", <-updated, txns)
	checkLedger(t, l.snapshot(), rows, txns*rows, nil)
}

// TestRunReturnsPromptly cancels Run at random moments of its stream, with
// a status interval far in the future and the receive timeout off: Run must
// return within a second every time (a cancellation that comes just before
// the reader blocks must still wake it).
func TestRunReturnsPromptly(t *testing.T) {
	url := testDB(t, faultTable)
	c := newClient(t, url, "prompt", []string{"t"}, func(cfg *walex.Config) {
		cfg.StatusInterval = time.Hour // cut to a third of wal_sender_timeout: 20 s
		cfg.ReceiveTimeout = -1
		cfg.Logger = testLogger(t)
	})
	c.OnInsert("t", func(context.Context, []walex.Event) error { return nil })
	for i := range 30 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		waitFor(t, 30*time.Second, "the client to stream", func() (bool, error) { return c.Stats().Connected, nil })
		time.Sleep(time.Duration(rand.N(20)) * time.Millisecond) // a random moment in the stream
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: Run() = %v", i, err)
			}
		case <-time.After(time.Second):
			t.Fatalf("round %d: Run did not return within a second of the cancellation", i)
		}
	}
}
