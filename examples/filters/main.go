// Command filters shows WithFilters: UnwatchedRecords drops events of rows
// with given values, UnwatchedFields drops updates that changed only
// uninteresting columns (which needs REPLICA IDENTITY FULL to judge).
//
//	go run ./examples/filters      # throwaway server, or set DATABASE_URL
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/demo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "filters:", err)
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
		`DROP PUBLICATION IF EXISTS walex_filters`,
		`DROP TABLE IF EXISTS walex_filters_users`,
		`CREATE TABLE walex_filters_users (id int PRIMARY KEY, email text, event_subscribe bool, login_count int, updated_at timestamptz DEFAULT now())`,
		`ALTER TABLE walex_filters_users REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION walex_filters FOR TABLE walex_filters_users`,
	); err != nil {
		return err
	}
	defer demo.Exec(context.Background(), db, `DROP PUBLICATION IF EXISTS walex_filters`, `DROP TABLE IF EXISTS walex_filters_users`)

	client, err := walex.New(walex.Config{
		URL: url, Name: "filters", Publication: "walex_filters", Subscriptions: []string{"walex_filters_users"},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	got := make(chan walex.Event, 100)
	client.OnEvent("walex_filters_users", func(ctx context.Context, events []walex.Event) error {
		for _, e := range events {
			got <- e
		}
		return nil
	}, walex.WithFilters(walex.Filters{
		UnwatchedRecords: map[string]any{"event_subscribe": false},
		UnwatchedFields:  []string{"login_count", "updated_at"},
	}))

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- client.Run(runCtx) }()
	if err := demo.WaitForSlot(ctx, db, "filters_walex", runErr); err != nil {
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
		if _, err := db.Exec(ctx, ch.sql); err != nil {
			return err
		}
	}
	for i := 0; i < 3; i++ {
		select {
		case e := <-got:
			var cols []string
			for c := range e.Changes {
				cols = append(cols, c)
			}
			sort.Strings(cols)
			fmt.Printf("event %s: %s id=%v changes=%v\n", e.ID(), e.Type, pick(e)["id"], cols)
		case err := <-runErr:
			return fmt.Errorf("walex stopped: %w", err)
		case <-time.After(30 * time.Second):
			return errors.New("timed out waiting for events")
		}
	}
	cancel()
	return <-runErr
}

func pick(e walex.Event) map[string]any {
	if e.NewRecord != nil {
		return e.NewRecord
	}
	return e.OldRecord
}
