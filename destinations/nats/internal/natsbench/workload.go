package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex/internal/benchload"
	"github.com/walex-go/walex/internal/pgtest"
)

// The table and the writes are those of internal/cmd/walexbench
// (internal/benchload), so that the numbers compare with BENCHMARKS.md.
const (
	publication = "natsbench"
	tableDDL    = benchload.TableDDL
)

// workload writes rows into its table and returns how many.
type workload struct {
	table    string
	describe func(o options) string
	write    func(ctx context.Context, srv *pgtest.Server, o options, db string, conn *pgx.Conn) (int64, error)
}

func scaled(n int, scale float64) int { return benchload.Scaled(n, scale) }

var benchWorkloads = map[string]workload{
	"W1": {
		table: "w1",
		describe: func(o options) string {
			return fmt.Sprintf("one transaction inserting %d rows", scaled(1_000_000, o.scale))
		},
		write: func(ctx context.Context, _ *pgtest.Server, o options, _ string, conn *pgx.Conn) (int64, error) {
			tag, err := conn.Exec(ctx, fmt.Sprintf(benchload.W1Rows, "w1"), scaled(1_000_000, o.scale))
			return tag.RowsAffected(), err
		},
	},
	"W2": {
		table: "w2",
		describe: func(o options) string {
			return fmt.Sprintf("%d single-row INSERT transactions from pgbench (%d clients)", benchload.W2PerClient(o.scale)*benchload.W2Clients, benchload.W2Clients)
		},
		write: writeW2,
	},
}

// writeW2 runs W2's pgbench (see benchload.RunW2).
func writeW2(ctx context.Context, srv *pgtest.Server, o options, db string, conn *pgx.Conn) (int64, error) {
	tps, err := benchload.RunW2(ctx, srv, db, o.scale)
	if err != nil {
		return 0, err
	}
	if tps > 0 {
		logf("W2: pgbench %.0f tps", tps)
	}
	var n int64
	err = conn.QueryRow(ctx, `SELECT count(*) FROM w2`).Scan(&n)
	return n, err
}
