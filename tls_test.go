package walex_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

// TestTLS runs a server with TLS (a CA and a server certificate made by
// the test) and connects to it with a URL, with the discrete fields plus
// libpq's environment variables, and with a ConnConfig holding a custom
// tls.Config: the walsender and the catalog connection use TLS each time.
func TestTLS(t *testing.T) {
	srv, certs, ca := startTLSServer(t, "127.0.0.1")
	setup := `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`

	check := func(t *testing.T, db string, edit func(*walex.Config)) {
		t.Helper()
		if err := srv.Exec(context.Background(), db, setup); err != nil {
			t.Fatal(err)
		}
		log, _ := captureLogs(t)
		cfg := walex.Config{Name: "tls", Publication: "events", Subscriptions: []string{"t"}, Logger: log}
		edit(&cfg)
		c, err := walex.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan []walex.Event, 1)
		c.OnInsert("t", func(ctx context.Context, evs []walex.Event) error { got <- evs; return nil })
		running(t, c)
		url := srv.URL(db)
		waitStreaming(t, url, "tls_walex")
		exec(t, url, `INSERT INTO t VALUES (1)`)
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			t.Fatal("no event over TLS")
		}
		mon := connect(t, url)
		rows, err := mon.Query(context.Background(), `SELECT a.backend_type, s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
			WHERE a.datname = $1 AND a.pid <> pg_backend_pid()`, db)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for rows.Next() {
			var kind string
			var ssl bool
			if err := rows.Scan(&kind, &ssl); err != nil {
				t.Fatal(err)
			}
			seen[kind]++
			if !ssl {
				t.Errorf("a %s connection of walex does not use TLS", kind)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if seen["walsender"] == 0 || seen["client backend"] == 0 {
			t.Errorf("walex's connections by kind: %v; want a walsender and a catalog connection (client backend)", seen)
		}
	}

	t.Run("URL", func(t *testing.T) {
		db := srv.NewDatabase(t)
		check(t, db, func(cfg *walex.Config) {
			cfg.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=verify-full&sslrootcert=%s", srv.Port, db, ca)
		})
	})
	t.Run("fields and PGSSLMODE", func(t *testing.T) {
		t.Setenv("PGSSLMODE", "verify-full")
		t.Setenv("PGSSLROOTCERT", ca)
		db := srv.NewDatabase(t)
		check(t, db, func(cfg *walex.Config) {
			cfg.Host, cfg.Port, cfg.User, cfg.Database = "127.0.0.1", uint16(srv.Port), "postgres", db
		})
	})
	t.Run("fields with the default sslmode prefer", func(t *testing.T) {
		db := srv.NewDatabase(t)
		check(t, db, func(cfg *walex.Config) {
			cfg.Host, cfg.Port, cfg.User, cfg.Database = "127.0.0.1", uint16(srv.Port), "postgres", db
		})
	})
	t.Run("ConnConfig with a tls.Config", func(t *testing.T) {
		db := srv.NewDatabase(t)
		cc, err := pgconn.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable", srv.Port, db))
		if err != nil {
			t.Fatal(err)
		}
		// The CA only in memory, as a cloud connector or a secret store
		// would hand it over.
		cc.TLSConfig = &tls.Config{RootCAs: certs.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		check(t, db, func(cfg *walex.Config) { cfg.ConnConfig = cc })
	})
}

// TestTLSRefused checks the two ways TLS can fail for good: a server
// without TLS when sslmode requires it, and a certificate for another host
// name with verify-full. Both stop Run at once with a permanent error that
// says what to do.
func TestTLSRefused(t *testing.T) {
	run := func(t *testing.T, url string) error {
		t.Helper()
		log, _ := captureLogs(t)
		c, err := walex.New(walex.Config{URL: url, Name: "tlsno", Publication: "events", Subscriptions: []string{"t"}, Logger: log,
			ReconnectPolicy: walex.RetryPolicy{InitialDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err = c.Run(ctx)
		if ctx.Err() != nil {
			t.Fatalf("Run() kept retrying (%v), want a permanent error at once", c.Stats().LastError)
		}
		if !walex.IsPermanent(err) {
			t.Errorf("Run() = %v, want a permanent error", err)
		}
		if st := c.Stats(); st.Reconnects != 0 {
			t.Errorf("Run reconnected %d times before giving up", st.Reconnects)
		}
		t.Logf("Run() = %v", err)
		return err
	}
	t.Run("require without TLS on the server", func(t *testing.T) {
		srv := pgtest.Shared()
		db := srv.NewDatabase(t)
		err := run(t, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=require", srv.Port, db))
		if err == nil || !strings.Contains(err.Error(), "does not accept TLS") || !strings.Contains(err.Error(), "sslmode") {
			t.Errorf("Run() = %v, want an error saying the server does not accept TLS and what sslmode to use", err)
		}
	})
	t.Run("verify-full with a certificate for another host", func(t *testing.T) {
		srv, _, ca := startTLSServer(t, "db.example.com")
		err := run(t, "postgres://postgres@127.0.0.1:"+strconv.Itoa(srv.Port)+"/postgres?sslmode=verify-full&sslrootcert="+ca)
		var pgErr *pgconn.PgError
		if err == nil || errors.As(err, &pgErr) || !strings.Contains(err.Error(), "certificate failed verification") {
			t.Errorf("Run() = %v, want the certificate refused", err)
		}
	})
}

// startTLSServer starts a server with TLS and a certificate for host, and
// writes the CA's certificate to a file for sslrootcert.
func startTLSServer(t *testing.T, host string) (srv *pgtest.Server, certs *pgtest.Certs, caFile string) {
	t.Helper()
	certs, err := pgtest.NewCerts(host)
	if err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, pgtest.Options{TLS: certs})
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certs.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, certs, caFile
}
