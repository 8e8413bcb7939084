package main

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/walex-go/walex/internal/demo"
	"github.com/walex-go/walex/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// TestExample runs the example against a throwaway server and checks
// that each event was handled by exactly one worker, and both worked.
func TestExample(t *testing.T) {
	buf := &syncBuffer{}
	out = buf
	demo.Test(t, setup, teardown, run)
	text := buf.String()
	t.Log(text)
	if !strings.Contains(text, "Done: 16 events, each handled by exactly one of 2 workers.") {
		t.Fatalf("output has no line saying every event was handled once:\n%s", text)
	}
	seen := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(worker-\d): .* event (\S+)$`).FindAllStringSubmatch(text, -1) {
		if w, ok := seen[m[2]]; ok {
			t.Errorf("event %s handled by %s and %s", m[2], w, m[1])
		}
		seen[m[2]] = m[1]
	}
	if len(seen) != events {
		t.Errorf("%d events printed, want %d", len(seen), events)
	}
	for _, w := range []string{"worker-1", "worker-2"} {
		if !regexp.MustCompile(`(?m)^` + w + ` handled [1-9]\d* events$`).MatchString(text) {
			t.Errorf("%s handled no event:\n%s", w, text)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the workers' concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
