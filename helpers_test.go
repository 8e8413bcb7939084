package walex_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	osexec "os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

// waitFor polls cond every 10 ms until it reports true, it fails, or
// timeout passes; then it fails tb with what was awaited.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := poll(ctx, nil, what, cond); err != nil {
		tb.Fatal(err)
	}
}

// poll is the one wait loop of the tests: it calls cond every 10 ms until
// cond reports true or fails, ctx ends, or abort (when not nil) is closed,
// and says what it waited for when it gives up. Goroutines other than the
// test's use it directly.
func poll(ctx context.Context, abort <-chan struct{}, what string, cond func() (bool, error)) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
		case <-abort:
			return fmt.Errorf("stopped waiting for %s: the process under test ended", what)
		case <-t.C:
		}
	}
}

// connect opens a pgx connection closed at the end of the test.
func connect(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// parseLSN parses the text form of a pg_lsn, nil as 0.
func parseLSN(s *string) (walex.LSN, error) {
	if s == nil {
		return 0, nil
	}
	return pglogrepl.ParseLSN(*s)
}

// startServer starts a dedicated server for a test, stopped at its end.
func startServer(tb testing.TB, opts pgtest.Options) *pgtest.Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv, err := pgtest.Start(ctx, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.Stop() })
	return srv
}

// logs is a log (a client's, or a child process's output) kept for a test
// to look at; safe for concurrent writes.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// captureLogs returns a logger for a client and the log it writes.
func captureLogs(t *testing.T) (*slog.Logger, *logs) {
	l := &logs{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client log (tail):\n%s", tail(l.String(), 60))
		}
	})
	return slog.New(slog.NewTextHandler(l, nil)), l
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// count returns how many records contain every one of the parts.
func (l *logs) count(parts ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// dbName is the database of a test database's URL.
func dbName(url string) string {
	db := url[strings.LastIndex(url, "/")+1:]
	if i := strings.Index(db, "?"); i >= 0 {
		db = db[:i]
	}
	return db
}

// loginRole makes sure the role exists with LOGIN REPLICATION and the
// password, and returns the URL of url's database (on the shared server)
// for it.
func loginRole(tb testing.TB, url, role, password string) string {
	tb.Helper()
	exec(tb, url, fmt.Sprintf(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN CREATE ROLE %s LOGIN REPLICATION; END IF; END $$`, role, role))
	exec(tb, url, fmt.Sprintf(`ALTER ROLE %s PASSWORD '%s'`, role, password))
	srv := pgtest.Shared()
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", role, password, srv.Host, srv.Port, dbName(url))
}

// startHelper starts the test binary as consumer process n, running only
// the test helper (a TestHelper... that does nothing unless env sets it
// up); the process is killed when the test ends, and its output's tail
// logged if the test failed.
func startHelper(t *testing.T, helper string, n int, env ...string) (*osexec.Cmd, *logs) {
	t.Helper()
	cmd := osexec.Command(os.Args[0], "-test.run=^"+helper+"$", "-test.count=1", "-test.v", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), env...)
	out := &logs{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("consumer %d output (tail):\n%s", n, tail(out.String(), 30))
		}
	})
	return cmd, out
}
