package walextest_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/walextest"
)

func newClient(t *testing.T, edit ...func(*walex.Config)) *walex.Client {
	t.Helper()
	cfg := walex.Config{URL: "postgres://localhost/app", Name: "kit", Publication: "pub", Subscriptions: []string{"users", "orders"},
		RetryPolicy: walex.RetryPolicy{MaxAttempts: 3, InitialDelay: time.Millisecond, MaxDelay: time.Millisecond}}
	for _, f := range edit {
		f(&cfg)
	}
	c, err := walex.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEventsAsDecoded: values are typed as the decoder types them,
// Changes follow the same rules, Unchanged stands for TOAST, REPLICA
// IDENTITY FULL rows are completed, IDs increase.
func TestEventsAsDecoded(t *testing.T) {
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "integer"), walextest.Col("email", "text"), walextest.Col("profile", "jsonb"), walextest.Col("tags", "text[]"))
	orders := s.Table("public.orders", walextest.Key("id", "bigint"), walextest.Col("total", "numeric"), walextest.Col("note", "text")).Full()
	h := walextest.New(newClient(t))
	ins := s.Begin().Insert(users, walextest.Row{"id": 1, "email": "a@example.com", "profile": map[string]any{"lang": "en"}, "tags": []string{"x", "y"}}).Commit()
	up := s.Begin().
		Update(users, nil, walextest.Row{"id": 1, "email": "b@example.com", "profile": walex.Unchanged}).
		Update(orders, walextest.Row{"id": 7, "total": "1.50", "note": "long"}, walextest.Row{"id": 7, "total": "2.50", "note": walex.Unchanged}).
		Commit()
	a, err := h.Events(ins)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Events(up)
	if err != nil {
		t.Fatal(err)
	}
	e := a[0]
	if e.Type != walex.Insert || e.NewRecord["id"] != int32(1) || e.NewRecord["email"] != "a@example.com" || e.Source.Table != "users" || e.Source.Columns["id"] != "int4" {
		t.Fatalf("insert = %+v", e)
	}
	if p, ok := e.NewRecord["profile"].(map[string]any); !ok || p["lang"] != "en" {
		t.Errorf("jsonb = %#v, want map[string]any", e.NewRecord["profile"])
	}
	if tags, ok := e.NewRecord["tags"].([]any); !ok || len(tags) != 2 || tags[0] != "x" {
		t.Errorf("text[] = %#v, want []any", e.NewRecord["tags"])
	}
	u, o := b[0], b[1]
	if u.NewRecord["profile"] != walex.Unchanged || u.OldRecord != nil || len(u.Changes) != 0 {
		t.Errorf("DEFAULT update = %+v", u)
	}
	if o.NewRecord["note"] != "long" || o.OldRecord["total"] == nil || len(o.Changes) != 1 || o.Changes["total"].NewValue == nil {
		t.Errorf("FULL update: NewRecord %v Changes %v", o.NewRecord, o.Changes)
	}
	if !(u.CommitLSN > e.CommitLSN) || u.Index != 0 || o.Index != 1 || o.CommitLSN != u.CommitLSN || u.XID <= e.XID || !u.Timestamp.After(e.Timestamp) {
		t.Errorf("positions: %s %s %s, xids %d %d", e.ID(), u.ID(), o.ID(), e.XID, u.XID)
	}
}

