package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/destinations/webhook"
)

func TestSendBatchVerified(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret, nil)
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret})
	events := testEvents(0x16B3748, 3)
	if err := s.Send(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("requests = %d, want 1", len(reqs))
	}
	q := reqs[0]
	if q.verifyErr != nil {
		t.Errorf("Verify() = %v, want nil", q.verifyErr)
	}
	if got, want := q.header.Get(webhook.HeaderID), webhook.BatchID(events); got != want {
		t.Errorf("webhook-id = %q, want %q", got, want)
	}
	if got, want := q.header.Get("Content-Type"), "application/json"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	if got, want := q.payload.Type, webhook.PayloadType; got != want {
		t.Errorf("type = %q, want %q", got, want)
	}
	if !q.payload.Timestamp.Equal(events[0].Timestamp) {
		t.Errorf("timestamp = %v, want the commit time %v", q.payload.Timestamp, events[0].Timestamp)
	}
	for i, raw := range q.payload.Events {
		want, err := json.Marshal(events[i])
		if err != nil {
			t.Fatal(err)
		}
		if string(raw) != string(want) {
			t.Errorf("events[%d] = %s, want the Event JSON %s", i, raw, want)
		}
	}
	if len(q.payload.Events) != 3 {
		t.Errorf("events = %d, want 3", len(q.payload.Events))
	}
	if err := s.Send(context.Background(), nil); err != nil || len(rc.requests()) != 1 {
		t.Errorf("Send(no events) = %v with %d requests, want nil and no request", err, len(rc.requests())-1)
	}
}

func TestSendSplitsInOrder(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret, nil)
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, MaxEventsPerRequest: 10})
	first, second := testEvents(0x1000, 25), testEvents(0x2000, 10)
	for _, call := range [][]walex.Event{first, second} {
		if err := s.Send(context.Background(), call); err != nil {
			t.Fatal(err)
		}
	}
	reqs := rc.requests()
	var sizes []int
	var got []string
	seen := map[string]bool{}
	for _, q := range reqs {
		if q.verifyErr != nil {
			t.Errorf("request %d: Verify() = %v", q.n, q.verifyErr)
		}
		sizes = append(sizes, len(q.ids))
		got = append(got, q.ids...)
		id := q.header.Get(webhook.HeaderID)
		if seen[id] {
			t.Errorf("request %d: webhook-id %s used twice", q.n, id)
		}
		seen[id] = true
	}
	if want := []int{10, 10, 5, 10}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes = %v, want %v", sizes, want)
	}
	if want := append(ids(first), ids(second)...); !slices.Equal(got, want) {
		t.Errorf("event IDs = %v, want %v", got, want)
	}
	if len(reqs) == 4 {
		if got, want := reqs[1].header.Get(webhook.HeaderID), webhook.BatchID(first[10:20]); got != want {
			t.Errorf("second batch's webhook-id = %q, want BatchID of events 10 to 19 %q", got, want)
		}
	}
}

func TestRetryTransient(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusTooManyRequests, http.StatusRequestTimeout} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			secret := newSecret(t)
			rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
				return n <= 2 && fail(w, status, "try again")
			})
			s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Retry: fastRetry(5)})
			events := testEvents(0x3000, 4)
			if err := s.Send(context.Background(), events); err != nil {
				t.Fatalf("Send() = %v, want nil after two failures", err)
			}
			reqs := rc.requests()
			if len(reqs) != 3 {
				t.Fatalf("requests = %d, want 3", len(reqs))
			}
			for _, q := range reqs {
				if q.verifyErr != nil {
					t.Errorf("request %d: Verify() = %v", q.n, q.verifyErr)
				}
				if got, want := q.header.Get(webhook.HeaderID), webhook.BatchID(events); got != want {
					t.Errorf("request %d: webhook-id = %q, want %q on every attempt", q.n, got, want)
				}
				if string(q.body) != string(reqs[0].body) {
					t.Errorf("request %d: body differs from the first attempt's", q.n)
				}
			}
		})
	}
}

func TestUnlimitedRetries(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
		return n <= 2*webhook.DefaultMaxAttempts && fail(w, http.StatusServiceUnavailable, "down")
	})
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Retry: fastRetry(-1)})
	if err := s.Send(context.Background(), testEvents(0x3200, 1)); err != nil {
		t.Fatalf("Send() = %v, want nil once the receiver is back", err)
	}
	if got, want := len(rc.requests()), 2*webhook.DefaultMaxAttempts+1; got != want {
		t.Errorf("requests = %d, want %d", got, want)
	}
}

