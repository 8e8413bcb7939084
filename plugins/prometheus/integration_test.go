package walexprom_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
	walexprom "github.com/walex-go/walex/plugins/prometheus"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// TestRunning: a client running against a real server, with an initial
// snapshot and then rows written: the scraped metrics follow what it
// handled and acknowledged.
func TestRunning(t *testing.T) {
	const snapRows, rows = 5, 10
	srv := pgtest.Shared()
	db := srv.NewDatabase(t)
	url := srv.URL(db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, sql := range []string{
		"CREATE TABLE items (id int PRIMARY KEY, v text)",
		fmt.Sprintf("INSERT INTO items SELECT g, 'old' FROM generate_series(1, %d) g", snapRows),
		"CREATE PUBLICATION pub FOR TABLE items",
	} {
		if err := srv.Exec(ctx, db, sql); err != nil {
			t.Fatal(err)
		}
	}

	c, err := walex.New(walex.Config{URL: url, Name: "promit", Publication: "pub", Subscriptions: []string{"items"},
		Snapshot: walex.SnapshotInitial, StatusInterval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	var calls, handled atomic.Int64
	c.OnEvent("items", func(_ context.Context, events []walex.Event) error {
		calls.Add(1)
		handled.Add(int64(len(events)))
		return nil
	})
	reg := prometheus.NewRegistry()
	if _, err := walexprom.Instrument(c, reg, walexprom.Options{Client: "promit"}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()

	// The snapshot.
	waitMetric(t, done, reg, "walex_snapshot_done", 1, `table="public.items"`)
	if got := metric(t, reg, "walex_snapshot_rows_total", `table="public.items"`); got != snapRows {
		t.Errorf("walex_snapshot_rows_total = %v, want %d", got, snapRows)
	}
	if got := metric(t, reg, "walex_snapshot_failed", `table="public.items"`); got != 0 {
		t.Errorf("walex_snapshot_failed = %v, want 0", got)
	}
	if got := metric(t, reg, "walex_connected"); got != 1 {
		t.Errorf("walex_connected = %v, want 1", got)
	}

	// Rows written, one transaction each.
	events0, txs0 := metric(t, reg, "walex_events_total"), metric(t, reg, "walex_transactions_total")
	for i := range rows {
		if err := srv.Exec(ctx, db, "INSERT INTO items VALUES ($1, 'new')", 100+i); err != nil {
			t.Fatal(err)
		}
	}
	end := currentLSN(t, ctx, url)
	waitMetric(t, done, reg, "walex_transactions_total", txs0+rows)
	waitFor(t, done, "the acknowledgement of the last insert", func() bool {
		return metric(t, reg, "walex_acked_lsn_bytes") >= float64(end)
	})
	if got := metric(t, reg, "walex_events_total"); got != events0+rows {
		t.Errorf("walex_events_total = %v, want %v + %d rows", got, events0, rows)
	}
	if got, want := metric(t, reg, "walex_events_total"), float64(handled.Load()); got != want {
		t.Errorf("walex_events_total = %v, want the %v events the handler got", got, want)
	}
	received, acked := metric(t, reg, "walex_received_lsn_bytes"), metric(t, reg, "walex_acked_lsn_bytes")
	if acked <= 0 || received < acked {
		t.Errorf("walex_received_lsn_bytes = %v, walex_acked_lsn_bytes = %v: want 0 < acked <= received", received, acked)
	}
	if got := metric(t, reg, "walex_server_wal_end_lsn_bytes"); got < acked {
		t.Errorf("walex_server_wal_end_lsn_bytes = %v, below walex_acked_lsn_bytes %v", got, acked)
	}
	// Nothing else is written to the server: once acknowledged, the lag
	// is at most the WAL of the server's own background activity.
	waitFor(t, done, "a small lag", func() bool { return metric(t, reg, "walex_lag_bytes") < 64<<10 })

	// Handler calls: every call observed once, with its events.
	h := family(t, reg, "walex_handler_events").GetMetric()
	if len(h) != 1 || h[0].GetHistogram().GetSampleCount() != uint64(calls.Load()) || h[0].GetHistogram().GetSampleSum() != float64(handled.Load()) {
		t.Errorf("walex_handler_events = %v, want one series of %d calls and %d events", h, calls.Load(), handled.Load())
	}
	if got, want := durationCounts(t, reg), map[string]uint64{"OnEvent public.items ok": uint64(calls.Load())}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("walex_handler_duration_seconds counts = %v, want %v", got, want)
	}
	lint(t, reg)

	// One scrape over HTTP, as Prometheus makes it.
	web := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer web.Close()
	want := fmt.Sprintf(`
# HELP walex_connected 1 while a replication connection is up, else 0.
# TYPE walex_connected gauge
walex_connected{client="promit"} 1
# HELP walex_snapshot_done 1 once a table's snapshot delivered and acknowledged its last row, else 0.
# TYPE walex_snapshot_done gauge
walex_snapshot_done{client="promit",table="public.items"} 1
# HELP walex_snapshot_rows_total Rows a table's snapshot delivered so far.
# TYPE walex_snapshot_rows_total counter
walex_snapshot_rows_total{client="promit",table="public.items"} %d
# HELP walex_transactions_total Transactions fully handled.
# TYPE walex_transactions_total counter
walex_transactions_total{client="promit"} %v
`, snapRows, txs0+rows)
	if err := testutil.ScrapeAndCompare(web.URL, strings.NewReader(want),
		"walex_connected", "walex_snapshot_done", "walex_snapshot_rows_total", "walex_transactions_total"); err != nil {
		t.Error(err)
	}

	// Stopped: no connection any more.
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := metric(t, reg, "walex_connected"); got != 0 {
		t.Errorf("walex_connected after Run returned = %v, want 0", got)
	}
}

// metric returns the value of the gauge or counter name whose labels
// include every one of match (`table="public.items"`).
func metric(t *testing.T, reg prometheus.Gatherer, name string, match ...string) float64 {
	t.Helper()
	for _, m := range family(t, reg, name).GetMetric() {
		var labels []string
		for _, p := range m.GetLabel() {
			labels = append(labels, fmt.Sprintf("%s=%q", p.GetName(), p.GetValue()))
		}
		all := strings.Join(labels, ",")
		ok := true
		for _, s := range match {
			ok = ok && strings.Contains(all, s)
		}
		if !ok {
			continue
		}
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no %s with %v", name, match)
	return 0
}

// waitMetric waits until metric returns want.
func waitMetric(t *testing.T, done <-chan error, reg prometheus.Gatherer, name string, want float64, match ...string) {
	t.Helper()
	waitFor(t, done, fmt.Sprintf("%s%v = %v", name, match, want), func() bool {
		mf, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range mf {
			if f.GetName() == name {
				return metric(t, reg, name, match...) == want
			}
		}
		return false
	})
}

// waitFor polls cond every 10 ms for up to 30 s; it fails t if Run
// returns first or time runs out.
func waitFor(t *testing.T, done <-chan error, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case err := <-done:
			t.Fatalf("waiting for %s: Run returned %v", what, err)
		case <-deadline:
			t.Fatalf("waiting for %s: timed out", what)
		case <-tick.C:
		}
	}
}

// currentLSN is the server's current WAL insert position.
func currentLSN(t *testing.T, ctx context.Context, url string) walex.LSN {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}
