package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMain(m *testing.M) { Main(m, Options{}) }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func queryString(t *testing.T, ctx context.Context, url, sql string, args ...any) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	var v string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func TestServerBasics(t *testing.T) {
	ctx := testContext(t)
	srv := Shared()
	if srv.Host != "127.0.0.1" || srv.Port == 0 || srv.User != "postgres" {
		t.Fatalf("unexpected server fields: %+v", srv)
	}
	if got := queryString(t, ctx, srv.URL("postgres"), "SHOW wal_level"); got != "logical" {
		t.Errorf("wal_level = %q, want logical", got)
	}
	num, err := strconv.Atoi(queryString(t, ctx, srv.URL("postgres"), "SHOW server_version_num"))
	if err != nil {
		t.Fatal(err)
	}
	if num/10000 != srv.Version {
		t.Errorf("Version = %d, server_version_num = %d", srv.Version, num)
	}
	if want := os.Getenv(envVersion); want != "" && strconv.Itoa(srv.Version) != want {
		t.Errorf("Version = %d, want %s from %s", srv.Version, want, envVersion)
	}
	if fi, err := os.Stat(filepath.Join(srv.DataDir, "PG_VERSION")); err != nil || fi.IsDir() {
		t.Errorf("DataDir %s does not look like a cluster: %v", srv.DataDir, err)
	}
	t.Logf("PostgreSQL %d from %s on port %d", srv.Version, srv.BinDir, srv.Port)
}

func TestReplicationConnection(t *testing.T) {
	ctx := testContext(t)
	srv := Shared()
	db := srv.NewDatabase(t)
	conn, err := pgconn.Connect(ctx, srv.URL(db)+"&replication=database")
	if err != nil {
		t.Fatalf("replication connect: %v", err)
	}
	defer conn.Close(context.Background())
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		t.Fatalf("IDENTIFY_SYSTEM: %v", err)
	}
	if sys.SystemID == "" || sys.Timeline < 1 || sys.DBName != db {
		t.Errorf("IDENTIFY_SYSTEM = %+v, want a system id, timeline >= 1 and dbname %s", sys, db)
	}
}

func TestExecMultipleStatements(t *testing.T) {
	ctx := testContext(t)
	srv := Shared()
	db := srv.NewDatabase(t)
	if err := srv.Exec(ctx, db, "CREATE TABLE t (id int PRIMARY KEY, s text); INSERT INTO t VALUES (1, 'a')"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Exec(ctx, db, "INSERT INTO t VALUES ($1, $2)", 2, "b"); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, ctx, srv.URL(db), "SELECT string_agg(s, ',' ORDER BY id) FROM t"); got != "a,b" {
		t.Errorf("got %q, want a,b", got)
	}
}

func TestNewDatabase(t *testing.T) {
	ctx := testContext(t)
	srv := Shared()

	// A slot in another database must survive the cleanup of the test's databases.
	if err := srv.Exec(ctx, "postgres", "SELECT pg_create_logical_replication_slot('pgtest_keep', 'pgoutput')"); err != nil {
		t.Fatal(err)
	}
	defer srv.Exec(context.Background(), "postgres", "SELECT pg_drop_replication_slot('pgtest_keep')")

	var names []string
	var replConn *pgconn.PgConn
	t.Run("create", func(t *testing.T) {
		a, b := srv.NewDatabase(t), srv.NewDatabase(t)
		names = []string{a, b}
		if a == b {
			t.Fatalf("NewDatabase returned %q twice", a)
		}
		for _, db := range names {
			if err := srv.Exec(ctx, db, "CREATE TABLE t (id int)"); err != nil {
				t.Fatal(err)
			}
		}
		// Leave a streaming walsender on a slot in a: cleanup must cope.
		var err error
		replConn, err = pgconn.Connect(ctx, srv.URL(a)+"&replication=database")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pglogrepl.CreateReplicationSlot(ctx, replConn, "pgtest_slot", "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := pglogrepl.StartReplication(ctx, replConn, "pgtest_slot", 0, pglogrepl.StartReplicationOptions{
			PluginArgs: []string{"proto_version '1'", "publication_names 'none'"},
		}); err != nil {
			t.Fatal(err)
		}
		// And an inactive slot in b.
		if err := srv.Exec(ctx, b, "SELECT pg_create_logical_replication_slot('pgtest_idle', 'test_decoding')"); err != nil {
			t.Fatal(err)
		}
	})
	if replConn != nil {
		defer replConn.Close(context.Background())
	}
	if len(names) != 2 {
		t.Fatal("subtest did not create databases")
	}
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d of the databases %v still exist after cleanup", n, names)
	}
	rows, _ := conn.Query(ctx, "SELECT slot_name FROM pg_replication_slots ORDER BY 1")
	slots, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(slots, ",") != "pgtest_keep" {
		t.Errorf("replication slots after cleanup = %v, want only pgtest_keep", slots)
	}
}

