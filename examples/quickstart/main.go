// Command quickstart shows walex end to end: it starts a throwaway
// PostgreSQL (or uses DATABASE_URL), creates a table and a publication,
// registers insert, update and delete handlers that print each event as
// JSON, makes a few changes and exits once it has printed them.
//
//	go run ./examples/quickstart            # throwaway server (needs PostgreSQL binaries)
//	DATABASE_URL=postgres://... go run ./examples/quickstart
//
// With DATABASE_URL the server needs wal_level = logical, and the table
// and publication it creates (walex_quickstart_users, walex_quickstart)
// are dropped again at the end.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/demo"
)

// setup creates the example's table and publication; teardown drops them.
var (
	setup = []string{
		`DROP PUBLICATION IF EXISTS walex_quickstart`,
		`DROP TABLE IF EXISTS walex_quickstart_users`,
		`CREATE TABLE walex_quickstart_users (
		id bigserial PRIMARY KEY,
		name text NOT NULL,
		email text,
		balance numeric(12,2) DEFAULT 0,
		tags text[],
		profile jsonb,
		updated_at timestamptz DEFAULT now())`,
		// FULL: updates and deletes carry the whole old row.
		`ALTER TABLE walex_quickstart_users REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION walex_quickstart FOR TABLE walex_quickstart_users`,
	}
	teardown = []string{
		`DROP PUBLICATION IF EXISTS walex_quickstart`,
		`DROP TABLE IF EXISTS walex_quickstart_users`,
	}
)

func main() {
	demo.Main("quickstart", setup, teardown, run)
}

func run(ctx context.Context, env demo.Env) error {
	client, err := walex.New(walex.Config{
		URL:           env.URL,
		Name:          "quickstart",
		Publication:   "walex_quickstart",
		Subscriptions: []string{"walex_quickstart_users"},
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}

	const want = 4 // events the changes below produce
	var mu sync.Mutex
	seen := 0
	done := make(chan struct{})
	print := func(ctx context.Context, events []walex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			out, err := json.MarshalIndent(e, "", "  ")
			if err != nil {
				return err
			}
			fmt.Printf("--- %s event %s\n%s\n", e.Type, e.ID(), out)
			seen++
		}
		if seen == want {
			close(done)
		}
		return nil
	}
	client.OnInsert("walex_quickstart_users", print)
	client.OnUpdate("walex_quickstart_users", print)
	client.OnDelete("walex_quickstart_users", print)

	running, err := demo.Start(ctx, env, client, "quickstart_walex")
	if err != nil {
		return err
	}
	changes := []string{
		`INSERT INTO walex_quickstart_users (name, email, tags, profile) VALUES ('Ada', 'ada@example.com', '{admin,early}', '{"lang": "en", "newsletter": true}')`,
		`INSERT INTO walex_quickstart_users (name, email) VALUES ('Grace', 'grace@example.com')`,
		`UPDATE walex_quickstart_users SET balance = 42.50, updated_at = now() WHERE name = 'Ada'`,
		`DELETE FROM walex_quickstart_users WHERE name = 'Grace'`,
	}
	for _, sql := range changes {
		fmt.Println(">>>", sql)
		if err := demo.Exec(ctx, env.DB, sql); err != nil {
			return err
		}
	}
	if err := running.Wait(ctx, done); err != nil {
		return err
	}
	if err := running.Stop(); err != nil {
		return err
	}
	fmt.Printf("Done: printed %d events.\n", want)
	return nil
}
