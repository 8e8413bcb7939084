package walex_test

import (
	"context"
	"encoding/json"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/walex-go/walex"
)

// The outbox pattern without an outbox table: the application writes the
// message in the transaction that changes its data,
//
//	BEGIN;
//	INSERT INTO orders (customer, total) VALUES ('Ada', 12.50);
//	SELECT pg_logical_emit_message(true, 'outbox', '{"topic":"orders.placed","order_id":1}');
//	COMMIT;
//
// and the handler gets it if and only if the transaction commits, after
// the order's insert events.
func ExampleClient_OnMessage() {
	c, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "myapp", Publication: "events", Subscriptions: []string{"orders"}, DurableSlot: true})
	if err != nil {
		log.Fatal(err)
	}
	c.OnMessage("outbox", func(ctx context.Context, m walex.Message) error {
		var out struct {
			Topic string `json:"topic"`
		}
		if err := json.Unmarshal(m.Content, &out); err != nil {
			return err
		}
		// Publish m.Content to out.Topic, with m.LSN as its ID for the
		// receiver's deduplication.
		return nil
	})
}

func ExampleClient_OnSchemaChange() {
	c, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "myapp", Publication: "events", Subscriptions: []string{"users"}})
	if err != nil {
		log.Fatal(err)
	}
	c.OnSchemaChange(walex.AllTables, func(ctx context.Context, s walex.SchemaChange) error {
		for _, ch := range s.Changes {
			log.Printf("%s.%s: column %s %s (now %s %s)", s.Schema, s.Table, ch.Before.Name, ch.Kind, ch.After.Name, ch.After.Type)
		}
		return nil
	})
}

// Copy the changes of orders into the application's own database,
// exactly once: the position of the last event applied commits with the
// changes, so nothing is applied twice after a crash.
func ExampleClient_OnTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/reporting")
	if err != nil {
		log.Fatal(err)
	}
	cp, err := walex.NewPostgresCheckpointer(pool, "") // table public.walex_checkpoints, created if missing
	if err != nil {
		log.Fatal(err)
	}
	c, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "reporting", Publication: "events", Subscriptions: []string{"orders"}, DurableSlot: true})
	if err != nil {
		log.Fatal(err)
	}
	c.OnTx("orders", cp, func(ctx context.Context, tx pgx.Tx, events []walex.Event) error {
		for _, e := range events {
			var err error
			switch e.Type {
			case walex.Insert, walex.Update, walex.Read:
				_, err = tx.Exec(ctx, `INSERT INTO order_totals (id, total) VALUES ($1, $2)
					ON CONFLICT (id) DO UPDATE SET total = EXCLUDED.total`, e.NewRecord["id"], e.NewRecord["total"])
			case walex.Delete:
				_, err = tx.Exec(ctx, `DELETE FROM order_totals WHERE id = $1`, e.OldRecord["id"])
			}
			if err != nil {
				return err
			}
		}
		return nil
	}, walex.WithName("order_totals")) // the checkpoint's key: keep it stable
}
