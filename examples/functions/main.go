// Command functions shows WithFunctions: functions that run for each event
// after the handler, concurrently, whose errors count — a failing function
// is retried with the call, and nothing is acknowledged until it succeeds.
//
//	go run ./examples/functions    # throwaway server, or set DATABASE_URL
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/demo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "functions:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	url, stopServer, err := demo.Database(ctx)
	if err != nil {
		return err
	}
	defer stopServer()
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer db.Close(context.Background())
	if err := demo.Exec(ctx, db,
		`DROP PUBLICATION IF EXISTS walex_functions`,
		`DROP TABLE IF EXISTS walex_functions_users`,
		`CREATE TABLE walex_functions_users (id int PRIMARY KEY, email text)`,
		`CREATE PUBLICATION walex_functions FOR TABLE walex_functions_users`,
	); err != nil {
		return err
	}
	defer demo.Exec(context.Background(), db, `DROP PUBLICATION IF EXISTS walex_functions`, `DROP TABLE IF EXISTS walex_functions_users`)

	client, err := walex.New(walex.Config{
		URL: url, Name: "functions", Publication: "walex_functions", Subscriptions: []string{"walex_functions_users"},
		RetryPolicy: walex.RetryPolicy{MaxAttempts: 5, InitialDelay: 100 * time.Millisecond},
		Logger:      slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}

	var mu sync.Mutex
	sent := map[string]bool{} // idempotency: event IDs already e-mailed
	crmFailures := 1          // the CRM is down for the first call
	done := make(chan struct{})
	var finish sync.Once
	sendWelcomeEmail := func(ctx context.Context, e walex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if !sent[e.ID()] {
			sent[e.ID()] = true
			fmt.Printf("e-mail: welcome %v (event %s)\n", e.NewRecord["email"], e.ID())
		}
		return nil
	}
	addToCRM := func(ctx context.Context, e walex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if crmFailures > 0 {
			crmFailures--
			fmt.Printf("crm: unavailable for %v; walex will retry\n", e.NewRecord["email"])
			return errors.New("crm unavailable")
		}
		fmt.Printf("crm: added %v\n", e.NewRecord["email"])
		return nil
	}
	client.OnInsert("walex_functions_users", func(ctx context.Context, events []walex.Event) error {
		fmt.Printf("handler: %d new users\n", len(events))
		return nil
	}, walex.WithFunctions(sendWelcomeEmail, addToCRM), walex.WithConcurrency(1))
	client.Use(func(next walex.Handler) walex.Handler {
		return func(ctx context.Context, events []walex.Event) error {
			err := next(ctx, events)
			if err == nil {
				finish.Do(func() { close(done) })
			}
			return err
		}
	})

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- client.Run(runCtx) }()
	if err := demo.WaitForSlot(ctx, db, "functions_walex", runErr); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, `INSERT INTO walex_functions_users VALUES (1, 'ada@example.com')`); err != nil {
		return err
	}
	select {
	case <-done:
	case err := <-runErr:
		return fmt.Errorf("walex stopped: %w", err)
	case <-time.After(30 * time.Second):
		return errors.New("timed out")
	}
	cancel()
	return <-runErr
}
