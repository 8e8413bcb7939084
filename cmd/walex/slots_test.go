package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/walex-go/walex/internal/pgtest"
)

func TestSlotsListAndDrop(t *testing.T) {
	t.Parallel()
	url := newDB(t)
	suffix := strings.TrimPrefix(dbName(url), "walex_test_")
	slot, other := "cli_"+suffix, "cli_other_"+suffix
	exec(t, url,
		fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, slot),
		fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, other),
		`CREATE TABLE t (id int PRIMARY KEY, pad text)`,
		`SET synchronous_commit = on`, // so that the WAL is written, and the lag shows, at once
		`INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g`)
	exists := func(name string) bool {
		return queryInt(t, url, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, name) == 1
	}

	r := cliRun(t, exitOK, url, "slots")
	if testing.Verbose() {
		t.Logf("walex slots:\n%s", r.stdout)
	}
	var line string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, slot+" ") {
			line = l
		}
	}
	if !strings.HasPrefix(r.stdout, "NAME ") || line == "" || !strings.Contains(line, "pgoutput") || !strings.Contains(line, dbName(url)) || !strings.Contains(line, "iB ") {
		t.Errorf("walex slots: no line for %s with its plugin, database and a lag of KiB or more:\n%s", slot, r.stdout)
	}

	r = cliRun(t, exitOK, url, "slots", "--format", "json")
	var slots []slotInfo
	if err := json.Unmarshal([]byte(r.stdout), &slots); err != nil {
		t.Fatalf("slots --format json: %v\n%s", err, r.stdout)
	}
	var got *slotInfo
	for i := range slots {
		if slots[i].Name == slot {
			got = &slots[i]
		}
	}
	if got == nil || got.Active || got.Temporary || got.Plugin != "pgoutput" || got.Database != dbName(url) ||
		got.LagBytes == nil || *got.LagBytes < 100_000 || got.RetainedBytes == nil || *got.RetainedBytes < *got.LagBytes || got.ConfirmedFlushLSN == nil {
		t.Errorf("slots --format json: slot %s is %+v; want inactive, pgoutput, in %s, with a lag of over 100 kB", slot, got, dbName(url))
	}

	// Without a terminal and without --yes: refused.
	r = cliRun(t, exitUsage, url, "slots", "drop", slot)
	if !strings.Contains(r.stderr, "stdin is not a terminal; add --yes") || !exists(slot) {
		t.Errorf("drop without --yes and without a terminal: stderr %q, slot exists %v", r.stderr, exists(slot))
	}
	// On a terminal, the name must be typed.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := map[string]string{"DATABASE_URL": url}
	r = invoke(ctx, env, fakeTerminal{Reader: strings.NewReader("y\n")}, "slots", "drop", slot)
	if r.code != exitFailure || !strings.Contains(r.stderr, "Type the slot name") || !strings.Contains(r.stderr, "not dropped") || !exists(slot) {
		t.Errorf("drop confirmed with y: exit %d, stderr %q, slot exists %v", r.code, r.stderr, exists(slot))
	}
	r = invoke(ctx, env, fakeTerminal{Reader: strings.NewReader(slot + "\n")}, "slots", "drop", slot)
	if r.code != exitOK || exists(slot) {
		t.Errorf("drop confirmed with the name: exit %d, stderr %q, slot exists %v", r.code, r.stderr, exists(slot))
	}
	// --yes, after the name.
	cliRun(t, exitOK, url, "slots", "drop", other, "--yes")
	if exists(other) {
		t.Errorf("slots drop %s --yes: the slot still exists", other)
	}
	r = cliRun(t, exitFailure, url, "slots", "drop", other, "--yes")
	if !strings.Contains(r.stderr, fmt.Sprintf("there is no replication slot named %q", other)) {
		t.Errorf("drop of a missing slot: %s", r.stderr)
	}
}

func TestSlotsDropActive(t *testing.T) {
	t.Parallel()
	url := newDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, url+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	slot := "cli_active_" + strings.TrimPrefix(dbName(url), "walex_test_")
	if _, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{Temporary: true}); err != nil {
		t.Fatal(err)
	}

	r := cliRun(t, exitFailure, url, "slots", "drop", slot, "--yes")
	if testing.Verbose() {
		t.Logf("walex slots drop (active):\n%s", r.stderr)
	}
	want := fmt.Sprintf("SELECT pg_terminate_backend(%d);", conn.PID())
	if !strings.Contains(r.stderr, "is active") || !strings.Contains(r.stderr, want) {
		t.Errorf("drop of an active slot: stderr %q; want it to say the slot is active and %q", r.stderr, want)
	}
	r = cliRun(t, exitOK, url, "slots")
	if !strings.Contains(r.stdout, fmt.Sprintf("yes (pid %d)", conn.PID())) {
		t.Errorf("walex slots does not show the active slot's pid %d:\n%s", conn.PID(), r.stdout)
	}
}

// TestSlotsPostgres17 lists a slot on PostgreSQL 17 (fetched with npm if
// needed), which adds inactive_since and failover, and checks the server.
func TestSlotsPostgres17(t *testing.T) {
	t.Parallel()
	srv := pgtest.Version(t, 17)
	url := srv.URL(srv.NewDatabase(t))
	slot := "cli17_" + strings.TrimPrefix(dbName(url), "walex_test_")
	exec(t, url, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, slot))

	r := cliRun(t, exitOK, url, "slots")
	if !strings.Contains(r.stdout, "INACTIVE_SINCE") || !strings.Contains(r.stdout, " ago)") || !strings.Contains(r.stdout, "FAILOVER") {
		t.Errorf("walex slots on PostgreSQL 17 lacks inactive_since or failover:\n%s", r.stdout)
	}
	r = cliRun(t, exitOK, url, "slots", "--format", "json")
	var slots []slotInfo
	if err := json.Unmarshal([]byte(r.stdout), &slots); err != nil || len(slots) == 0 {
		t.Fatalf("slots --format json: %v\n%s", err, r.stdout)
	}
	for _, s := range slots {
		if s.Name == slot && (s.InactiveSince == "" || s.Failover == nil || *s.Failover) {
			t.Errorf("slot %+v: want inactive_since set and failover false", s)
		}
	}
	r = cliRun(t, exitOK, url, "check")
	if testing.Verbose() {
		t.Logf("walex slots, check on PostgreSQL 17:\n%s\n%s", cliRun(t, exitOK, url, "slots").stdout, r.stdout)
	}
	if !strings.Contains(r.stdout, "WARNING  slot "+slot) || !strings.Contains(r.stdout, "inactive for ") {
		t.Errorf("walex check on PostgreSQL 17 does not report the inactive slot:\n%s", r.stdout)
	}
}