func TestRetryLogged(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
		return n == 1 && fail(w, http.StatusBadGateway, "")
	})
	var buf bytes.Buffer
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Retry: fastRetry(2), Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	events := testEvents(0x3100, 1)
	if err := s.Send(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	for _, part := range []string{"level=WARN", "webhook: delivery failed; retrying", "webhook_id=" + webhook.BatchID(events), "attempt=1", "502 Bad Gateway"} {
		if !strings.Contains(line, part) {
			t.Errorf("log %q lacks %q", line, part)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name        string
		header      func() string
		maxAfter    time.Duration
		least, most time.Duration
	}{
		{"seconds", func() string { return "1" }, 0, 950 * time.Millisecond, 5 * time.Second},
		{"HTTP date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }, 0, 900 * time.Millisecond, 5 * time.Second},
		{"capped", func() string { return "3600" }, 150 * time.Millisecond, 140 * time.Millisecond, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			secret := newSecret(t)
			rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
				if n == 1 {
					w.Header().Set("Retry-After", tc.header())
					return fail(w, http.StatusServiceUnavailable, "busy")
				}
				return false
			})
			retry := fastRetry(3)
			retry.MaxRetryAfter = tc.maxAfter
			s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Retry: retry})
			if err := s.Send(context.Background(), testEvents(0x4000, 1)); err != nil {
				t.Fatal(err)
			}
			reqs := rc.requests()
			if len(reqs) != 2 {
				t.Fatalf("requests = %d, want 2", len(reqs))
			}
			if gap := reqs[1].at.Sub(reqs[0].at); gap < tc.least || gap > tc.most {
				t.Errorf("wait between the attempts = %v, want %v to %v", gap, tc.least, tc.most)
			}
		})
	}
}

func TestRetryTimeout(t *testing.T) {
	secret := newSecret(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 { // longer than the client's timeout
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
		return false
	})
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Timeout: 200 * time.Millisecond, Retry: fastRetry(3)})
	events := testEvents(0x5000, 2)
	if err := s.Send(context.Background(), events); err != nil {
		t.Fatalf("Send() = %v, want nil after a timeout", err)
	}
	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("requests = %d, want 2", len(reqs))
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 150*time.Millisecond { // 200ms, less the first request's way there
		t.Errorf("second attempt %v after the first, want after the 200ms timeout", gap)
	}
	if a, b := reqs[0].header.Get(webhook.HeaderID), reqs[1].header.Get(webhook.HeaderID); a != b {
		t.Errorf("webhook-id changed across the retry: %q, %q", a, b)
	}
}

func TestTimeoutGivesUp(t *testing.T) {
	secret := newSecret(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return false
	})
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Timeout: 50 * time.Millisecond, Retry: fastRetry(2)})
	err := s.Send(context.Background(), testEvents(0x5100, 1))
	var de *webhook.DeliveryError
	if !errors.As(err, &de) || de.Attempts != 2 || walex.IsPermanent(err) || !strings.Contains(err.Error(), "Options.Timeout") {
		t.Errorf("Send() = %v, want a transient DeliveryError after 2 attempts that names the timeout", err)
	}
}

func TestConnectionErrors(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		secret := newSecret(t)
		dead := httptest.NewServer(http.NotFoundHandler())
		url := dead.URL + "/hooks?token=hunter2"
		dead.Close()
		s := newSender(t, webhook.Options{URL: url, Secret: secret, Retry: fastRetry(3)})
		err := s.Send(context.Background(), testEvents(0x6000, 1))
		var de *webhook.DeliveryError
		if !errors.As(err, &de) || de.Attempts != 3 || walex.IsPermanent(err) || !strings.Contains(err.Error(), "cannot reach") {
			t.Errorf("Send() = %v, want a transient DeliveryError after 3 attempts", err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Send() = %q, shows the URL's query", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		secret := newSecret(t)
		rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
			if n == 1 { // drop the connection without an answer
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close()
				}
				return true
			}
			return false
		})
		s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Retry: fastRetry(3)})
		if err := s.Send(context.Background(), testEvents(0x6100, 1)); err != nil {
			t.Fatalf("Send() = %v, want nil after a dropped connection", err)
		}
		if got := len(rc.requests()); got != 2 {
			t.Errorf("requests = %d, want 2", got)
		}
	})
}

