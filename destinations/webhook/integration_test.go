package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/destinations/webhook"
	"github.com/walex-go/walex/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// setupTable creates a database with table items in publication events
// and returns its URL.
func setupTable(t *testing.T) string {
	t.Helper()
	srv := pgtest.Shared()
	db := srv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Exec(ctx, db, `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL); CREATE PUBLICATION events FOR TABLE items`); err != nil {
		t.Fatal(err)
	}
	return srv.URL(db)
}

// exec runs sql on url.
func exec(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// waitStreaming waits until the slot (of a temporary slot: the start of
// its name) is active, so that changes made
// from then on are delivered.
func waitStreaming(t *testing.T, url, slot string, r *running) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for {
		var active bool
		err := conn.QueryRow(ctx, `SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name LIKE $1 || '%'`, slot).Scan(&active)
		if err != nil {
			t.Fatalf("waiting for slot %s: %v", slot, err)
		}
		if active {
			return
		}
		select {
		case <-r.done:
			t.Fatalf("Run returned before streaming: %v", r.err)
		case <-ctx.Done():
			t.Fatalf("slot %s not active within 30s", slot)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// running is a Run in a goroutine of the test.
type running struct {
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, set before done is closed
	cancel context.CancelFunc
}

// run starts c.Run until the test ends.
func run(t *testing.T, c *walex.Client) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(r.done)
		r.err = c.Run(ctx)
	}()
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// stop cancels Run and returns its error.
func (r *running) stop() error {
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		return errors.New("Run did not return within 30s of cancel")
	}
}

// itemEvent is the part of an item's Event JSON the tests look at.
type itemEvent struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	NewRecord struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	} `json:"new_record"`
}

// TestWalexToWebhook streams rows from PostgreSQL through a walex Client
// to a receiver that verifies every signature and turns away the first
// requests with 503: every row arrives once the receiver drops the
// redeliveries it already handled by webhook-id, in commit order.
func TestWalexToWebhook(t *testing.T) {
	url := setupTable(t)
	secret := newSecret(t)
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}

	const rejections = 3
	var (
		mu       sync.Mutex
		requests int
		handled  = map[string]bool{} // webhook-ids handled
		first    string              // the first handled webhook-id
		rejected []string            // webhook-ids turned away
		got      []itemEvent
		dups     int
		arrived  = make(chan struct{}, 1000)
	)
	rcv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		requests++
		id := r.Header.Get(webhook.HeaderID)
		if requests <= rejections {
			rejected = append(rejected, id)
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		if handled[id] {
			dups++
			return
		}
		var p webhook.Payload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, raw := range p.Events {
			var e itemEvent
			if err := json.Unmarshal(raw, &e); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			got = append(got, e)
		}
		handled[id] = true
		if first == "" {
			first = id
		}
		arrived <- struct{}{}
	})))
	t.Cleanup(rcv.Close)

	s := newSender(t, webhook.Options{URL: rcv.URL, Secret: secret, MaxEventsPerRequest: 7, Retry: fastRetry(2)})
	c, err := walex.New(walex.Config{
		URL: url, Name: "webhook_it", Publication: "events", Subscriptions: []string{"items"},
		Logger:      slog.New(slog.DiscardHandler),
		RetryPolicy: walex.RetryPolicy{MaxAttempts: 10, InitialDelay: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.OnEvent(walex.AllTables, s.Handler())
	r := run(t, c)
	waitStreaming(t, url, "webhook_it_walex", r)

	const txs, perTx = 5, 20
	for i := range txs {
		exec(t, url, `INSERT INTO items SELECT g, 'item ' || g FROM generate_series($1::int, $2::int) g`, i*perTx+1, (i+1)*perTx)
	}
	deadline := time.After(30 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= txs*perTx {
			break
		}
		select {
		case <-arrived:
		case <-r.done:
			t.Fatalf("Run returned: %v", r.err)
		case <-deadline:
			t.Fatalf("%d of %d rows arrived within 30s", n, txs*perTx)
		}
	}
	if err := r.stop(); err != nil {
		t.Errorf("Run() = %v, want nil after cancel", err)
	}
	// Three rejections, the sender's policy allows two attempts: walex's
	// RetryPolicy called the handler again.
	if got := c.Stats().Retries; got < 1 {
		t.Errorf("Stats().Retries = %d, want at least 1", got)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(got) != txs*perTx {
		t.Fatalf("rows = %d, want %d", len(got), txs*perTx)
	}
	for i, e := range got {
		if e.NewRecord.ID != i+1 || e.NewRecord.Name != fmt.Sprintf("item %d", i+1) || e.Type != "insert" {
			t.Fatalf("row %d = %+v, want item %d, in order", i, e, i+1)
		}
	}
	for _, id := range rejected {
		if id != first {
			t.Errorf("rejected webhook-id %s, then %s handled: want the same batch ID on every attempt", id, first)
		}
	}
	if requests < rejections+len(handled) {
		t.Errorf("requests = %d, want at least %d rejected and %d handled", requests, rejections, len(handled))
	}
	if want := txs * ((perTx + 6) / 7); len(handled) != want {
		t.Errorf("batches = %d, want %d (%d transactions of %d rows, at most 7 a request)", len(handled), want, txs, perTx)
	}
	t.Logf("%d requests: %d rejected, %d batches, %d duplicates dropped", requests, rejections, len(handled), dups)
}

// TestWalexPermanentStopsRun checks that a receiver that rejects the
// request (400) stops Run with a *walex.HandlerError that carries the
// status and the receiver's explanation, and that neither the sender nor
// walex retries it.
func TestWalexPermanentStopsRun(t *testing.T) {
	url := setupTable(t)
	secret := newSecret(t)
	rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
		return fail(w, http.StatusBadRequest, `{"error":"unknown table items"}`)
	})
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Retry: fastRetry(5)})
	c, err := walex.New(walex.Config{
		URL: url, Name: "webhook_perm", Publication: "events", Subscriptions: []string{"items"},
		Logger:      slog.New(slog.DiscardHandler),
		RetryPolicy: walex.RetryPolicy{MaxAttempts: 3, InitialDelay: 10 * time.Millisecond, MaxDelay: 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.OnEvent(walex.AllTables, s.Handler())
	r := run(t, c)
	waitStreaming(t, url, "webhook_perm_walex", r)
	exec(t, url, `INSERT INTO items VALUES (1, 'one')`)

	select {
	case <-r.done:
		err = r.err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop within 30s")
	}
	var he *walex.HandlerError
	var se *webhook.StatusError
	if !errors.As(err, &he) || !errors.As(err, &se) || se.StatusCode != http.StatusBadRequest || !walex.IsPermanent(err) {
		t.Fatalf("Run() = %v, want a *walex.HandlerError wrapping the 400 StatusError", err)
	}
	if !strings.Contains(err.Error(), "400 Bad Request") || !strings.Contains(err.Error(), "unknown table items") {
		t.Errorf("Run() = %q, want the status and the receiver's explanation", err)
	}
	// One request in all: neither the sender nor walex retried the 400.
	if got := len(rc.requests()); got != 1 || he.Attempts != 1 {
		t.Errorf("requests = %d for %d handler calls, want one request in one call", got, he.Attempts)
	}
	for _, q := range rc.requests() {
		if q.verifyErr != nil {
			t.Errorf("request %d: Verify() = %v", q.n, q.verifyErr)
		}
	}
}