// TestDeliver: a client's handlers get what Run would give them: the
// subscriptions and filters apply, handlers run in registration order with
// middleware, a transactional message splits the transaction where it
// falls, a failing handler is retried and then stops with a
// *walex.HandlerError.
func TestDeliver(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	var order []string
	c.Use(func(next walex.Handler) walex.Handler {
		return func(ctx context.Context, events []walex.Event) error {
			order = append(order, "mw")
			return next(ctx, events)
		}
	})
	c.OnInsert("users", func(_ context.Context, events []walex.Event) error {
		for _, e := range events {
			order = append(order, "insert "+e.NewRecord["email"].(string))
		}
		return nil
	}, walex.WithFilters(walex.Filters{UnwatchedRecords: map[string]any{"email": "skip@example.com"}}))
	c.OnMessage("outbox", func(_ context.Context, m walex.Message) error {
		order = append(order, "message "+string(m.Content))
		return nil
	})
	fails := 1
	c.OnDelete("users", func(context.Context, []walex.Event) error {
		if fails > 0 {
			fails--
			return errors.New("once")
		}
		return nil
	}, walex.WithName("flaky"))

	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"), walextest.Col("email", "text"))
	other := s.Table("unsubscribed", walextest.Key("id", "int4"))
	h := walextest.New(c)
	calls, err := h.Deliver(ctx, s.Begin().
		Insert(users, walextest.Row{"id": 1, "email": "a@example.com"}).
		Insert(users, walextest.Row{"id": 2, "email": "skip@example.com"}).
		Insert(other, walextest.Row{"id": 1}).
		Message("outbox", []byte("m")).
		Insert(users, walextest.Row{"id": 3, "email": "c@example.com"}).
		Message("unwanted", []byte("no handler: no split")).
		Insert(users, walextest.Row{"id": 4, "email": "d@example.com"}).
		Delete(users, walextest.Row{"id": 2}).
		Commit())
	if err != nil {
		t.Fatal(err)
	}
	want := "mw,insert a@example.com,message m,mw,insert c@example.com,insert d@example.com,mw,mw"
	if got := strings.Join(order, ","); got != want {
		t.Errorf("order = %s\nwant    %s", got, want)
	}
	var summary []string
	for _, c := range calls {
		s := c.Handler
		if c.Err != nil {
			s += " failed"
		}
		summary = append(summary, s)
	}
	if len(calls) != 5 || calls[1].Message == nil || calls[3].Attempt != 1 || calls[3].Err == nil || calls[4].Attempt != 2 || calls[4].Err != nil || len(calls[4].Events) != 1 {
		t.Errorf("calls:\n%s", strings.Join(summary, "\n"))
	}

	// A handler that keeps failing stops the delivery like Run.
	fails = 10
	_, err = h.Deliver(ctx, s.Begin().Delete(users, walextest.Row{"id": 1}).Commit())
	var he *walex.HandlerError
	if !errors.As(err, &he) || !strings.Contains(he.Handler, "flaky") || he.Attempts != 3 {
		t.Fatalf("Deliver() = %v, want a *walex.HandlerError of flaky", err)
	}
}

// TestSchemaChange: Alter gives the handlers a SchemaChange before the
// first event of the new shape.
func TestSchemaChange(t *testing.T) {
	c := newClient(t)
	var got []walex.SchemaChange
	c.OnSchemaChange("users", func(_ context.Context, s walex.SchemaChange) error { got = append(got, s); return nil })
	c.OnInsert("users", func(context.Context, []walex.Event) error { return nil })
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"), walextest.Col("email", "text"))
	h := walextest.New(c)
	first := s.Begin().Insert(users, walextest.Row{"id": 1}).Commit()
	users.Alter(walextest.Key("id", "int4"), walextest.Col("mail", "text"), walextest.Col("age", "int4"))
	second := s.Begin().Insert(users, walextest.Row{"id": 2, "age": 3}).Commit()
	calls, err := h.Deliver(context.Background(), first, second, s.Begin().Insert(users, walextest.Row{"id": 3}).Commit())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(calls) != 4 || calls[1].SchemaChange == nil {
		t.Fatalf("%d schema changes, %d calls", len(got), len(calls))
	}
	ch := got[0].Changes
	if len(ch) != 2 || ch[0].Kind != walex.ColumnRenamed || ch[0].Before.Name != "email" || ch[0].After.Name != "mail" || ch[1].Kind != walex.ColumnAdded || ch[1].After.Name != "age" {
		t.Errorf("changes = %+v", ch)
	}
}

// idempotencyProbe counts applications per event ID.
type idempotencyProbe struct{ seen map[string]int }

