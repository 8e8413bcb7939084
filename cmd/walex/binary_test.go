package main

import (
	"bufio"
	"encoding/json"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walex-go/walex/internal/pgtest"
)

// TestBinary builds the command and runs it as users do, configured by
// libpq's PG* variables alone (no --url, no DATABASE_URL), with a
// password: walex tail prints an insert as a JSON line and exits 0 on
// SIGINT; walex check exits 0. Nothing prints the password.
func TestBinary(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "walex")
	if out, err := osexec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	pw := passwordRole(t)
	url := tailSetup(t)
	exec(t, url, `GRANT SELECT ON users, todos TO walex_pw`)
	srv := pgtest.Shared()
	env := append(pgtest.Environ(), // without the test process's PG* variables
		"PGHOST="+srv.Host, "PGPORT="+strconv.Itoa(srv.Port), "PGUSER=walex_pw", "PGPASSWORD="+pw,
		"PGDATABASE="+dbName(url), "PGSSLMODE=disable", "DATABASE_URL=")

	check := osexec.Command(bin, "check", "--publication", "events", "--tables", "users,todos")
	check.Env = env
	out, err := check.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "walex_pw@") || strings.Contains(string(out), pw) {
		t.Errorf("walex check: %v\n%s", err, out)
	}

	tail := osexec.Command(bin, "tail", "--publication", "events", "--tables", "users")
	tail.Env = env
	stdout, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	tail.Stderr = &stderr
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tail.Process.Kill() })
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitFor(t, 30*time.Second, "walex tail to stream", func() bool {
		return queryInt(t, url, `SELECT count(*) FROM pg_stat_replication WHERE usename = 'walex_pw' AND state = 'streaming'`) > 0
	})
	exec(t, url, `INSERT INTO users VALUES (42, 'bin@example.com', 1)`)
	select {
	case line := <-lines:
		var e struct {
			Type      string         `json:"type"`
			NewRecord map[string]any `json:"new_record"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Type != "insert" || e.NewRecord["email"] != "bin@example.com" {
			t.Errorf("walex tail printed %q (%v), want the insert as JSON", line, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("walex tail printed nothing; stderr: %s", stderr.String())
	}
	if err := tail.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tail.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("walex tail after SIGINT: %v (want exit 0); stderr: %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("walex tail did not stop on SIGINT")
	}
	if strings.Contains(stderr.String(), pw) {
		t.Errorf("walex tail printed the password: %s", stderr.String())
	}
}
