package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex/internal/pgtest"
)

// The table and the writes are those of internal/cmd/walexbench, so that
// the numbers compare with BENCHMARKS.md.
const (
	publication = "natsbench"
	tableDDL    = `CREATE TABLE %s (id bigserial PRIMARY KEY, t text, n numeric, ts timestamptz, j jsonb)`
	w1Rows      = `INSERT INTO %s (t, n, ts, j)
		SELECT md5(i::text), round((random() * 100000)::numeric, 2), now() + i * interval '1 second',
		       jsonb_build_object('k', i, 'tag', 'x', 'ok', true)
		FROM generate_series(1, $1) AS i`
	w2Insert  = `INSERT INTO w2 (t, n, ts, j) VALUES (md5(random()::text), round((random() * 100000)::numeric, 2), now(), jsonb_build_object('k', :client_id::int, 'tag', 'x', 'ok', true));` + "\n"
	w2Clients = 4
	w2Threads = 2
)

// workload writes rows into its table and returns how many.
type workload struct {
	table    string
	describe func(o options) string
	write    func(ctx context.Context, srv *pgtest.Server, o options, db string, conn *pgx.Conn) (int64, error)
}

func scaled(n int, scale float64) int { return max(1, int(math.Round(float64(n)*scale))) }

func w2PerClient(o options) int { return max(1, scaled(100_000, o.scale)/w2Clients) }

var benchWorkloads = map[string]workload{
	"W1": {
		table: "w1",
		describe: func(o options) string {
			return fmt.Sprintf("one transaction inserting %d rows", scaled(1_000_000, o.scale))
		},
		write: func(ctx context.Context, _ *pgtest.Server, o options, _ string, conn *pgx.Conn) (int64, error) {
			tag, err := conn.Exec(ctx, fmt.Sprintf(w1Rows, "w1"), scaled(1_000_000, o.scale))
			return tag.RowsAffected(), err
		},
	},
	"W2": {
		table: "w2",
		describe: func(o options) string {
			return fmt.Sprintf("%d single-row INSERT transactions from pgbench (%d clients)", w2PerClient(o)*w2Clients, w2Clients)
		},
		write: writeW2,
	},
}

// writeW2 runs pgbench with a one-INSERT script.
func writeW2(ctx context.Context, srv *pgtest.Server, o options, db string, conn *pgx.Conn) (int64, error) {
	pgbench, err := findPgbench(srv)
	if err != nil {
		return 0, err
	}
	script, err := os.CreateTemp("", "natsbench-w2-*.sql")
	if err != nil {
		return 0, err
	}
	defer os.Remove(script.Name())
	_, err = script.WriteString(w2Insert)
	if cerr := script.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	_ = os.Chmod(script.Name(), 0o644)
	cmd := exec.CommandContext(ctx, pgbench, "-n", "-M", "prepared",
		"-c", strconv.Itoa(w2Clients), "-j", strconv.Itoa(w2Threads), "-t", strconv.Itoa(w2PerClient(o)),
		"-f", script.Name(), "-h", srv.Host, "-p", strconv.Itoa(srv.Port), "-U", srv.User, db)
	cmd.Env = pgtest.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	if m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(out); m != nil {
		logf("W2: pgbench %s tps", m[1])
	}
	var n int64
	err = conn.QueryRow(ctx, `SELECT count(*) FROM w2`).Scan(&n)
	return n, err
}

// findPgbench finds pgbench next to the server's binaries, on PATH, or in
// /usr/lib/postgresql/*/bin (newest first).
func findPgbench(srv *pgtest.Server) (string, error) {
	cands := []string{filepath.Join(srv.BinDir, "pgbench")}
	if p, err := exec.LookPath("pgbench"); err == nil {
		cands = append(cands, p)
	}
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	slices.SortFunc(debian, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
		return vb - va
	})
	for _, c := range append(cands, debian...) {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("no pgbench next to the server binaries, on PATH or in /usr/lib/postgresql/*/bin (apt-get install postgresql-contrib or postgresql)")
}