func (p *idempotencyProbe) handler(_ context.Context, events []walex.Event) error {
	for _, e := range events {
		p.seen[e.ID()]++
	}
	return nil
}

// TestFaults: DeliverTwice delivers a transaction again after a
// reconnect; DeliverCut stops after the given calls and then delivers
// the whole transaction again.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, func(cfg *walex.Config) { cfg.MaxBatchEvents = 2 })
	p := &idempotencyProbe{seen: map[string]int{}}
	c.OnInsert("users", p.handler)
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"))
	h := walextest.New(c)
	tx := s.Begin()
	for i := range 5 {
		tx.Insert(users, walextest.Row{"id": i})
	}
	tx.Commit()
	calls, err := h.DeliverTwice(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 6 || len(p.seen) != 5 {
		t.Fatalf("DeliverTwice: %d calls (want 3 chunks twice), %d IDs", len(calls), len(p.seen))
	}
	for id, n := range p.seen {
		if n != 2 {
			t.Errorf("%s seen %d times", id, n)
		}
	}
	clear(p.seen)
	calls, err = h.DeliverCut(ctx, tx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 5 || len(calls[1].Events) != 2 || calls[2].Events[0].Index != 0 {
		t.Fatalf("DeliverCut: %d calls, want 2 then 3 (the whole transaction again)", len(calls))
	}
	if p.seen[calls[0].Events[0].ID()] != 2 || p.seen[calls[4].Events[0].ID()] != 1 {
		t.Errorf("seen %v", p.seen)
	}
	if _, err := h.DeliverCut(ctx, tx, 4); err == nil {
		t.Error("DeliverCut past the transaction's calls: no error")
	}
}

// TestReplay replays a stream recorded from PostgreSQL through the
// decoder and the handlers.
func TestReplay(t *testing.T) {
	f, err := os.Open("../decoder/testdata/logical_messages/stream.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := newClient(t, func(cfg *walex.Config) { cfg.Subscriptions = []string{"t"} })
	var items []string
	c.OnInsert("t", func(_ context.Context, events []walex.Event) error {
		for _, e := range events {
			items = append(items, e.NewRecord["v"].(string))
		}
		return nil
	})
	c.OnMessage(walex.AllMessages, func(_ context.Context, m walex.Message) error {
		items = append(items, m.Prefix+":"+string(m.Content))
		return nil
	})
	if _, err := walextest.New(c).Replay(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	want := "walex-test:non-transactional, outside a transaction,one,walex-test:transactional, between inserts,two,walex-test:transactional, alone,walex-test:non-transactional, in a rolled-back transaction,walex-bin:\x00\x01\\"
	if got := strings.Join(items, ","); got != want {
		t.Errorf("replay = %q\nwant     %q", got, want)
	}
}

// TestDeliverSnapshot: rows come as Read events to OnRead and OnEvent
// handlers, in calls of MaxBatchEvents, after the stream's earlier events.
func TestDeliverSnapshot(t *testing.T) {
	c := newClient(t, func(cfg *walex.Config) { cfg.MaxBatchEvents = 2 })
	var reads []walex.Event
	c.OnRead("users", func(_ context.Context, events []walex.Event) error { reads = append(reads, events...); return nil })
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"), walextest.Col("email", "text"))
	h := walextest.New(c)
	before := s.Begin().Insert(users, walextest.Row{"id": 9}).Commit()
	if _, err := h.Deliver(context.Background(), before); err != nil {
		t.Fatal(err)
	}
	calls, err := h.DeliverSnapshot(context.Background(), users, walextest.Row{"id": 1, "email": "a"}, walextest.Row{"id": 2}, walextest.Row{"id": 3})
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := h.Events(before)
	if len(calls) != 2 || len(reads) != 3 || reads[0].Type != walex.Read || reads[0].NewRecord["email"] != "a" || reads[2].Index != 2 ||
		!walex.PositionOf(reads[0]).After(walex.PositionOf(evs[0])) {
		t.Fatalf("%d calls, reads %v", len(calls), reads)
	}
}
