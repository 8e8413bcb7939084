package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walex-go/walex"
)

// The reader kinds. Each runs in its own child process (walexbench reader
// ...), so that the parent can read its peak RSS and CPU time from rusage.
const (
	kindRawV1 = "raw-v1" // pglogrepl, pgoutput proto_version 1
	kindRawV2 = "raw-v2" // pglogrepl, pgoutput proto_version 2, streaming 'on'
	// kindRawV2Bin is raw-v2 with binary 'true' (PostgreSQL 14+), so that
	// walex's binary transfer is compared with a raw reader that asks for
	// the same.
	kindRawV2Bin = "raw-v2b"
	kindWalex    = "walex" // walex.New/Run, default configuration
	// kindWalexTx is walex with one OnTx handler that copies each event's
	// ID into a table of the same server with COPY, through a
	// PostgresCheckpointer: the cost of exactly-once.
	kindWalexTx = "walex-tx"
)

// allKinds are the readers -readers accepts; defaultKinds those it runs
// by default.
var (
	allKinds     = []string{kindRawV1, kindRawV2, kindRawV2Bin, kindWalex, kindWalexTx}
	defaultKinds = []string{kindRawV1, kindRawV2, kindRawV2Bin, kindWalex}
)

// isWalex reports whether a reader kind is walex (not a raw reader).
func isWalex(kind string) bool { return strings.HasPrefix(kind, kindWalex) }

// The readers of the snapshot workload (snapshot.go); they read a table's
// rows rather than a slot.
const (
	kindCopy      = "copy"           // COPY (SELECT ...) TO STDOUT, the floor
	kindWalexSnap = "walex-snapshot" // walex with SnapshotInitialOnly
)

// readerResult is what a child prints on stdout (one JSON object).
type readerResult struct {
	Kind      string        `json:"kind"`
	Events    int64         `json:"events"`
	Elapsed   time.Duration `json:"elapsed_ns"` // connect → last expected event
	First     time.Duration `json:"first_ns"`   // connect → first event
	Proto     string        `json:"proto"`      // "v1", "v2", "v2+stream"
	Streamed  int64         `json:"stream_starts,omitempty"`
	Updates   int64         `json:"updates,omitempty"` // walex-snapshot: Update events delivered alongside the Read events
	Latencies [][2]int64    `json:"recv,omitempty"`    // -record-ids: (id, receive time in Unix ns) per event
}

// readerMain is the child process: it drains one slot with one reader and
// prints a readerResult.
func readerMain(args []string) {
	fs := flag.NewFlagSet("reader", flag.ExitOnError)
	kind := fs.String("kind", "", "raw-v1, raw-v2, raw-v2b, walex, copy or walex-snapshot")
	url := fs.String("url", "", "database URL")
	slot := fs.String("slot", "", "logical replication slot (pgoutput), created beforehand")
	pub := fs.String("pub", "", "publication")
	table := fs.String("table", "", "table (public schema)")
	expect := fs.Int64("expect", 0, "stop after this many insert/update events; 0: read the number from stdin")
	recordIDs := fs.Bool("record-ids", false, "record (id, receive time) of every event (latency mode)")
	timeout := fs.Duration("timeout", 15*time.Minute, "give up after this long")
	chunk := fs.Int("chunk", 0, "walex-snapshot: Config.SnapshotChunkSize (0: walex's default)")
	_ = fs.Parse(args)

	// WALEXBENCH_CPUPROFILE=dir writes a CPU profile of each reader
	// process to dir/<kind>-<pid>.pprof, for looking into where time goes.
	if dir := os.Getenv("WALEXBENCH_CPUPROFILE"); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", *kind, os.Getpid())))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r := &reader{kind: *kind, url: *url, slot: *slot, pub: *pub, table: *table, recordIDs: *recordIDs, chunk: *chunk, done: make(chan struct{})}
	r.expect.Store(*expect)
	if *kind == kindCopy || *kind == kindWalexSnap {
		r.expect.Store(-1) // they read the whole table, however many rows it has
	} else if *expect == 0 {
		r.expect.Store(-1)
		go func() {
			// The parent writes the final count once its writer has finished.
			line, err := bufio.NewReader(os.Stdin).ReadString('\n')
			n, perr := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
			if (err != nil && !errors.Is(err, io.EOF)) || perr != nil {
				fmt.Fprintf(os.Stderr, "walexbench reader: bad expected count on stdin %q: %v %v\n", line, err, perr)
				os.Exit(2)
			}
			r.setExpect(n)
		}()
	}
	var res *readerResult
	var err error
	switch *kind {
	case kindRawV1, kindRawV2, kindRawV2Bin:
		res, err = r.runRaw(ctx)
	case kindWalex, kindWalexTx:
		res, err = r.runWalex(ctx)
	case kindCopy:
		res, err = r.runCopy(ctx)
	case kindWalexSnap:
		res, err = r.runWalexSnapshot(ctx)
	default:
		err = fmt.Errorf("unknown reader kind %q", *kind)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "walexbench reader %s: %v\n", *kind, err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		os.Exit(1)
	}
}