func TestPasswordRole(t *testing.T) {
	ctx := testContext(t)
	srv := Shared()
	if err := srv.Exec(ctx, "postgres", "CREATE ROLE walex_pw LOGIN REPLICATION PASSWORD 'right'"); err != nil {
		t.Fatal(err)
	}
	defer srv.Exec(context.Background(), "postgres", "DROP ROLE walex_pw")
	url := func(password string) string {
		return strings.Replace(srv.URL("postgres"), "postgres@", "walex_pw:"+password+"@", 1)
	}
	for _, suffix := range []string{"", "&replication=database"} {
		conn, err := pgconn.Connect(ctx, url("wrong")+suffix)
		if err == nil {
			conn.Close(ctx)
			t.Fatalf("connect with wrong password%s succeeded", suffix)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Errorf("wrong password%s: got %v, want SQLSTATE 28P01", suffix, err)
		}
		conn, err = pgconn.Connect(ctx, url("right")+suffix)
		if err != nil {
			t.Fatalf("connect with right password%s: %v", suffix, err)
		}
		conn.Close(ctx)
	}
}

func TestRestartAndStop(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	port, dir := srv.Port, srv.dir

	if err := srv.Exec(ctx, "postgres", "CREATE TABLE t (n int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for i, mode := range []string{"fast", "immediate", "smart"} {
		// synchronous_commit is off by default; make this row durable.
		if err := srv.Exec(ctx, "postgres", fmt.Sprintf("SET synchronous_commit = on; INSERT INTO t VALUES (%d)", i+2)); err != nil {
			t.Fatal(err)
		}
		oldPid := srv.pid()
		if err := srv.Restart(ctx, mode); err != nil {
			t.Fatalf("Restart(%s): %v", mode, err)
		}
		if srv.Port != port || srv.pid() == oldPid || srv.pid() == 0 {
			t.Errorf("after Restart(%s): port %d (was %d), pid %d (was %d)", mode, srv.Port, port, srv.pid(), oldPid)
		}
		if got := queryString(t, ctx, srv.URL("postgres"), "SELECT count(*)::text FROM t"); got != strconv.Itoa(i+2) {
			t.Errorf("after Restart(%s): %s rows, want %d", mode, got, i+2)
		}
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("connection made before Restart still works")
	}
	if err := srv.Restart(ctx, "bogus"); err == nil {
		t.Error("Restart with a bogus mode succeeded")
	}

	pid := srv.pid()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			if i == 0 {
				errs[i] = srv.Restart(ctx, "fast") // may run before or after Stop
				return
			}
			errs[i] = srv.Stop()
		})
	}
	wg.Wait()
	for i, err := range errs[1:] {
		if err != nil {
			t.Errorf("Stop #%d: %v", i+1, err)
		}
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := srv.Restart(ctx, "fast"); err == nil {
		t.Error("Restart after Stop succeeded")
	}
	waitGone(t, pid, dir)
}

