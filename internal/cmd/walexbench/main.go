// Command walexbench compares walex with a raw pglogrepl reader on the same
// replication streams, against a throwaway PostgreSQL it starts itself
// (internal/pgtest; WALEX_PG_BIN or WALEX_PG_VERSION choose the binaries).
//
// For each workload it creates a fresh database, the table and the
// publication, and one durable pgoutput slot per reader and run, all
// before the workload, so that every slot sees the same WAL. It then runs
// the workload to completion and drains the slots one after another, each
// reader in its own child process (walexbench reader ...), and takes the
// child's peak RSS and user+system CPU time from its rusage. A reader is
// done when it has received every expected event.
//
// Readers:
//
//   - raw-v1: pglogrepl, pgoutput proto_version 1; receives and parses the
//     messages with pglogrepl.Parse and counts inserts and updates (no typed
//     values, no handlers);
//   - raw-v2: the same with proto_version 2, streaming 'on' and ParseV2;
//   - raw-v2b: raw-v2 with binary 'true' (values in binary, as walex asks
//     for them when it can);
//   - walex: walex.New/Run with the default configuration (durable slot) and
//     a no-op OnInsert/OnUpdate handler.
//
// Workloads (sizes scale with -scale):
//
//   - W1: one transaction inserting 1,000,000 rows into
//     (id bigserial, t text, n numeric, ts timestamptz, j jsonb);
//   - W2: 100,000 single-row insert transactions from pgbench, 4 clients;
//   - W3: 200,000 rows of a REPLICA IDENTITY FULL table updated in 20
//     transactions of 10,000;
//   - snapshot: the existing rows of a 1,000,000-row table of W1's shape,
//     read once with COPY (the floor, reader copy) and by walex with
//     Config.Snapshot = SnapshotInitialOnly (reader walex-snapshot) at each
//     -snapshot-chunks size, while a writer updates 1% of the rows;
//   - latency: commit → handler latency at a steady 1,000 transactions/s.
//
// Run it from the repository root:
//
//	go run ./internal/cmd/walexbench                  # everything, 3 runs
//	go run ./internal/cmd/walexbench -scale 0.01 -runs 1 -workloads W1,latency
//
// See BENCHMARKS.md for what each number means.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/walex-go/walex/internal/pgtest"
)

type options struct {
	workloads      []string
	readers        []string
	latencyReaders []string
	runs           int
	scale          float64
	latencyDur     time.Duration
	latencyRate    int
	snapshotChunks []int
	timeout        time.Duration
}

// allWorkloads are the workloads -workloads accepts, in the order of its default.
var allWorkloads = []string{"W1", "W2", "W3", "snapshot", "latency"}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "reader" {
		readerMain(os.Args[2:])
		return
	}
	var (
		workloads      = flag.String("workloads", strings.Join(allWorkloads, ","), "comma-separated workloads to run: "+strings.Join(allWorkloads, ", "))
		readers        = flag.String("readers", strings.Join(defaultKinds, ","), "comma-separated readers for W1-W3: "+strings.Join(allKinds, ", "))
		latencyReaders = flag.String("latency-readers", kindRawV2+","+kindWalex, "comma-separated readers for the latency workload")
		runs           = flag.Int("runs", 3, "measurements per reader and workload")
		scale          = flag.Float64("scale", 1, "multiplies the row counts of W1-W3 (e.g. 0.01 for a smoke run)")
		latencyDur     = flag.Duration("latency-duration", 10*time.Second, "how long the latency writer runs (after a 1 s warm-up)")
		latencyRate    = flag.Int("latency-rate", 1000, "transactions per second of the latency writer")
		snapshotChunks = flag.String("snapshot-chunks", "1000,5000,10000,20000", "comma-separated Config.SnapshotChunkSize values of the snapshot workload")
		timeout        = flag.Duration("timeout", 15*time.Minute, "per reader process")
	)
	flag.Parse()
	o := options{
		workloads:      splitList(*workloads),
		readers:        splitList(*readers),
		latencyReaders: splitList(*latencyReaders),
		runs:           *runs,
		scale:          *scale,
		latencyDur:     *latencyDur,
		latencyRate:    *latencyRate,
		timeout:        *timeout,
	}
	err := o.parseChunks(*snapshotChunks)
	if err == nil {
		err = o.check()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "walexbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "walexbench:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (o *options) check() error {
	for i, w := range o.workloads {
		j := slices.IndexFunc(allWorkloads, func(name string) bool { return strings.EqualFold(name, w) })
		if j < 0 {
			return fmt.Errorf("unknown workload %q (want %s)", w, strings.Join(allWorkloads, ", "))
		}
		o.workloads[i] = allWorkloads[j]
	}
	for _, k := range append(slices.Clone(o.readers), o.latencyReaders...) {
		if !slices.Contains(allKinds, k) {
			return fmt.Errorf("unknown reader %q (want %s)", k, strings.Join(allKinds, ", "))
		}
	}
	if o.runs < 1 {
		return fmt.Errorf("-runs must be at least 1")
	}
	if o.scale <= 0 {
		return fmt.Errorf("-scale must be positive")
	}
	if o.latencyRate < 1 || o.latencyDur <= 0 {
		return fmt.Errorf("-latency-rate and -latency-duration must be positive")
	}
	if slices.Contains(o.workloads, "snapshot") && len(o.snapshotChunks) == 0 {
		return fmt.Errorf("-snapshot-chunks is empty; the snapshot workload needs at least one chunk size")
	}
	return nil
}

// parseChunks parses the -snapshot-chunks list.
func (o *options) parseChunks(s string) error {
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return fmt.Errorf("-snapshot-chunks: %q is not a positive number of rows", f)
		}
		if !slices.Contains(o.snapshotChunks, n) {
			o.snapshotChunks = append(o.snapshotChunks, n)
		}
	}
	return nil
}

func run(ctx context.Context, o options) error {
	started := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	srv, err := pgtest.Start(sctx, pgtest.Options{})
	cancel()
	if err != nil {
		return err
	}
	defer srv.Stop()
	b := &bench{srv: srv, o: o}
	if b.self, err = os.Executable(); err != nil {
		return err
	}

	info, err := b.machineInfo(ctx)
	if err != nil {
		return err
	}
	fmt.Println(info)
	fmt.Println()

	var results []*workloadResult
	var lat []*latencyResult
	var snap *snapshotResult
	for _, name := range o.workloads {
		if name == "snapshot" {
			if snap, err = b.runSnapshot(ctx); err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
			continue
		}
		if name == "latency" {
			for _, k := range o.latencyReaders {
				r, err := b.runLatency(ctx, k)
				if err != nil {
					return fmt.Errorf("latency %s: %w", k, err)
				}
				lat = append(lat, r)
			}
			continue
		}
		r, err := b.runWorkload(ctx, workloads[name])
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		results = append(results, r)
	}

	fmt.Println()
	fmt.Println("==================================== results ====================================")
	fmt.Println()
	for _, r := range results {
		r.print(os.Stdout)
		fmt.Println()
	}
	if snap != nil {
		snap.print(os.Stdout)
		fmt.Println()
	}
	if len(lat) > 0 {
		printLatency(os.Stdout, lat, o)
		fmt.Println()
	}
	printTargets(os.Stdout, results, snap, lat)
	fmt.Printf("\nwalexbench finished in %s; load average at the end: %s\n", time.Since(started).Round(time.Second), loadAvg())
	return nil
}
