package webhook

import (
	"bytes"
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far webhook-timestamp may be from the
// receiver's clock, either way, by default: the specification's 5
// minutes. It bounds replays of a captured request.
const DefaultTolerance = 5 * time.Minute

// DefaultMaxBodyBytes is the largest body Verifier.Middleware reads by
// default.
const DefaultMaxBodyBytes = 10 << 20

// Verifier checks Standard Webhooks signatures on the receiving side.
// Make one with NewVerifier; set its fields before use. It is safe for
// concurrent use.
type Verifier struct {
	// Tolerance is how far webhook-timestamp may be from the clock, either
	// way. 0 means DefaultTolerance; a negative value skips the check
	// (replays are then possible: use it only to check old recordings).
	Tolerance time.Duration
	// MaxBodyBytes bounds the body Middleware reads; a larger one is
	// answered 413. 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64

	keys [][]byte
}

// NewVerifier returns a Verifier that accepts a message signed with any
// of the secrets ("whsec_<base64>"): during a rotation, pass the new
// secret and the old one.
func NewVerifier(secrets ...string) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("webhook: NewVerifier: %w: no secret given", ErrInvalidSecret)
	}
	keys, err := parseSecrets("NewVerifier", secrets)
	if err != nil {
		return nil, err
	}
	return &Verifier{keys: keys}, nil
}

// Verify checks a request's webhook-* headers against its raw body, as
// received (before any JSON decoding: a re-encoded body does not match).
// It returns nil if webhook-timestamp is within the tolerance and at least
// one "v1," signature of webhook-signature matches under one of the
// secrets (compared in constant time; signatures of other versions are
// ignored). Otherwise it returns an error wrapping ErrMissingHeaders,
// ErrInvalidHeaders, ErrTimestamp or ErrSignature.
//
// Verify does not detect a replay within the tolerance: to handle each
// message once, remember the webhook-id values handled (for longer than
// the tolerance) and drop repeats; the sender gives every attempt and
// redelivery of a batch the same webhook-id.
func (v *Verifier) Verify(header http.Header, body []byte) error {
	id, tsText := header.Get(HeaderID), header.Get(HeaderTimestamp)
	sigs := strings.Join(header.Values(HeaderSignature), " ") // a proxy may have split the list
	var missing []string
	for _, h := range [...]struct{ name, value string }{{HeaderID, id}, {HeaderTimestamp, tsText}, {HeaderSignature, sigs}} {
		if h.value == "" {
			missing = append(missing, h.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingHeaders, strings.Join(missing, ", "))
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not an integer of Unix seconds", ErrInvalidHeaders, HeaderTimestamp, tsText)
	}
	if err := v.checkTimestamp(ts); err != nil {
		return err
	}
	for _, k := range v.keys {
		want := mac(k, id, ts, body)
		for _, s := range strings.Fields(sigs) {
			version, encoded, ok := strings.Cut(s, ",")
			if !ok || version != signatureVersion {
				continue
			}
			got, err := base64.StdEncoding.DecodeString(encoded)
			if err != nil {
				continue
			}
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w for message %s: check that the secret is the sender's and that the body is verified as received", ErrSignature, id)
}

// checkTimestamp checks ts against the clock and the tolerance.
func (v *Verifier) checkTimestamp(ts int64) error {
	tol := v.Tolerance
	if tol < 0 {
		return nil
	}
	if tol == 0 {
		tol = DefaultTolerance
	}
	now := time.Now()
	t := time.Unix(ts, 0)
	switch {
	case now.Sub(t) > tol:
		return fmt.Errorf("%w: the message was signed %v ago, more than the tolerance of %v: a replay, or the sender's clock is behind", ErrTimestamp, now.Sub(t).Round(time.Second), tol)
	case t.Sub(now) > tol:
		return fmt.Errorf("%w: the message is dated %v ahead, more than the tolerance of %v: the sender's clock is ahead", ErrTimestamp, t.Sub(now).Round(time.Second), tol)
	}
	return nil
}

// Middleware returns a handler that verifies each request before next
// sees it. It reads the body (at most MaxBodyBytes; larger: 413), checks
// it with Verify, and answers a request that fails with 400 (missing or
// malformed headers) or 401 (timestamp or signature) and the reason as
// plain text, never calling next. A request that passes reaches next with
// its body still readable.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	limit := v.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, fmt.Sprintf("webhook: body larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "webhook: cannot read the body", http.StatusBadRequest)
			return
		}
		if err := v.Verify(r.Header, body); err != nil {
			code := http.StatusUnauthorized
			if errors.Is(err, ErrMissingHeaders) || errors.Is(err, ErrInvalidHeaders) {
				code = http.StatusBadRequest
			}
			http.Error(w, err.Error(), code)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// Verify checks a request's Standard Webhooks headers and raw body
// against one secret, with the given timestamp tolerance (0:
// DefaultTolerance; negative: no timestamp check). It is NewVerifier(secret) and Verifier.Verify in one
// call; see there.
func Verify(secret string, header http.Header, body []byte, tolerance time.Duration) error {
	v, err := NewVerifier(secret)
	if err != nil {
		return err
	}
	v.Tolerance = tolerance
	return v.Verify(header, body)
}
