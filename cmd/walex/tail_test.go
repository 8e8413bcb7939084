package main

import (
	"context"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walex-go/walex"
)

// tailSetup creates a database with users (REPLICA IDENTITY FULL) and
// todos (the default identity) in publication events.
func tailSetup(t *testing.T) string {
	url := newDB(t)
	exec(t, url,
		`CREATE TABLE users (id int PRIMARY KEY, email text, balance numeric(12,2))`,
		`ALTER TABLE users REPLICA IDENTITY FULL`,
		`CREATE TABLE todos (id int PRIMARY KEY, title text)`,
		`CREATE PUBLICATION events FOR TABLE users, todos`)
	return url
}

// tailChanges makes five changes: insert, update and delete of a user, an
// insert and an update of a todo.
var tailChanges = []string{
	`INSERT INTO users VALUES (1, 'a@example.com', 12.50)`,
	`UPDATE users SET email = 'b@example.com' WHERE id = 1`,
	`DELETE FROM users WHERE id = 1`,
	`INSERT INTO todos VALUES (7, 'write tests')`,
	`UPDATE todos SET title = 'run tests' WHERE id = 7`,
}

// tailRun runs walex tail in process on url's database until stop; stdout
// receives the events.
type tailRun struct {
	stdout, stderr *syncBuffer
	done           chan int
	cancel         context.CancelFunc
}

func startTail(t *testing.T, url string, stdout io.Writer, env map[string]string, args ...string) *tailRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	tr := &tailRun{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan int, 1), cancel: cancel}
	if stdout == nil {
		stdout = tr.stdout
	}
	if env == nil {
		env = map[string]string{}
	}
	env["DATABASE_URL"] = url
	go func() {
		tr.done <- run(ctx, append([]string{"tail"}, args...), func(k string) string { return env[k] }, strings.NewReader(""), stdout, tr.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		<-tr.done
	})
	return tr
}

// waitStreaming waits until a walex slot streams from url's database.
func (tr *tailRun) waitStreaming(t *testing.T, url string) {
	t.Helper()
	waitFor(t, 30*time.Second, "walex tail to stream", func() bool {
		select {
		case code := <-tr.done:
			t.Fatalf("walex tail exited with %d before streaming: %s", code, tr.stderr.String())
		default:
		}
		// A slot being created is listed as active too: wait for the stream.
		return queryInt(t, url, `SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
			WHERE s.database = current_database() AND r.state IN ('catchup', 'streaming')`) > 0
	})
}

// stop ends the run as SIGINT does (its context) and returns the status.
func (tr *tailRun) stop(t *testing.T) int {
	t.Helper()
	tr.cancel()
	select {
	case code := <-tr.done:
		tr.done <- code // for the cleanup
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("walex tail did not stop within 30 s of its context's end")
		return -1
	}
}

// lines waits for n lines in out and returns them.
func (tr *tailRun) lines(t *testing.T, out func() string, n int) []string {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("walex tail's output:\n%s\nits stderr:\n%s", out(), tr.stderr.String())
		}
	})
	waitFor(t, 30*time.Second, "the events' lines", func() bool { return strings.Count(out(), "\n") >= n })
	return strings.Split(strings.TrimSuffix(out(), "\n"), "\n")
}

