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
)

const latencyWarmup = time.Second

type latencyResult struct {
	kind     string
	proto    string
	samples  int     // measured transactions (after the warm-up)
	rate     float64 // achieved transactions/s over the measured period
	missing  int     // measured transactions the reader did not report
	p50, p90 time.Duration
	p99, max time.Duration
	maxRSS   int64
	cpu      time.Duration
	events   int64 // all events the reader received, warm-up included
}

// runLatency measures commit → handler latency for one reader: the reader
// runs live on a fresh slot while a writer commits single-row insert
// transactions at a steady rate (time.Ticker) and records, per row id, the
// wall-clock time just after its COMMIT returned (the INSERT runs in
// autocommit mode with synchronous_commit = on, so the reply comes after
// the commit record is flushed). The reader records, per id, the time its
// handler got the event (walex) or the insert message was parsed (raw).
// latency = receive time - commit-return time; the first second is a
// warm-up and not counted.
func (b *bench) runLatency(ctx context.Context, kind string) (*latencyResult, error) {
	o := b.o
	const db = "walexbench_latency"
	slot := "latency_" + strings.ReplaceAll(kind, "-", "_")
	logf("latency %s: %d single-row transactions/s for %s (+%s warm-up), synchronous_commit = on", kind, o.latencyRate, o.latencyDur, latencyWarmup)
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
	if _, err := conn.Exec(ctx, fmt.Sprintf(tableDDL, "lat")+"; CREATE PUBLICATION "+publication+" FOR TABLE lat"); err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot); err != nil {
		return nil, err
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(cctx, b.self, "reader", "-kind", kind, "-url", b.srv.URL(db), "-slot", slot,
		"-pub", publication, "-table", "lat", "-expect", "0", "-record-ids", "-timeout", b.o.timeout.String())
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	waited := false
	defer func() {
		if !waited {
			cancel()
			_ = cmd.Wait()
		}
	}()

	// Wait until the reader's walsender streams (it has caught up).
	deadline := time.Now().Add(time.Minute)
	for {
		var state string
		err := conn.QueryRow(ctx, `SELECT coalesce((SELECT s.state FROM pg_stat_replication s JOIN pg_replication_slots r ON r.active_pid = s.pid WHERE r.slot_name = $1), '')`, slot).Scan(&state)
		if err != nil {
			return nil, err
		}
		if state == "streaming" {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the reader did not start streaming within a minute (state %q)", state)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The writer.
	type commit struct {
		id       int64
		at       int64 // Unix ns just after the commit returned
		measured bool
	}
	w, err := pgx.Connect(ctx, b.srv.URL(db))
	if err != nil {
		return nil, err
	}
	defer w.Close(context.Background())
	if _, err := w.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		return nil, err
	}
	const insert = `INSERT INTO lat (t, n, ts, j) VALUES (md5(random()::text), round((random() * 100000)::numeric, 2), clock_timestamp(), jsonb_build_object('k', 1, 'tag', 'x', 'ok', true)) RETURNING id`
	commits := make([]commit, 0, int(float64(o.latencyRate)*(o.latencyDur+latencyWarmup).Seconds())+16)
	// Transaction k starts at start + k*period; a writer that fell behind
	// (a slow commit) catches up at once, so that the average rate holds,
	// but it never runs more than 10 periods behind the schedule.
	period := time.Second / time.Duration(o.latencyRate)
	start := time.Now()
	warmEnd, end := start.Add(latencyWarmup), start.Add(latencyWarmup+o.latencyDur)
	var measuredStart, measuredEnd time.Time
	for next := start; next.Before(end); next = next.Add(period) {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		} else if -d > 10*period {
			next = time.Now()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var id int64
		if err := w.QueryRow(ctx, insert).Scan(&id); err != nil {
			return nil, fmt.Errorf("writer: %w", err)
		}
		at := time.Now()
		measured := !next.Before(warmEnd)
		if measured && measuredStart.IsZero() {
			measuredStart = next
		}
		if measured {
			measuredEnd = at
		}
		commits = append(commits, commit{id: id, at: at.UnixNano(), measured: measured})
	}
	fmt.Fprintf(stdin, "%d\n", len(commits))
	stdin.Close()
	err = cmd.Wait()
	waited = true
	if err != nil {
		return nil, fmt.Errorf("reader process: %w", err)
	}
	var rr readerResult
	if err := json.Unmarshal(stdout.Bytes(), &rr); err != nil {
		return nil, fmt.Errorf("reader output: %w", err)
	}
	recv := make(map[int64]int64, len(rr.Latencies))
	for _, p := range rr.Latencies {
		recv[p[0]] = p[1]
	}
	res := &latencyResult{kind: kind, proto: rr.Proto, events: rr.Events, maxRSS: maxRSS(cmd.ProcessState),
		cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	var lats []time.Duration
	for _, c := range commits {
		if !c.measured {
			continue
		}
		r, ok := recv[c.id]
		if !ok {
			res.missing++
			continue
		}
		lats = append(lats, time.Duration(r-c.at))
	}
	res.samples = len(lats) + res.missing
	if d := measuredEnd.Sub(measuredStart); d > 0 {
		res.rate = float64(res.samples) / d.Seconds()
	}
	if len(lats) == 0 {
		return nil, fmt.Errorf("no latency samples")
	}
	slices.Sort(lats)
	pct := func(p float64) time.Duration { return lats[min(len(lats)-1, int(p*float64(len(lats))))] }
	res.p50, res.p90, res.p99, res.max = pct(0.50), pct(0.90), pct(0.99), lats[len(lats)-1]
	logf("latency %s: %s transactions at %.0f/s: p50 %s  p90 %s  p99 %s  max %s", kind, strconv.Itoa(res.samples), res.rate,
		fmtDur(res.p50), fmtDur(res.p90), fmtDur(res.p99), fmtDur(res.max))
	return res, nil
}
