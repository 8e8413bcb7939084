package walexotel_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/otlptranslator"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// waitFor calls cond every 10 ms until it reports true, or fails tb
// with what was awaited after timeout.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIntegration runs an instrumented client against a real server: a
// snapshot of the rows that were there, then rows written while it
// streams. The metrics show them (through the SDK and through the
// Prometheus exporter, under the documented names), and every handler
// call made a span.
func TestIntegration(t *testing.T) {
	srv := pgtest.Shared()
	db := srv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	const before, written = 5, 12
	err := srv.Exec(ctx, db, fmt.Sprintf(`CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT g, 'before' FROM generate_series(1, %d) g;
CREATE PUBLICATION events FOR TABLE items`, before))
	if err != nil {
		t.Fatal(err)
	}
	registry := prometheus.NewRegistry()
	prom, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo(),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(srv.URL(db), "items")
	cfg.Snapshot = walex.SnapshotInitial
	cfg.StatusInterval = 100 * time.Millisecond
	r := newRig(t, cfg, prom)
	var calls, handled, lastCommit atomic.Int64
	r.c.OnEvent("items", func(_ context.Context, events []walex.Event) error {
		calls.Add(1)
		handled.Add(int64(len(events)))
		lastCommit.Store(int64(events[len(events)-1].CommitLSN))
		return nil
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.c.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, 30*time.Second, "the snapshot", func() bool {
		st := r.c.Stats()
		return st.Connected && len(st.Snapshots) == 1 && !st.Snapshots[0].Done.IsZero()
	})
	for i := range written {
		if err := srv.Exec(ctx, db, `INSERT INTO items VALUES ($1, 'written')`, before+1+i); err != nil {
			t.Fatal(err)
		}
	}
	client := attribute.String("client", "app")
	waitFor(t, 30*time.Second, "the rows in the metrics", func() bool {
		rm := r.collect(t)
		// The acknowledgement of the last transaction: its end is past
		// its commit.
		return value(t, rm, "walex.events", client) == before+written && handled.Load() == before+written &&
			value(t, rm, "walex.acked_lsn", client) > lastCommit.Load()
	})
	rm := r.collect(t)
	if got := value(t, rm, "walex.connected", client); got != 1 {
		t.Errorf("walex.connected = %d, want 1", got)
	}
	if got := value(t, rm, "walex.acked_lsn", client); got <= 0 {
		t.Errorf("walex.acked_lsn = %d, want > 0", got)
	}
	if got := value(t, rm, "walex.received_lsn", client); got <= 0 {
		t.Errorf("walex.received_lsn = %d, want > 0", got)
	}
	if got := value(t, rm, "walex.transactions", client); got < written {
		t.Errorf("walex.transactions = %d, want at least %d", got, written)
	}
	table := attribute.String("table", "public.items")
	if got := value(t, rm, "walex.snapshot.rows", client, table); got != before {
		t.Errorf("walex.snapshot.rows = %d, want %d", got, before)
	}
	if got := value(t, rm, "walex.snapshot.done", client, table); got != 1 {
		t.Errorf("walex.snapshot.done = %d, want 1", got)
	}
	if got := value(t, rm, "walex.snapshot.failed", client, table); got != 0 {
		t.Errorf("walex.snapshot.failed = %d, want 0", got)
	}
	if got := handled.Load(); got != before+written {
		t.Errorf("handlers got %d events, want %d", got, before+written)
	}

	// A span per handler call, of the read and of the insert events.
	spans := r.ended()
	if got := int64(len(spans)); got != calls.Load() {
		t.Errorf("%d spans for %d handler calls", got, calls.Load())
	}
	types := map[string]int64{}
	for _, sp := range spans {
		a := attrs(sp)
		if sp.Name() != "walex OnEvent public.items" || a["db.namespace"].AsString() != db {
			t.Errorf("span %q db.namespace %q, want \"walex OnEvent public.items\" and %q", sp.Name(), a["db.namespace"].AsString(), db)
		}
		types[a["walex.event.type"].AsString()] += a["walex.events.count"].AsInt64()
	}
	if types["read"] != before || types["insert"] != written {
		t.Errorf("events in spans by type %v, want read %d, insert %d", types, before, written)
	}

	// The Prometheus exporter shows the documented names, each with the
	// client label.
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "client" && l.GetValue() == "app" {
					got[f.GetName()] = true
				}
			}
		}
	}
	for _, name := range []string{
		"walex_received_lsn_bytes", "walex_acked_lsn_bytes", "walex_server_wal_end_lsn_bytes", "walex_lag_bytes", "walex_connected",
		"walex_events_total", "walex_transactions_total", "walex_messages_total", "walex_schema_changes_total",
		"walex_handler_retries_total", "walex_reconnects_total",
		"walex_snapshot_rows_total", "walex_snapshot_estimated_rows", "walex_snapshot_done", "walex_snapshot_failed",
		"walex_handler_duration_seconds", "walex_handler_events",
	} {
		if !got[name] {
			t.Errorf("Prometheus: no %s{client=\"app\"}", name)
		}
	}
	if len(got) != 17 {
		t.Errorf("Prometheus names %v, want the 17 documented", got)
	}
	for _, f := range families {
		if f.GetName() != "walex_handler_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["handler_method"] != "OnEvent" || labels["table"] != "public.items" || labels["outcome"] != "ok" {
				t.Errorf("walex_handler_duration_seconds labels %v, want handler_method OnEvent, table public.items, outcome ok", labels)
			}
		}
	}
}