type reader struct {
	kind, url, slot, pub, table string
	recordIDs                   bool
	chunk                       int // walex-snapshot

	expect atomic.Int64 // -1 until known
	done   chan struct{}
	once   sync.Once

	start  time.Time
	events atomic.Int64
	first  time.Duration
	last   atomic.Int64 // time.Duration since start of the last counted event
	recv   [][2]int64
}

func (r *reader) setExpect(n int64) {
	r.expect.Store(n)
	if r.events.Load() >= n {
		r.finish()
	}
}

func (r *reader) finish() {
	r.once.Do(func() { close(r.done) })
}

// count records n events received now; it reports whether all expected
// events have arrived.
func (r *reader) count(n int64) bool {
	now := time.Since(r.start)
	total := r.events.Add(n)
	if total == n {
		r.first = now
	}
	r.last.Store(int64(now))
	if exp := r.expect.Load(); exp >= 0 && total >= exp {
		r.finish()
		return true
	}
	return false
}

// finished reports whether every expected event has arrived.
func (r *reader) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *reader) result(proto string, streamStarts int64) *readerResult {
	return &readerResult{Kind: r.kind, Events: r.events.Load(), Elapsed: time.Duration(r.last.Load()), First: r.first,
		Proto: proto, Streamed: streamStarts, Latencies: r.recv}
}

// ---------------------------------------------------------------------------
// Raw pglogrepl reader

// runRaw receives and parses the stream with pglogrepl.Parse (v1) or
// ParseV2 (v2, streaming on) and counts the inserts and updates; it builds
// no typed values and calls no handlers. Like walex, it reads with
// context.Background() and a socket deadline for status updates (a
// per-message context would cost a goroutine hand-off per message). It
// sends a standby status update with the received position every
// statusInterval and when the server asks.
func (r *reader) runRaw(ctx context.Context) (*readerResult, error) {
	const statusInterval = 10 * time.Second
	cfg, err := pgconn.ParseConfig(r.url)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["replication"] = "database"
	v2 := r.kind == kindRawV2 || r.kind == kindRawV2Bin
	args := []string{"proto_version '1'", "publication_names '" + r.pub + "'"}
	proto := "v1"
	if v2 {
		args = []string{"proto_version '2'", "publication_names '" + r.pub + "'", "streaming 'on'"}
		proto = "v2+stream"
	}
	if r.kind == kindRawV2Bin {
		args = append(args, "binary 'true'")
		proto += "+bin"
	}

	r.start = time.Now()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	if err := pglogrepl.StartReplication(ctx, conn, r.slot, 0, pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		return nil, err
	}
	nc := conn.Conn()
	// Interrupt a blocked read when ctx ends or when the expected count
	// arrives (on stdin) after the last event.
	stopCtx := context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(time.Now()) })
	defer stopCtx()
	stopDone := make(chan struct{})
	defer close(stopDone)
	go func() {
		select {
		case <-r.done:
			_ = nc.SetReadDeadline(time.Now())
		case <-stopDone:
		}
	}()

	var received pglogrepl.LSN
	sendStatus := func() error {
		return pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: received})
	}
	var streamStarts int64
	inStream := false
	lastStatus := time.Now()
	var deadline time.Time
	for {
		if time.Since(lastStatus) >= statusInterval {
			if err := sendStatus(); err != nil {
				return nil, err
			}
			lastStatus = time.Now()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w after %d events", ctx.Err(), r.events.Load())
		}
		if d := lastStatus.Add(statusInterval); !d.Equal(deadline) {
			deadline = d
			_ = nc.SetReadDeadline(d)
		}
		msg, err := conn.ReceiveMessage(context.Background())
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				if r.finished() {
					_ = nc.SetReadDeadline(time.Time{})
					_ = sendStatus()
					return r.result(proto, streamStarts), nil
				}
				deadline = time.Time{}
				continue
			}
			return nil, fmt.Errorf("receive: %w", err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok {
			if e, ok := msg.(*pgproto3.ErrorResponse); ok {
				return nil, pgconn.ErrorResponseToPgError(e)
			}
			continue
		}
		switch cd.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(cd.Data[1:])
			if err != nil {
				return nil, err
			}
			if ka.ReplyRequested {
				if err := sendStatus(); err != nil {
					return nil, err
				}
				lastStatus = time.Now()
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
			if err != nil {
				return nil, err
			}
			received = xld.WALStart + pglogrepl.LSN(len(xld.WALData))
			var m pglogrepl.Message
			if v2 {
				m, err = pglogrepl.ParseV2(xld.WALData, inStream)
			} else {
				m, err = pglogrepl.Parse(xld.WALData)
			}
			if err != nil {
				return nil, fmt.Errorf("parse %q message: %w", xld.WALData[0], err)
			}
			var tuple *pglogrepl.TupleData
			switch m := m.(type) {
			case *pglogrepl.StreamStartMessageV2:
				inStream = true
				streamStarts++
			case *pglogrepl.StreamStopMessageV2:
				inStream = false
			case *pglogrepl.InsertMessage:
				tuple = m.Tuple
			case *pglogrepl.InsertMessageV2:
				tuple = m.Tuple
			case *pglogrepl.UpdateMessage:
				tuple = m.NewTuple
			case *pglogrepl.UpdateMessageV2:
				tuple = m.NewTuple
			default:
				continue
			}
			if tuple == nil {
				continue
			}
			if r.recordIDs && len(tuple.Columns) > 0 {
				id, _ := strconv.ParseInt(string(tuple.Columns[0].Data), 10, 64)
				r.recv = append(r.recv, [2]int64{id, time.Now().UnixNano()})
			}
			if r.count(1) {
				_ = sendStatus()
				return r.result(proto, streamStarts), nil
			}
		}
	}
}

