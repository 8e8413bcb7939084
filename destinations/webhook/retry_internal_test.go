package webhook

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	limit := time.Minute
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"5", 5 * time.Second, true},
		{" 0 ", 0, true},
		{"-3", 0, false},
		{"120", time.Minute, true},
		{"99999999999999999", time.Minute, true},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{now.Add(time.Hour).Format(http.TimeFormat), time.Minute, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"soon", 0, false},
	} {
		got, ok := parseRetryAfter(tc.in, now, limit)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{InitialDelay: 100 * time.Millisecond, MaxDelay: time.Second}.withDefaults()
	for n, full := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 5: time.Second, 50: time.Second} {
		for range 20 {
			if d := p.backoff(n); d < full/2 || d > full {
				t.Errorf("backoff(%d) = %v, want %v to %v", n, d, full/2, full)
			}
		}
	}
	if d := p.wait(1, &StatusError{StatusCode: 503, RetryAfter: 7 * time.Second}); d != 7*time.Second {
		t.Errorf("wait(Retry-After 7s) = %v, want 7s", d)
	}
}

func TestRetryDefaults(t *testing.T) {
	p := RetryPolicy{}.withDefaults()
	if p.MaxAttempts != DefaultMaxAttempts || p.InitialDelay != DefaultInitialDelay || p.MaxDelay != DefaultMaxDelay || p.MaxRetryAfter != DefaultMaxRetryAfter {
		t.Errorf("RetryPolicy{}.withDefaults() = %+v", p)
	}
	if p := (RetryPolicy{MaxAttempts: -1, InitialDelay: time.Minute, MaxDelay: time.Second}).withDefaults(); p.MaxAttempts != -1 || p.MaxDelay != time.Minute {
		t.Errorf("withDefaults kept %+v, want unlimited attempts and MaxDelay raised to InitialDelay", p)
	}
}

func TestSnippet(t *testing.T) {
	if got := snippet([]byte("line one\nline\x00two\xff"), false); got != "line one line two" {
		t.Errorf("snippet() = %q", got)
	}
	long := snippet([]byte("a"+strings.Repeat("é", 300)), false) // cut inside a rune
	if !strings.HasSuffix(long, "…") || len(long) > maxErrorBody+len("…") || strings.ContainsRune(long, '\uFFFD') {
		t.Errorf("snippet(long) = %q (%d bytes)", long, len(long))
	}
}