func TestTLS(t *testing.T) {
	secret := newSecret(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := webhook.Verify(secret, r.Header, mustRead(r), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)

	// A certificate the client does not trust: permanent, no retry.
	s := newSender(t, webhook.Options{URL: srv.URL, Secret: secret, Retry: fastRetry(3)})
	err := s.Send(context.Background(), testEvents(0x6200, 1))
	var de *webhook.DeliveryError
	if !errors.As(err, &de) || de.Attempts != 1 || !walex.IsPermanent(err) || !strings.Contains(err.Error(), "certificate is not trusted") {
		t.Errorf("Send(untrusted certificate) = %v, want a permanent error after 1 attempt", err)
	}
	// With a client that trusts it: delivered.
	s = newSender(t, webhook.Options{URL: srv.URL, Secret: secret, Client: srv.Client()})
	if err := s.Send(context.Background(), testEvents(0x6200, 1)); err != nil {
		t.Errorf("Send(trusted certificate) = %v", err)
	}
}

func mustRead(r *http.Request) []byte {
	b, _ := io.ReadAll(r.Body)
	return b
}

func TestNoRetryOn4xx(t *testing.T) {
	long := `{"error":"` + strings.Repeat("x", 1000) + `"}`
	for _, tc := range []struct {
		status int
		body   string
		says   string
	}{
		{http.StatusBadRequest, `{"error":"unknown field \"lsn\""}`, `400 Bad Request: {"error":"unknown field \"lsn\""}`},
		{http.StatusUnauthorized, "bad signature", "same signing secret"},
		{http.StatusNotFound, "no such hook", "check Options.URL"},
		{http.StatusGone, "", "no longer accepts"},
		{http.StatusRequestEntityTooLarge, "", "MaxEventsPerRequest"},
		{http.StatusUnprocessableEntity, long, `422 Unprocessable Entity: {"error":"xxx`},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			secret := newSecret(t)
			rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
				return fail(w, tc.status, tc.body)
			})
			s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Retry: fastRetry(5)})
			err := s.Send(context.Background(), testEvents(0x7000, 2))
			if got := len(rc.requests()); got != 1 {
				t.Errorf("requests = %d, want 1 (no retry)", got)
			}
			var se *webhook.StatusError
			if !errors.As(err, &se) || se.StatusCode != tc.status {
				t.Fatalf("Send() = %v, want a StatusError with %d", err, tc.status)
			}
			if !walex.IsPermanent(err) {
				t.Errorf("walex.IsPermanent(%v) = false, want true", err)
			}
			if !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "after 1 attempt:") {
				t.Errorf("Send() = %q, want it to say %q", err, tc.says)
			}
			if len(se.Body) > 260 {
				t.Errorf("StatusError.Body has %d bytes, want the start only", len(se.Body))
			}
			if tc.body == long && !strings.HasSuffix(se.Body, "…") {
				t.Errorf("StatusError.Body = %q, want it marked as cut", se.Body)
			}
		})
	}
}

func TestGiveUpTransient(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
		return fail(w, http.StatusServiceUnavailable, "down for maintenance")
	})
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Retry: fastRetry(3)})
	events := testEvents(0x8000, 3)
	err := s.Send(context.Background(), events)
	if got := len(rc.requests()); got != 3 {
		t.Errorf("requests = %d, want 3", got)
	}
	var de *webhook.DeliveryError
	if !errors.As(err, &de) {
		t.Fatalf("Send() = %v, want a DeliveryError", err)
	}
	if walex.IsPermanent(err) {
		t.Errorf("walex.IsPermanent(%v) = true, want false: walex's RetryPolicy should take over", err)
	}
	if de.ID != webhook.BatchID(events) || de.First != events[0].ID() || de.Last != events[2].ID() || de.Events != 3 || de.Attempts != 3 {
		t.Errorf("DeliveryError = %+v, want the batch's ID, first and last event, 3 events, 3 attempts", de)
	}
	for _, part := range []string{"503", "down for maintenance", "after 3 attempts", events[0].ID()} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("Send() = %q, want it to contain %q", err, part)
		}
	}
}

func TestContextStopsRetries(t *testing.T) {
	t.Run("in a wait", func(t *testing.T) {
		secret := newSecret(t)
		rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Retry-After", "30")
			return fail(w, http.StatusServiceUnavailable, "busy")
		})
		s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Retry: webhook.RetryPolicy{MaxAttempts: -1}})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-rc.got; cancel() }()
		start := time.Now()
		err := s.Send(ctx, testEvents(0x9000, 1))
		if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
			t.Errorf("Send() = %v after %v, want context.Canceled at once", err, time.Since(start))
		}
	})
	t.Run("in a request", func(t *testing.T) {
		secret := newSecret(t)
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return false
		})
		s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Retry: webhook.RetryPolicy{MaxAttempts: -1}})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-rc.got; cancel() }()
		start := time.Now()
		err := s.Send(ctx, testEvents(0x9100, 1))
		if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
			t.Errorf("Send() = %v after %v, want context.Canceled at once", err, time.Since(start))
		}
		if got := len(rc.requests()); got != 1 {
			t.Errorf("requests = %d, want 1", got)
		}
	})
}

