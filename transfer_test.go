package walex_test

import (
	"bytes"
	"context"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/equal"
	"github.com/walex-go/walex/internal/pgtest"
)

// TestTransferAuto checks TransferAuto's choice: binary for tables whose
// column types walex reads in binary itself (domains over them included),
// text as soon as a subscribed table has another type; and that a table of
// such a type subscribed while the connection is in binary still delivers
// the right values (converted by the server), with a warning.
func TestTransferAuto(t *testing.T) {
	if v := pgtest.Shared().Version; v < 14 {
		t.Skipf("binary transfer needs PostgreSQL 14, server is %d", v)
	}
	url := testDB(t, `
		CREATE TYPE mood AS ENUM ('happy', 'sad');
		CREATE DOMAIN positive AS int CHECK (VALUE > 0);
		CREATE TABLE plain (id int PRIMARY KEY, n numeric, ts timestamptz, p positive, tags text[]);
		CREATE TABLE moods (id int PRIMARY KEY, m mood, ms mood[]);
		CREATE PUBLICATION events FOR TABLE plain, moods;`)

	var mu sync.Mutex
	var logs bytes.Buffer
	logged := func() string {
		mu.Lock()
		defer mu.Unlock()
		return logs.String()
	}
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))

	c := newClient(t, url, "auto", []string{"plain"}, func(cfg *walex.Config) { cfg.Logger = logger })
	r := newRecorder()
	c.OnEvent(walex.AllTables, r.handler("all"))
	running(t, c)
	waitStreaming(t, url, "auto_walex")
	// The walsender can report streaming a moment before the client logs
	// that it started.
	if !waitLogged(logged, "replication started") || !strings.Contains(logged(), "binary=true") {
		t.Fatalf("plain's types are all read in binary, but the connection is not binary:\n%s", logged())
	}

	exec(t, url, `INSERT INTO plain VALUES (1, 1.50, '2026-11-24 01:02:03+00', 5, '{a,"b c"}')`)
	r.wait(t, 1)
	if err := c.AddSubscriptions("moods"); err != nil {
		t.Fatal(err)
	}
	exec(t, url, `INSERT INTO moods VALUES (1, 'happy', '{sad,happy}')`)
	r.wait(t, 2)

	r.mu.Lock()
	plain, moods := r.evs[0][0].NewRecord, r.evs[1][0].NewRecord
	r.mu.Unlock()
	wantTS := time.Date(2026, 11, 24, 1, 2, 3, 0, time.UTC)
	if n, ok := plain["n"].(pgtype.Numeric); !ok || n.Int.Cmp(big.NewInt(150)) != 0 || n.Exp != -2 ||
		plain["p"] != int32(5) || !wantTS.Equal(plain["ts"].(time.Time)) || !equal.Strict(plain["tags"], []any{"a", "b c"}) {
		t.Errorf("plain = %#v", plain)
	}
	if moods["m"] != "happy" || !equal.Strict(moods["ms"], "{sad,happy}") {
		t.Errorf("moods = %#v, want the enum's label and the array's text", moods)
	}
	if !strings.Contains(logged(), "the server converts each one") || !strings.Contains(logged(), "type=public.mood") {
		t.Errorf("no warning that mood values are converted by the server:\n%s", logged())
	}

	// A connection that starts with moods subscribed asks for text.
	logs2 := &bytes.Buffer{}
	c2 := newClient(t, url, "auto2", []string{"plain", "moods"}, func(cfg *walex.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: logs2, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	c2.OnEvent(walex.AllTables, func(context.Context, []walex.Event) error { return nil })
	running(t, c2)
	waitStreaming(t, url, "auto2_walex")
	logged2 := func() string {
		mu.Lock()
		defer mu.Unlock()
		return logs2.String()
	}
	waitLogged(logged2, "replication started")
	if out := logged2(); !strings.Contains(out, "binary=false") || !strings.Contains(out, "public.mood") {
		t.Errorf("with moods subscribed the connection should be text, naming mood as the reason:\n%s", out)
	}
}

// waitLogged waits up to 10 s for logged() to contain s.
func waitLogged(logged func() string, s string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return poll(ctx, nil, "a log record", func() (bool, error) { return strings.Contains(logged(), s), nil }) == nil
}
