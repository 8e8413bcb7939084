package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/demo"
	"github.com/walex-go/walex/internal/pgtest"
	"github.com/walex-go/walex/walextest"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// TestExample runs the example against a throwaway server.
func TestExample(t *testing.T) { demo.Test(t, setup, teardown, run) }

type sent struct{ id, topic, payload string }

func newConsumer(t *testing.T) (*walex.Client, *[]sent, *strings.Builder) {
	client, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "outbox", Publication: "walex_outbox", Subscriptions: []string{"walex_outbox_orders"},
		RetryPolicy: walex.RetryPolicy{MaxAttempts: 2, InitialDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	var out []sent
	var log strings.Builder
	register(client, func(_ context.Context, id, topic string, payload []byte) error {
		out = append(out, sent{id, topic, string(payload)})
		return nil
	}, &log)
	return client, &out, &log
}

// TestHandlers unit-tests the consumer's handlers with walextest: an
// outbox message is published with its topic and payload; a message
// delivered again after a crash has the same id; a message that is not
// an envelope stops the consumer; a schema change is printed.
func TestHandlers(t *testing.T) {
	ctx := context.Background()
	client, out, log := newConsumer(t)
	s := walextest.NewStream()
	orders := s.Table("walex_outbox_orders", walextest.Key("id", "int8"), walextest.Col("customer", "text"), walextest.Col("total", "numeric"))
	h := walextest.New(client)

	order := s.Begin().
		Insert(orders, walextest.Row{"id": 1, "customer": "Ada", "total": "12.50"}).
		Message("outbox", []byte(`{"topic":"orders.placed","payload":{"order_id":1}}`)).
		Commit()
	if _, err := h.DeliverTwice(ctx, order); err != nil {
		t.Fatal(err)
	}
	if len(*out) != 2 || (*out)[0] != (*out)[1] || (*out)[0].topic != "orders.placed" || (*out)[0].payload != `{"order_id":1}` || (*out)[0].id == "" {
		t.Fatalf("published %+v, want the same message twice", *out)
	}

	orders.Alter(walextest.Key("id", "int8"), walextest.Col("customer", "text"), walextest.Col("total", "numeric"), walextest.Col("note", "text"))
	_, err := h.Deliver(ctx, s.Begin().
		Insert(orders, walextest.Row{"id": 2, "customer": "Bob", "total": "1"}).
		Message("outbox", []byte(`not json`)).
		Commit())
	var he *walex.HandlerError
	if !errors.As(err, &he) || !strings.Contains(he.Handler, "outbox") || !strings.Contains(err.Error(), "not an envelope") {
		t.Fatalf("Deliver() = %v, want the outbox handler's error", err)
	}
	if got := log.String(); got != "schema change of walex_outbox_orders: added  note\n" {
		t.Errorf("printed %q", got)
	}
}
