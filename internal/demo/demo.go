// Package demo holds what the example programs share: a database to run
// against (DATABASE_URL, or a throwaway server from internal/pgtest) and
// waiting until a walex client streams.
package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex/internal/pgtest"
)

// Database returns the URL of the database to use: $DATABASE_URL when set,
// else the "postgres" database of a throwaway server it starts. stop stops
// that server (a no-op for DATABASE_URL).
func Database(ctx context.Context) (url string, stop func(), err error) {
	if url := os.Getenv("DATABASE_URL"); url != "" {
		return url, func() {}, nil
	}
	fmt.Println("Starting a throwaway PostgreSQL (set DATABASE_URL to use your own)...")
	srv, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		return "", nil, err
	}
	fmt.Printf("PostgreSQL %d is listening on %s:%d\n", srv.Version, srv.Host, srv.Port)
	return srv.URL("postgres"), func() { _ = srv.Stop() }, nil
}

// Exec runs statements in order, stopping at the first error.
func Exec(ctx context.Context, db *pgx.Conn, stmts ...string) error {
	for _, sql := range stmts {
		if _, err := db.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

// WaitForSlot waits until a slot whose name starts with prefix streams, or
// the client's Run ends (its error arrives on runErr).
func WaitForSlot(ctx context.Context, db *pgx.Conn, prefix string, runErr <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := db.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE $1 || '%' AND active`, prefix).Scan(&n)
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		select {
		case err := <-runErr:
			return fmt.Errorf("walex stopped: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("walex did not start streaming within 30s")
}
