// Package benchload holds the workloads that the benchmark commands
// share (internal/cmd/walexbench, and destinations/nats/internal/natsbench,
// which compares with it): the table every workload writes, W1's rows and
// W2's pgbench run. See BENCHMARKS.md.
package benchload

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

	"github.com/walex-go/walex/internal/pgtest"
)

const (
	// TableDDL creates table %s: the five-column row of every workload.
	TableDDL = `CREATE TABLE %s (id bigserial PRIMARY KEY, t text, n numeric, ts timestamptz, j jsonb)`
	// W1Rows inserts $1 rows of W1's shape into table %s (W1, and the
	// tables other workloads load beforehand).
	W1Rows = `INSERT INTO %s (t, n, ts, j)
		SELECT md5(i::text), round((random() * 100000)::numeric, 2), now() + i * interval '1 second',
		       jsonb_build_object('k', i, 'tag', 'x', 'ok', true)
		FROM generate_series(1, $1) AS i`
	// W2Clients and W2Threads are pgbench's -c and -j for W2.
	W2Clients = 4
	W2Threads = 2
	// w2Insert is W2's pgbench script: one single-row INSERT into w2.
	w2Insert = `INSERT INTO w2 (t, n, ts, j) VALUES (md5(random()::text), round((random() * 100000)::numeric, 2), now(), jsonb_build_object('k', :client_id::int, 'tag', 'x', 'ok', true));` + "\n"
)

// Scaled is n multiplied by scale, at least 1.
func Scaled(n int, scale float64) int { return max(1, int(math.Round(float64(n)*scale))) }

// W2PerClient is the number of transactions each pgbench client runs: W2
// writes 100,000 rows at scale 1.
func W2PerClient(scale float64) int { return max(1, Scaled(100_000, scale)/W2Clients) }

// RunW2 runs W2 into table w2 of database db: pgbench, W2Clients clients
// of W2PerClient(scale) single-row INSERT transactions each (-M
// prepared). It returns pgbench's tps (0 when its output has none).
func RunW2(ctx context.Context, srv *pgtest.Server, db string, scale float64) (tps float64, err error) {
	pgbench, err := FindPgbench(srv)
	if err != nil {
		return 0, err
	}
	script, err := os.CreateTemp("", "benchload-w2-*.sql")
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
		"-c", strconv.Itoa(W2Clients), "-j", strconv.Itoa(W2Threads), "-t", strconv.Itoa(W2PerClient(scale)),
		"-f", script.Name(), "-h", srv.Host, "-p", strconv.Itoa(srv.Port), "-U", srv.User, db)
	cmd.Env = pgtest.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	if m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(out); m != nil {
		tps, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	return tps, nil
}

// FindPgbench finds pgbench next to the server's binaries, else (the npm
// builds ship none) on PATH, else the newest /usr/lib/postgresql/*/bin.
func FindPgbench(srv *pgtest.Server) (string, error) {
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
