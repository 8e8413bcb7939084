package nats_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/walex-go/walex"
	walexnats "github.com/walex-go/walex/destinations/nats"
)

// TestConsumerStoppedMidBatch stops the walex client again and again while
// a handler call has messages in flight (from JetStream's acknowledgement
// callback, so right in the middle of a transaction), and starts it again
// with the same durable slot: walex delivers the unacknowledged
// transaction again, and the stream ends with every row exactly once.
func TestConsumerStoppedMidBatch(t *testing.T) {
	const (
		txns   = 5
		perTx  = 1000
		rows   = txns * perTx
		kills  = 3
		killAt = 1300 // acknowledgements (new or duplicate) between stops
	)
	url, conn := setupTable(t)
	ns := startNATS(t, nil)

	var (
		acks, dups atomic.Int64
		stop       atomic.Pointer[context.CancelFunc]
		nextKill   atomic.Int64
	)
	nextKill.Store(killAt)
	_, js := ns.connect(t, nil, jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, _ *natsgo.Msg, ack *jetstream.PubAck) {
		n := acks.Add(1)
		if ack.Duplicate {
			dups.Add(1)
		}
		if n == nextKill.Load() {
			if cancel := stop.Load(); cancel != nil {
				(*cancel)()
			}
		}
	}))
	p, err := walexnats.New(js, walexnats.Options{CreateStream: true, MsgIDPrefix: "db1:", MaxInFlight: 64})
	if err != nil {
		t.Fatal(err)
	}

	// The slot exists before the rows, so that every run streams from it.
	if _, err := conn.Exec(context.Background(), `SELECT pg_create_logical_replication_slot('restart_walex', 'pgoutput')`); err != nil {
		t.Fatal(err)
	}
	for range txns {
		insertRows(t, conn, perTx)
	}

	stops := 0
	for {
		last := stops == kills
		if last {
			nextKill.Store(0) // no more stops
		}
		c := newClient(t, url, "restart", func(cfg *walex.Config) { cfg.MaxBatchEvents = 400 })
		c.OnEvent(walex.AllTables, p.Handle)
		ctx, cancel := context.WithCancel(context.Background())
		stop.Store(&cancel)
		runErr := run(ctx, c)
		if last {
			waitFor(t, 60*time.Second, "every row in the stream", runErr, func() bool { return streamMsgs(t, js, "WALEX") >= rows })
			cancel()
		}
		select {
		case err := <-runErr:
			if err != nil {
				t.Fatalf("Run() = %v", err)
			}
		case <-time.After(60 * time.Second):
			cancel()
			t.Fatalf("Run did not stop; %d acknowledgements", acks.Load())
		}
		cancel()
		if last {
			break
		}
		stops++
		nextKill.Store(acks.Load() + killAt)
	}

	total, perID, got := streamContents(t, js, "WALEX", "db1:")
	if total != rows || len(perID) != rows || len(got) != rows {
		t.Fatalf("stream: %d messages, %s, %d rows; want %d of each, once", total, describe(perID), len(got), rows)
	}
	for id := int64(1); id <= rows; id++ {
		if !got[id] {
			t.Fatalf("row %d is not in the stream", id)
		}
	}
	// The stops did bring events again, and JetStream dropped them.
	if dups.Load() == 0 {
		t.Fatalf("no duplicate was published in %d acknowledgements: the stops did not interrupt a transaction", acks.Load())
	}
	t.Logf("%d acknowledgements, %d of them duplicates, %d stops", acks.Load(), dups.Load(), stops)
}

// TestNATSServerRestart restarts the NATS server twice while rows are
// written and published: the handler fails while it is down, walex
// retries, and every row arrives, once.
func TestNATSServerRestart(t *testing.T) {
	const rows = 3000
	url, conn := setupTable(t)
	ns := startNATS(t, nil)
	_, js := ns.connect(t, nil)
	// An acknowledgement timeout shorter than the outage: a call made
	// while the server is down fails (instead of waiting in the client's
	// reconnect buffer), and walex retries it.
	p, err := walexnats.New(js, walexnats.Options{CreateStream: true, AckTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, url, "natsrestart", func(cfg *walex.Config) {
		cfg.RetryPolicy = walex.RetryPolicy{MaxAttempts: -1, InitialDelay: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond}
	})
	c.OnEvent(walex.AllTables, p.Handle)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := run(ctx, c)
	waitFor(t, 30*time.Second, "the slot to stream", runErr, func() bool {
		var n int
		_ = conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'natsrestart_walex' AND active`).Scan(&n)
		return n == 1
	})

	// Small transactions, written while the server goes down and up.
	written := make(chan error, 1)
	go func() {
		for i := 0; i < rows; i += 10 {
			if _, err := conn.Exec(ctx, `INSERT INTO t (v) SELECT 'r' || i FROM generate_series(1, 10) i`); err != nil {
				written <- err
				return
			}
			time.Sleep(3 * time.Millisecond)
		}
		written <- nil
	}()
	for i, at := range []int{rows / 4, rows / 2} {
		waitFor(t, 30*time.Second, strconv.Itoa(at)+" rows in the stream", runErr, func() bool { return streamMsgs(t, js, "WALEX") >= at })
		ns.restart(500 * time.Millisecond)
		t.Logf("restart %d done", i+1)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "every row in the stream", runErr, func() bool { return streamMsgs(t, js, "WALEX") >= rows })
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	total, perID, got := streamContents(t, js, "WALEX", "")
	if total != rows || len(perID) != rows || len(got) != rows {
		t.Fatalf("stream: %d messages, %s, %d rows; want %d of each, once", total, describe(perID), len(got), rows)
	}
	if r := c.Stats().Retries; r == 0 {
		t.Fatal("Stats().Retries = 0: the handler never failed while the server was down")
	} else {
		t.Logf("%d retries", r)
	}
}
