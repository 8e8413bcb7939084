package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walex-go/walex"
)

// The snapshot workload: walex reading the existing rows of a table
// (Config.Snapshot = SnapshotInitialOnly) against one COPY of the same
// rows, the floor, while a writer updates 1% of them.

const (
	snapDB    = "walexbench_snapshot"
	snapTable = "snap"
	// snapColumns is every column of the table, as a snapshot reads them.
	snapColumns = "id, t, n, ts, j"
	// snapUpdate is the writer's statement: a non-key column, so that
	// the row keeps its key (and its size).
	snapUpdate = `UPDATE snap SET n = n + 1 WHERE id = $1`
	// defaultSnapChunk is walex's default Config.SnapshotChunkSize, the
	// one the target is checked at.
	defaultSnapChunk = 10000
	// copyPass stands for the COPY reader in a run's order of passes
	// (the others are chunk sizes).
	copyPass = 0
)

// snapSample is one reader process's pass over the table.
type snapSample struct {
	res     readerResult
	maxRSS  int64         // bytes
	cpu     time.Duration // user + system
	sys     time.Duration // system alone
	updates int           // the writer's updates committed while the process ran (walex)
}

// rate is rows (COPY) or Read events (walex) per second.
func (s snapSample) rate() float64 { return float64(s.res.Events) / s.res.Elapsed.Seconds() }

// cpuPerM is the process's CPU seconds per million rows.
func (s snapSample) cpuPerM() float64 { return s.cpu.Seconds() / float64(s.res.Events) * 1e6 }

type snapshotResult struct {
	rows    int64 // in the table
	updates int   // the writer's updates per walex pass, at most
	load    time.Duration
	tableMB float64
	runs    int
	chunks  []int
	copy    []snapSample
	walex   map[int][]snapSample // by chunk size
}

// runSnapshot runs the snapshot workload: it loads the table, then, run
// after run, reads it with COPY and with walex at each chunk size, in an
// order that rotates from run to run. Each walex pass has a writer
// updating random rows while it runs, and is followed by a VACUUM (not
// timed), so that every pass reads a table of the same shape.
func (b *bench) runSnapshot(ctx context.Context) (*snapshotResult, error) {
	o := b.o
	rows := scaled(1_000_000, o.scale)
	res := &snapshotResult{rows: int64(rows), updates: max(1, rows/100), runs: o.runs, chunks: o.snapshotChunks, walex: map[int][]snapSample{}}
	logf("snapshot: %s rows of W1's shape; COPY, then walex (SnapshotInitialOnly) at chunk sizes %v, with up to %s single-row UPDATEs during each",
		thousands(res.rows), res.chunks, thousands(int64(res.updates)))
	conn, err := b.freshDB(ctx, snapDB)
	if err != nil {
		return nil, err
	}
	defer func() {
		conn.Close(context.Background())
		if err := b.dropDB(snapDB); err != nil {
			logf("drop database %s: %v", snapDB, err)
		}
	}()
	if err := res.loadTable(ctx, conn); err != nil {
		return nil, fmt.Errorf("load the table: %w", err)
	}
	logf("snapshot: loaded %s rows in %s (%.0f MB with its index, after VACUUM ANALYZE)", thousands(res.rows), res.load.Round(time.Millisecond), res.tableMB)

	passes := append([]int{copyPass}, res.chunks...)
	for run := 1; run <= o.runs; run++ {
		// Rotate the order from run to run so that no pass always goes first.
		order := slices.Clone(passes)
		for range run - 1 {
			order = append(order[1:], order[0])
		}
		for _, chunk := range order {
			if chunk == copyPass {
				s, err := b.copyPass(ctx)
				if err != nil {
					return nil, fmt.Errorf("run %d, copy: %w", run, err)
				}
				res.copy = append(res.copy, s)
				logf("snapshot run %d/%d copy            %10s rows/s  elapsed %8s  RSS %6.1f MB  CPU %5.2f s (sys %5.2f)",
					run, o.runs, thousands(int64(s.rate())), s.res.Elapsed.Round(time.Millisecond), float64(s.maxRSS)/1e6, s.cpu.Seconds(), s.sys.Seconds())
				continue
			}
			s, err := b.walexPass(ctx, chunk, int(res.rows), res.updates, res.expected(chunk))
			if err != nil {
				return nil, fmt.Errorf("run %d, walex chunk %d: %w", run, chunk, err)
			}
			res.walex[chunk] = append(res.walex[chunk], s)
			logf("snapshot run %d/%d walex %6d    %10s rows/s  elapsed %8s  RSS %6.1f MB  CPU %5.2f s (sys %5.2f)  %s reads, %d updates made, %d delivered",
				run, o.runs, chunk, thousands(int64(s.rate())), s.res.Elapsed.Round(time.Millisecond), float64(s.maxRSS)/1e6, s.cpu.Seconds(), s.sys.Seconds(),
				thousands(s.res.Events), s.updates, s.res.Updates)
			if lo := res.rows - int64(s.updates); s.res.Events > res.rows || s.res.Events < lo {
				logf("snapshot: walex delivered %d Read events; a table of %d rows with %d updates during the snapshot should give %d to %d", s.res.Events, res.rows, s.updates, lo, res.rows)
			}
			if _, err := conn.Exec(ctx, "VACUUM "+snapTable); err != nil {
				return nil, fmt.Errorf("vacuum after run %d: %w", run, err)
			}
		}
	}
	return res, nil
}

