package walex_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walex-go/walex"
)

// timeline records, in order, what the handlers of a client got.
type timeline struct {
	mu    sync.Mutex
	items []string
	msgs  []walex.Message
	evs   []walex.Event
	scs   []walex.SchemaChange
}

func (l *timeline) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.items = append(l.items, s)
}

func (l *timeline) events(label string) walex.Handler {
	return func(_ context.Context, events []walex.Event) error {
		var ids []string
		for _, e := range events {
			ids = append(ids, fmt.Sprintf("%s %v", e.Type, e.NewRecord["id"]))
		}
		l.mu.Lock()
		l.evs = append(l.evs, events...)
		l.mu.Unlock()
		l.add(label + "[" + strings.Join(ids, ", ") + "]")
		return nil
	}
}

func (l *timeline) message(label string) walex.MessageHandler {
	return func(_ context.Context, m walex.Message) error {
		l.mu.Lock()
		l.msgs = append(l.msgs, m)
		l.mu.Unlock()
		l.add(fmt.Sprintf("%s %s=%s", label, m.Prefix, m.Content))
		return nil
	}
}

func (l *timeline) schema(_ context.Context, s walex.SchemaChange) error {
	var parts []string
	for _, c := range s.Changes {
		parts = append(parts, fmt.Sprintf("%s %s>%s", c.Kind, c.Before.Name, c.After.Name))
	}
	l.mu.Lock()
	l.scs = append(l.scs, s)
	l.mu.Unlock()
	l.add("schema " + s.Table + " " + strings.Join(parts, ", "))
	return nil
}

func (l *timeline) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.items...)
}

// waitItem waits until the timeline holds an item.
func (l *timeline) waitItem(t *testing.T, item string) {
	t.Helper()
	waitFor(t, 30*time.Second, item, func() (bool, error) {
		for _, s := range l.list() {
			if s == item {
				return true, nil
			}
		}
		return false, nil
	})
}

