package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walex-go/walex/internal/pgtest"
)

func TestCheckReady(t *testing.T) {
	t.Parallel()
	url := newDB(t)
	exec(t, url,
		`CREATE TABLE users (id int PRIMARY KEY, email text)`,
		`CREATE TABLE todos (id int PRIMARY KEY, title text)`,
		`ALTER TABLE todos REPLICA IDENTITY FULL`,
		`CREATE TABLE measurements (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)`,
		`CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`,
		`CREATE PUBLICATION events FOR TABLE users, todos, measurements WITH (publish_via_partition_root = true)`,
		`CREATE PUBLICATION byname FOR TABLE measurements`,
		`CREATE PUBLICATION empty`)

	r := cliRun(t, exitOK, url, "check", "--publication", "events", "--tables", "users,todos,measurements")
	for _, want := range []string{
		"OK       wal_level",
		"OK       role",
		"OK       replication connection",
		"OK       publication events",
		"publishes insert, update, delete, truncate of 3 tables (public.measurements, public.todos, public.users)",
		"OK       table public.users",
		"primary key (id), REPLICA IDENTITY DEFAULT",
		"REPLICA IDENTITY FULL",
		"OK       table public.measurements       in publication events; partitioned",
		"OK       table public.measurements_2025  in publication events; primary key (id, at)",
		"Ready for walex",
	} {
		if !containsLoose(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if testing.Verbose() {
		t.Logf("output:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "PROBLEM") || strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("a problem, or colours without a terminal:\n%s", r.stdout)
	}

	// A publication that names the partitions in their changes: the
	// partitioned table alone gets no events (walex refuses it), with its
	// partitions it is fine.
	r = cliRun(t, exitFailure, url, "check", "--publication", "byname", "--tables", "measurements")
	for _, want := range []string{
		"PROBLEM  table public.measurements",
		"publish_via_partition_root = false",
		`fix: ALTER PUBLICATION "byname" SET (publish_via_partition_root = true);`,
		"-- or subscribe to its partitions: --tables public.measurements_2025",
	} {
		if !containsLoose(r.stdout, want) {
			t.Errorf("check of a partitioned table by name: output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = cliRun(t, exitOK, url, "check", "--publication", "byname", "--tables", "measurements,measurements_2025")
	if strings.Contains(r.stdout, "PROBLEM") {
		t.Errorf("check of a partitioned table with its partitions:\n%s", r.stdout)
	}

	// Without --tables: the publication's tables; as JSON.
	r = cliRun(t, exitOK, url, "check", "--publication", "events", "--format", "json")
	var rep report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("check --format json: %v\n%s", err, r.stdout)
	}
	if rep.Problems != 0 || !slices.ContainsFunc(rep.Findings, func(f finding) bool {
		return f.Check == "tables" && f.Status == statusOK && strings.Contains(f.Message, "4 tables")
	}) {
		t.Errorf("check --format json: %+v", rep)
	}

	r = cliRun(t, exitOK, url, "check", "--publication", "empty")
	if !containsLoose(r.stdout, "WARNING publication empty publishes no tables") || !strings.Contains(r.stdout, `ALTER PUBLICATION "empty" ADD TABLE <schema.table>, ...;`) {
		t.Errorf("check of an empty publication:\n%s", r.stdout)
	}
}

// TestCheckMisconfigured runs check on a server with wal_level = replica,
// as a role without REPLICATION, with a published table that has no key,
// an unpublished table, a missing table and an inactive slot.
func TestCheckMisconfigured(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgtest.Start(ctx, pgtest.Options{Settings: map[string]string{"wal_level": "replica"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	admin := srv.URL("postgres")
	exec(t, admin,
		`CREATE TABLE events_nopk (at timestamptz, what text)`,
		`CREATE TABLE "Order Items" (id int PRIMARY KEY)`,
		`CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)`,
		`CREATE PUBLICATION events FOR TABLE events_nopk`,
		`CREATE ROLE plain LOGIN`,
		`SELECT pg_create_physical_replication_slot('forgotten', true)`)

	r := cliRun(t, exitFailure, withUser(admin, "plain", ""), "check", "--publication", "events", "--tables", `events_nopk,"Order Items",scratch,missing`)
	for _, want := range []string{
		"PROBLEM  wal_level",
		"is replica; logical replication needs logical",
		"fix: ALTER SYSTEM SET wal_level = logical;",
		"PROBLEM  role",
		`ALTER ROLE "plain" REPLICATION;`,
		"PROBLEM  table public.events_nopk",
		"has no primary key and REPLICA IDENTITY DEFAULT",
		`ALTER TABLE "public"."events_nopk" REPLICA IDENTITY FULL;`,
		"PROBLEM  table public.Order Items",
		`ALTER PUBLICATION "events" ADD TABLE "public"."Order Items";`,
		"is UNLOGGED",
		`ALTER TABLE "public"."scratch" SET LOGGED;`,
		"PROBLEM  table public.missing",
		"does not exist",
		"WARNING  table public.events_nopk",
		`GRANT SELECT ON "public"."events_nopk" TO "plain";`,
		"WARNING  max_slot_wal_keep_size",
		"WARNING  slot forgotten",
		"SELECT pg_drop_replication_slot('forgotten');",
		"walex cannot work until the problems are fixed",
	} {
		if !containsLoose(r.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("output:\n%s", r.stdout)
	}

	// A missing publication, with the CREATE PUBLICATION that fixes it;
	// --create-publication asks whether the role may create it.
	r = cliRun(t, exitFailure, admin, "check", "--publication", "nope", "--tables", "events_nopk")
	if !strings.Contains(r.stdout, `CREATE PUBLICATION "nope" FOR TABLE "public"."events_nopk";`) {
		t.Errorf("check of a missing publication:\n%s", r.stdout)
	}
	r = cliRun(t, exitFailure, withUser(admin, "plain", ""), "check", "--publication", "nope", "--tables", "events_nopk", "--create-publication")
	if !strings.Contains(r.stdout, `GRANT CREATE ON DATABASE "postgres" TO "plain";`) {
		t.Errorf("check --create-publication as a role without CREATE:\n%s", r.stdout)
	}
}

func TestCheckCannotConnect(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared()
	r := cliRun(t, exitUsage, srv.URL("walex_no_such_database"), "check")
	if !strings.Contains(r.stderr, "the database does not exist") {
		t.Errorf("stderr: %s", r.stderr)
	}
}

// containsLoose reports whether out contains want, where any run of
// spaces matches any other: the columns' widths depend on the longest
// check name, and slots of other tests are listed too.
func containsLoose(out, want string) bool {
	squeeze := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	return strings.Contains(squeeze(out), squeeze(want))
}
