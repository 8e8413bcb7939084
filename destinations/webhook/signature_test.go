package webhook_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walex-go/walex/destinations/webhook"
)

// The test vector of the Standard Webhooks specification's reference
// libraries (libraries/go/webhook_test.go, TestWebhookSign, and the same
// values in the JavaScript, C# and Java libraries).
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specPayload   = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func specHeader() http.Header {
	h := http.Header{}
	h.Set(webhook.HeaderID, specID)
	h.Set(webhook.HeaderTimestamp, strconv.Itoa(specTimestamp))
	h.Set(webhook.HeaderSignature, specSignature)
	return h
}

func TestSignSpecVector(t *testing.T) {
	for _, secret := range []string{specSecret, strings.TrimPrefix(specSecret, webhook.SecretPrefix)} {
		got, err := webhook.Sign(secret, specID, time.Unix(specTimestamp, 0), []byte(specPayload))
		if err != nil {
			t.Fatal(err)
		}
		if got != specSignature {
			t.Errorf("Sign(%q, ...) = %q, want %q", secret, got, specSignature)
		}
	}
}

func TestVerifySpecVector(t *testing.T) {
	// The vector is from 2021: valid without the timestamp check, too old
	// with it.
	if err := webhook.Verify(specSecret, specHeader(), []byte(specPayload), -1); err != nil {
		t.Errorf("Verify(spec vector, no tolerance) = %v, want nil", err)
	}
	err := webhook.Verify(specSecret, specHeader(), []byte(specPayload), 0)
	if !errors.Is(err, webhook.ErrTimestamp) || !strings.Contains(err.Error(), "ago") {
		t.Errorf("Verify(spec vector, default tolerance) = %v, want ErrTimestamp (too old)", err)
	}
}

// signed returns headers for body signed now+age with the secrets.
func signed(t *testing.T, id string, at time.Time, body []byte, secrets ...string) http.Header {
	t.Helper()
	var sigs []string
	for _, s := range secrets {
		sig, err := webhook.Sign(s, id, at, body)
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, sig)
	}
	h := http.Header{}
	h.Set(webhook.HeaderID, id)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(webhook.HeaderSignature, strings.Join(sigs, " "))
	return h
}

