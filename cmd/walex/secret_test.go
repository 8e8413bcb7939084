package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walex-go/walex/internal/pgtest"
)

var (
	pwOnce     sync.Once
	pwPassword string
)

// passwordRole makes the role walex_pw (which pgtest's pg_hba.conf makes
// authenticate with a password) with REPLICATION and a random password,
// once per test process, and returns the password.
func passwordRole(t *testing.T) string {
	t.Helper()
	pwOnce.Do(func() {
		var b [12]byte
		_, _ = rand.Read(b[:])
		pw := "pw" + hex.EncodeToString(b[:])
		srv := pgtest.Shared()
		exec(t, srv.URL("postgres"),
			`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'walex_pw') THEN CREATE ROLE walex_pw LOGIN REPLICATION; END IF; END $$`,
			fmt.Sprintf(`ALTER ROLE walex_pw PASSWORD '%s'`, pw))
		pwPassword = pw
	})
	if pwPassword == "" {
		t.Fatal("the role walex_pw could not be made")
	}
	return pwPassword
}

// TestPasswordNeverPrinted runs every command with a password in the URL,
// right and wrong, and a URL that cannot be parsed, and looks for the
// password in everything printed.
func TestPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	pw := passwordRole(t)
	url := tailSetup(t)
	exec(t, url, `GRANT SELECT ON users, todos TO walex_pw`)
	good := withUser(url, "walex_pw", pw)
	wrong := withUser(url, "walex_pw", pw+"x")
	broken := strings.Replace(good, "127.0.0.1:", "127.0.0.1:x", 1) // a port that is no number

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, tc := range []struct {
		url  string
		args []string
		want int
	}{
		{good, []string{"check", "--publication", "events", "--tables", "users,todos"}, exitOK},
		{good, []string{"check", "--publication", "events", "--format", "json"}, exitOK},
		{good, []string{"slots"}, exitOK},
		{good, []string{"slots", "drop", "nosuch", "--yes"}, exitFailure},
		{wrong, []string{"check"}, exitUsage},
		{wrong, []string{"slots"}, exitFailure},
		{wrong, []string{"tail", "--publication", "events", "--tables", "users"}, exitFailure},
		{broken, []string{"check"}, exitUsage},
		{broken, []string{"tail", "--publication", "events", "--tables", "users"}, exitUsage},
		{"postgres://walex_pw:" + pw + "@[::1/db", []string{"slots"}, exitUsage},
		{"host=127.0.0.1 port=x user=walex_pw password=" + pw + " dbname=db", []string{"slots"}, exitUsage},
	} {
		for _, viaFlag := range []bool{false, true} {
			env, args := map[string]string{"DATABASE_URL": tc.url}, tc.args
			if viaFlag {
				env, args = nil, append(append([]string{}, tc.args...), "--url", tc.url)
			}
			r := invoke(ctx, env, nil, args...)
			if r.code != tc.want {
				t.Errorf("walex %s (url via flag %v): exit %d, want %d; stderr: %s", strings.Join(tc.args, " "), viaFlag, r.code, tc.want, r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, pw) {
				t.Errorf("walex %s (url via flag %v) printed the password:\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), viaFlag, r.stdout, r.stderr)
			}
			if testing.Verbose() && !viaFlag && r.stderr != "" {
				t.Logf("walex %s: %s", strings.Join(tc.args, " "), r.stderr)
			}
			if tc.want != exitOK && r.stderr == "" {
				t.Errorf("walex %s: exit %d without a message", strings.Join(tc.args, " "), r.code)
			}
		}
	}
}
