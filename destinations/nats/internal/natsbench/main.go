// Command natsbench measures walex publishing into NATS JetStream: events
// per second from a replication slot into a JetStream stream, through
// walexnats.Publisher.Handle, beside walex with a no-op handler on the
// same WAL. It starts a throwaway PostgreSQL (internal/pgtest) and an
// in-process NATS server with JetStream (file storage in a temporary
// directory).
//
// Workloads, as in internal/cmd/walexbench (sizes scale with -scale):
//
//   - W1: one transaction inserting 1,000,000 rows into
//     (id bigserial, t text, n numeric, ts timestamptz, j jsonb);
//   - W2: 100,000 single-row insert transactions from pgbench, 4 clients.
//
// For each workload it creates a fresh database, the table, the
// publication and two durable slots per run (one per reader) before the
// workload, so that both readers decode the same WAL; then it drains the
// slots one after another in this process: walex with a no-op handler,
// and walex with the Publisher into a fresh stream (its Nats-Msg-Id
// duplicate window on, as in production). A drain is done when the
// handler has seen, or JetStream has acknowledged, every row.
//
//	go run ./internal/natsbench                 # from destinations/nats
//	go run ./internal/natsbench -scale 0.05 -runs 1
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

type options struct {
	workloads   []string
	runs        int
	scale       float64
	maxInFlight int
	timeout     time.Duration
}

func main() {
	var (
		workloads   = flag.String("workloads", "W1,W2", "comma-separated workloads: W1, W2")
		runs        = flag.Int("runs", 3, "measurements per reader and workload")
		scale       = flag.Float64("scale", 1, "multiplies the row counts (e.g. 0.01 for a smoke run)")
		maxInFlight = flag.Int("max-in-flight", 0, "Options.MaxInFlight of the Publisher (0: its default)")
		timeout     = flag.Duration("timeout", 15*time.Minute, "per drain")
	)
	flag.Parse()
	o := options{runs: *runs, scale: *scale, maxInFlight: *maxInFlight, timeout: *timeout}
	for _, w := range strings.Split(*workloads, ",") {
		w = strings.ToUpper(strings.TrimSpace(w))
		if w == "" {
			continue
		}
		if _, ok := benchWorkloads[w]; !ok {
			fail(2, fmt.Errorf("unknown workload %q (want W1, W2)", w))
		}
		if !slices.Contains(o.workloads, w) {
			o.workloads = append(o.workloads, w)
		}
	}
	switch {
	case len(o.workloads) == 0:
		fail(2, fmt.Errorf("-workloads is empty"))
	case o.runs < 1:
		fail(2, fmt.Errorf("-runs must be at least 1"))
	case o.scale <= 0:
		fail(2, fmt.Errorf("-scale must be positive"))
	case o.maxInFlight < 0:
		fail(2, fmt.Errorf("-max-in-flight must not be negative"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fail(1, err)
	}
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "natsbench:", err)
	os.Exit(code)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
