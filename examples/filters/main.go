// Command filters shows WithFilters: UnwatchedRecords drops events of rows
// with given values, UnwatchedFields drops updates that changed only
// uninteresting columns (which needs REPLICA IDENTITY FULL to judge).
//
//	go run ./examples/filters      # throwaway server, or set DATABASE_URL
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/demo"
)

// setup creates the example's table and publication; teardown drops them.
var (
	setup = []string{
		`DROP PUBLICATION IF EXISTS walex_filters`,
		`DROP TABLE IF EXISTS walex_filters_users`,
		`CREATE TABLE walex_filters_users (id int PRIMARY KEY, email text, event_subscribe bool, login_count int, updated_at timestamptz DEFAULT now())`,
		`ALTER TABLE walex_filters_users REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION walex_filters FOR TABLE walex_filters_users`,
	}
	teardown = []string{
		`DROP PUBLICATION IF EXISTS walex_filters`,
		`DROP TABLE IF EXISTS walex_filters_users`,
	}
)

func main() {
	demo.Main("filters", setup, teardown, run)
}

// register registers the example's handler on client: it prints each
// event that passes the filters to out and calls delivered.
func register(client *walex.Client, out io.Writer, delivered func()) {
	client.OnEvent("walex_filters_users", func(ctx context.Context, events []walex.Event) error {
		for _, e := range events {
			rec := e.NewRecord
			if rec == nil {
				rec = e.OldRecord
			}
			var cols []string
			for c := range e.Changes {
				cols = append(cols, c)
			}
			slices.Sort(cols)
			fmt.Fprintf(out, "event %s: %s id=%v changes=%v\n", e.ID(), e.Type, rec["id"], cols)
			delivered()
		}
		return nil
	}, walex.WithFilters(walex.Filters{
		UnwatchedRecords: map[string]any{"event_subscribe": false},
		UnwatchedFields:  []string{"login_count", "updated_at"},
	}))
}

func run(ctx context.Context, env demo.Env) error {
	client, err := walex.New(walex.Config{
		URL: env.URL, Name: "filters", Publication: "walex_filters", Subscriptions: []string{"walex_filters_users"},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	const want = 3 // events that pass the filters below
	var mu sync.Mutex
	seen := 0
	done := make(chan struct{})
	register(client, os.Stdout, func() {
		mu.Lock()
		defer mu.Unlock()
		if seen++; seen == want {
			close(done)
		}
	})

	running, err := demo.Start(ctx, env, client, "filters_walex")
	if err != nil {
		return err
	}
	changes := []struct{ sql, expect string }{
		{`INSERT INTO walex_filters_users VALUES (1, 'ada@example.com', true, 0)`, "delivered"},
		{`INSERT INTO walex_filters_users VALUES (2, 'bob@example.com', false, 0)`, "dropped: event_subscribe = false"},
		{`UPDATE walex_filters_users SET login_count = 1, updated_at = now() WHERE id = 1`, "dropped: only unwatched fields changed"},
		{`UPDATE walex_filters_users SET email = 'ada@lovelace.org', login_count = 2 WHERE id = 1`, "delivered: email changed"},
		{`DELETE FROM walex_filters_users WHERE id = 1`, "delivered"},
	}
	for _, ch := range changes {
		fmt.Printf(">>> %s\n    (%s)\n", ch.sql, ch.expect)
		if err := demo.Exec(ctx, env.DB, ch.sql); err != nil {
			return err
		}
	}
	if err := running.Wait(ctx, done); err != nil {
		return err
	}
	return running.Stop()
}