func TestRetriedCallSkipsDeliveredBatches(t *testing.T) {
	secret := newSecret(t)
	events := testEvents(0xA000, 30)
	second := webhook.BatchID(events[10:20])
	var failed atomic.Bool
	rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get(webhook.HeaderID) == second && !failed.Swap(true) {
			return fail(w, http.StatusServiceUnavailable, "later")
		}
		return false
	})
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, MaxEventsPerRequest: 10, Retry: fastRetry(1)})
	if err := s.Send(context.Background(), events); err == nil {
		t.Fatal("Send() = nil, want the second batch's failure")
	}
	// walex calls the handler again with the same events.
	if err := s.Send(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, q := range rc.requests() {
		got = append(got, q.header.Get(webhook.HeaderID))
	}
	b1, b3 := webhook.BatchID(events[:10]), webhook.BatchID(events[20:])
	if want := []string{b1, second, second, b3}; !slices.Equal(got, want) {
		t.Errorf("webhook-ids = %v, want %v (the first batch once)", got, want)
	}
	// Once the call went through, the same events are sent whole again:
	// a redelivery of walex is not skipped.
	if err := s.Send(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	if got := len(rc.requests()); got != 7 {
		t.Errorf("requests = %d, want 7 (three more)", got)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret, func(n int, w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Location", "https://example.com/new-hooks")
		return fail(w, http.StatusPermanentRedirect, "")
	})
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Retry: fastRetry(3)})
	err := s.Send(context.Background(), testEvents(0xB000, 1))
	if !walex.IsPermanent(err) || !strings.Contains(err.Error(), "https://example.com/new-hooks") {
		t.Errorf("Send() = %v, want a permanent error naming the new address", err)
	}
	if got := len(rc.requests()); got != 1 {
		t.Errorf("requests = %d, want 1", got)
	}
}

func TestHeaders(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret, nil)
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret, Header: http.Header{
		"Authorization": {"Bearer test-token"},
		"webhook-id":    {"msg_forged"},
		"Content-Type":  {"text/plain"},
	}})
	events := testEvents(0xC000, 1)
	if err := s.Send(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	h := rc.requests()[0].header
	if got, want := h.Get("Authorization"), "Bearer test-token"; got != want {
		t.Errorf("Authorization = %q, want %q", got, want)
	}
	if got, want := h.Values(webhook.HeaderID), []string{webhook.BatchID(events)}; !slices.Equal(got, want) {
		t.Errorf("webhook-id = %q, want %q", got, want)
	}
	if got, want := h.Get("Content-Type"), "application/json"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
}

func TestPreviousSecrets(t *testing.T) {
	oldSecret, newSecret1 := newSecret(t), newSecret(t)
	rc := newReceiver(t, oldSecret, nil) // not switched yet
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: newSecret1, PreviousSecrets: []string{oldSecret}})
	if err := s.Send(context.Background(), testEvents(0xD000, 1)); err != nil {
		t.Fatal(err)
	}
	q := rc.requests()[0]
	if q.verifyErr != nil {
		t.Errorf("Verify(old secret) = %v, want nil", q.verifyErr)
	}
	if err := webhook.Verify(newSecret1, q.header, q.body, 0); err != nil {
		t.Errorf("Verify(new secret) = %v, want nil", err)
	}
	if got := len(strings.Fields(q.header.Get(webhook.HeaderSignature))); got != 2 {
		t.Errorf("signatures = %d, want 2", got)
	}
}

func TestUnencodableEvent(t *testing.T) {
	secret := newSecret(t)
	rc := newReceiver(t, secret, nil)
	s := newSender(t, webhook.Options{URL: rc.URL, Secret: secret})
	events := testEvents(0xE000, 1)
	events[0].NewRecord = map[string]any{"c": make(chan int)}
	err := s.Send(context.Background(), events)
	if !walex.IsPermanent(err) || !strings.Contains(err.Error(), events[0].ID()) || !strings.Contains(err.Error(), "cannot be sent") {
		t.Errorf("Send(unencodable) = %v, want a permanent error naming the event", err)
	}
	if got := len(rc.requests()); got != 0 {
		t.Errorf("requests = %d, want 0", got)
	}
}