func TestTailJSON(t *testing.T) {
	t.Parallel()
	url := tailSetup(t)
	tr := startTail(t, url, nil, nil, "--publication", "events", "--tables", "users,todos")
	tr.waitStreaming(t, url)
	exec(t, url, tailChanges...)
	got := tr.lines(t, tr.stdout.String, len(tailChanges))
	if code := tr.stop(t); code != exitOK {
		t.Fatalf("walex tail exited with %d after its context ended, want 0; stderr: %s", code, tr.stderr.String())
	}
	if len(got) != len(tailChanges) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(tailChanges), strings.Join(got, "\n"))
	}
	type change struct {
		Old any `json:"old_value"`
		New any `json:"new_value"`
	}
	type event struct {
		ID        string            `json:"id"`
		Name      string            `json:"name"`
		Type      string            `json:"type"`
		NewRecord map[string]any    `json:"new_record"`
		OldRecord map[string]any    `json:"old_record"`
		Changes   map[string]change `json:"changes"`
		LSN       string            `json:"lsn"`
	}
	var events []event
	for _, l := range got {
		var e event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		events = append(events, e)
	}
	var types []string
	for _, e := range events {
		types = append(types, e.Name+"/"+e.Type)
	}
	if got, want := strings.Join(types, " "), "users/insert users/update users/delete todos/insert todos/update"; got != want {
		t.Errorf("events %s, want %s", got, want)
	}
	if e := events[0]; e.NewRecord["balance"] != "12.50" || e.NewRecord["email"] != "a@example.com" || !strings.HasPrefix(e.ID, e.LSN+":") {
		t.Errorf("insert: %+v", e)
	}
	if ch := events[1].Changes["email"]; ch.Old != "a@example.com" || ch.New != "b@example.com" || len(events[1].Changes) != 1 {
		t.Errorf("update changes: %+v", events[1].Changes)
	}
	if e := events[2]; e.OldRecord["id"] != float64(1) || e.OldRecord["email"] != "b@example.com" {
		t.Errorf("delete old record: %+v", e.OldRecord)
	}
}

func TestTailPretty(t *testing.T) {
	t.Parallel()
	url := tailSetup(t)
	tr := startTail(t, url, nil, nil, "--publication", "events", "--tables", "users,todos", "--format", "pretty")
	tr.waitStreaming(t, url)
	exec(t, url, tailChanges...)
	got := tr.lines(t, tr.stdout.String, len(tailChanges))
	if code := tr.stop(t); code != exitOK {
		t.Fatalf("walex tail exited with %d, want 0; stderr: %s", code, tr.stderr.String())
	}
	if testing.Verbose() {
		t.Logf("pretty:\n%s", strings.Join(got, "\n"))
	}
	for i, want := range [][]string{
		{"insert", "public.users", "id=1", `balance="12.50"`, `email="a@example.com"`},
		{"update", "public.users", "id=1", `email: "a@example.com" → "b@example.com"`},
		{"delete", "public.users", "id=1"},
		{"insert", "public.todos", "id=7", `title="write tests"`},
		{"update", "public.todos", "id=7", `title="run tests"`},
	} {
		for _, w := range want {
			if !strings.Contains(got[i], w) {
				t.Errorf("line %d %q lacks %q", i, got[i], w)
			}
		}
		if strings.Contains(got[i], "\x1b") {
			t.Errorf("line %d has ANSI codes without a terminal: %q", i, got[i])
		}
	}
	if strings.Contains(got[2], "email") {
		t.Errorf("a delete shows the key only: %q", got[2])
	}
}

// TestTailTerminal: on a terminal, the default is pretty and coloured;
// NO_COLOR turns the colours off.
func TestTailTerminal(t *testing.T) {
	t.Parallel()
	url := tailSetup(t)
	for _, tc := range []struct {
		env   map[string]string
		color bool
	}{{nil, true}, {map[string]string{"NO_COLOR": "1"}, false}} {
		out := &syncBuffer{}
		tr := startTail(t, url, fakeTerminal{Writer: out}, tc.env, "--publication", "events", "--tables", "todos")
		tr.waitStreaming(t, url)
		exec(t, url, `INSERT INTO todos SELECT coalesce(max(id), 0) + 1, 'x' FROM todos`)
		got := tr.lines(t, out.String, 1)[0]
		if code := tr.stop(t); code != exitOK {
			t.Fatalf("exit %d; stderr: %s", code, tr.stderr.String())
		}
		if !strings.Contains(got, "public.todos") || strings.HasPrefix(got, "{") {
			t.Errorf("env %v: not the pretty format: %q", tc.env, got)
		}
		if strings.Contains(got, "\x1b[") != tc.color {
			t.Errorf("env %v: ANSI colours %v, want %v: %q", tc.env, !tc.color, tc.color, got)
		}
		waitFor(t, 30*time.Second, "the temporary slot to go", func() bool {
			return queryInt(t, url, `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()`) == 0
		})
	}
}

