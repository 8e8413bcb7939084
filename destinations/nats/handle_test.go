package nats_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/walex-go/walex"
	walexnats "github.com/walex-go/walex/destinations/nats"
)

// TestHandleMessages: subject, Nats-Msg-Id and body of each message, with
// a custom subject and a message ID prefix, and at most MaxInFlight
// messages waiting for their acknowledgement.
func TestHandleMessages(t *testing.T) {
	const maxInFlight = 4
	ns := startNATS(t, nil)
	var (
		mu         sync.Mutex
		maxPending int
		js         jetstream.JetStream
	)
	_, js = ns.connect(t, nil, jetstream.WithPublishAsyncAckHandler(func(js jetstream.JetStream, _ *natsgo.Msg, _ *jetstream.PubAck) {
		mu.Lock()
		defer mu.Unlock()
		// The acknowledged message no longer counts, but Handle may have
		// published the next one already.
		maxPending = max(maxPending, js.PublishAsyncPending())
	}))
	p, err := walexnats.New(js, walexnats.Options{
		CreateStream: true,
		Prefix:       "cdc",
		Subject:      func(e walex.Event) string { return "cdc." + walexnats.EscapeToken(e.Source.Table) },
		MsgIDPrefix:  "east:",
		MaxInFlight:  maxInFlight,
	})
	if err != nil {
		t.Fatal(err)
	}
	var events []walex.Event
	for i := range 200 {
		events = append(events, event("public", "a.b", 0x1000, i, map[string]any{"id": i}))
	}
	ctx := context.Background()
	if err := p.Handle(ctx, events); err != nil {
		t.Fatal(err)
	}
	// Again, as after a crash: JetStream drops all of them.
	if err := p.Handle(ctx, events); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if maxPending > maxInFlight {
		t.Errorf("%d messages in flight, want at most %d", maxPending, maxInFlight)
	}
	mu.Unlock()
	total, perID, rows := streamContents(t, js, "CDC", "east:")
	if total != 200 || len(perID) != 200 || len(rows) != 200 {
		t.Fatalf("stream: %d messages, %s, %d rows; want 200 of each", total, describe(perID), len(rows))
	}
	st, err := js.Stream(ctx, "CDC")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(events[0])
	if m.Subject != "cdc.a%2Eb" || m.Header.Get(jetstream.MsgIDHeader) != "east:0/1000:0" || string(m.Data) != string(want) {
		t.Errorf("first message: subject %q, Nats-Msg-Id %q, data %s; want cdc.a%%2Eb, east:0/1000:0, %s", m.Subject, m.Header.Get(jetstream.MsgIDHeader), m.Data, want)
	}
}

// TestHandleContext: Handle ends with its context while it waits.
func TestHandleContext(t *testing.T) {
	ns := startNATS(t, nil)
	_, js := ns.connect(t, nil)
	p, err := walexnats.New(js, walexnats.Options{CreateStream: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Handle(ctx, []walex.Event{event("public", "t", 1, 0, nil)}); err != nil {
		t.Fatal(err)
	}
	ns.shutdown() // messages now wait in the client's reconnect buffer
	ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.Handle(ctx, []walex.Event{event("public", "t", 2, 0, nil)})
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("Handle() = %v after %s, want an error at the context's end", err, time.Since(start))
	}
}
