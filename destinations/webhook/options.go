package webhook

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// Defaults of Options and RetryPolicy.
const (
	DefaultTimeout             = 30 * time.Second       // Options.Timeout
	DefaultMaxEventsPerRequest = 100                    // Options.MaxEventsPerRequest
	DefaultMaxAttempts         = 5                      // RetryPolicy.MaxAttempts
	DefaultInitialDelay        = 500 * time.Millisecond // RetryPolicy.InitialDelay
	DefaultMaxDelay            = 10 * time.Second       // RetryPolicy.MaxDelay
	DefaultMaxRetryAfter       = time.Minute            // RetryPolicy.MaxRetryAfter
)

// Options configure a Sender. URL and Secret are required; every other
// field has a documented default.
type Options struct {
	// URL is the receiver's endpoint, http or https (https unless the
	// network is trusted: the signature proves where a request comes from
	// but does not hide it). Every request is a POST to it.
	URL string
	// Secret is the signing secret shared with the receiver:
	// "whsec_<base64>" (NewSecret makes one).
	Secret string
	// PreviousSecrets are signed with too, after Secret, during a
	// rotation: every request carries one signature per secret, so the
	// receiver may switch to the new secret at any time. Remove them once
	// it has.
	PreviousSecrets []string
	// Client sends the requests. Default: a client of its own on
	// http.DefaultTransport that does not follow redirects (a 3xx is a
	// permanent error naming the new address, as the specification
	// advises). A custom client keeps its own redirect policy.
	Client *http.Client
	// Timeout bounds each attempt, from sending the request to reading
	// the response's headers; an attempt that takes longer is a transient
	// failure and is retried. Default: 30 s (the specification advises 15
	// to 30 s).
	Timeout time.Duration
	// MaxEventsPerRequest is the largest batch one request carries: a
	// handler call with more events is sent as several requests, one after
	// the other, in order. Default: 100.
	MaxEventsPerRequest int
	// Header holds extra request headers, e.g. an Authorization the
	// receiver's gateway wants. Content-Type and the webhook-* headers are
	// the sender's and are not taken from here.
	Header http.Header
	// Retry governs the sender's own retries of a batch within one
	// handler call.
	Retry RetryPolicy
	// Logger receives a warning for every retry. Default: none.
	Logger *slog.Logger
}

// RetryPolicy governs how the sender retries a batch within one handler
// call: after a 5xx, 429 or 408 response, a timeout or a connection error,
// with exponential backoff and jitter, or after the wait a Retry-After
// header asks for. Other responses are permanent errors and are not
// retried. Once MaxAttempts is spent, the handler returns the last error,
// which is not permanent: walex's Config.RetryPolicy then calls the
// handler again, and the batches it had delivered are not sent again.
type RetryPolicy struct {
	// MaxAttempts is the number of requests for a batch in one call, the
	// first included. 0 means the default, 5; 1 leaves every retry to
	// walex's Config.RetryPolicy; a negative value retries until the
	// handler's context ends.
	MaxAttempts int
	// InitialDelay is the wait after the first failure; it doubles after
	// each further one, and each wait is randomized between half of it
	// and all of it. Default: 500 ms.
	InitialDelay time.Duration
	// MaxDelay caps the backoff. Default: 10 s.
	MaxDelay time.Duration
	// MaxRetryAfter caps the wait a Retry-After header (seconds or an HTTP
	// date) asks for, so that a receiver cannot stall the stream for
	// long. Default: 1 minute.
	MaxRetryAfter time.Duration
}

// withDefaults fills the zero fields of p.
func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.InitialDelay <= 0 {
		p.InitialDelay = DefaultInitialDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = DefaultMaxDelay
	}
	if p.MaxDelay < p.InitialDelay {
		p.MaxDelay = p.InitialDelay
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = DefaultMaxRetryAfter
	}
	return p
}

// optionsError is an error of New that names the field.
func optionsError(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOptions, field, fmt.Sprintf(format, args...))
}

// parseURL checks Options.URL: absolute, http or https, with a host.
func parseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, optionsError("URL", "is empty; set the receiver's endpoint, e.g. https://example.com/hooks/walex")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, optionsError("URL", "cannot be parsed: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, optionsError("URL", "has scheme %q; use http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, optionsError("URL", "has no host")
	}
	return u, nil
}

// redactURL is a URL for logs and errors: without credentials, query or
// fragment, which may carry tokens.
func redactURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}

// noRedirect is the default client's redirect policy: stop at the first
// response, which the sender reports as a permanent error.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