// loadTable creates the table with W1's columns and rows, and the
// publication.
func (r *snapshotResult) loadTable(ctx context.Context, conn *pgx.Conn) error {
	start := time.Now()
	if _, err := conn.Exec(ctx, fmt.Sprintf(tableDDL, snapTable)); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(w1Rows, snapTable), r.rows); err != nil {
		return err
	}
	// VACUUM sets the hint bits and the visibility map, so that the first
	// pass does not pay for them, and ANALYZE gives walex its estimate.
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE "+snapTable); err != nil {
		return err
	}
	r.load = time.Since(start)
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", publication, snapTable)); err != nil {
		return err
	}
	return conn.QueryRow(ctx, `SELECT pg_total_relation_size($1) / 1048576.0`, snapTable).Scan(&r.tableMB)
}

// expected is how long the writer spreads its updates over during a walex
// pass: the median time of the earlier walex passes at that chunk size,
// else of those at any chunk size, else (the first walex pass) 1.5 times
// the COPY floor, the target.
func (r *snapshotResult) expected(chunk int) time.Duration {
	if ss := r.walex[chunk]; len(ss) > 0 {
		return medianTime(ss)
	}
	var all []snapSample
	for _, ss := range r.walex {
		all = append(all, ss...)
	}
	if len(all) > 0 {
		return medianTime(all)
	}
	if len(r.copy) > 0 {
		return medianTime(r.copy) * 3 / 2
	}
	return 10 * time.Second
}

// copyPass runs the COPY reader once.
func (b *bench) copyPass(ctx context.Context) (snapSample, error) {
	cmd := b.snapReader(ctx, kindCopy, 0)
	if err := cmd.Run(); err != nil {
		return snapSample{}, fmt.Errorf("reader process: %w", err)
	}
	return snapSampleOf(cmd)
}

// walexPass runs the walex reader once at the chunk size, with a writer
// that starts with the process and makes up to updates single-row updates
// of random rows, paced to spread over span, until the process exits.
func (b *bench) walexPass(ctx context.Context, chunk, rows, updates int, span time.Duration) (snapSample, error) {
	w, err := pgx.Connect(ctx, b.srv.URL(snapDB))
	if err != nil {
		return snapSample{}, fmt.Errorf("writer: %w", err)
	}
	defer w.Close(context.Background())
	cmd := b.snapReader(ctx, kindWalexSnap, chunk)
	if err := cmd.Start(); err != nil {
		return snapSample{}, fmt.Errorf("reader process: %w", err)
	}
	stop, stopWriter := context.WithCancel(ctx)
	defer stopWriter()
	var made int
	var werr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		made, werr = writeUpdates(ctx, stop, w, rows, updates, span)
	}()
	err = cmd.Wait()
	stopWriter()
	wg.Wait()
	if err != nil {
		return snapSample{}, fmt.Errorf("reader process: %w", err)
	}
	if werr != nil {
		return snapSample{}, fmt.Errorf("writer, after %d updates: %w", made, werr)
	}
	s, err := snapSampleOf(cmd)
	s.updates = made
	return s, err
}

