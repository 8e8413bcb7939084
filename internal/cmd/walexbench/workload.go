package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walex-go/walex/internal/benchload"
	"github.com/walex-go/walex/internal/pgtest"
)

const (
	publication = "walexbench"
	// The table and W1's rows are shared with natsbench (internal/benchload).
	tableDDL  = benchload.TableDDL
	w1Rows    = benchload.W1Rows
	w2Clients = benchload.W2Clients
)

type bench struct {
	srv  *pgtest.Server
	o    options
	self string // this executable, re-run as "walexbench reader ..."
}

// workload is one of W1-W3.
type workload struct {
	name  string
	table string
	// describe says what the workload writes at the given scale.
	describe func(o options) string
	// setup runs after the table is created and before the publication
	// and the slots.
	setup func(ctx context.Context, b *bench, conn *pgx.Conn) error
	// write runs the workload after the slots exist and returns the number
	// of insert/update events it produced and a note on how it went.
	write func(ctx context.Context, b *bench, db string, conn *pgx.Conn) (events int64, note string, err error)
}

func scaled(n int, scale float64) int { return benchload.Scaled(n, scale) }

var workloads = map[string]*workload{
	"W1": {
		name: "W1", table: "w1",
		describe: func(o options) string {
			return fmt.Sprintf("one transaction inserting %s rows (INSERT ... SELECT generate_series)", thousands(int64(scaled(1_000_000, o.scale))))
		},
		write: func(ctx context.Context, b *bench, db string, conn *pgx.Conn) (int64, string, error) {
			tag, err := conn.Exec(ctx, fmt.Sprintf(w1Rows, "w1"), scaled(1_000_000, b.o.scale))
			if err != nil {
				return 0, "", err
			}
			return tag.RowsAffected(), "", nil
		},
	},
	"W2": {
		name: "W2", table: "w2",
		describe: func(o options) string {
			per := w2PerClient(o)
			return fmt.Sprintf("%s single-row INSERT transactions from pgbench (%d clients x %s, -M prepared)", thousands(int64(per*w2Clients)), w2Clients, thousands(int64(per)))
		},
		write: writeW2,
	},
	"W3": {
		name: "W3", table: "w3",
		describe: func(o options) string {
			rows := scaled(200_000, o.scale)
			return fmt.Sprintf("%s rows of a REPLICA IDENTITY FULL table updated in %d transactions of %s (UPDATE ... WHERE id range)", thousands(int64(rows)), w3Txns, thousands(int64((rows+w3Txns-1)/w3Txns)))
		},
		setup: func(ctx context.Context, b *bench, conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, fmt.Sprintf(w1Rows, "w3"), scaled(200_000, b.o.scale))
			if err != nil {
				return err
			}
			if _, err = conn.Exec(ctx, `ALTER TABLE w3 REPLICA IDENTITY FULL`); err != nil {
				return err
			}
			_, err = conn.Exec(ctx, `VACUUM ANALYZE w3`)
			return err
		},
		write: func(ctx context.Context, b *bench, db string, conn *pgx.Conn) (int64, string, error) {
			rows := scaled(200_000, b.o.scale)
			per := (rows + w3Txns - 1) / w3Txns
			var n int64
			for lo := 0; lo < rows; lo += per {
				tag, err := conn.Exec(ctx, `UPDATE w3 SET n = n + 1, ts = ts + interval '1 second' WHERE id > $1 AND id <= $2`, lo, min(lo+per, rows))
				if err != nil {
					return 0, "", err
				}
				n += tag.RowsAffected()
			}
			return n, "", nil
		},
	},
}

const w3Txns = 20

func w2PerClient(o options) int { return benchload.W2PerClient(o.scale) }

