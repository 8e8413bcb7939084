package replication

import (
	"testing"
	"time"
)

func TestParsePGDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"60s": time.Minute, "1min": time.Minute, "500ms": 500 * time.Millisecond, "0": 0, "2h": 2 * time.Hour} {
		got, ok := parsePGDuration(in)
		if !ok || got != want {
			t.Errorf("parsePGDuration(%q) = %v, %t; want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "abc", "5 fortnights"} {
		if _, ok := parsePGDuration(in); ok {
			t.Errorf("parsePGDuration(%q) ok", in)
		}
	}
}

func TestMaxProtoVersion(t *testing.T) {
	for major, want := range map[int]int{10: 1, 13: 1, 14: 2, 15: 3, 16: 4, 17: 4, 18: 4} {
		if got := maxProtoVersion(major); got != want {
			t.Errorf("maxProtoVersion(%d) = %d, want %d", major, got, want)
		}
	}
}