// snapReader is the command of a snapshot reader child; its stdout is a
// *bytes.Buffer.
func (b *bench) snapReader(ctx context.Context, kind string, chunk int) *exec.Cmd {
	cmd := exec.CommandContext(ctx, b.self, "reader", "-kind", kind, "-url", b.srv.URL(snapDB), "-pub", publication,
		"-table", snapTable, "-chunk", strconv.Itoa(chunk), "-timeout", b.o.timeout.String())
	cmd.Stdout = new(bytes.Buffer)
	cmd.Stderr = os.Stderr
	return cmd
}

// snapSampleOf reads the rusage and the result of an exited reader child.
func snapSampleOf(cmd *exec.Cmd) (snapSample, error) {
	ps := cmd.ProcessState
	s := snapSample{maxRSS: maxRSS(ps), cpu: ps.UserTime() + ps.SystemTime(), sys: ps.SystemTime()}
	out := cmd.Stdout.(*bytes.Buffer)
	if err := json.Unmarshal(out.Bytes(), &s.res); err != nil {
		return snapSample{}, fmt.Errorf("reader output %q: %w", out.String(), err)
	}
	if s.res.Events == 0 || s.res.Elapsed <= 0 {
		return snapSample{}, fmt.Errorf("reader read no rows: %s", out.String())
	}
	return s, nil
}

// writeUpdates makes up to n single-row updates of random rows of a table
// of rows rows, the k-th at start + k*span/n (a writer behind schedule
// goes on at once), until it has made n or stop ends. Each statement runs
// to completion (with ctx), so that the count is exact. It returns the
// number of updates made.
func writeUpdates(ctx, stop context.Context, conn *pgx.Conn, rows, n int, span time.Duration) (int, error) {
	period := span / time.Duration(n)
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for k := range n {
		if d := time.Until(start.Add(time.Duration(k) * period)); d > 0 {
			t.Reset(d)
			select {
			case <-stop.Done():
				return k, nil
			case <-t.C:
			}
		} else if stop.Err() != nil {
			return k, nil
		}
		if _, err := conn.Exec(ctx, snapUpdate, rand.Int64N(int64(rows))+1); err != nil {
			return k, err
		}
	}
	return n, nil
}

// ---------------------------------------------------------------------------
// Reader children

