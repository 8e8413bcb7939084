package demo

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex/internal/pgtest"
)

// Test runs an example's run function as a test, in a fresh database of
// the test package's shared server (see pgtest.Main), with the example's
// setup and teardown.
func Test(tb testing.TB, setup, teardown []string, run func(ctx context.Context, env Env) error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := pgtest.Shared()
	url := srv.URL(srv.NewDatabase(tb))
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close(context.Background())
	defer func() { _ = Exec(context.Background(), db, teardown...) }()
	if err := Exec(ctx, db, setup...); err != nil {
		tb.Fatal(err)
	}
	if err := run(ctx, Env{URL: url, DB: db}); err != nil {
		tb.Fatalf("example failed: %v", err)
	}
}
