package walex_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

// randomPassword is a password no test writes anywhere else.
func randomPassword(tb testing.TB, prefix string) string {
	tb.Helper()
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// passwords is a Config.PasswordFunc whose answer a test changes.
type passwords struct {
	mu    sync.Mutex
	pw    string
	fail  error
	calls int
}

func (p *passwords) get(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.fail != nil {
		return "", p.fail
	}
	return p.pw, nil
}

func (p *passwords) set(pw string, fail error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pw, p.fail = pw, fail
}

func (p *passwords) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// passwordRoleURL gives walex_pw (which must authenticate with its
// password) the password and SELECT on table t, and returns the URL of
// url's database for it, without the password.
func passwordRoleURL(tb testing.TB, url, password string) string {
	tb.Helper()
	loginRole(tb, url, "walex_pw", password)
	exec(tb, url, `GRANT SELECT ON t TO walex_pw`)
	srv := pgtest.Shared()
	return fmt.Sprintf("postgres://walex_pw@%s:%d/%s?sslmode=disable", srv.Host, srv.Port, dbName(url))
}

func TestPasswordFuncValidation(t *testing.T) {
	fn := func(context.Context) (string, error) { return "x", nil }
	cc, err := pgconn.ParseConfig("host=db user=app dbname=app password=fake-pw")
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []walex.Config{
		{URL: "postgres://app:fake-pw@db/app", PasswordFunc: fn},
		{URL: "postgres://app@db/app?password=fake-pw", PasswordFunc: fn},
		{URL: "host=db user=app password='fake pw' dbname=app", PasswordFunc: fn},
		{Host: "db", User: "app", Password: "fake-pw", Database: "app", PasswordFunc: fn},
		{ConnConfig: cc, PasswordFunc: fn},
	} {
		cfg.Name, cfg.Publication, cfg.Subscriptions = "a", "p", []string{"t"}
		_, err := walex.New(cfg)
		var ce *walex.ConfigError
		if !errors.As(err, &ce) || ce.Field != "PasswordFunc" {
			t.Errorf("New(%v) = %v, want a *ConfigError for PasswordFunc", cfg, err)
		}
	}
	for _, cfg := range []walex.Config{
		{URL: "postgres://app@db/app", PasswordFunc: fn},
		{URL: "host=db user=app dbname=app", PasswordFunc: fn},
		{Host: "db", User: "app", Database: "app", PasswordFunc: fn},
	} {
		cfg.Name, cfg.Publication, cfg.Subscriptions = "a", "p", []string{"t"}
		if _, err := walex.New(cfg); err != nil {
			t.Errorf("New(%v) = %v", cfg, err)
		}
	}
}

// TestPasswordFunc: the function gives the password of every connection
// (the role must authenticate with a password, and the URL has none):
// replication, catalog queries, the snapshot, heartbeats; it is asked
// again on every reconnect, so a rotated password works; an error of the
// function is retried like a connection failure.
func TestPasswordFunc(t *testing.T) {
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (0); CREATE PUBLICATION events FOR TABLE t;`)
	first := randomPassword(t, "first-")
	roleURL := passwordRoleURL(t, url, first)
	pws := &passwords{pw: first}
	logger, logs := captureLogs(t)
	c := newClient(t, roleURL, "pwfunc", []string{"t"}, fastReconnect, func(cfg *walex.Config) {
		cfg.PasswordFunc = pws.get
		cfg.Snapshot = walex.SnapshotInitial
		cfg.HeartbeatInterval = 50 * time.Millisecond
		cfg.Logger = logger
	})
	got := make(chan walex.Event, 100)
	c.OnEvent("t", func(ctx context.Context, evs []walex.Event) error {
		for _, e := range evs {
			got <- e
		}
		return nil
	})
	want := func(typ walex.EventType, id int32) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case e := <-got:
				if e.Type == typ && e.NewRecord["id"] == id {
					return
				}
			case <-deadline:
				t.Fatalf("no %s of id %d", typ, id)
			}
		}
	}
	running(t, c)
	want(walex.Read, 0)
	waitStreaming(t, url, "pwfunc_walex")
	exec(t, url, `INSERT INTO t VALUES (1)`)
	want(walex.Insert, 1)
	// The catalog and heartbeat connections stay open: both authenticated.
	waitFor(t, 20*time.Second, "walex_pw's catalog and heartbeat connections", func() (bool, error) {
		n := queryRow(t, url, `SELECT count(*) AS n FROM pg_stat_activity WHERE usename = 'walex_pw' AND datname = current_database() AND backend_type = 'client backend'`)["n"].(int64)
		return n >= 2, nil
	})
	if n := logs.count("heartbeat failed"); n != 0 {
		t.Errorf("%d heartbeats failed", n)
	}
	if n := pws.count(); n < 4 {
		t.Errorf("PasswordFunc called %d times, want at least 4 (replication, catalog, snapshot, heartbeat)", n)
	}

	// Rotate the password: the function returns the new one, and the next
	// connection uses it.
	second := randomPassword(t, "second-")
	exec(t, url, `ALTER ROLE walex_pw PASSWORD '`+second+`'`)
	pws.set(second, nil)
	before, calls := c.Stats().Reconnects, pws.count()
	c.Reconnect()
	waitFor(t, 20*time.Second, "a reconnect", func() (bool, error) {
		st := c.Stats()
		return st.Reconnects != before && st.Connected, nil
	})
	waitStreaming(t, url, "pwfunc_walex")
	exec(t, url, `INSERT INTO t VALUES (2)`)
	want(walex.Insert, 2)
	if n := pws.count() - calls; n < 2 {
		t.Errorf("PasswordFunc called %d times for the reconnect, want at least 2 (replication, catalog)", n)
	}

	// The function fails: Run keeps retrying, with the function's error
	// as LastError, until it works again.
	errVault := errors.New("vault unavailable")
	pws.set(second, errVault)
	calls = pws.count()
	c.Reconnect()
	waitFor(t, 20*time.Second, "failed connection attempts", func() (bool, error) {
		return errors.Is(c.Stats().LastError, errVault) && pws.count() >= calls+3, nil
	})
	st := c.Stats()
	if walex.IsPermanent(st.LastError) || !strings.Contains(st.LastError.Error(), "PasswordFunc") {
		t.Errorf("LastError = %v, want a transient error that names PasswordFunc", st.LastError)
	}
	pws.set(second, nil)
	waitFor(t, 20*time.Second, "a connection", func() (bool, error) { return c.Stats().Connected, nil })
	waitStreaming(t, url, "pwfunc_walex")
	exec(t, url, `INSERT INTO t VALUES (3)`)
	want(walex.Insert, 3)
}