// runCopy is the floor: one COPY (SELECT every column FROM table) TO
// STDOUT through pgx, its output discarded. Elapsed is the COPY statement
// alone (the connection is made before), First the time to its first
// bytes.
func (r *reader) runCopy(ctx context.Context) (*readerResult, error) {
	conn, err := pgx.Connect(ctx, r.url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	out := &firstWrite{}
	r.start = time.Now()
	out.start = r.start
	tag, err := conn.PgConn().CopyTo(ctx, out, fmt.Sprintf("COPY (SELECT %s FROM %s) TO STDOUT", snapColumns, r.table))
	elapsed := time.Since(r.start)
	if err != nil {
		return nil, fmt.Errorf("copy: %w", err)
	}
	return &readerResult{Kind: r.kind, Events: tag.RowsAffected(), Elapsed: elapsed, First: out.first, Proto: "copy text"}, nil
}

// firstWrite discards what is written to it and notes when the first
// bytes came.
type firstWrite struct {
	start time.Time
	first time.Duration
}

func (w *firstWrite) Write(p []byte) (int, error) {
	if w.first == 0 {
		w.first = time.Since(w.start)
	}
	return io.Discard.Write(p)
}

// runWalexSnapshot runs a walex Client with Config.Snapshot =
// SnapshotInitialOnly (temporary slot) and the chunk size, and a no-op
// OnEvent handler that counts the Read events (and the Update events the
// writer's changes bring). Elapsed is from Run's start to its return;
// Stats().Snapshots must agree with the count.
func (r *reader) runWalexSnapshot(ctx context.Context) (*readerResult, error) {
	logs := newProtoLog()
	c, err := walex.New(walex.Config{
		URL:               r.url,
		Name:              "walexbench",
		Publication:       r.pub,
		Subscriptions:     []string{r.table},
		Snapshot:          walex.SnapshotInitialOnly,
		SnapshotChunkSize: r.chunk,
		Logger:            slog.New(logs),
	})
	if err != nil {
		return nil, err
	}
	var updates atomic.Int64
	c.OnEvent(r.table, func(_ context.Context, events []walex.Event) error {
		var reads int64
		for i := range events {
			if events[i].Type == walex.Read {
				reads++
			}
		}
		if reads > 0 {
			r.count(reads)
		}
		updates.Add(int64(len(events)) - reads)
		return nil
	})
	r.start = time.Now()
	err = c.Run(ctx)
	elapsed := time.Since(r.start)
	if err != nil {
		return nil, fmt.Errorf("walex Run failed after %d Read events: %w", r.events.Load(), err)
	}
	reads := r.events.Load()
	st := c.Stats().Snapshots
	if len(st) != 1 || st[0].Err != nil || st[0].Done.IsZero() || int64(st[0].Rows) != reads {
		return nil, fmt.Errorf("walex Run returned nil after %d Read events, but Stats().Snapshots is %+v", reads, st)
	}
	res := r.result(logs.proto(), 0)
	res.Elapsed = elapsed
	res.Updates = updates.Load()
	return res, nil
}

// ---------------------------------------------------------------------------
// Report

// medianTime is the median elapsed time of samples.
func medianTime(ss []snapSample) time.Duration {
	return time.Duration(median(collect(ss, func(s snapSample) float64 { return float64(s.res.Elapsed) })))
}

// ratio is walex's median time at the chunk size over COPY's, or 0.
func (r *snapshotResult) ratio(chunk int) float64 {
	ss := r.walex[chunk]
	if len(ss) == 0 || len(r.copy) == 0 {
		return 0
	}
	return float64(medianTime(ss)) / float64(medianTime(r.copy))
}

// peakRSS is the largest peak RSS of samples, in MB.
func peakRSS(ss []snapSample) float64 {
	return slices.Max(collect(ss, func(s snapSample) float64 { return float64(s.maxRSS) / 1e6 }))
}

func (r *snapshotResult) print(w io.Writer) {
	fmt.Fprintf(w, "snapshot: the %s rows of a table of W1's shape (%.0f MB with its index), read once per pass; %d run(s) per pass\n",
		thousands(r.rows), r.tableMB, r.runs)
	fmt.Fprintf(w, "    copy: COPY (SELECT %s FROM %s) TO STDOUT, output discarded; time = the statement\n", snapColumns, snapTable)
	fmt.Fprintf(w, "    walex: Config.Snapshot = SnapshotInitialOnly, temporary slot, no-op OnEvent handler; time = Run's start → return;\n")
	fmt.Fprintf(w, "           a writer makes up to %s single-row UPDATEs of random rows meanwhile (%s), paced over the expected time\n\n",
		thousands(int64(r.updates)), snapUpdate)
	fmt.Fprintf(w, "    %-6s %6s %10s %9s  %-21s %10s %7s %9s %10s %9s\n", "reader", "chunk", "rows", "time", "(min … max)", "rows/s", "× COPY", "peak RSS", "CPU s per", "updates")
	fmt.Fprintf(w, "    %-6s %6s %10s %9s  %-21s %10s %7s %9s %10s %9s\n", "", "", "(median)", "(median)", "", "(median)", "time", "MB (max)", "M rows", "made/seen")
	row := func(name, chunk string, ss []snapSample, ratio string) {
		times := collect(ss, func(s snapSample) float64 { return float64(s.res.Elapsed) })
		updates := "—"
		if name == "walex" {
			updates = fmt.Sprintf("%.0f/%.0f", median(collect(ss, func(s snapSample) float64 { return float64(s.updates) })),
				median(collect(ss, func(s snapSample) float64 { return float64(s.res.Updates) })))
		}
		fmt.Fprintf(w, "    %-6s %6s %10s %9s  %-21s %10s %7s %9.1f %10.2f %11s\n", name, chunk,
			thousands(int64(median(collect(ss, func(s snapSample) float64 { return float64(s.res.Events) })))),
			fmtDur(time.Duration(median(times))),
			"("+fmtDur(time.Duration(slices.Min(times)))+" … "+fmtDur(time.Duration(slices.Max(times)))+")",
			thousands(int64(median(collect(ss, snapSample.rate)))), ratio, peakRSS(ss),
			median(collect(ss, snapSample.cpuPerM)), updates)
	}
	if len(r.copy) > 0 {
		row("copy", "—", r.copy, "1.00")
	}
	for _, chunk := range r.chunks {
		if ss := r.walex[chunk]; len(ss) > 0 {
			row("walex", strconv.Itoa(chunk), ss, fmt.Sprintf("%.2f", r.ratio(chunk)))
		}
	}
}
