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
	"sync"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/demo"
)

// setup creates the example's table and publication; teardown drops them.
var (
	setup = []string{
		`DROP PUBLICATION IF EXISTS walex_functions`,
		`DROP TABLE IF EXISTS walex_functions_users`,
		`CREATE TABLE walex_functions_users (id int PRIMARY KEY, email text)`,
		`CREATE PUBLICATION walex_functions FOR TABLE walex_functions_users`,
	}
	teardown = []string{
		`DROP PUBLICATION IF EXISTS walex_functions`,
		`DROP TABLE IF EXISTS walex_functions_users`,
	}
)

func main() {
	demo.Main("functions", setup, teardown, run)
}

func run(ctx context.Context, env demo.Env) error {
	client, err := walex.New(walex.Config{
		URL: env.URL, Name: "functions", Publication: "walex_functions", Subscriptions: []string{"walex_functions_users"},
		RetryPolicy: walex.RetryPolicy{MaxAttempts: 5, InitialDelay: 100 * time.Millisecond},
		Logger:      slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}

	var mu sync.Mutex
	sent := map[string]bool{} // idempotency: event IDs already e-mailed
	crmFailures := 1          // the CRM is down for the first call
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

	// Middleware sees the outcome of every call, functions included.
	done := make(chan struct{})
	var finish sync.Once
	client.Use(func(next walex.Handler) walex.Handler {
		return func(ctx context.Context, events []walex.Event) error {
			err := next(ctx, events)
			if err == nil {
				finish.Do(func() { close(done) })
			}
			return err
		}
	})

	running, err := demo.Start(ctx, env, client, "functions_walex")
	if err != nil {
		return err
	}
	if err := demo.Exec(ctx, env.DB, `INSERT INTO walex_functions_users VALUES (1, 'ada@example.com')`); err != nil {
		return err
	}
	if err := running.Wait(ctx, done); err != nil {
		return err
	}
	return running.Stop()
}
