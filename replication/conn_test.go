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

// TestLiveness walks the receive-timeout check through its verdicts: a
// look that finds new messages, a look that finds none (ask for a reply),
// and the next one that still finds none (dead).
func TestLiveness(t *testing.T) {
	start := time.Unix(1000, 0)
	var l liveness
	l.start(10*time.Second, start)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	steps := []struct {
		now      time.Time
		received int
		want     verdict
	}{
		{at(4 * time.Second), 0, alive}, // before the first look
		{at(5 * time.Second), 3, alive}, // messages came
		{at(9 * time.Second), 0, alive}, // before the next look
		{at(10 * time.Second), 0, askReply},
		{at(12 * time.Second), 0, alive}, // not yet time
		{at(15 * time.Second), 1, alive}, // the reply came
		{at(20 * time.Second), 0, askReply},
		{at(25 * time.Second), 0, dead},
	}
	for i, s := range steps {
		for range s.received {
			l.received()
		}
		if got := l.check(s.now); got != s.want {
			t.Fatalf("step %d (%v): verdict %d, want %d", i, s.now.Sub(start), got, s.want)
		}
	}
	var off liveness
	off.start(-1, start)
	if off.enabled() || off.check(at(time.Hour)) != alive {
		t.Error("a negative timeout still checks")
	}
}
