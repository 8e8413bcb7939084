package nats_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/walex-go/walex"
	walexnats "github.com/walex-go/walex/destinations/nats"
)

// runUntilError runs a client of table t publishing through p, inserts
// rows rows, and returns Run's error.
func runUntilError(t *testing.T, p *walexnats.Publisher, name string, rows int) error {
	t.Helper()
	url, conn := setupTable(t)
	c := newClient(t, url, name, nil)
	c.OnEvent(walex.AllTables, p.Handle)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runErr := run(ctx, c)
	waitFor(t, 30*time.Second, "the slot to stream", runErr, func() bool {
		var n int
		_ = conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active`, name+"_walex").Scan(&n)
		return n == 1
	})
	insertRows(t, conn, rows)
	select {
	case err := <-runErr:
		return err
	case <-ctx.Done():
		t.Fatal("Run did not stop within 60 s")
		return nil
	}
}

// wantPermanent checks that Run's err is a *walex.HandlerError around a
// permanent *PublishError of the given kind whose text has every one of
// texts.
func wantPermanent(t *testing.T, err error, kind error, texts ...string) *walexnats.PublishError {
	t.Helper()
	var he *walex.HandlerError
	var pe *walexnats.PublishError
	if !errors.As(err, &he) || !errors.As(err, &pe) {
		t.Fatalf("Run() = %v, want a *walex.HandlerError wrapping a *nats.PublishError", err)
	}
	if !errors.Is(err, kind) || !pe.Permanent() || !walex.IsPermanent(pe) {
		t.Fatalf("Run() = %v, want the permanent %q", err, kind)
	}
	for _, s := range texts {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("Run() = %v\nwant it to say %q", err, s)
		}
	}
	return pe
}

// TestStreamFull: a stream at MaxMsgs that discards new messages refuses
// the events; Run stops with an error that says so and what to do.
func TestStreamFull(t *testing.T) {
	ns := startNATS(t, nil)
	_, js := ns.connect(t, nil)
	p, err := walexnats.New(js, walexnats.Options{CreateStream: true, Stream: jetstream.StreamConfig{
		Name: "SMALL", MaxMsgs: 5, Discard: jetstream.DiscardNew,
	}})
	if err != nil {
		t.Fatal(err)
	}
	err = runUntilError(t, p, "full", 10)
	pe := wantPermanent(t, err, walexnats.ErrStreamFull, `"walex.public.t.insert"`, `stream "SMALL"`, "MaxMsgs", "DiscardOld")
	if got, want := pe.Stream, "SMALL"; got != want {
		t.Errorf("PublishError.Stream = %q, want %q", got, want)
	}
	if n := streamMsgs(t, js, "SMALL"); n != 5 {
		t.Errorf("stream has %d messages, want 5", n)
	}
}

// TestPermissionViolation: the NATS user may publish to one table's
// subjects only; publishing another table's event stops Run with an
// error naming the subject and the permission.
func TestPermissionViolation(t *testing.T) {
	ns := startNATS(t, func(o *server.Options) {
		o.Users = []*server.User{{
			Username: "cdc",
			Password: "not-a-secret",
			Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"walex.public.other.>", "$JS.API.>"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
			},
		}}
	})
	_, js := ns.connect(t, []natsgo.Option{natsgo.UserInfo("cdc", "not-a-secret"), natsgo.ErrorHandler(func(*natsgo.Conn, *natsgo.Subscription, error) {})})
	p, err := walexnats.New(js, walexnats.Options{CreateStream: true})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = runUntilError(t, p, "perm", 3)
	wantPermanent(t, err, walexnats.ErrPermission, `"walex.public.t.insert"`, "allow the NATS user to publish", "ermissions violation")
	if !errors.Is(err, natsgo.ErrPermissionViolation) {
		t.Errorf("Run() = %v, want it to wrap nats.ErrPermissionViolation", err)
	}
	// Recognized by the probe, long before Options.AckTimeout (10 s) on
	// each of the 3 attempts.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %s to stop", d)
	}
}

// event is a synthetic event of table schema.table.
func event(schema, table string, lsn walex.LSN, index int, rec map[string]any) walex.Event {
	return walex.Event{
		Name: table, Type: walex.Insert,
		Source:    walex.Source{Name: walex.SourceName, DB: "app", Schema: schema, Table: table},
		NewRecord: rec, CommitLSN: lsn, Index: index, Timestamp: time.Unix(0, 0).UTC(),
	}
}

// TestHandleErrors: the causes retrying cannot fix, at the handler.
func TestHandleErrors(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t, func(o *server.Options) { o.MaxPayload = 4096 })
	_, js := ns.connect(t, nil)
	ev := []walex.Event{event("public", "users", 0x16B3748, 3, map[string]any{"id": 1})}

	t.Run("no stream", func(t *testing.T) {
		p, err := walexnats.New(js, walexnats.Options{Prefix: "nostream"})
		if err != nil {
			t.Fatal(err)
		}
		err = p.Handle(ctx, ev)
		var pe *walexnats.PublishError
		if !errors.As(err, &pe) || !errors.Is(err, walexnats.ErrNoStream) || !pe.Permanent() ||
			!strings.Contains(err.Error(), `create a stream whose subjects include "nostream.public.users.insert"`) ||
			!strings.Contains(err.Error(), "Options.CreateStream") || pe.EventID != "0/16B3748:3" {
			t.Fatalf("Handle() = %v, want a permanent ErrNoStream for event 0/16B3748:3 that says what to do", err)
		}
	})

	t.Run("larger than max_payload", func(t *testing.T) {
		p, err := walexnats.New(js, walexnats.Options{CreateStream: true, Prefix: "big"})
		if err != nil {
			t.Fatal(err)
		}
		big := []walex.Event{event("public", "users", 1, 0, map[string]any{"v": strings.Repeat("x", 5000)})}
		err = p.Handle(ctx, big)
		if !errors.Is(err, walexnats.ErrTooLarge) || !errors.Is(err, natsgo.ErrMaxPayload) || !walex.IsPermanent(err) || !strings.Contains(err.Error(), "max_payload") {
			t.Fatalf("Handle() = %v, want a permanent ErrTooLarge", err)
		}
	})

	t.Run("larger than the stream's MaxMsgSize", func(t *testing.T) {
		p, err := walexnats.New(js, walexnats.Options{CreateStream: true, Prefix: "maxsize", Stream: jetstream.StreamConfig{MaxMsgSize: 600}})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Handle(ctx, ev); err != nil {
			t.Fatalf("Handle(small event) = %v", err)
		}
		big := []walex.Event{event("public", "users", 1, 0, map[string]any{"v": strings.Repeat("x", 1000)})}
		err = p.Handle(ctx, big)
		var pe *walexnats.PublishError
		if !errors.As(err, &pe) || !errors.Is(err, walexnats.ErrTooLarge) || !pe.Permanent() || pe.Stream != "MAXSIZE" || !strings.Contains(err.Error(), "MaxMsgSize") {
			t.Fatalf("Handle() = %v, want a permanent ErrTooLarge naming stream MAXSIZE", err)
		}
	})

	t.Run("invalid subject", func(t *testing.T) {
		p, err := walexnats.New(js, walexnats.Options{Subject: func(e walex.Event) string { return "cdc." + e.Source.Table + ".*" }})
		if err != nil {
			t.Fatal(err)
		}
		err = p.Handle(ctx, ev)
		if !errors.Is(err, walexnats.ErrInvalidSubject) || !walex.IsPermanent(err) || !strings.Contains(err.Error(), "wildcard") {
			t.Fatalf("Handle() = %v, want a permanent ErrInvalidSubject", err)
		}
	})

	t.Run("closed connection", func(t *testing.T) {
		nc, js := ns.connect(t, nil)
		p, err := walexnats.New(js, walexnats.Options{CreateStream: true, Prefix: "closed"})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
		nc.Close()
		if err := p.Handle(ctx, ev); !errors.Is(err, walexnats.ErrConnClosed) || !walex.IsPermanent(err) {
			t.Fatalf("Handle() on a closed connection = %v, want a permanent ErrConnClosed", err)
		}
	})

	t.Run("bad stream configuration", func(t *testing.T) {
		p, err := walexnats.New(js, walexnats.Options{CreateStream: true, Prefix: "badcfg", Stream: jetstream.StreamConfig{MaxAge: time.Second, Duplicates: time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		err = p.Handle(ctx, ev)
		if !errors.Is(err, walexnats.ErrStreamConfig) || !walex.IsPermanent(err) || !strings.Contains(err.Error(), `stream "BADCFG"`) {
			t.Fatalf("Handle() = %v, want a permanent ErrStreamConfig", err)
		}
	})
}

// TestTransientErrors: an error retrying can fix is not permanent.
func TestTransientErrors(t *testing.T) {
	ns := startNATS(t, nil)
	_, js := ns.connect(t, nil)
	p, err := walexnats.New(js, walexnats.Options{CreateStream: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ev := []walex.Event{event("public", "users", 1, 0, nil)}
	if err := p.Handle(ctx, ev); err != nil {
		t.Fatal(err)
	}
	ns.shutdown()
	ctx2, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	err = p.Handle(ctx2, ev)
	var pe *walexnats.PublishError
	if !errors.As(err, &pe) || pe.Permanent() || walex.IsPermanent(err) || !strings.Contains(err.Error(), "walex retries the call") {
		t.Fatalf("Handle() with the server down = %v, want a transient *PublishError", err)
	}
	cancel()
}

// TestErrorTexts logs the texts of the permanent errors, to read.
func TestErrorTexts(t *testing.T) {
	for _, kind := range []error{walexnats.ErrNoStream, walexnats.ErrPermission, walexnats.ErrStreamFull, walexnats.ErrTooLarge} {
		e := &walexnats.PublishError{EventID: "0/16B3748:3", Subject: "walex.public.users.insert", Stream: "WALEX", Kind: kind}
		if !strings.HasPrefix(e.Error(), `walex/nats: publishing event 0/16B3748:3 to "walex.public.users.insert" (stream "WALEX"): `+kind.Error()+"; ") {
			t.Errorf("Error() = %q", e.Error())
		}
		t.Log(e.Error())
	}
}
