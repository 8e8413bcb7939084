package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// result is what one invocation of the command printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// invoke runs the command line in process with the environment env (and
// nothing of the test process's), stdin as its standard input.
func invoke(ctx context.Context, env map[string]string, stdin io.Reader, args ...string) result {
	var stdout, stderr syncBuffer
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	code := run(ctx, args, func(k string) string { return env[k] }, stdin, &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// cliRun runs the command line in process against url and fails the test
// if it does not exit with want.
func cliRun(t *testing.T, want int, url string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := invoke(ctx, map[string]string{"DATABASE_URL": url}, nil, args...)
	if r.code != want {
		t.Fatalf("walex %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeTerminal is a stream that reports itself as a terminal, as an
// *os.File on a tty does.
type fakeTerminal struct {
	io.Reader
	io.Writer
}

func (fakeTerminal) Stat() (os.FileInfo, error) { return charDevice{}, nil }

type charDevice struct{ os.FileInfo }

func (charDevice) Mode() os.FileMode { return os.ModeCharDevice | 0o620 }

// newDB creates a database on the shared server and returns its URL.
func newDB(t *testing.T) string {
	t.Helper()
	srv := pgtest.Shared()
	return srv.URL(srv.NewDatabase(t))
}

// connect opens a connection to url, closed by done.
func connect(t testing.TB, url string) (ctx context.Context, conn *pgx.Conn, done func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return ctx, conn, func() {
		conn.Close(context.Background())
		cancel()
	}
}

// exec runs SQL statements on url.
func exec(t testing.TB, url string, sql ...string) {
	t.Helper()
	ctx, conn, done := connect(t, url)
	defer done()
	for _, s := range sql {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// queryInt runs a query that returns one integer.
func queryInt(t testing.TB, url, sql string, args ...any) int {
	t.Helper()
	ctx, conn, done := connect(t, url)
	defer done()
	var n int
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// waitFor polls cond every 10 ms until it reports true, or fails the test
// after timeout with what it waited for.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dbName is the database of a URL.
func dbName(url string) string {
	db := url[strings.LastIndex(url, "/")+1:]
	db, _, _ = strings.Cut(db, "?")
	return db
}

// withUser returns url with another user and password.
func withUser(url, user, password string) string {
	return strings.Replace(url, "postgres@", fmt.Sprintf("%s:%s@", user, password), 1)
}

func TestHelp(t *testing.T) {
	ctx := context.Background()
	r := invoke(ctx, nil, nil, "help")
	if r.code != exitOK || !strings.Contains(r.stdout, "tail") || !strings.Contains(r.stdout, "check") || !strings.Contains(r.stdout, "slots") {
		t.Fatalf("walex help: exit %d, stdout:\n%s", r.code, r.stdout)
	}
	for _, cmd := range []string{"tail", "check", "slots"} {
		for _, args := range [][]string{{cmd, "--help"}, {"help", cmd}} {
			r := invoke(ctx, nil, nil, args...)
			if r.code != exitOK || !strings.Contains(r.stdout, "Usage:\n  walex "+cmd) || !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "--url") {
				t.Errorf("walex %s: exit %d, stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
			}
		}
	}
	for _, args := range [][]string{{}, {"nosuch"}, {"tail", "--nosuch"}, {"tail", "--tables", "t"}, {"slots", "drop"}, {"check", "--format", "xml"}} {
		if r := invoke(ctx, nil, nil, args...); r.code != exitUsage || r.stderr == "" {
			t.Errorf("walex %s: exit %d, stderr %q; want exit %d with a message", strings.Join(args, " "), r.code, r.stderr, exitUsage)
		}
	}
}

func TestParseTableList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"users", []string{"public.users"}},
		{" users , app.todos", []string{"public.users", "app.todos"}},
		{`"Order Items",app."a,b"`, []string{"public.Order Items", "app.a,b"}},
		{`"my.schema"."t""q"`, []string{`my.schema.t"q`}},
	} {
		refs, err := parseTableList(tc.in)
		if err != nil {
			t.Errorf("parseTableList(%q): %v", tc.in, err)
			continue
		}
		var got []string
		for _, r := range refs {
			got = append(got, r.schema+"."+r.name)
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("parseTableList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"a,,b", "a.b.c", `"open`, "a."} {
		if _, err := parseTableList(bad); err == nil {
			t.Errorf("parseTableList(%q): no error", bad)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 16 << 20: "16.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
