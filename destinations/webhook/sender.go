package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/logkey"
)

// userAgent identifies the sender's requests.
const userAgent = "walex-webhook"

// maxDrain is how much of a response body the sender reads to reuse the
// connection; a longer body is abandoned with the connection.
const maxDrain = 64 << 10

// maxRemembered bounds the IDs of delivered batches a Sender keeps for
// the retry of a call that failed part way.
const maxRemembered = 4096

// Sender posts events to a webhook receiver, signed per the Standard
// Webhooks specification. Make one with New; it is safe for concurrent
// use.
type Sender struct {
	url     string // as configured
	safeURL string // for errors and logs
	keys    [][]byte
	client  *http.Client
	timeout time.Duration
	max     int
	header  http.Header
	retry   RetryPolicy
	logger  *slog.Logger

	mu        sync.Mutex
	delivered map[string]bool // batches of a call that failed part way
}

// New checks opts and returns a Sender. It does no I/O.
func New(opts Options) (*Sender, error) {
	u, err := parseURL(opts.URL)
	if err != nil {
		return nil, err
	}
	if opts.Secret == "" {
		return nil, optionsError("Secret", "is empty; set the whsec_<base64> secret shared with the receiver (NewSecret makes one)")
	}
	keys, err := parseSecrets("Secret", []string{opts.Secret})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	old, err := parseSecrets("PreviousSecrets", opts.PreviousSecrets)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if opts.Timeout < 0 {
		return nil, optionsError("Timeout", "is negative (%v); use 0 for the default, %v", opts.Timeout, DefaultTimeout)
	}
	if opts.MaxEventsPerRequest < 0 {
		return nil, optionsError("MaxEventsPerRequest", "is negative (%d); use 0 for the default, %d", opts.MaxEventsPerRequest, DefaultMaxEventsPerRequest)
	}
	s := &Sender{
		url:       opts.URL,
		safeURL:   redactURL(u),
		keys:      append(keys, old...),
		client:    opts.Client,
		timeout:   opts.Timeout,
		max:       opts.MaxEventsPerRequest,
		header:    opts.Header.Clone(),
		retry:     opts.Retry.withDefaults(),
		logger:    opts.Logger,
		delivered: make(map[string]bool),
	}
	if s.client == nil {
		s.client = &http.Client{CheckRedirect: noRedirect}
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.max == 0 {
		s.max = DefaultMaxEventsPerRequest
	}
	return s, nil
}

// Handler returns a walex.Handler that sends each call's events, as Send
// does, for registration with OnEvent, OnInsert and the like:
//
//	c.OnEvent(walex.AllTables, s.Handler())
func (s *Sender) Handler() walex.Handler { return s.Send }

// Send posts events to the receiver, in order, in batches of at most
// Options.MaxEventsPerRequest, one request after the other. It returns
// nil once the receiver answered 2xx to every batch.
//
// A batch that fails transiently (5xx, 429, 408, a timeout, a connection
// error) is retried per Options.Retry with the same webhook-id and body, a
// new webhook-timestamp and new signatures. When the policy is spent, Send
// returns a *DeliveryError that is not permanent, and walex's
// Config.RetryPolicy calls it again later; the batches of the call that
// were already delivered are then skipped. Any other response stops at
// once with a *DeliveryError wrapping a permanent *StatusError. When ctx
// ends, Send stops at once, in a request or in a wait, and returns an
// error wrapping ctx's.
func (s *Sender) Send(ctx context.Context, events []walex.Event) error {
	if len(events) == 0 {
		return nil
	}
	var ids []string // batches of this call, to forget once all are delivered
	for start := 0; start < len(events); start += s.max {
		batch := events[start:min(start+s.max, len(events))]
		id := BatchID(batch)
		ids = append(ids, id)
		if s.wasDelivered(id) {
			continue
		}
		if err := s.deliver(ctx, id, batch); err != nil {
			return err
		}
		if len(events) > s.max {
			s.remember(id)
		}
	}
	if len(ids) > 1 {
		s.forget(ids)
	}
	return nil
}

// deliver sends one batch, with retries.
func (s *Sender) deliver(ctx context.Context, id string, batch []walex.Event) error {
	fail := func(attempts int, err error) error {
		return &DeliveryError{URL: s.safeURL, ID: id, First: batch[0].ID(), Last: batch[len(batch)-1].ID(), Events: len(batch), Attempts: attempts, Err: err}
	}
	body, err := encode(batch)
	if err != nil {
		return fail(0, &permanentError{err})
	}
	for attempt := 1; ; attempt++ {
		err := s.post(ctx, id, body)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fail(attempt, fmt.Errorf("%w (stopped while sending: %w)", context.Cause(ctx), err))
		}
		if walex.IsPermanent(err) || (s.retry.MaxAttempts > 0 && attempt >= s.retry.MaxAttempts) {
			return fail(attempt, err)
		}
		d := s.retry.wait(attempt, err)
		if s.logger != nil {
			s.logger.Warn("webhook: delivery failed; retrying", "webhook_id", id, logkey.EventID, batch[0].ID(),
				logkey.Attempt, attempt, logkey.Delay, d, logkey.Err, err)
		}
		if err := sleep(ctx, d); err != nil {
			return fail(attempt, err)
		}
	}
}

// post makes one attempt: a signed POST of body, bounded by the timeout.
// It returns nil on a 2xx answer, a *StatusError on any other, and the
// transport's error (wrapped) when no answer came.
func (s *Sender) post(ctx context.Context, id string, body []byte) error {
	actx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return &permanentError{fmt.Errorf("cannot make a request: %w", err)}
	}
	for k, vs := range s.header {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, signatures(s.keys, id, ts, body))
	resp, err := s.client.Do(req)
	if err != nil {
		return s.transportError(ctx, actx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		return nil
	}
	start, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+1))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	se := &StatusError{
		StatusCode: resp.StatusCode,
		Status:     resp.Status,
		Body:       snippet(start, false),
		Location:   resp.Header.Get("Location"),
	}
	if se.Status == "" {
		se.Status = strconv.Itoa(resp.StatusCode)
	}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now(), s.retry.MaxRetryAfter); ok {
		se.RetryAfter = d
	}
	return se
}

// transportError describes a request that got no answer: a timeout of
// the attempt, a certificate the client rejects (permanent), or a
// connection error. The *url.Error around it is dropped: its text holds
// the whole URL, query included, which may carry a token.
func (s *Sender) transportError(ctx, actx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case ctx.Err() != nil:
		return err
	case errors.Is(actx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("no answer within %v (Options.Timeout): %w", s.timeout, err)
	}
	var cert *tls.CertificateVerificationError
	if errors.As(err, &cert) {
		return &permanentError{fmt.Errorf("the receiver's certificate is not trusted: %w; fix the certificate or give Options.Client a transport that trusts it", err)}
	}
	return fmt.Errorf("cannot reach the receiver: %w", err)
}

// wasDelivered reports whether a batch was delivered by an earlier
// attempt of a call that failed part way.
func (s *Sender) wasDelivered(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered[id]
}

// remember notes a delivered batch of a call with several batches, so that
// a retry of the call skips it.
func (s *Sender) remember(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.delivered) >= maxRemembered {
		clear(s.delivered) // a bound, not a correctness matter: at worst a batch is sent again
	}
	s.delivered[id] = true
}

// forget drops the batches of a call that was delivered whole.
func (s *Sender) forget(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.delivered, id)
	}
}
