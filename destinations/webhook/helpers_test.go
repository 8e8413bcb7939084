package webhook_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/destinations/webhook"
)

// request is one request a receiver got.
type request struct {
	n         int // 1 for the first
	at        time.Time
	header    http.Header
	body      []byte
	verifyErr error           // Verify with the receiver's secret
	payload   webhook.Payload // decoded body
	ids       []string        // the "id" of each event
}

// receiver is an httptest server that records and verifies every request
// and answers through respond (nil, or respond returning false: 204).
type receiver struct {
	*httptest.Server
	secret  string
	respond func(n int, w http.ResponseWriter, r *http.Request) bool

	mu   sync.Mutex
	reqs []request
	got  chan int // request numbers, as they arrive (buffered)
}

func newReceiver(t *testing.T, secret string, respond func(n int, w http.ResponseWriter, r *http.Request) bool) *receiver {
	t.Helper()
	rc := &receiver{secret: secret, respond: respond, got: make(chan int, 10000)}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	q := request{at: time.Now(), header: r.Header.Clone(), body: body}
	q.verifyErr = webhook.Verify(rc.secret, r.Header, body, 0)
	if err := json.Unmarshal(body, &q.payload); err == nil {
		for _, raw := range q.payload.Events {
			var e struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(raw, &e)
			q.ids = append(q.ids, e.ID)
		}
	}
	rc.mu.Lock()
	q.n = len(rc.reqs) + 1
	rc.reqs = append(rc.reqs, q)
	rc.mu.Unlock()
	rc.got <- q.n
	if rc.respond != nil && rc.respond(q.n, w, r) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// requests returns the requests so far.
func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

// fail answers with the status and body.
func fail(w http.ResponseWriter, status int, body string) bool {
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
	return true
}

// testEvents returns n insert events of one transaction at lsn.
func testEvents(lsn walex.LSN, n int) []walex.Event {
	ts := time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)
	events := make([]walex.Event, n)
	for i := range events {
		events[i] = walex.Event{
			Name:      "users",
			Type:      walex.Insert,
			Source:    walex.Source{Name: "walex", DB: "app", Schema: "public", Table: "users", Columns: map[string]string{"id": "int4"}},
			NewRecord: map[string]any{"id": int32(i)},
			Timestamp: ts,
			CommitLSN: lsn,
			Index:     i,
			XID:       700,
		}
	}
	return events
}

// ids returns the IDs of events.
func ids(events []walex.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID()
	}
	return out
}

// fastRetry is a retry policy for tests: quick waits.
func fastRetry(attempts int) webhook.RetryPolicy {
	return webhook.RetryPolicy{MaxAttempts: attempts, InitialDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
}

// newSender makes a sender for rc's URL, failing t on error.
func newSender(t testing.TB, opts webhook.Options) *webhook.Sender {
	t.Helper()
	s, err := webhook.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
