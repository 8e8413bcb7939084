package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Errors of New, Sign and Verify, for errors.Is. Each comes wrapped with
// details.
var (
	// ErrInvalidOptions: an Options field is invalid; New says which.
	ErrInvalidOptions = errors.New("webhook: invalid options")
	// ErrInvalidSecret: a signing secret is not "whsec_<base64>".
	ErrInvalidSecret = errors.New("invalid signing secret")
	// ErrMissingHeaders: a request lacks webhook-id, webhook-timestamp or
	// webhook-signature (the error names which).
	ErrMissingHeaders = errors.New("webhook: missing Standard Webhooks headers")
	// ErrInvalidHeaders: webhook-timestamp is not an integer of Unix seconds.
	ErrInvalidHeaders = errors.New("webhook: invalid Standard Webhooks headers")
	// ErrTimestamp: webhook-timestamp is further from the receiver's
	// clock than the tolerance: a replay, or clocks that disagree.
	ErrTimestamp = errors.New("webhook: timestamp outside the tolerance")
	// ErrSignature: no signature of webhook-signature matches the body
	// and headers under any of the secrets: a wrong secret, or a request
	// changed on the way (a re-serialized body fails too: verify the raw
	// bytes).
	ErrSignature = errors.New("webhook: no matching signature")
)

// maxErrorBody is how much of a response body a StatusError keeps.
const maxErrorBody = 256

// StatusError is a response with a status other than 2xx. Permanent
// reports whether retrying can help: 5xx, 429 Too Many Requests and 408
// Request Timeout are retried, every other status is permanent, so that
// walex stops Run with a *walex.HandlerError instead of sending the same
// request again.
type StatusError struct {
	StatusCode int    // e.g. 400
	Status     string // e.g. "400 Bad Request"
	// Body is the start of the response body (at most 256 bytes, control
	// characters replaced), for the error message.
	Body string
	// RetryAfter is the wait the Retry-After header asked for (capped by
	// RetryPolicy.MaxRetryAfter); 0 without one.
	RetryAfter time.Duration
	// Location is the Location header of a redirect, which is not followed.
	Location string
}

// Error implements the error interface.
func (e *StatusError) Error() string {
	var b strings.Builder
	b.WriteString("the receiver answered ")
	b.WriteString(e.Status)
	if e.Body != "" {
		b.WriteString(": ")
		b.WriteString(e.Body)
	}
	if fix := e.fix(); fix != "" {
		b.WriteString(" (")
		b.WriteString(fix)
		b.WriteString(")")
	}
	return b.String()
}

// fix says what to do about a permanent status.
func (e *StatusError) fix() string {
	switch c := e.StatusCode; {
	case c >= 300 && c < 400:
		if e.Location != "" {
			return "redirects are not followed: set Options.URL to " + e.Location
		}
		return "redirects are not followed: set Options.URL to the final address"
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		return "the receiver refused the request: check that both sides use the same signing secret and that the clocks agree; retrying cannot help"
	case c == http.StatusNotFound:
		return "check Options.URL; retrying cannot help"
	case c == http.StatusGone:
		return "the receiver no longer accepts these webhooks; retrying cannot help"
	case c == http.StatusRequestEntityTooLarge:
		return "lower Options.MaxEventsPerRequest or raise the receiver's size limit; retrying cannot help"
	case e.Permanent():
		return "the receiver rejected the request; retrying cannot help: fix the receiver or the request"
	}
	return ""
}

// Permanent reports whether the status is one that retrying cannot fix:
// every status except 5xx, 429 and 408.
func (e *StatusError) Permanent() bool { return !retryableStatus(e.StatusCode) }

// retryableStatus reports whether a response status is worth retrying.
func retryableStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}

// DeliveryError is the error of a batch that was not delivered: the
// receiver rejected it (Err is a permanent *StatusError), or the sender's
// RetryPolicy ran out on transient failures (Err is the last one: a
// *StatusError, a timeout or a connection error), or the handler's context
// ended. Only the first is permanent; after the others walex's
// Config.RetryPolicy calls the handler again.
type DeliveryError struct {
	URL      string // the receiver, without its query or credentials
	ID       string // the batch's webhook-id
	First    string // Event.ID() of the batch's first event
	Last     string // Event.ID() of its last event
	Events   int    // events in the batch
	Attempts int    // requests made for it in this call
	Err      error
}

// Error implements the error interface.
func (e *DeliveryError) Error() string {
	what := fmt.Sprintf("events %s to %s", e.First, e.Last)
	if e.Events == 1 {
		what = "event " + e.First
	}
	switch e.Attempts {
	case 0:
		return fmt.Sprintf("webhook: batch %s (%s) to %s cannot be sent: %v", e.ID, what, e.URL, e.Err)
	case 1:
		return fmt.Sprintf("webhook: batch %s (%s) to %s not delivered after 1 attempt: %v", e.ID, what, e.URL, e.Err)
	}
	return fmt.Sprintf("webhook: batch %s (%s) to %s not delivered after %d attempts: %v", e.ID, what, e.URL, e.Attempts, e.Err)
}

// Unwrap returns the cause.
func (e *DeliveryError) Unwrap() error { return e.Err }

// permanentError marks a failure of the sender itself that retrying cannot
// fix (an event that cannot be encoded, a certificate the client rejects).
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

// snippet returns the start of a response body for an error message: at
// most maxErrorBody bytes, control characters and invalid UTF-8 replaced
// by spaces, "…" when cut.
func snippet(b []byte, truncated bool) string {
	if len(b) > maxErrorBody {
		b, truncated = b[:maxErrorBody], true
	}
	s := strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(b), string(utf8.RuneError))))
	if truncated {
		s += "…"
	}
	return s
}
