// Package demo holds what the example programs share: a database to run
// against (DATABASE_URL, or a throwaway server from internal/pgtest), the
// example's schema, and a walex client running in the background.
package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

// Env is what an example runs with.
type Env struct {
	URL string    // the database's URL
	DB  *pgx.Conn // a connection to make changes with
}

// Main runs an example program named name: its context ends on Ctrl-C; the
// database is $DATABASE_URL or the "postgres" database of a throwaway
// server; setup runs before run, teardown after it (also on failure). An
// error is printed and the program exits with status 1.
func Main(name string, setup, teardown []string, run func(ctx context.Context, env Env) error) {
	if err := mainErr(setup, teardown, run); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func mainErr(setup, teardown []string, run func(ctx context.Context, env Env) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	url, stopServer, err := database(ctx)
	if err != nil {
		return err
	}
	defer stopServer()
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer db.Close(context.Background())
	defer func() { _ = Exec(context.Background(), db, teardown...) }()
	if err := Exec(ctx, db, setup...); err != nil {
		return err
	}
	return run(ctx, Env{URL: url, DB: db})
}

// database returns $DATABASE_URL, or starts a throwaway server; stop stops
// it (a no-op for DATABASE_URL).
func database(ctx context.Context) (url string, stop func(), err error) {
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

// Running is a walex client running in the background.
type Running struct {
	cancel context.CancelFunc
	runErr chan error
}

// Start runs c in the background and waits until its slot, whose name
// starts with slotPrefix, streams: with a temporary slot, changes made
// before that are not seen.
func Start(ctx context.Context, env Env, c *walex.Client, slotPrefix string) (*Running, error) {
	runCtx, cancel := context.WithCancel(ctx)
	r := &Running{cancel: cancel, runErr: make(chan error, 1)}
	go func() { r.runErr <- c.Run(runCtx) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := env.DB.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE $1 || '%' AND active`, slotPrefix).Scan(&n)
		if err != nil {
			cancel()
			return nil, err
		}
		if n > 0 {
			return r, nil
		}
		select {
		case err := <-r.runErr:
			cancel()
			return nil, fmt.Errorf("walex stopped: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	return nil, errors.New("walex did not start streaming within 30s")
}

// Wait waits until done is closed; it fails if Run ends first, after 30 s,
// or when ctx ends.
func (r *Running) Wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case err := <-r.runErr:
		r.runErr <- err
		return fmt.Errorf("walex stopped early: %w", err)
	case <-time.After(30 * time.Second):
		return errors.New("timed out waiting for events")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop ends Run and returns its result (nil after a clean shutdown).
func (r *Running) Stop() error {
	r.cancel()
	return <-r.runErr
}