func TestSettingsOverride(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv, err := Start(ctx, Options{Settings: map[string]string{"wal_level": "replica", "wal_sender_timeout": "2s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if got := queryString(t, ctx, srv.URL("postgres"), "SHOW wal_level"); got != "replica" {
		t.Errorf("wal_level = %q, want replica", got)
	}
	if got := queryString(t, ctx, srv.URL("postgres"), "SHOW wal_sender_timeout"); got != "2s" {
		t.Errorf("wal_sender_timeout = %q, want 2s", got)
	}
	if got := queryString(t, ctx, srv.URL("postgres"), "SHOW max_replication_slots"); got != "40" {
		t.Errorf("max_replication_slots = %q, want the default 40", got)
	}
}

const helperEnv = "WALEX_PGTEST_HELPER_PANICS"

// TestHelperPanics is run by TestCleanupAfterPanic in a child process: it
// starts a server, reports it, and panics without stopping anything.
func TestHelperPanics(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper for TestCleanupAfterPanic")
	}
	srv, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Server{srv, Shared()} {
		fmt.Printf("PGTEST_SERVER %d %s\n", s.pid(), s.dir)
	}
	panic("pgtest: deliberate panic with servers running")
}

func TestCleanupAfterPanic(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperPanics$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		t.Fatalf("helper did not fail; output:\n%s", out.String())
	}
	var servers int
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	for sc.Scan() {
		var pid int
		var dir string
		if n, _ := fmt.Sscanf(sc.Text(), "PGTEST_SERVER %d %s", &pid, &dir); n != 2 {
			continue
		}
		servers++
		if pid <= 0 || !strings.Contains(dir, "walex-pgtest-") {
			t.Fatalf("bad helper line %q", sc.Text())
		}
		waitGone(t, pid, dir)
	}
	if servers != 2 {
		t.Fatalf("helper reported %d servers, want 2; output:\n%s", servers, out.String())
	}
	if !strings.Contains(out.String(), "deliberate panic") {
		t.Errorf("helper output lacks the panic:\n%s", out.String())
	}
}

// waitGone waits up to 10 s until no live process is in the process group
// pgid, no process mentions dir on its command line, and dir is removed.
func waitGone(t *testing.T, pgid int, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := liveProcesses(pgid, dir)
		_, statErr := os.Stat(dir)
		if len(procs) == 0 && errors.Is(statErr, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("server %d: after 10 s, processes left: %v; directory %s stat: %v", pgid, procs, dir, statErr)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// liveProcesses lists non-zombie processes in process group pgid or whose
// command line mentions dir.
func liveProcesses(pgid int, dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 3 || fields[0] == "Z" || fields[0] == "X" {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if fields[2] == strconv.Itoa(pgid) || bytes.Contains(cmdline, []byte(dir)) {
			found = append(found, fmt.Sprintf("%d %q", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return found
}

func TestPickNewest(t *testing.T) {
	versions := []string{
		"15.5.1-beta.9", "17.0.0-beta.13", "17.2.0-beta.15", "17.9.0-beta.17", "17.10.0-beta.9",
		"17.10.0-beta.17", "17.10.0-beta.2", "18.4.0-beta.17", "garbage", "16.14.0-beta.17",
	}
	for major, want := range map[int]string{17: "17.10.0-beta.17", 18: "18.4.0-beta.17", 15: "15.5.1-beta.9", 14: ""} {
		if got := pickNewest(versions, major); got != want {
			t.Errorf("pickNewest(%d) = %q, want %q", major, got, want)
		}
	}
	if got := pickNewest([]string{"17.1.0-beta.1", "17.1.0", "17.1.0-rc.1"}, 17); got != "17.1.0" {
		t.Errorf("release should beat pre-releases, got %q", got)
	}
}

func TestURL(t *testing.T) {
	s := &Server{Host: "127.0.0.1", Port: 5433, User: "postgres"}
	if got, want := s.URL("db_1"), "postgres://postgres@127.0.0.1:5433/db_1?sslmode=disable"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
}
