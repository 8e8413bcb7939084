// Command fanout shows walex fanning changes out through NATS JetStream:
// one walex client publishes every change of a table into a stream, and
// two workers — on two machines in production, two goroutines here, each
// with its own NATS connection — share the work, each event going to
// exactly one of them.
//
// It starts a throwaway PostgreSQL (or uses DATABASE_URL) and an
// in-process NATS server with JetStream, inserts and updates a few rows,
// prints which worker handled which event, checks that every event was
// handled exactly once, and exits.
//
//	go run .                              # from examples/fanout; needs PostgreSQL binaries
//	DATABASE_URL=postgres://... go run .
//
// With DATABASE_URL the server needs wal_level = logical; the table and
// publication the example creates (walex_fanout_orders, walex_fanout) are
// dropped again at the end.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/walex-go/walex"
	walexnats "github.com/walex-go/walex/destinations/nats"
	"github.com/walex-go/walex/internal/demo"
)

// setup creates the example's table and publication; teardown drops them.
var (
	setup = []string{
		`DROP PUBLICATION IF EXISTS walex_fanout`,
		`DROP TABLE IF EXISTS walex_fanout_orders`,
		`CREATE TABLE walex_fanout_orders (id bigserial PRIMARY KEY, item text NOT NULL, qty int NOT NULL)`,
		`CREATE PUBLICATION walex_fanout FOR TABLE walex_fanout_orders`,
	}
	teardown = []string{
		`DROP PUBLICATION IF EXISTS walex_fanout`,
		`DROP TABLE IF EXISTS walex_fanout_orders`,
	}
)

// out is where the example prints (the test reads it).
var out io.Writer = os.Stdout

const (
	orders  = 8 // rows inserted; each is updated once too
	events  = 2 * orders
	workers = 2
)

func main() {
	demo.Main("fanout", setup, teardown, run)
}

func run(ctx context.Context, env demo.Env) error {
	ns, err := startNATS()
	if err != nil {
		return err
	}
	defer ns.Shutdown()

	// The publishing side: one walex client per database.
	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return err
	}
	pub, err := walexnats.New(js, walexnats.Options{CreateStream: true}) // stream WALEX, subjects walex.>
	if err != nil {
		return err
	}
	if err := pub.EnsureStream(ctx); err != nil {
		return err
	}
	client, err := walex.New(walex.Config{
		URL:           env.URL,
		Name:          "fanout",
		Publication:   "walex_fanout",
		Subscriptions: []string{"walex_fanout_orders"},
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		// In production add DurableSlot: true, so that no change is lost
		// while the client is down (the stream drops what comes twice).
	})
	if err != nil {
		return err
	}
	client.OnEvent(walex.AllTables, pub.Handle)

	// The consuming side: one durable consumer, "order-workers", shared by
	// every worker. JetStream hands each message to one of the workers
	// pulling from it: the JetStream form of a NATS queue group. (A worker
	// with a consumer of its own would see every event instead.) The
	// workers run in parallel, so the order across them is not kept: an
	// update may be handled before the insert of its row. Where the order
	// of a row's changes matters, give each worker its own consumer over
	// part of the subjects, or compare the events' "lsn" and "index".
	if _, err := js.CreateOrUpdateConsumer(ctx, "WALEX", jetstream.ConsumerConfig{
		Durable:       "order-workers",
		FilterSubject: "walex.public.walex_fanout_orders.>",
		AckPolicy:     jetstream.AckExplicitPolicy,
	}); err != nil {
		return err
	}
	log := &handledLog{done: make(chan struct{})}
	var wg sync.WaitGroup
	workerErr := make(chan error, workers)
	wctx, stopWorkers := context.WithCancel(ctx)
	defer func() { stopWorkers(); wg.Wait() }()
	for i := 1; i <= workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := worker(wctx, ns.ClientURL(), fmt.Sprintf("worker-%d", i), log); err != nil {
				workerErr <- err
			}
		}()
	}

	running, err := demo.Start(ctx, env, client, "fanout_walex")
	if err != nil {
		return err
	}
	for i := 1; i <= orders; i++ {
		if err := demo.Exec(ctx, env.DB,
			fmt.Sprintf(`INSERT INTO walex_fanout_orders (item, qty) VALUES ('item-%d', %d)`, i, i),
			fmt.Sprintf(`UPDATE walex_fanout_orders SET qty = qty * 10 WHERE id = %d`, i)); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "Wrote %d orders and updated each: %d events.\n", orders, events)

	select {
	case err := <-workerErr:
		return err
	default:
	}
	if err := running.Wait(ctx, log.done); err != nil {
		return err
	}
	stopWorkers()
	wg.Wait()
	if err := running.Stop(); err != nil {
		return err
	}
	return log.summary()
}

