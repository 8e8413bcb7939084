package walex_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/walex-go/walex"
)

// testPassword is a password made up for one test run.
func testPassword(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return "pw-" + hex.EncodeToString(b)
}

// plainRole makes sure the role exists with LOGIN only (no REPLICATION)
// and the password, and returns the URL of url's database for it.
func plainRole(tb testing.TB, url, role, password string) string {
	tb.Helper()
	u := loginRole(tb, url, role, password)
	exec(tb, url, fmt.Sprintf(`ALTER ROLE %s NOREPLICATION`, role))
	return u
}

// minConfig is the configuration of a client of the least-privileged
// role: nothing given up on for long, fast retries.
func minConfig(url, name, pub string, subs []string, edit ...func(*walex.Config)) walex.Config {
	cfg := walex.Config{URL: url, Name: name, Publication: pub, Subscriptions: subs, StatusInterval: 100 * time.Millisecond,
		RetryPolicy: walex.RetryPolicy{MaxAttempts: 3, InitialDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond}}
	fastReconnect(&cfg)
	for _, f := range edit {
		f(&cfg)
	}
	return cfg
}

// runErr runs a client of cfg until Run returns, and returns its error.
func runErr(t *testing.T, cfg walex.Config) error {
	t.Helper()
	c, err := walex.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Subscriptions {
		c.OnEvent(s, func(context.Context, []walex.Event) error { return nil })
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = c.Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("Run(%s) did not return before its context ended: %v", cfg.Name, err)
	}
	return err
}

// wantFix checks that err is a permanent error that names every fix.
func wantFix(t *testing.T, what string, err error, fixes ...string) {
	t.Helper()
	if err == nil || !walex.IsPermanent(err) {
		t.Errorf("%s: error %v, want a permanent error", what, err)
		return
	}
	for _, f := range fixes {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("%s: error %q does not name the fix %q", what, err, f)
		}
	}
}