func TestTailFatal(t *testing.T) {
	t.Parallel()
	url := tailSetup(t)
	tr := startTail(t, url, nil, nil, "--publication", "nope", "--tables", "users")
	select {
	case code := <-tr.done:
		tr.done <- code
		if code != exitFailure || !strings.Contains(tr.stderr.String(), `walex tail: walex: "nope"`) {
			t.Errorf("exit %d, stderr %q; want 1 and the missing publication named", code, tr.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("walex tail with a missing publication did not exit")
	}
}

// TestPrettyFormat covers what the stream tests cannot easily provoke:
// colours, truncates, unchanged TOAST values, long values.
func TestPrettyFormat(t *testing.T) {
	pp := &prettyPrinter{p: palette{on: true}, keys: map[string][]string{"public.docs": {"id"}}}
	ev := walex.Event{
		Name: "docs", Type: walex.Update, Source: walex.Source{Schema: "public", Table: "docs"},
		NewRecord: map[string]any{"id": int32(3), "body": walex.Unchanged, "title": strings.Repeat("y", 200)},
		Timestamp: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	js, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pp.format(ev, js)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\x1b[33mupdate\x1b[0m", "body\x1b[0m=(unchanged)", "…", "id\x1b[0m=3"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	ev = walex.Event{Name: "docs", Type: walex.Truncate, Source: walex.Source{Schema: "public", Table: "docs"}, TruncateFlags: walex.TruncateFlags{Cascade: true}}
	js, _ = json.Marshal(ev)
	pp.p.on = false
	if got, _ := pp.format(ev, js); !strings.HasSuffix(got, "public.docs 0/0:0  cascade") {
		t.Errorf("truncate: %q", got)
	}
}

// TestTailDurableSnapshot: --snapshot prints the existing rows as read
// events; --durable keeps the slot, so that a second run prints what was
// committed in between.
func TestTailDurableSnapshot(t *testing.T) {
	t.Parallel()
	url := tailSetup(t)
	exec(t, url, `INSERT INTO todos VALUES (1, 'one'), (2, 'two')`)
	slot := "cli_durable_" + strings.TrimPrefix(dbName(url), "walex_test_")
	args := []string{"--publication", "events", "--tables", "todos", "--durable", "--slot", slot}

	tr := startTail(t, url, nil, nil, append(args, "--snapshot")...)
	got := tr.lines(t, tr.stdout.String, 2)
	// Stopped before its end, the snapshot would resume in the next run.
	waitFor(t, 30*time.Second, "the snapshot to be done", func() bool {
		return queryInt(t, url, `SELECT count(*) FROM walex_snapshots WHERE slot_name = $1 AND done_at IS NOT NULL`, slot) == 1
	})
	if code := tr.stop(t); code != exitOK {
		t.Fatalf("exit %d; stderr: %s", code, tr.stderr.String())
	}
	for i, l := range got {
		if !strings.Contains(l, `"type":"read"`) || !strings.Contains(l, `"id":`+strconv.Itoa(i+1)) {
			t.Errorf("snapshot line %d: %q, want the read event of row %d", i, l, i+1)
		}
	}
	if n := queryInt(t, url, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND NOT temporary`, slot); n != 1 {
		t.Fatalf("durable slot %s: %d after the run, want 1", slot, n)
	}

	exec(t, url, `INSERT INTO todos VALUES (3, 'while away')`)
	tr = startTail(t, url, nil, nil, args...)
	got = tr.lines(t, tr.stdout.String, 1)
	if code := tr.stop(t); code != exitOK {
		t.Fatalf("exit %d; stderr: %s", code, tr.stderr.String())
	}
	if len(got) != 1 || !strings.Contains(got[0], `"type":"insert"`) || !strings.Contains(got[0], `"while away"`) {
		t.Errorf("second run printed %q, want the insert made between the runs", got)
	}
	waitFor(t, 30*time.Second, "the walsender to release the slot", func() bool {
		return queryInt(t, url, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, slot) == 1
	})
	cliRun(t, exitOK, url, "slots", "drop", slot, "--yes")
}