func newSecret(t testing.TB) string {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	secret, other := newSecret(t), newSecret(t)
	body := []byte(`{"type":"walex.events","events":[]}`)
	now := time.Now()
	valid := func() http.Header { return signed(t, "msg_1", now, body, secret) }
	for _, tc := range []struct {
		name   string
		header func() http.Header
		body   string
		want   error
	}{
		{"valid", valid, string(body), nil},
		{"missing id", func() http.Header { h := valid(); h.Del(webhook.HeaderID); return h }, string(body), webhook.ErrMissingHeaders},
		{"missing timestamp", func() http.Header { h := valid(); h.Del(webhook.HeaderTimestamp); return h }, string(body), webhook.ErrMissingHeaders},
		{"missing signature", func() http.Header { h := valid(); h.Del(webhook.HeaderSignature); return h }, string(body), webhook.ErrMissingHeaders},
		{"malformed timestamp", func() http.Header { h := valid(); h.Set(webhook.HeaderTimestamp, "2024-01-01T00:00:00Z"); return h }, string(body), webhook.ErrInvalidHeaders},
		{"tampered body", valid, `{"type":"walex.events","events":[{}]}`, webhook.ErrSignature},
		{"tampered id", func() http.Header { h := valid(); h.Set(webhook.HeaderID, "msg_2"); return h }, string(body), webhook.ErrSignature},
		{"tampered timestamp", func() http.Header {
			h := valid()
			h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10))
			return h
		}, string(body), webhook.ErrSignature},
		{"re-encoded body", valid, `{"type": "walex.events", "events": []}`, webhook.ErrSignature},
		{"wrong secret", func() http.Header { return signed(t, "msg_1", now, body, other) }, string(body), webhook.ErrSignature},
		{"partial signature", func() http.Header { h := valid(); h.Set(webhook.HeaderSignature, "v1,"); return h }, string(body), webhook.ErrSignature},
		{"signature of another version", func() http.Header {
			h := valid()
			h.Set(webhook.HeaderSignature, strings.Replace(h.Get(webhook.HeaderSignature), "v1,", "v1a,", 1))
			return h
		}, string(body), webhook.ErrSignature},
		{"one valid among several", func() http.Header {
			h := valid()
			h.Set(webhook.HeaderSignature, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,xx junk "+h.Get(webhook.HeaderSignature)+" v1,!!")
			return h
		}, string(body), nil},
		{"signatures on two header lines", func() http.Header {
			h := valid()
			sig := h.Get(webhook.HeaderSignature)
			h.Set(webhook.HeaderSignature, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=")
			h.Add(webhook.HeaderSignature, sig)
			return h
		}, string(body), nil},
		{"expired", func() http.Header {
			return signed(t, "msg_1", now.Add(-webhook.DefaultTolerance-time.Minute), body, secret)
		}, string(body), webhook.ErrTimestamp},
		{"from the future", func() http.Header {
			return signed(t, "msg_1", now.Add(webhook.DefaultTolerance+time.Minute), body, secret)
		}, string(body), webhook.ErrTimestamp},
		{"within the tolerance", func() http.Header {
			return signed(t, "msg_1", now.Add(-webhook.DefaultTolerance+time.Minute), body, secret)
		}, string(body), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := webhook.Verify(secret, tc.header(), []byte(tc.body), 0)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Verify() = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyTolerance(t *testing.T) {
	secret := newSecret(t)
	body := []byte(`{}`)
	h := signed(t, "msg_1", time.Now().Add(-2*time.Minute), body, secret)
	if err := webhook.Verify(secret, h, body, time.Minute); !errors.Is(err, webhook.ErrTimestamp) {
		t.Errorf("Verify(2 minutes old, tolerance 1 minute) = %v, want ErrTimestamp", err)
	}
	if err := webhook.Verify(secret, h, body, 3*time.Minute); err != nil {
		t.Errorf("Verify(2 minutes old, tolerance 3 minutes) = %v, want nil", err)
	}
}

func TestVerifyMissingHeadersNamed(t *testing.T) {
	err := webhook.Verify(newSecret(t), http.Header{"Webhook-Id": {"msg_1"}}, nil, 0)
	if !errors.Is(err, webhook.ErrMissingHeaders) || !strings.Contains(err.Error(), "webhook-timestamp, webhook-signature") {
		t.Errorf("Verify(only webhook-id) = %v, want ErrMissingHeaders naming the two others", err)
	}
}

func TestRotation(t *testing.T) {
	oldSecret, newSecret1, stranger := newSecret(t), newSecret(t), newSecret(t)
	body := []byte(`{"type":"walex.events"}`)
	now := time.Now()

	// The sender signs with both during the rotation: a receiver still on
	// the old secret and one already on the new one both accept.
	both := signed(t, "msg_1", now, body, newSecret1, oldSecret)
	if got := len(strings.Fields(both.Get(webhook.HeaderSignature))); got != 2 {
		t.Fatalf("signatures = %d, want 2", got)
	}
	for _, s := range []string{oldSecret, newSecret1} {
		if err := webhook.Verify(s, both, body, 0); err != nil {
			t.Errorf("Verify(one of the two secrets) = %v, want nil", err)
		}
	}
	if err := webhook.Verify(stranger, both, body, 0); !errors.Is(err, webhook.ErrSignature) {
		t.Errorf("Verify(a third secret) = %v, want ErrSignature", err)
	}

	// A receiver that accepts both secrets takes a message signed with
	// either.
	v, err := webhook.NewVerifier(newSecret1, oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{oldSecret, newSecret1} {
		if err := v.Verify(signed(t, "msg_2", now, body, s), body); err != nil {
			t.Errorf("Verifier(new, old).Verify(signed with one) = %v, want nil", err)
		}
	}
	if err := v.Verify(signed(t, "msg_2", now, body, stranger), body); !errors.Is(err, webhook.ErrSignature) {
		t.Errorf("Verifier(new, old).Verify(signed with a third) = %v, want ErrSignature", err)
	}
}

func TestSecrets(t *testing.T) {
	s := newSecret(t)
	if !strings.HasPrefix(s, webhook.SecretPrefix) {
		t.Fatalf("NewSecret() = %q, want the whsec_ prefix", s)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, webhook.SecretPrefix))
	if err != nil || len(key) != 32 {
		t.Errorf("NewSecret() decodes to %d bytes (%v), want 32", len(key), err)
	}
	if s2 := newSecret(t); s2 == s {
		t.Error("NewSecret() returned the same secret twice")
	}
	for _, bad := range []string{"", "whsec_", "whsec_not base64!"} {
		if _, err := webhook.Sign(bad, "msg_1", time.Now(), nil); !errors.Is(err, webhook.ErrInvalidSecret) {
			t.Errorf("Sign(secret %q) = %v, want ErrInvalidSecret", bad, err)
		}
		if _, err := webhook.NewVerifier(bad); !errors.Is(err, webhook.ErrInvalidSecret) {
			t.Errorf("NewVerifier(%q) = %v, want ErrInvalidSecret", bad, err)
		}
	}
	if _, err := webhook.NewVerifier(); !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Errorf("NewVerifier() = %v, want ErrInvalidSecret", err)
	}
	if _, err := webhook.NewVerifier(s, "whsec_"); err == nil || !strings.Contains(err.Error(), "[1]") {
		t.Errorf("NewVerifier(good, bad) = %v, want an error naming the second secret", err)
	}
}