func equalLists(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// TestMessages: a transactional message arrives between the inserts it
// was written between, in the same transaction; one in a rolled-back
// transaction never arrives; a non-transactional one arrives by itself,
// even from a transaction that rolls back; prefixes select handlers, and
// walex's own prefixes are never delivered.
func TestMessages(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	var l timeline
	c := newClient(t, url, "messages", []string{"t"}, func(cfg *walex.Config) { cfg.HeartbeatInterval = 50 * time.Millisecond })
	c.OnInsert("t", l.events("insert"))
	c.OnMessage("app", l.message("app"))
	c.OnMessage(walex.AllMessages, l.message("all"))
	running(t, c)
	waitStreaming(t, url, "messages")

	exec(t, url, `BEGIN;
INSERT INTO t VALUES (1);
SELECT pg_logical_emit_message(true, 'app', 'between');
INSERT INTO t VALUES (2);
SELECT pg_logical_emit_message(true, 'walex_heartbeat', 'not for users');
SELECT pg_logical_emit_message(true, 'other', 'o');
COMMIT`)
	exec(t, url, `BEGIN;
INSERT INTO t VALUES (3);
SELECT pg_logical_emit_message(true, 'app', 'rolled back');
SELECT pg_logical_emit_message(false, 'app', 'at once');
ROLLBACK`)
	exec(t, url, `BEGIN; SELECT pg_logical_emit_message(true, 'app', 'alone'); COMMIT`)
	exec(t, url, `INSERT INTO t VALUES (4)`)
	l.waitItem(t, "insert[insert 4]")
	time.Sleep(200 * time.Millisecond) // heartbeats (walex_heartbeat) came meanwhile

	want := []string{
		"insert[insert 1]",
		"app app=between", "all app=between",
		"insert[insert 2]",
		"all other=o",
		"app app=at once", "all app=at once",
		"app app=alone", "all app=alone",
		"insert[insert 4]",
	}
	if got := l.list(); !equalLists(got, want) {
		t.Fatalf("handlers got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	between, first := l.msgs[0], l.evs[0]
	if !between.Transactional || between.XID != first.XID || between.CommitLSN != first.CommitLSN || !between.Timestamp.Equal(first.Timestamp) {
		t.Errorf("transactional message %+v does not carry its transaction's XID, commit LSN and time (%d %s %s)", between, first.XID, first.CommitLSN, first.Timestamp)
	}
	if between.LSN == 0 || between.LSN >= between.CommitLSN {
		t.Errorf("message LSN %s, want before the commit %s", between.LSN, between.CommitLSN)
	}
	if st := c.Stats(); st.Messages != 4 {
		t.Errorf("Stats().Messages = %d, want 4", st.Messages)
	}
	atOnce := l.msgs[4]
	if atOnce.Transactional || atOnce.XID != 0 || atOnce.LSN == 0 || atOnce.CommitLSN != atOnce.LSN || atOnce.Timestamp.IsZero() {
		t.Errorf("non-transactional message = %+v", atOnce)
	}
}

// TestMessageHandlerFailure: a message handler's error is retried, then
// stops Run with a *HandlerError that names the handler, and the
// transaction is not acknowledged.
func TestMessageHandlerFailure(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	c := newClient(t, url, "message_fails", []string{"t"})
	calls := 0
	c.OnMessage("app", func(context.Context, walex.Message) error { calls++; return fmt.Errorf("no") }, walex.WithName("failing"))
	r := startRun(t, c)
	waitStreaming(t, url, "message_fails")
	exec(t, url, `BEGIN; INSERT INTO t VALUES (1); SELECT pg_logical_emit_message(true, 'app', 'x'); COMMIT`)
	waitFor(t, 30*time.Second, "Run to stop", func() (bool, error) { done, _ := r.exited(); return done, nil })
	var he *walex.HandlerError
	if !errors.As(r.err, &he) || he.Attempts != 3 || !strings.Contains(he.Handler, `OnMessage("app")`) || !strings.Contains(he.Handler, "failing") {
		t.Fatalf("Run() = %v, want a *HandlerError of OnMessage(\"app\") after 3 attempts", r.err)
	}
	if calls != 3 {
		t.Errorf("%d calls, want 3", calls)
	}
}

// TestOnMessagePanics: the prefixes and options OnMessage refuses.
func TestOnMessagePanics(t *testing.T) {
	c, err := walex.New(walex.Config{URL: "postgres://localhost/db", Name: "x", Publication: "p", Subscriptions: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	h := func(context.Context, walex.Message) error { return nil }
	for name, f := range map[string]func(){
		"reserved": func() { c.OnMessage("walex_heartbeat", h) },
		"empty":    func() { c.OnMessage("", h) },
		"nil":      func() { c.OnMessage("app", nil) },
		"functions": func() {
			c.OnMessage("app", h, walex.WithFunctions(func(context.Context, walex.Event) error { return nil }))
		},
		"filters": func() {
			c.OnSchemaChange("t", func(context.Context, walex.SchemaChange) error { return nil }, walex.WithFilters(walex.Filters{UnwatchedFields: []string{"a"}}))
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	c.OnMessage("app", h, walex.WithName("fine"))
}

// TestSchemaChanges: ALTER TABLE ADD, DROP, RENAME COLUMN and a type
// change between inserts give one SchemaChange each, before the next row;
// a Relation message that describes the same shape again (after a
// reconnect) gives none; an unsubscribed table's changes are not reported.
func TestSchemaChanges(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY, a text, b int); CREATE TABLE other (id int PRIMARY KEY, x int);
CREATE PUBLICATION events FOR TABLE t, other;`)
	var l timeline
	c := newClient(t, url, "schema", []string{"t"})
	c.OnInsert("t", l.events("insert"))
	c.OnSchemaChange("t", l.schema)
	running(t, c)
	waitStreaming(t, url, "schema")

	exec(t, url, `INSERT INTO t VALUES (1, 'a', 1)`)
	exec(t, url, `ALTER TABLE t ADD COLUMN c text`)
	exec(t, url, `INSERT INTO t VALUES (2, 'a', 2, 'c')`)
	exec(t, url, `ALTER TABLE t DROP COLUMN b`)
	exec(t, url, `INSERT INTO t VALUES (3, 'a', 'c')`)
	exec(t, url, `ALTER TABLE t RENAME COLUMN a TO a2`)
	exec(t, url, `INSERT INTO t VALUES (4, 'a', 'c')`)
	exec(t, url, `ALTER TABLE t ALTER COLUMN c TYPE varchar(20)`)
	exec(t, url, `ALTER TABLE other ADD COLUMN y int; INSERT INTO other VALUES (1, 1, 1)`)
	exec(t, url, `INSERT INTO t VALUES (5, 'a', 'c')`)
	l.waitItem(t, "insert[insert 5]")
	c.Reconnect()
	waitStreaming(t, url, "schema")
	exec(t, url, `INSERT INTO t VALUES (6, 'a', 'c')`)
	l.waitItem(t, "insert[insert 6]")

	want := []string{
		"insert[insert 1]",
		"schema t added >c",
		"insert[insert 2]",
		"schema t dropped b>",
		"insert[insert 3]",
		"schema t renamed a>a2",
		"insert[insert 4]",
		"schema t type_changed c>c",
		"insert[insert 5]",
		"insert[insert 6]",
	}
	if got := l.list(); !equalLists(got, want) {
		t.Fatalf("handlers got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if st := c.Stats(); st.SchemaChanges != 4 {
		t.Errorf("Stats().SchemaChanges = %d, want 4", st.SchemaChanges)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	add := l.scs[0]
	if len(add.Before) != 3 || len(add.After) != 4 || add.After[3] != (walex.Column{Name: "c", Type: "text", TypeModifier: -1}) || !add.After[0].Key || add.Before[0].Name != "id" {
		t.Errorf("ADD COLUMN: before %+v after %+v", add.Before, add.After)
	}
	if add.Schema != "public" || add.CommitLSN != l.evs[1].CommitLSN || add.XID != l.evs[1].XID || add.Index != l.evs[1].Index {
		t.Errorf("ADD COLUMN change %+v is not placed at the event that first used the new shape (%s)", add, l.evs[1].ID())
	}
	typ := l.scs[3].Changes[0]
	if typ.Before.Type != "text" || typ.After.Type != "varchar" || typ.After.TypeModifier != 24 {
		t.Errorf("type change = %+v", typ)
	}
}

// TestFullIdentityCompleteRows: under REPLICA IDENTITY FULL, an update
// that leaves a TOASTed value alone delivers it in NewRecord (from the old
// row), and it is not a change; under DEFAULT it stays Unchanged.
func TestFullIdentityCompleteRows(t *testing.T) {
	url := testDB(t, `CREATE TABLE full_t (id int PRIMARY KEY, n int, body text);
ALTER TABLE full_t REPLICA IDENTITY FULL;
CREATE TABLE dflt_t (id int PRIMARY KEY, n int, body text);
ALTER TABLE full_t ALTER COLUMN body SET STORAGE EXTERNAL; ALTER TABLE dflt_t ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE PUBLICATION events FOR TABLE full_t, dflt_t;`)
	var l timeline
	c := newClient(t, url, "full_rows", []string{"full_t", "dflt_t"})
	c.OnUpdate("full_t", l.events("full"))
	c.OnUpdate("dflt_t", l.events("dflt"))
	running(t, c)
	waitStreaming(t, url, "full_rows")
	body := strings.Repeat("0123456789abcdef", 1000) // 16 kB, stored out of line
	exec(t, url, `INSERT INTO full_t VALUES (1, 1, $1)`, body)
	exec(t, url, `INSERT INTO dflt_t VALUES (1, 1, $1)`, body)
	exec(t, url, `UPDATE full_t SET n = 2; UPDATE dflt_t SET n = 2`)
	l.waitItem(t, "dflt[update 1]")
	l.mu.Lock()
	defer l.mu.Unlock()
	full, dflt := l.evs[0], l.evs[1]
	if full.NewRecord["body"] != body {
		t.Errorf("FULL: NewRecord body = %.40v, want the whole value", full.NewRecord["body"])
	}
	if _, ok := full.Changes["body"]; ok || len(full.Changes) != 1 || full.Changes["n"].NewValue != int32(2) {
		t.Errorf("FULL: Changes = %v, want only n", full.Changes)
	}
	if dflt.NewRecord["body"] != walex.Unchanged {
		t.Errorf("DEFAULT: NewRecord body = %.40v, want Unchanged", dflt.NewRecord["body"])
	}
}

// TestMessagesStreamed: in a transaction large enough to be streamed, a
// message keeps its place among the rows (in a transaction delivered in
// chunks), and one in a rolled-back savepoint never arrives.
func TestMessagesStreamed(t *testing.T) {
	decNeedStreaming(t)
	url := testDB(t, decStreamingDB+`CREATE TABLE t (id int PRIMARY KEY, payload text); CREATE PUBLICATION events FOR TABLE t;`)
	var mu sync.Mutex
	var seq []string // "rows N" runs and messages, in order
	rows := 0
	flush := func() {
		if rows > 0 {
			seq = append(seq, fmt.Sprintf("rows %d", rows))
			rows = 0
		}
	}
	c := newClient(t, url, "dec", []string{"t"}, func(cfg *walex.Config) { cfg.MaxBatchEvents = 1000 })
	c.OnInsert("t", func(_ context.Context, events []walex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		rows += len(events)
		return nil
	})
	c.OnMessage("app", func(_ context.Context, m walex.Message) error {
		mu.Lock()
		defer mu.Unlock()
		flush()
		seq = append(seq, "message "+string(m.Content))
		return nil
	})
	running(t, c)
	waitStreaming(t, url, "dec")
	exec(t, url, `BEGIN;
INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2500) g;
SELECT pg_logical_emit_message(true, 'app', 'middle');
SAVEPOINT s;
INSERT INTO t SELECT g, md5(g::text) FROM generate_series(10001, 10100) g;
SELECT pg_logical_emit_message(true, 'app', 'rolled back');
ROLLBACK TO SAVEPOINT s;
INSERT INTO t SELECT g, md5(g::text) FROM generate_series(2501, 5000) g;
COMMIT`)
	exec(t, url, `BEGIN; SELECT pg_logical_emit_message(true, 'app', 'fence'); COMMIT`)
	waitFor(t, 30*time.Second, "the fence", func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(seq) > 0 && seq[len(seq)-1] == "message fence", nil
	})
	decWaitStreamed(t, url, 1)
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(seq, ", "); got != "rows 2500, message middle, rows 2500, message fence" {
		t.Fatalf("got %s", got)
	}
}
