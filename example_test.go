package walex_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/walex-go/walex"
)

func ExampleNew() {
	c, err := walex.New(walex.Config{
		URL:           "postgres://app:secret@localhost:5432/app?sslmode=disable",
		Name:          "myapp",
		Publication:   "events",
		Subscriptions: []string{"users", "public.todos"},
	})
	if err != nil {
		log.Fatal(err)
	}
	c.OnInsert("users", func(ctx context.Context, events []walex.Event) error {
		for _, e := range events {
			log.Printf("user %v signed up", e.NewRecord["email"])
		}
		return nil
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := c.Run(ctx); err != nil { // until Ctrl-C
		log.Fatal(err)
	}
}

func ExampleNew_invalidConfig() {
	_, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "myapp", Subscriptions: []string{"users"}})
	fmt.Println(err)
	// Output: walex: invalid Config.Publication: is empty; name the publication to stream (CREATE PUBLICATION events FOR TABLE users)
}

func ExampleWithFilters() {
	c, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "myapp", Publication: "events", Subscriptions: []string{"users"}})
	if err != nil {
		log.Fatal(err)
	}
	c.OnUpdate("users", func(ctx context.Context, events []walex.Event) error {
		// Only updates that changed something besides updated_at, of users
		// that subscribed to events.
		return nil
	}, walex.WithFilters(walex.Filters{
		UnwatchedRecords: map[string]any{"event_subscribe": false},
		UnwatchedFields:  []string{"updated_at"},
	}))
}

func ExampleWithFunctions() {
	c, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "myapp", Publication: "events", Subscriptions: []string{"users"}})
	if err != nil {
		log.Fatal(err)
	}
	sendWelcomeEmail := func(ctx context.Context, e walex.Event) error {
		// An error here fails the call; the call is retried, so make it
		// idempotent (for example keyed by e.ID()).
		return nil
	}
	addToCRM := func(ctx context.Context, e walex.Event) error { return nil }
	noop := func(ctx context.Context, events []walex.Event) error { return nil }
	c.OnInsert("users", noop, walex.WithFunctions(sendWelcomeEmail, addToCRM))
}

func ExampleClient_Use() {
	c, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "myapp", Publication: "events", Subscriptions: []string{"users"}})
	if err != nil {
		log.Fatal(err)
	}
	// Log every handler call with its duration and result.
	c.Use(func(next walex.Handler) walex.Handler {
		return func(ctx context.Context, events []walex.Event) error {
			start := time.Now()
			err := next(ctx, events)
			slog.Info("handled", "table", events[0].Source.Table, "events", len(events), "took", time.Since(start), "err", err)
			return err
		}
	})
}

func ExampleClient_OnEvent_allTables() {
	c, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "audit", Publication: "events", Subscriptions: []string{"users", "orders"}})
	if err != nil {
		log.Fatal(err)
	}
	// Called once per transaction with all of its events, in WAL order.
	c.OnEvent(walex.AllTables, func(ctx context.Context, events []walex.Event) error {
		for _, e := range walex.EventsOfType(events, walex.Update, walex.Delete) {
			fmt.Println(e.ID(), e.Type, e.Source.Table)
		}
		return nil
	})
}

func ExampleEvent_ID() {
	e := walex.Event{CommitLSN: 0x16B3748, Index: 3}
	fmt.Println(e.ID())
	// Output: 0/16B3748:3
}

func ExampleDefaultSlotName() {
	fmt.Println(walex.DefaultSlotName("My App"))
	// Output: my_app_walex
}

func ExampleEventsChanging() {
	events := []walex.Event{
		{Type: walex.Update, Index: 0, Changes: map[string]walex.Change{"updated_at": {}}},
		{Type: walex.Update, Index: 1, Changes: map[string]walex.Change{"email": {OldValue: "a@x", NewValue: "b@x"}}},
		{Type: walex.Insert, Index: 2},
	}
	for _, e := range walex.EventsChanging(events, "email") {
		fmt.Println(e.Index, e.Type)
	}
	// Output:
	// 1 update
	// 2 insert
}

// A search index filled from the existing rows, then kept up to date:
// the initial snapshot's Read events and the stream's changes come in one
// order, so applying them as they come leaves the index equal to the table.
func ExampleConfig_snapshot() {
	index := map[any]map[string]any{}
	c, err := walex.New(walex.Config{
		URL:           "postgres://app:secret@localhost:5432/app?sslmode=disable",
		Name:          "search",
		Publication:   "events",
		Subscriptions: []string{"products"},
		DurableSlot:   true,                  // an interrupted snapshot resumes
		Snapshot:      walex.SnapshotInitial, // existing rows first, then the stream
	})
	if err != nil {
		log.Fatal(err)
	}
	c.OnEvent("products", func(ctx context.Context, events []walex.Event) error {
		for _, e := range events {
			switch e.Type {
			case walex.Read, walex.Insert, walex.Update:
				if e.OldRecord != nil && e.OldRecord["id"] != e.NewRecord["id"] {
					delete(index, e.OldRecord["id"]) // the key changed
				}
				row := map[string]any{}
				for col, v := range e.NewRecord {
					if v == walex.Unchanged { // a TOASTed value the update did not touch
						v = index[e.NewRecord["id"]][col]
					}
					row[col] = v
				}
				index[e.NewRecord["id"]] = row
			case walex.Delete:
				delete(index, e.OldRecord["id"])
			}
		}
		return nil
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := c.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// Snapshot reads a table again while Run streams: here one added to the
// subscriptions at runtime.
func ExampleClient_Snapshot() {
	c, err := walex.New(walex.Config{URL: "postgres://app@localhost/app", Name: "myapp", Publication: "events", Subscriptions: []string{"users"}})
	if err != nil {
		log.Fatal(err)
	}
	c.OnEvent(walex.AllTables, func(ctx context.Context, events []walex.Event) error { return nil })
	ctx := context.Background()
	go func() { _ = c.Run(ctx) }()

	if err := c.AddSubscriptions("orders"); err != nil {
		log.Fatal(err)
	}
	if err := c.Snapshot(ctx, "orders"); err != nil { // returns when the last row was delivered
		log.Fatal(err)
	}
	for _, p := range c.Stats().Snapshots {
		log.Printf("%s: %d rows in %v", p.Table, p.Rows, p.Done.Sub(p.Started))
	}
}