// TestLeastPrivilege: a role with only LOGIN REPLICATION and SELECT on
// the subscribed tables streams with a durable slot, resumes after its
// walsender was ended (by the role itself, as walex does with a stale
// one), takes an initial and an on-demand snapshot into a progress table
// an admin created and granted it DML on, and writes heartbeats; each
// privilege it lacks for a feature makes Run (or Snapshot) fail for good
// with the GRANT or ALTER that gives it.
func TestLeastPrivilege(t *testing.T) {
	url := testDB(t, `CREATE TABLE users (id int PRIMARY KEY, name text);
		INSERT INTO users SELECT i, 'u' || i FROM generate_series(1, 50) i;
		CREATE TABLE secret (id int PRIMARY KEY);
		INSERT INTO secret VALUES (1);
		CREATE TABLE extra (id int PRIMARY KEY);
		CREATE TABLE extra2 (id int PRIMARY KEY);
		CREATE TABLE other (id int);
		CREATE PUBLICATION events FOR TABLE users, secret;`)
	minURL := loginRole(t, url, "walex_min", testPassword(t))
	exec(t, url, `GRANT SELECT ON users TO walex_min;`+walex.SnapshotStoreDDL("public.walex_snapshots")+
		`; GRANT SELECT, INSERT, UPDATE, DELETE ON public.walex_snapshots TO walex_min`)
	if r := queryRow(t, url, `SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolreplication, rolcanlogin,
			has_database_privilege('walex_min', current_database(), 'CREATE') AS dbcreate, has_schema_privilege('walex_min', 'public', 'CREATE') AS schemacreate
			FROM pg_roles WHERE rolname = 'walex_min'`); r["rolsuper"] != false || r["rolcreatedb"] != false || r["rolcreaterole"] != false || r["rolbypassrls"] != false ||
		r["rolreplication"] != true || r["rolcanlogin"] != true || r["dbcreate"] != false || (r["schemacreate"] != false && pgVersion(t, url) >= 15) {
		t.Fatalf("role walex_min = %v, want LOGIN REPLICATION and nothing more", r)
	}

	logger, log := captureLogs(t)
	cfg := minConfig(minURL, "min", "events", []string{"users"}, durable, func(cfg *walex.Config) {
		cfg.Snapshot, cfg.HeartbeatInterval, cfg.Logger = walex.SnapshotInitial, 100*time.Millisecond, logger
	})
	r := newRecorder()
	start := func() (*walex.Client, func() error) {
		c, err := walex.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.OnEvent("users", r.handler("users"))
		return c, running(t, c)
	}
	c, stop := start()
	r.wait(t, 1)
	waitFor(t, 30*time.Second, "the initial snapshot", func() (bool, error) {
		s := c.Stats().Snapshots
		return len(s) == 1 && !s[0].Done.IsZero() && s[0].Err == nil, nil
	})
	waitStreaming(t, url, "min_walex")
	exec(t, url, `INSERT INTO users VALUES (51, 'new'); UPDATE users SET name = 'changed' WHERE id = 1; DELETE FROM users WHERE id = 2`)
	waitFor(t, 30*time.Second, "the insert, update and delete", func() (bool, error) { return countTypes(r)[walex.Delete] == 1, nil })

	// Heartbeats move the slot on while the subscribed tables are idle.
	exec(t, url, `INSERT INTO other SELECT generate_series(1, 1000)`)
	target := currentWAL(t, url)
	waitFor(t, 20*time.Second, "the heartbeat to advance the slot past "+target.String(), func() (bool, error) {
		return slotFlushLSN(t, url, "min_walex") >= target, nil
	})

	// The role may end its own walsender (what walex does to a stale one
	// of its own, Supersede); the client reconnects and goes on.
	var ended bool
	if err := connect(t, minURL).QueryRow(context.Background(), `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'min_walex'`).Scan(&ended); err != nil || !ended {
		t.Fatalf("walex_min terminating its own walsender: %v, %v", ended, err)
	}
	exec(t, url, `INSERT INTO users VALUES (52, 'after reconnect')`)
	waitFor(t, 30*time.Second, "the insert after the reconnect", func() (bool, error) { return countTypes(r)[walex.Insert] == 2, nil })

	// An on-demand snapshot; one of a table it may not read.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Snapshot(ctx, "users"); err != nil {
		t.Fatalf("Snapshot(users) = %v", err)
	}
	if err := c.AddSubscriptions("secret"); err != nil {
		t.Fatal(err)
	}
	c.OnEvent("secret", r.handler("secret"))
	wantFix(t, "Snapshot without SELECT", c.Snapshot(ctx, "secret"), `GRANT SELECT ON "public"."secret" TO "walex_min";`)
	if err := stop(); err != nil {
		t.Fatalf("Run() = %v", err)
	}

	// Stopped and started again, the durable slot resumes.
	exec(t, url, `INSERT INTO users VALUES (53, 'while stopped')`)
	_, stop = start()
	waitFor(t, 30*time.Second, "the insert made while stopped", func() (bool, error) { return countTypes(r)[walex.Insert] == 3, nil })
	if err := stop(); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if n := log.count("heartbeat failed"); n != 0 {
		t.Errorf("%d heartbeats failed", n)
	}
	if got, want := countTypes(r)[walex.Read], 50+51; got != want {
		t.Errorf("%d Read events, want %d (the initial snapshot of 50 rows, Snapshot(users) of 51)", got, want)
	}

	// With the tables and the publication its own, CreatePublication adds
	// a table; the session that blocks it meanwhile is named, though
	// the role may not see its query.
	exec(t, url, `ALTER TABLE extra OWNER TO walex_min; CREATE PUBLICATION ownpub FOR TABLE users; ALTER PUBLICATION ownpub OWNER TO walex_min`)
	lockerPID, release := lockTable(t, url, "extra")
	logger, log = captureLogs(t)
	c = newClient(t, minURL, "own", []string{"extra"}, fastReconnect, func(cfg *walex.Config) {
		cfg.Publication, cfg.CreatePublication, cfg.Logger = "ownpub", true, logger
	})
	c.OnEvent("extra", r.handler("extra"))
	running(t, c)
	waitFor(t, 30*time.Second, "a warning naming the blocking backend", func() (bool, error) {
		return log.count("waits for a lock held by another session", fmt.Sprintf("pid %d (user ", lockerPID), "hidden from this role",
			`GRANT pg_read_all_stats TO \"walex_min\";`) > 0, nil
	})
	release()
	waitStreaming(t, url, "own_walex")
	exec(t, url, `INSERT INTO extra VALUES (1)`)
	waitFor(t, 30*time.Second, "the insert into the added table", func() (bool, error) { return countTypes(r)[walex.Insert] == 4, nil })

	// What each missing privilege says.
	noRepURL := plainRole(t, url, "walex_norep", testPassword(t))
	exec(t, url, `GRANT SELECT ON users TO walex_norep`)
	wantFix(t, "Run without REPLICATION", runErr(t, minConfig(noRepURL, "norep", "events", []string{"users"})),
		`ALTER ROLE "walex_norep" REPLICATION;`)

	if pgVersion(t, url) >= 15 { // before 15, everyone may create tables in public
		wantFix(t, "an initial snapshot without CREATE for its progress table",
			runErr(t, minConfig(minURL, "nocreate", "events", []string{"users"}, durable, func(cfg *walex.Config) {
				cfg.Snapshot, cfg.SnapshotTable = walex.SnapshotInitial, "public.walex_min_progress"
			})),
			`GRANT CREATE ON SCHEMA "public" TO "walex_min";`, `GRANT SELECT, INSERT, UPDATE, DELETE ON "public"."walex_min_progress" TO "walex_min";`)
	}

	exec(t, url, walex.SnapshotStoreDDL("public.walex_nogrant"))
	wantFix(t, "an initial snapshot into a progress table without grants",
		runErr(t, minConfig(minURL, "nogrant", "events", []string{"users"}, durable, func(cfg *walex.Config) {
			cfg.Snapshot, cfg.SnapshotTable = walex.SnapshotInitial, "public.walex_nogrant"
		})),
		`GRANT SELECT, INSERT, UPDATE, DELETE ON "public"."walex_nogrant" TO "walex_min";`)

	// Membership of a superuser's role is never the advice.
	admin := fmt.Sprintf("GRANT %q TO", queryRow(t, url, `SELECT current_user AS u`)["u"])
	noSuper := func(what string, err error) {
		if err != nil && strings.Contains(err.Error(), admin) {
			t.Errorf("%s: error %q advises %s, a superuser", what, err, admin)
		}
	}
	create := func(cfg *walex.Config) { cfg.CreatePublication = true }
	db := `"` + dbName(url) + `"`
	wantFix(t, "CreatePublication without CREATE on the database", runErr(t, minConfig(minURL, "nodb", "minpub", []string{"users"}, create)),
		`GRANT CREATE ON DATABASE `+db+` TO "walex_min";`, `ALTER TABLE "public"."users" OWNER TO "walex_min";`)
	exec(t, url, `GRANT CREATE ON DATABASE `+db+` TO walex_min`)
	err := runErr(t, minConfig(minURL, "noowner", "minpub", []string{"users"}, create))
	wantFix(t, "CreatePublication of a table it does not own", err, `ALTER TABLE "public"."users" OWNER TO "walex_min";`)
	if err != nil && strings.Contains(err.Error(), "GRANT CREATE ON DATABASE") {
		t.Errorf("error %q names CREATE on the database, which the role has", err)
	}
	noSuper("CreatePublication of a table it does not own", err)
	err = runErr(t, minConfig(minURL, "noadd", "events", []string{"extra2"}, create))
	noSuper("CreatePublication adding a table", err)
	wantFix(t, "CreatePublication adding a table to a publication of another role", err,
		`ALTER PUBLICATION "events" OWNER TO "walex_min";`, `ALTER TABLE "public"."extra2" OWNER TO "walex_min";`, `ALTER PUBLICATION "events" ADD TABLE "public"."extra2";`)
}

// countTypes counts the events the recorder saw by type.
func countTypes(r *recorder) map[walex.EventType]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[walex.EventType]int{}
	for _, evs := range r.evs {
		for _, e := range evs {
			n[e.Type]++
		}
	}
	return n
}

// pgVersion is the major version of url's server.
func pgVersion(tb testing.TB, url string) int {
	tb.Helper()
	var v int
	if err := connect(tb, url).QueryRow(context.Background(), `SELECT current_setting('server_version_num')::int / 10000`).Scan(&v); err != nil {
		tb.Fatal(err)
	}
	return v
}
