package walex_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

// closedPort is a port of 127.0.0.1 where nothing listens.
func closedPort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestSecretsNeverLeak: with the password given by URL, by the discrete
// fields and by PasswordFunc, it appears nowhere walex writes: the
// Config's formatting, the logs at Debug level, the errors of a handler
// panic, of a refused password, of an unreachable host and of an invalid
// configuration, Stats, events' JSON. (TestConfigNeverShowsPassword covers
// the formatting of more URL and DSN forms.)
func TestSecretsNeverLeak(t *testing.T) {
	srv := pgtest.Shared()
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION events FOR TABLE t;`)
	pw := randomPassword(t, "leak-")
	wrong := randomPassword(t, "wrong-")
	passwordRoleURL(t, url, pw)
	db := dbName(url)

	// config gives the password (or a wrong one) in one of the three ways,
	// for a server at port.
	config := func(how, password string, port int) walex.Config {
		switch how {
		case "URL":
			return walex.Config{URL: fmt.Sprintf("postgres://walex_pw:%s@%s:%d/%s?sslmode=disable", password, srv.Host, port, db)}
		case "Password":
			return walex.Config{Host: srv.Host, Port: uint16(port), User: "walex_pw", Password: password, Database: db}
		default:
			return walex.Config{URL: fmt.Sprintf("postgres://walex_pw@%s:%d/%s?sslmode=disable", srv.Host, port, db),
				PasswordFunc: func(context.Context) (string, error) { return password, nil }}
		}
	}
	var seen []string // everything walex showed
	show := func(what string, v any) { seen = append(seen, fmt.Sprintf("%s: %v", what, v)) }

	for i, how := range []string{"URL", "Password", "PasswordFunc"} {
		t.Run(how, func(t *testing.T) {
			l := &logs{}
			t.Cleanup(func() { show("logs", l.String()) })
			logger := slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
			edit := func(base walex.Config) func(*walex.Config) {
				return func(cfg *walex.Config) {
					cfg.URL, cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database, cfg.PasswordFunc = base.URL, base.Host, base.Port, base.User, base.Password, base.Database, base.PasswordFunc
					cfg.Logger = logger
					cfg.ReconnectPolicy = walex.RetryPolicy{MaxAttempts: 2, InitialDelay: 10 * time.Millisecond}
					show("config", fmt.Sprintf("%v %+v %#v %s", *cfg, *cfg, *cfg, *cfg))
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			// Streaming, then a handler panic.
			name := fmt.Sprintf("leak%d", i)
			c := newClient(t, "", name, []string{"t"}, edit(config(how, pw, srv.Port)))
			c.OnInsert("t", func(ctx context.Context, evs []walex.Event) error {
				for _, e := range evs {
					b, err := json.Marshal(e)
					if err != nil {
						return err
					}
					show("event", string(b)+" "+e.String())
					if e.NewRecord["id"] == int32(2) {
						panic(fmt.Sprintf("handler fails on %v", e))
					}
				}
				return nil
			})
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			waitStreaming(t, url, name+"_walex")
			exec(t, url, `DELETE FROM t; INSERT INTO t VALUES (1, 'one'); INSERT INTO t VALUES (2, 'two')`)
			err := <-done
			var pe *walex.PanicError
			if !errors.As(err, &pe) {
				t.Fatalf("Run() = %v, want a handler's *PanicError", err)
			}
			show("panic", pe.Error()+" "+string(pe.Stack))
			show("Run error", fmt.Sprintf("%v %+v %#v", err, err, err))
			show("stats", fmt.Sprintf("%+v", c.Stats()))

			// A refused password.
			c = newClient(t, "", name, []string{"t"}, edit(config(how, wrong, srv.Port)))
			if err := c.Run(ctx); !walex.IsPermanent(err) || !strings.Contains(err.Error(), "authentication failed") {
				t.Errorf("Run() with a wrong password = %v, want a permanent authentication failure", err)
			} else {
				show("auth error", fmt.Sprintf("%v %+v %#v", err, err, err))
			}
			show("stats", fmt.Sprintf("%+v", c.Stats()))

			// No server at the address.
			c = newClient(t, "", name, []string{"t"}, edit(config(how, pw, closedPort(t))))
			if err := c.Run(ctx); err == nil || walex.IsPermanent(err) {
				t.Errorf("Run() with no server = %v, want a transient error after the attempts", err)
			} else {
				show("connect error", fmt.Sprintf("%v %+v %#v", err, err, err))
			}
			show("stats", fmt.Sprintf("%+v", c.Stats()))

			// An invalid configuration.
			bad := config(how, pw, srv.Port)
			bad.Name, bad.Publication, bad.Subscriptions = "x", "events", []string{"t"}
			bad.SnapshotChunkSize = -1
			if _, err := walex.New(bad); err == nil {
				t.Error("New(SnapshotChunkSize -1) succeeded")
			} else {
				show("config error", fmt.Sprintf("%v %+v %#v", err, err, err))
			}
			bad.SnapshotChunkSize = 0
			bad.PasswordFunc = func(context.Context) (string, error) { return pw, nil }
			if _, err := walex.New(bad); how != "PasswordFunc" && err == nil {
				t.Error("New(PasswordFunc and a password) succeeded")
			} else if err != nil {
				show("config error", fmt.Sprintf("%v %+v %#v", err, err, err))
			}
		})
	}

	// A DSN whose quoted password has spaces: no part of it shows.
	spaced := "leak " + pw[len("leak-"):] + " tail"
	for _, dsn := range []string{
		fmt.Sprintf("host=%s port=%d user=walex_pw password='%s' dbname=%s", srv.Host, srv.Port, spaced, db),
		fmt.Sprintf("host=%s port=notaport user=walex_pw password='%s' dbname=%s", srv.Host, spaced, db),
	} {
		cfg := walex.Config{URL: dsn, Name: "x", Publication: "events", Subscriptions: []string{"t"}}
		show("config", fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg))
		if _, err := walex.New(cfg); err != nil {
			show("config error", err)
		}
	}

	if len(seen) < 20 {
		t.Fatalf("only %d outputs collected", len(seen))
	}
	for _, s := range seen {
		for _, secret := range []string{pw, wrong, pw[len("leak-"):]} {
			if strings.Contains(s, secret) {
				t.Errorf("a password appears in %.2000s", s)
			}
		}
	}
}
