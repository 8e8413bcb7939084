package nats_test

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
)

// testLogger returns a logger whose output is shown when the test fails.
func testLogger(tb testing.TB) *slog.Logger {
	l := &logBuf{}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("walex log:\n%s", l.String())
		}
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