// ---------------------------------------------------------------------------
// walex reader

// runWalex runs a walex Client with the default configuration (durable
// slot: the one the parent created) and a no-op OnInsert and OnUpdate
// handler that only counts the events. Logging goes through a handler that
// prints warnings and errors and notes the protocol walex chose.
func (r *reader) runWalex(ctx context.Context) (*readerResult, error) {
	logs := newProtoLog()
	c, err := walex.New(walex.Config{
		URL:           r.url,
		Name:          "walexbench",
		Publication:   r.pub,
		Subscriptions: []string{r.table},
		DurableSlot:   true,
		SlotName:      r.slot,
		Logger:        slog.New(logs),
	})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	h := func(_ context.Context, events []walex.Event) error {
		if r.recordIDs {
			now := time.Now().UnixNano()
			mu.Lock()
			for i := range events {
				id, _ := events[i].NewRecord["id"].(int64)
				r.recv = append(r.recv, [2]int64{id, now})
			}
			mu.Unlock()
		}
		r.count(int64(len(events)))
		return nil
	}
	if r.kind == kindWalexTx {
		pool, err := r.sink(ctx)
		if err != nil {
			return nil, err
		}
		defer pool.Close()
		cp, err := walex.NewPostgresCheckpointer(pool, "walexbench_checkpoints")
		if err != nil {
			return nil, err
		}
		c.OnTx(r.table, cp, func(ctx context.Context, tx pgx.Tx, events []walex.Event) error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"walexbench_sink"}, []string{"event_id"}, pgx.CopyFromSlice(len(events), func(i int) ([]any, error) {
				return []any{events[i].ID()}, nil
			}))
			return err
		}, walex.WithName("sink"))
		// Counted once committed: middleware runs around the transaction.
		c.Use(func(next walex.Handler) walex.Handler {
			return func(ctx context.Context, events []walex.Event) error {
				if err := next(ctx, events); err != nil {
					return err
				}
				return h(ctx, events)
			}
		})
	} else {
		c.OnInsert(r.table, h)
		c.OnUpdate(r.table, h)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	r.start = time.Now()
	go func() { errc <- c.Run(runCtx) }()
	select {
	case <-r.done:
		cancel()
		if err := <-errc; err != nil {
			return nil, err
		}
	case err := <-errc:
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("walex stopped after %d events: %v", r.events.Load(), err)
	}
	mu.Lock()
	defer mu.Unlock()
	return r.result(logs.proto(), 0), nil
}

// sink returns a pool on the reader's database with an empty table
// walexbench_sink for kindWalexTx.
func (r *reader) sink(ctx context.Context) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, r.url)
	if err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `DROP TABLE IF EXISTS walexbench_sink, walexbench_checkpoints; CREATE UNLOGGED TABLE walexbench_sink (event_id text NOT NULL)`); err != nil {
		pool.Close()
		return nil, fmt.Errorf("sink table: %w", err)
	}
	return pool, nil
}

// protoLog passes warnings and errors on and remembers the protocol
// version and streaming flag from the replication connection's
// "replication started" record.
type protoLog struct {
	next slog.Handler
	mu   *sync.Mutex
	p    *string
}

// newProtoLog returns a protoLog that prints warnings and errors to
// stderr.
func newProtoLog() *protoLog {
	return &protoLog{next: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), mu: new(sync.Mutex), p: new(string)}
}

func (h *protoLog) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (h *protoLog) Handle(ctx context.Context, rec slog.Record) error {
	if strings.Contains(rec.Message, "replication started") {
		var v, s, b string
		rec.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "proto_version":
				v = a.Value.String()
			case "streaming":
				if a.Value.String() == "true" {
					s = "+stream"
				}
			case "binary":
				if a.Value.String() == "true" {
					b = "+bin"
				}
			}
			return true
		})
		h.mu.Lock()
		*h.p = "v" + v + s + b
		h.mu.Unlock()
	}
	if h.next.Enabled(ctx, rec.Level) {
		return h.next.Handle(ctx, rec)
	}
	return nil
}

func (h *protoLog) proto() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *h.p == "" {
		return "?"
	}
	return *h.p
}

func (h *protoLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &protoLog{next: h.next.WithAttrs(as), mu: h.mu, p: h.p}
}

func (h *protoLog) WithGroup(name string) slog.Handler {
	return &protoLog{next: h.next.WithGroup(name), mu: h.mu, p: h.p}
}