func TestMiddleware(t *testing.T) {
	secret := newSecret(t)
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	v.MaxBodyBytes = 4096
	var calls atomic.Int32
	var got webhook.Payload
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})))
	t.Cleanup(srv.Close)

	s := newSender(t, webhook.Options{URL: srv.URL, Secret: secret})
	if err := s.Send(context.Background(), testEvents(0xF000, 2)); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 || len(got.Events) != 2 {
		t.Fatalf("next called %d times with %d events, want once with 2", calls.Load(), len(got.Events))
	}

	wrong := newSender(t, webhook.Options{URL: srv.URL, Secret: newSecret(t)})
	err = wrong.Send(context.Background(), testEvents(0xF100, 1))
	var se *webhook.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized || !walex.IsPermanent(err) || !strings.Contains(err.Error(), "no matching signature") {
		t.Errorf("Send(wrong secret) = %v, want a permanent 401 saying no signature matched", err)
	}

	for _, tc := range []struct {
		name   string
		header http.Header
		body   string
		want   int
	}{
		{"unsigned", http.Header{}, "{}", http.StatusBadRequest},
		{"too large", signed(t, "msg_1", time.Now(), []byte(strings.Repeat(" ", 5000)), secret), strings.Repeat(" ", 5000), http.StatusRequestEntityTooLarge},
		{"tampered", signed(t, "msg_1", time.Now(), []byte("{}"), secret), `{"x":1}`, http.StatusUnauthorized},
		{"expired", signed(t, "msg_1", time.Now().Add(-time.Hour), []byte("{}"), secret), "{}", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(tc.body))
		req.Header = tc.header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("next called %d times, want only for the verified request", calls.Load())
	}
}

func TestNewValidates(t *testing.T) {
	secret := newSecret(t)
	for _, tc := range []struct {
		opts webhook.Options
		says string
	}{
		{webhook.Options{Secret: secret}, "URL: is empty"},
		{webhook.Options{URL: "ftp://example.com/x", Secret: secret}, `scheme "ftp"`},
		{webhook.Options{URL: "http:///x", Secret: secret}, "no host"},
		{webhook.Options{URL: "https://example.com/hooks"}, "Secret: is empty"},
		{webhook.Options{URL: "https://example.com/hooks", Secret: "whsec_%%%"}, "base64"},
		{webhook.Options{URL: "https://example.com/hooks", Secret: secret, PreviousSecrets: []string{secret, "whsec_"}}, "PreviousSecrets[1]"},
		{webhook.Options{URL: "https://example.com/hooks", Secret: secret, MaxEventsPerRequest: -1}, "MaxEventsPerRequest"},
		{webhook.Options{URL: "https://example.com/hooks", Secret: secret, Timeout: -time.Second}, "Timeout"},
	} {
		_, err := webhook.New(tc.opts)
		if !errors.Is(err, webhook.ErrInvalidOptions) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("New(%+v) = %v, want ErrInvalidOptions saying %q", tc.opts, err, tc.says)
		}
		if err != nil && strings.Contains(err.Error(), strings.TrimPrefix(secret, webhook.SecretPrefix)) {
			t.Errorf("New() error %q contains the secret", err)
		}
	}
	if _, err := webhook.New(webhook.Options{URL: "https://example.com/hooks", Secret: secret}); err != nil {
		t.Errorf("New(valid) = %v", err)
	}
}

func TestBatchID(t *testing.T) {
	events := testEvents(0x16B3748, 3)
	id := webhook.BatchID(events)
	if !regexp.MustCompile(`^msg_16b3748-0_16b3748-2_[0-9a-f]{16}$`).MatchString(id) {
		t.Errorf("BatchID() = %q, want msg_16b3748-0_16b3748-2_<digest>", id)
	}
	if again := webhook.BatchID(testEvents(0x16B3748, 3)); again != id {
		t.Errorf("BatchID(same events) = %q, then %q: want stable", id, again)
	}
	// Same first and last event, not the same events between.
	if other := webhook.BatchID([]walex.Event{events[0], events[2]}); other == id {
		t.Errorf("BatchID(first, last) = BatchID(first, middle, last) = %q, want different", id)
	}
	if strings.Contains(id, ".") {
		t.Errorf("BatchID() = %q contains a full stop", id)
	}
	if webhook.BatchID(nil) != "" {
		t.Error(`BatchID(nil) != ""`)
	}
}
