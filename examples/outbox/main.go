// Command outbox shows the outbox pattern without an outbox table: the
// application writes a logical decoding message in the transaction that
// changes its data, and walex hands the message to a handler if and only
// if the transaction commits, in order with its changes. It also prints
// the schema change an ALTER TABLE makes.
//
//	go run ./examples/outbox       # throwaway server, or set DATABASE_URL
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/demo"
)

// setup creates the example's table and publication; teardown drops them.
var (
	setup = []string{
		`DROP PUBLICATION IF EXISTS walex_outbox`,
		`DROP TABLE IF EXISTS walex_outbox_orders`,
		`CREATE TABLE walex_outbox_orders (id bigserial PRIMARY KEY, customer text NOT NULL, total numeric(10,2) NOT NULL)`,
		`CREATE PUBLICATION walex_outbox FOR TABLE walex_outbox_orders`,
	}
	teardown = []string{
		`DROP PUBLICATION IF EXISTS walex_outbox`,
		`DROP TABLE IF EXISTS walex_outbox_orders`,
	}
)

// Envelope is what the application writes to the outbox: a topic and a
// payload for whatever the consumer publishes to (a broker, a webhook).
type Envelope struct {
	Topic   string          `json:"topic"`
	Payload json.RawMessage `json:"payload"`
}

// placeOrder is the application's side: the order and its outbox message
// commit together, or not at all.
func placeOrder(ctx context.Context, db *pgx.Conn, customer string, total string, commit bool) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO walex_outbox_orders (customer, total) VALUES ($1, $2) RETURNING id`, customer, total).Scan(&id); err != nil {
		return err
	}
	payload, _ := json.Marshal(map[string]any{"order_id": id, "customer": customer, "total": total})
	msg, _ := json.Marshal(Envelope{Topic: "orders.placed", Payload: payload})
	if _, err := tx.Exec(ctx, `SELECT pg_logical_emit_message(true, 'outbox', $1::text)`, string(msg)); err != nil {
		return err
	}
	if !commit {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}

// Publisher sends a message on; id identifies the message for the
// receiver's deduplication (a message delivered again has the same id).
type Publisher func(ctx context.Context, id, topic string, payload []byte) error

// register registers the consumer's handlers on client: outbox messages
// go to publish; schema changes of the orders table are printed to out.
func register(client *walex.Client, publish Publisher, out io.Writer) {
	client.OnMessage("outbox", func(ctx context.Context, m walex.Message) error {
		var env Envelope
		if err := json.Unmarshal(m.Content, &env); err != nil || env.Topic == "" {
			return fmt.Errorf("outbox message at %s is not an envelope: %q", m.LSN, m.Content)
		}
		return publish(ctx, m.LSN.String(), env.Topic, env.Payload)
	}, walex.WithName("outbox"))
	client.OnSchemaChange("walex_outbox_orders", func(ctx context.Context, s walex.SchemaChange) error {
		for _, c := range s.Changes {
			fmt.Fprintf(out, "schema change of %s: %s %s %s\n", s.Table, c.Kind, c.Before.Name, c.After.Name)
		}
		return nil
	})
}

func main() {
	demo.Main("outbox", setup, teardown, run)
}

func run(ctx context.Context, env demo.Env) error {
	client, err := walex.New(walex.Config{
		URL: env.URL, Name: "outbox", Publication: "walex_outbox", Subscriptions: []string{"walex_outbox_orders"},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	const want = 2 // messages of committed orders
	var mu sync.Mutex
	published := 0
	done := make(chan struct{})
	register(client, func(ctx context.Context, id, topic string, payload []byte) error {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf("publish %s to %s: %s\n", id, topic, payload)
		if published++; published == want {
			close(done)
		}
		return nil
	}, os.Stdout)

	running, err := demo.Start(ctx, env, client, "outbox_walex")
	if err != nil {
		return err
	}
	fmt.Println(">>> order for Ada, committed")
	if err := placeOrder(ctx, env.DB, "Ada", "12.50", true); err != nil {
		return err
	}
	fmt.Println(">>> order for Bob, rolled back: its message never arrives")
	if err := placeOrder(ctx, env.DB, "Bob", "3.00", false); err != nil {
		return err
	}
	fmt.Println(">>> ALTER TABLE adds a column; the next change brings the schema change")
	if err := demo.Exec(ctx, env.DB, `ALTER TABLE walex_outbox_orders ADD COLUMN note text`); err != nil {
		return err
	}
	fmt.Println(">>> order for Grace, committed")
	if err := placeOrder(ctx, env.DB, "Grace", "99.00", true); err != nil {
		return err
	}
	if err := running.Wait(ctx, done); err != nil {
		return err
	}
	return running.Stop()
}
