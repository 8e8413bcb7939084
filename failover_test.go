package walex_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

// failover reports whether the slot is a failover slot (PostgreSQL 17+).
func failover(tb testing.TB, url, slot string) bool {
	tb.Helper()
	v, ok := queryRow(tb, url, `SELECT failover FROM pg_replication_slots WHERE slot_name = $1`, slot)["failover"].(bool)
	if !ok {
		tb.Fatalf("slot %s: no failover column", slot)
	}
	return v
}

func TestFailoverSlotNeedsDurableSlot(t *testing.T) {
	_, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "fo", Publication: "p", Subscriptions: []string{"t"}, FailoverSlot: true})
	var ce *walex.ConfigError
	if !errors.As(err, &ce) || ce.Field != "FailoverSlot" || !strings.Contains(err.Error(), "DurableSlot") {
		t.Fatalf("New(FailoverSlot without DurableSlot) = %v, want a *ConfigError for FailoverSlot naming DurableSlot", err)
	}
}

// TestFailoverSlotBefore17: a server before PostgreSQL 17 has no failover
// slots; Run says so at once, and creates no slot.
func TestFailoverSlotBefore17(t *testing.T) {
	srv := pgtest.Shared()
	if srv.Version >= 17 {
		t.Skipf("the shared server is PostgreSQL %d", srv.Version)
	}
	url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`)
	c := newClient(t, url, "fo_old", []string{"t"}, durable, func(cfg *walex.Config) { cfg.FailoverSlot = true })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.Run(ctx)
	if err == nil || !walex.IsPermanent(err) {
		t.Fatalf("Run() = %v, want a permanent error", err)
	}
	for _, want := range []string{"failover slots need PostgreSQL 17 or later", "the server is " + strconv.Itoa(srv.Version), "Config.FailoverSlot"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Run() = %q, want it to say %q", err, want)
		}
	}
	if n := queryRow(t, url, `SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = 'fo_old_walex'`)["n"].(int64); n != 0 {
		t.Errorf("%d slots fo_old_walex, want none", n)
	}
}

// TestFailoverSlot17: on PostgreSQL 17 the durable slot is created as a
// failover slot and streams; a durable slot created earlier without
// failover gets it turned on (and that is logged), and streams from where
// it was.
func TestFailoverSlot17(t *testing.T) {
	srv := pgtest.Version(t, 17)
	db := srv.NewDatabase(t)
	if err := srv.Exec(context.Background(), db, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t;`); err != nil {
		t.Fatal(err)
	}
	url := srv.URL(db)

	t.Run("new slot", func(t *testing.T) {
		c := newClient(t, url, "fo_new", []string{"t"}, durable, func(cfg *walex.Config) { cfg.FailoverSlot = true })
		r := newRecorder()
		c.OnInsert("t", r.handler("ins"))
		stop := running(t, c)
		waitStreaming(t, url, "fo_new_walex")
		if !failover(t, url, "fo_new_walex") {
			t.Error("slot fo_new_walex is not a failover slot")
		}
		exec(t, url, `INSERT INTO t VALUES (1)`)
		r.wait(t, 1)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("existing slot", func(t *testing.T) {
		exec(t, url, `SELECT pg_create_logical_replication_slot('fo_old_walex', 'pgoutput')`)
		if failover(t, url, "fo_old_walex") {
			t.Fatal("a slot made without failover is a failover slot")
		}
		// A change made before the client ever connects: the slot keeps it.
		exec(t, url, `INSERT INTO t VALUES (2)`)
		logger, logs := captureLogs(t)
		c := newClient(t, url, "fo_old", []string{"t"}, durable, func(cfg *walex.Config) {
			cfg.FailoverSlot = true
			cfg.Logger = logger
		})
		r := newRecorder()
		c.OnInsert("t", r.handler("ins"))
		stop := running(t, c)
		r.wait(t, 1)
		if !failover(t, url, "fo_old_walex") {
			t.Error("slot fo_old_walex is still not a failover slot")
		}
		if logs.count("turned failover on", "fo_old_walex") != 1 {
			t.Errorf("no log of failover turned on for fo_old_walex:\n%s", logs)
		}
		if got := r.ids(); len(got) != 1 || got[0] != 2 {
			t.Errorf("ids = %v, want [2]: the change kept by the slot", got)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}