// startNATS starts an in-process NATS server with JetStream, its store in
// a temporary directory; Shutdown removes it.
func startNATS() (*natsServer, error) {
	dir, err := os.MkdirTemp("", "walex-fanout-*")
	if err != nil {
		return nil, err
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		os.RemoveAll(dir)
		return nil, errors.New("the NATS server did not start within 10 s")
	}
	fmt.Fprintf(out, "NATS %s with JetStream is listening on %s\n", server.VERSION, s.ClientURL())
	return &natsServer{Server: s, dir: dir}, nil
}

type natsServer struct {
	*server.Server
	dir string
}

func (s *natsServer) Shutdown() {
	s.Server.Shutdown()
	s.WaitForShutdown()
	os.RemoveAll(s.dir)
}

// worker is one machine of the pool: its own connection, the shared
// durable consumer, one message at a time.
func worker(ctx context.Context, url, name string, log *handledLog) error {
	nc, err := natsgo.Connect(url, natsgo.Name(name))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.Consumer(ctx, "WALEX", "order-workers")
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var e struct {
			ID        string         `json:"id"`
			Type      string         `json:"type"`
			NewRecord map[string]any `json:"new_record"`
		}
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			_ = m.Term() // not an event: never deliver it again
			return
		}
		time.Sleep(20 * time.Millisecond) // the work
		// Acknowledge once done: a worker that dies before this gets its
		// message redelivered to another one (after AckWait).
		if err := m.DoubleAck(ctx); err != nil {
			return // redelivered later, to one of the workers
		}
		log.add(name, e.ID, fmt.Sprintf("%-6s order %v (%v x %v)", e.Type, e.NewRecord["id"], e.NewRecord["qty"], e.NewRecord["item"]))
	}, jetstream.PullMaxMessages(1)) // take one at a time, so that the work spreads
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

// handledLog records which worker handled which event.
type handledLog struct {
	mu   sync.Mutex
	by   map[string][]string // event ID → workers
	per  map[string]int      // worker → events
	done chan struct{}
}

func (l *handledLog) add(worker, id, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by == nil {
		l.by, l.per = map[string][]string{}, map[string]int{}
	}
	l.by[id] = append(l.by[id], worker)
	l.per[worker]++
	fmt.Fprintf(out, "%s: %s  event %s\n", worker, what, id)
	if len(l.by) == events {
		close(l.done)
	}
}

// summary prints how the events were spread and fails if one was handled
// twice.
func (l *handledLog) summary() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, ws := range l.by {
		if len(ws) != 1 {
			return fmt.Errorf("event %s was handled %d times (by %v)", id, len(ws), ws)
		}
	}
	names := make([]string, 0, len(l.per))
	for w := range l.per {
		names = append(names, w)
	}
	slices.Sort(names)
	for _, w := range names {
		fmt.Fprintf(out, "%s handled %d events\n", w, l.per[w])
	}
	fmt.Fprintf(out, "Done: %d events, each handled by exactly one of %d workers.\n", len(l.by), workers)
	return nil
}