// writeW2 runs W2's pgbench (see benchload.RunW2).
func writeW2(ctx context.Context, b *bench, db string, conn *pgx.Conn) (int64, string, error) {
	tps, err := benchload.RunW2(ctx, b.srv, db, b.o.scale)
	if err != nil {
		return 0, "", err
	}
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM w2`).Scan(&n); err != nil {
		return 0, "", err
	}
	note := ""
	if tps > 0 {
		note = fmt.Sprintf("pgbench: %.0f tps", tps)
	}
	return n, note, nil
}

// sample is one reader's drain of one slot.
type sample struct {
	res      readerResult
	maxRSS   int64         // bytes
	cpu      time.Duration // user + system
	sys      time.Duration // system alone
	spillMB  float64       // server side, from pg_stat_replication_slots
	streamMB float64
}

func (s sample) rate() float64 { return float64(s.res.Events) / s.res.Elapsed.Seconds() }

type workloadResult struct {
	w        *workload
	desc     string
	events   int64
	write    time.Duration
	note     string
	runs     int
	readers  []string
	samples  map[string][]sample
	hasStats bool
}

// runWorkload runs one workload: database, table, publication, slots,
// write, then the drains.
func (b *bench) runWorkload(ctx context.Context, w *workload) (*workloadResult, error) {
	o := b.o
	res := &workloadResult{w: w, desc: w.describe(o), runs: o.runs, readers: o.readers, samples: map[string][]sample{}}
	logf("%s: %s", w.name, res.desc)
	db := "walexbench_" + strings.ToLower(w.name)
	conn, err := b.freshDB(ctx, db)
	if err != nil {
		return nil, err
	}
	defer func() {
		conn.Close(context.Background())
		if err := b.dropDB(db); err != nil {
			logf("drop database %s: %v", db, err)
		}
	}()
	if _, err := conn.Exec(ctx, fmt.Sprintf(tableDDL, w.table)); err != nil {
		return nil, err
	}
	if w.setup != nil {
		if err := w.setup(ctx, b, conn); err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", publication, w.table)); err != nil {
		return nil, err
	}
	slot := func(run int, kind string) string {
		return fmt.Sprintf("%s_%s_r%d", strings.ToLower(w.name), strings.ReplaceAll(kind, "-", "_"), run)
	}
	for run := 1; run <= o.runs; run++ {
		for _, k := range o.readers {
			if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot(run, k)); err != nil {
				return nil, fmt.Errorf("create slot: %w", err)
			}
		}
	}

	start := time.Now()
	res.events, res.note, err = w.write(ctx, b, db, conn)
	if err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	res.write = time.Since(start)
	var walMB float64
	_ = conn.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - min(restart_lsn)) / 1048576.0 FROM pg_replication_slots WHERE database = current_database()`).Scan(&walMB)
	logf("%s: wrote %s events in %s (%.0f MB of WAL) %s", w.name, thousands(res.events), res.write.Round(time.Millisecond), walMB, res.note)
	if res.note != "" {
		res.note = ", " + res.note
	}
	res.note = fmt.Sprintf("%.0f MB of WAL%s", walMB, res.note)

	res.hasStats = b.srv.Version >= 14
	for run := 1; run <= o.runs; run++ {
		// Rotate the order from run to run so that no reader always goes first.
		order := slices.Clone(o.readers)
		for range run - 1 {
			order = append(order[1:], order[0])
		}
		for _, k := range order {
			s, err := b.drain(ctx, db, conn, k, slot(run, k), w.table, res.events, res.hasStats)
			if err != nil {
				return nil, fmt.Errorf("run %d, %s: %w", run, k, err)
			}
			res.samples[k] = append(res.samples[k], s)
			logf("%s run %d/%d %-7s %10s events/s  elapsed %8s  first event %8s  RSS %6.1f MB  CPU %5.2f s (sys %5.2f)  %s",
				w.name, run, o.runs, k, thousands(int64(s.rate())), s.res.Elapsed.Round(time.Millisecond),
				s.res.First.Round(time.Millisecond), float64(s.maxRSS)/1e6, s.cpu.Seconds(), s.sys.Seconds(), s.res.Proto)
			// The slot is done with; dropping it lets the server recycle WAL.
			if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot(run, k)); err != nil {
				logf("drop slot: %v", err)
			}
		}
	}
	return res, nil
}

// drain runs one reader child on a slot until it has seen events events.
func (b *bench) drain(ctx context.Context, db string, conn *pgx.Conn, kind, slot, table string, events int64, stats bool) (sample, error) {
	cmd := exec.CommandContext(ctx, b.self, "reader", "-kind", kind, "-url", b.srv.URL(db), "-slot", slot,
		"-pub", publication, "-table", table, "-expect", strconv.FormatInt(events, 10), "-timeout", b.o.timeout.String())
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return sample{}, fmt.Errorf("reader process: %w", err)
	}
	s := sample{maxRSS: maxRSS(cmd.ProcessState), cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), sys: cmd.ProcessState.SystemTime()}
	if err := json.Unmarshal(stdout.Bytes(), &s.res); err != nil {
		return sample{}, fmt.Errorf("reader output %q: %w", stdout.String(), err)
	}
	if stats {
		// The walsender may still be exiting; its statistics are written as
		// it decodes, so a short wait for the slot to go idle is enough.
		for i := 0; i < 100; i++ {
			var active bool
			if err := conn.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active); err != nil || !active {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = conn.QueryRow(ctx, `SELECT spill_bytes / 1048576.0, stream_bytes / 1048576.0 FROM pg_stat_replication_slots WHERE slot_name = $1`, slot).Scan(&s.spillMB, &s.streamMB)
	}
	return s, nil
}

// freshDB (re)creates database db and connects to it.
func (b *bench) freshDB(ctx context.Context, db string) (*pgx.Conn, error) {
	if err := b.dropDB(db); err != nil {
		return nil, err
	}
	if err := b.srv.Exec(ctx, "postgres", "CREATE DATABASE "+db+" TEMPLATE template0"); err != nil {
		return nil, err
	}
	return pgx.Connect(ctx, b.srv.URL(db))
}

// dropDB drops database db and its replication slots, if they exist.
func (b *bench) dropDB(db string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.srv.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for {
		_, err = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db)
		if err == nil {
			_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, db)
		}
		if err == nil {
			_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
