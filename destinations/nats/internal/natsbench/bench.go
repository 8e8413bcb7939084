package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/walex-go/walex"
	walexnats "github.com/walex-go/walex/destinations/nats"
	"github.com/walex-go/walex/internal/pgtest"
)

// The two readers of every workload.
const (
	readerNoop = "noop"
	readerJS   = "jetstream"
)

type result struct {
	name, desc string
	events     int64
	rates      map[string][]float64 // events/s per reader, one per run
}

func run(ctx context.Context, o options) error {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	srv, err := pgtest.Start(sctx, pgtest.Options{})
	cancel()
	if err != nil {
		return err
	}
	defer srv.Stop()

	dir, err := os.MkdirTemp("", "natsbench-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("the NATS server is not ready after 10 s")
	}
	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return err
	}
	fmt.Printf("PostgreSQL %d, NATS server %s (in process, JetStream file storage), %d run(s), scale %g\n\n", srv.Version, server.VERSION, o.runs, o.scale)

	var results []*result
	for _, name := range o.workloads {
		r, err := runWorkload(ctx, srv, js, o, name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		results = append(results, r)
	}
	report(os.Stdout, results)
	return nil
}

func runWorkload(ctx context.Context, srv *pgtest.Server, js jetstream.JetStream, o options, name string) (*result, error) {
	w := benchWorkloads[name]
	r := &result{name: name, desc: w.describe(o), rates: map[string][]float64{}}
	logf("%s: %s", name, r.desc)
	db := "natsbench_" + strings.ToLower(name)
	if err := srv.Exec(ctx, "postgres", "CREATE DATABASE "+db+" TEMPLATE template0"); err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, srv.URL(db))
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	for _, sql := range []string{fmt.Sprintf(tableDDL, w.table), fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", publication, w.table)} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return nil, err
		}
	}
	slot := func(run int, reader string) string {
		return fmt.Sprintf("%s_%s_r%d", strings.ToLower(name), reader, run)
	}
	for run := 1; run <= o.runs; run++ {
		for _, reader := range []string{readerNoop, readerJS} {
			if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot(run, reader)); err != nil {
				return nil, err
			}
		}
	}
	start := time.Now()
	if r.events, err = w.write(ctx, srv, o, db, conn); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	logf("%s: wrote %d events in %s", name, r.events, time.Since(start).Round(time.Millisecond))

	for run := 1; run <= o.runs; run++ {
		order := []string{readerNoop, readerJS}
		if run%2 == 0 {
			slices.Reverse(order)
		}
		for _, reader := range order {
			rate, err := drain(ctx, js, o, srv.URL(db), slot(run, reader), w.table, r.events, reader == readerJS)
			if err != nil {
				return nil, fmt.Errorf("run %d, %s: %w", run, reader, err)
			}
			r.rates[reader] = append(r.rates[reader], rate)
			logf("%s run %d/%d %-9s %10.0f events/s", name, run, o.runs, reader, rate)
			if err := dropSlot(ctx, conn, slot(run, reader)); err != nil {
				logf("drop slot: %v", err)
			}
		}
	}
	return r, nil
}

// dropSlot drops a slot whose reader has stopped: the walsender may
// still be exiting when Run returns, so an active slot is tried again
// for a few seconds.
func dropSlot(ctx context.Context, conn *pgx.Conn, slot string) error {
	for try := 0; ; try++ {
		_, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot)
		var pgErr *pgconn.PgError
		if err == nil || try == 50 || !errors.As(err, &pgErr) || pgErr.Code != "55006" { // object_in_use
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// drain streams slot with walex until the handler has taken events
// events, and returns the rate from the start of Run. With toJS the
// handler is a Publisher into a fresh stream; else a no-op.
func drain(ctx context.Context, js jetstream.JetStream, o options, url, slot, table string, events int64, toJS bool) (float64, error) {
	c, err := walex.New(walex.Config{
		URL: url, Name: "natsbench", Publication: publication, Subscriptions: []string{table},
		DurableSlot: true, SlotName: slot,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return 0, err
	}
	var h walex.Handler = func(context.Context, []walex.Event) error { return nil }
	if toJS {
		const stream = "NATSBENCH"
		if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, err
		}
		p, err := walexnats.New(js, walexnats.Options{
			Prefix: "natsbench", MaxInFlight: o.maxInFlight,
			CreateStream: true, Stream: jetstream.StreamConfig{Name: stream},
		})
		if err != nil {
			return 0, err
		}
		if err := p.EnsureStream(ctx); err != nil {
			return 0, err
		}
		defer func() { _ = js.DeleteStream(context.Background(), stream) }()
		h = p.Handle
	}
	var seen atomic.Int64
	done := make(chan struct{})
	c.OnInsert(table, func(ctx context.Context, evs []walex.Event) error {
		if err := h(ctx, evs); err != nil {
			return err
		}
		if seen.Add(int64(len(evs))) == events {
			close(done)
		}
		return nil
	})
	rctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	runErr := make(chan error, 1)
	start := time.Now()
	go func() { runErr <- c.Run(rctx) }()
	select {
	case <-done:
		elapsed := time.Since(start)
		cancel()
		if err := <-runErr; err != nil {
			return 0, err
		}
		return float64(events) / elapsed.Seconds(), nil
	case err := <-runErr:
		if err == nil {
			err = rctx.Err()
		}
		return 0, fmt.Errorf("walex stopped after %d of %d events: %w", seen.Load(), events, err)
	}
}

// report prints the medians as a table.
func report(w io.Writer, results []*result) {
	fmt.Fprintln(w, "| workload | events | walex no-op ev/s | walex → JetStream ev/s | ratio |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, r := range results {
		noop, jsr := median(r.rates[readerNoop]), median(r.rates[readerJS])
		fmt.Fprintf(w, "| %s: %s | %d | %.0f | %.0f | %.2f |\n", r.name, r.desc, r.events, noop, jsr, jsr/noop)
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
