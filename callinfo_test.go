package walex_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/walextest"
)

// TestCallInfo: a middleware learns which registration it wraps and which
// attempt this is; a context outside a call has none.
func TestCallInfo(t *testing.T) {
	if _, ok := walex.CallInfoFrom(context.Background()); ok {
		t.Fatal("CallInfoFrom(Background) reported a call")
	}
	c, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "info", Publication: "pub", Subscriptions: []string{"users"},
		RetryPolicy: walex.RetryPolicy{MaxAttempts: 3, InitialDelay: time.Millisecond, MaxDelay: time.Millisecond},
		Logger:      slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != "info" {
		t.Errorf("Name() = %q, want the Config.Name", c.Name())
	}
	var seen []walex.CallInfo
	c.Use(func(next walex.Handler) walex.Handler {
		return func(ctx context.Context, events []walex.Event) error {
			info, ok := walex.CallInfoFrom(ctx)
			if !ok {
				t.Error("no CallInfo in a middleware's context")
			}
			seen = append(seen, info)
			return next(ctx, events)
		}
	})
	failures := 1
	var inHandler walex.CallInfo
	c.OnInsert("users", func(ctx context.Context, events []walex.Event) error {
		inHandler, _ = walex.CallInfoFrom(ctx)
		if failures > 0 {
			failures--
			return errors.New("try again")
		}
		return nil
	})
	c.OnEvent(walex.AllTables, func(context.Context, []walex.Event) error { return nil })

	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "integer"))
	h := walextest.New(c)
	if _, err := h.Deliver(context.Background(), s.Begin().Insert(users, walextest.Row{"id": 1}).Commit()); err != nil {
		t.Fatal(err)
	}
	want := []walex.CallInfo{
		{Method: "OnInsert", Table: "public.users", Attempt: 1},
		{Method: "OnInsert", Table: "public.users", Attempt: 2},
		{Method: "OnEvent", Table: walex.AllTables, Attempt: 1},
	}
	if len(seen) != len(want) {
		t.Fatalf("calls seen by the middleware: %+v, want %d", seen, len(want))
	}
	for i, w := range want {
		g := seen[i]
		if g.Method != w.Method || g.Table != w.Table || g.Attempt != w.Attempt || g.Handler == "" {
			t.Errorf("call %d: %+v, want %+v and a Handler", i, g, w)
		}
	}
	if seen[0].Handler != `OnInsert("public.users") #1 (github.com/walex-go/walex_test.TestCallInfo.func2)` {
		t.Errorf("Handler = %q", seen[0].Handler)
	}
	if inHandler != seen[1] {
		t.Errorf("the handler's CallInfo %+v, the middleware's %+v", inHandler, seen[1])
	}
}
