package walexprom_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/walex-go/walex"
	walexprom "github.com/walex-go/walex/plugins/prometheus"
	"github.com/walex-go/walex/walextest"
)

// newClient returns a client that is never run: its handlers are driven
// by the test kit.
func newClient(t *testing.T) *walex.Client {
	t.Helper()
	c, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "app", Publication: "events",
		Subscriptions: []string{"users", "todos"},
		RetryPolicy:   walex.RetryPolicy{MaxAttempts: 3, InitialDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// instrument registers c's metrics with a new registry.
func instrument(t *testing.T, c *walex.Client, opts walexprom.Options) (*prometheus.Registry, *walexprom.Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := walexprom.Instrument(c, reg, opts)
	if err != nil {
		t.Fatalf("Instrument: %v", err)
	}
	return reg, m
}

// insertRows is one transaction inserting n users.
func insertRows(n int) (*walextest.Stream, *walextest.Tx) {
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"), walextest.Col("email", "text"))
	tx := s.Begin()
	for i := range n {
		tx.Insert(users, walextest.Row{"id": i, "email": "u@example.com"})
	}
	return s, tx.Commit()
}

const statsHelp = `
# HELP walex_received_lsn_bytes Highest WAL position received from the server, in bytes (the LSN as a number).
# TYPE walex_received_lsn_bytes gauge
walex_received_lsn_bytes{client="app"} 0
# HELP walex_acked_lsn_bytes WAL position acknowledged to the server (end of the last transaction all handlers finished), in bytes.
# TYPE walex_acked_lsn_bytes gauge
walex_acked_lsn_bytes{client="app"} 0
# HELP walex_server_wal_end_lsn_bytes Server's WAL end as of its last message, in bytes.
# TYPE walex_server_wal_end_lsn_bytes gauge
walex_server_wal_end_lsn_bytes{client="app"} 0
# HELP walex_lag_bytes WAL the server holds for this client that it has not finished: server WAL end minus acknowledged position, in bytes.
# TYPE walex_lag_bytes gauge
walex_lag_bytes{client="app"} 0
# HELP walex_events_total Events passed to handlers (again when a fault delivers them again).
# TYPE walex_events_total counter
walex_events_total{client="app"} %EVENTS%
# HELP walex_transactions_total Transactions fully handled.
# TYPE walex_transactions_total counter
walex_transactions_total{client="app"} 0
# HELP walex_messages_total Logical decoding messages passed to message handlers.
# TYPE walex_messages_total counter
walex_messages_total{client="app"} 0
# HELP walex_schema_changes_total Schema changes seen in subscribed tables.
# TYPE walex_schema_changes_total counter
walex_schema_changes_total{client="app"} 0
# HELP walex_handler_retries_total Retries of handler calls.
# TYPE walex_handler_retries_total counter
walex_handler_retries_total{client="app"} %RETRIES%
# HELP walex_reconnects_total Reconnects of the replication connection.
# TYPE walex_reconnects_total counter
walex_reconnects_total{client="app"} 0
# HELP walex_connected 1 while a replication connection is up, else 0.
# TYPE walex_connected gauge
walex_connected{client="app"} 0
`

// statsText is the expected exposition of the Stats metrics of a client
// that never connected.
func statsText(events, retries string) string {
	return strings.NewReplacer("%EVENTS%", events, "%RETRIES%", retries).Replace(statsHelp)
}

var statsNames = []string{
	"walex_received_lsn_bytes", "walex_acked_lsn_bytes", "walex_server_wal_end_lsn_bytes", "walex_lag_bytes",
	"walex_events_total", "walex_transactions_total", "walex_messages_total", "walex_schema_changes_total",
	"walex_handler_retries_total", "walex_reconnects_total", "walex_connected",
	"walex_snapshot_rows_total", "walex_snapshot_estimated_rows", "walex_snapshot_done", "walex_snapshot_failed",
}

// TestIdle: a client that is not running exports every Stats metric at
// zero, no snapshot series and no handler observations, labelled with
// the client's Config.Name by default.
func TestIdle(t *testing.T) {
	c := newClient(t)
	m, err := walexprom.New(c, walexprom.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(m, strings.NewReader(statsText("0", "0")), statsNames...); err != nil {
		t.Error(err)
	}
	if got, want := testutil.CollectAndCount(m), 11; got != want {
		t.Errorf("CollectAndCount = %d, want %d (the Stats metrics only)", got, want)
	}
}

// TestHandlerMetrics: a handler that fails once and then succeeds gives
// one "error" and one "ok" observation of the call's duration, two of its
// size, and a retry; the metrics pass the Prometheus linter.
func TestHandlerMetrics(t *testing.T) {
	c := newClient(t)
	var calls atomic.Int32
	c.OnInsert("users", func(ctx context.Context, events []walex.Event) error {
		if calls.Add(1) == 1 {
			return errors.New("first attempt fails")
		}
		return nil
	})
	reg, _ := instrument(t, c, walexprom.Options{Client: "app"})
	_, tx := insertRows(3)
	if _, err := walextest.New(c).Deliver(context.Background(), tx); err != nil {
		t.Fatal(err)
	}

	if err := testutil.GatherAndCompare(reg, strings.NewReader(statsText("3", "1")), statsNames...); err != nil {
		t.Error(err)
	}
	want := `
# HELP walex_handler_events Events passed to each walex handler call (each attempt), by registration.
# TYPE walex_handler_events histogram
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="1"} 0
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="2"} 0
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="5"} 2
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="10"} 2
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="20"} 2
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="50"} 2
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="100"} 2
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="200"} 2
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="500"} 2
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="1000"} 2
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="2000"} 2
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="5000"} 2
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="10000"} 2
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="+Inf"} 2
walex_handler_events_sum{client="app",handler_method="OnInsert",table="public.users"} 6
walex_handler_events_count{client="app",handler_method="OnInsert",table="public.users"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "walex_handler_events"); err != nil {
		t.Error(err)
	}
	got := durationCounts(t, reg)
	if want := map[string]uint64{"OnInsert public.users error": 1, "OnInsert public.users ok": 1}; !maps.Equal(got, want) {
		t.Errorf("walex_handler_duration_seconds counts = %v, want %v", got, want)
	}
	lint(t, reg)
}

// TestDurationBuckets: the default duration buckets run from 0.5 ms to
// 30 s; Options replaces them.
func TestDurationBuckets(t *testing.T) {
	for _, tc := range []struct {
		opts walexprom.Options
		want []float64
	}{
		{walexprom.Options{Client: "app"}, []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}},
		{walexprom.Options{Client: "app", DurationBuckets: []float64{0.1, 1}}, []float64{0.1, 1}},
	} {
		c := newClient(t)
		c.OnInsert("users", func(context.Context, []walex.Event) error { return nil })
		reg, _ := instrument(t, c, tc.opts)
		_, tx := insertRows(1)
		if _, err := walextest.New(c).Deliver(context.Background(), tx); err != nil {
			t.Fatal(err)
		}
		h := family(t, reg, "walex_handler_duration_seconds").GetMetric()[0].GetHistogram()
		var got []float64
		for _, b := range h.GetBucket() {
			got = append(got, b.GetUpperBound())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Options%+v: buckets %v, want %v", tc.opts, got, tc.want)
		}
	}
}

// TestEventBuckets: Options.EventBuckets replaces the default.
func TestEventBuckets(t *testing.T) {
	c := newClient(t)
	c.OnInsert("users", func(context.Context, []walex.Event) error { return nil })
	reg, _ := instrument(t, c, walexprom.Options{Client: "app", EventBuckets: []float64{1, 4}})
	_, tx := insertRows(3)
	if _, err := walextest.New(c).Deliver(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP walex_handler_events Events passed to each walex handler call (each attempt), by registration.
# TYPE walex_handler_events histogram
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="1"} 0
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="4"} 1
walex_handler_events_bucket{client="app",handler_method="OnInsert",table="public.users",le="+Inf"} 1
walex_handler_events_sum{client="app",handler_method="OnInsert",table="public.users"} 3
walex_handler_events_count{client="app",handler_method="OnInsert",table="public.users"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "walex_handler_events"); err != nil {
		t.Error(err)
	}
}

// TestLabels: every registration gets its own series, named by method
// and table ("*" for AllTables); a panic is an error outcome.
func TestLabels(t *testing.T) {
	c := newClient(t)
	var panicked atomic.Bool
	c.OnInsert("users", func(context.Context, []walex.Event) error { return nil })
	c.OnDelete("todos", func(context.Context, []walex.Event) error {
		if !panicked.Swap(true) {
			panic("first attempt panics")
		}
		return nil
	})
	c.OnEvent(walex.AllTables, func(context.Context, []walex.Event) error { return nil })
	reg, _ := instrument(t, c, walexprom.Options{Client: "app"})

	s, _ := insertRows(0)
	users := s.Table("users", walextest.Key("id", "int4"), walextest.Col("email", "text"))
	todos := s.Table("todos", walextest.Key("id", "int4"))
	tx := s.Begin().Insert(users, walextest.Row{"id": 1, "email": "a@example.com"}).Delete(todos, walextest.Row{"id": 7}).Commit()
	if _, err := walextest.New(c).Deliver(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{
		"OnInsert public.users ok":    1,
		"OnDelete public.todos error": 1,
		"OnDelete public.todos ok":    1,
		"OnEvent * ok":                1,
	}
	if got := durationCounts(t, reg); !maps.Equal(got, want) {
		t.Errorf("walex_handler_duration_seconds counts = %v, want %v", got, want)
	}
	lint(t, reg)
}

// TestClients: two clients in one registry are told apart by their
// client label; the same label twice is refused.
func TestClients(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := newClient(t), newClient(t)
	for _, c := range []*walex.Client{a, b} {
		c.OnInsert("users", func(context.Context, []walex.Event) error { return nil })
	}
	if _, err := walexprom.Instrument(a, reg, walexprom.Options{Client: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := walexprom.Instrument(b, reg, walexprom.Options{Client: "b"}); err != nil {
		t.Fatal(err)
	}
	_, tx := insertRows(2)
	if _, err := walextest.New(a).Deliver(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP walex_events_total Events passed to handlers (again when a fault delivers them again).
# TYPE walex_events_total counter
walex_events_total{client="a"} 2
walex_events_total{client="b"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "walex_events_total"); err != nil {
		t.Error(err)
	}
	var already prometheus.AlreadyRegisteredError
	if _, err := walexprom.Instrument(newClient(t), reg, walexprom.Options{Client: "a"}); !errors.As(err, &already) {
		t.Errorf("Instrument with a client label in use: %v, want a prometheus.AlreadyRegisteredError", err)
	}
}

// TestNotInstalledOnError: when registration fails, Instrument installs
// no middleware (the handler's calls are not measured anywhere, and the
// client's own metrics stay as they were).
func TestNotInstalledOnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := walexprom.Instrument(newClient(t), reg, walexprom.Options{Client: "app"}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t)
	var sawInfo atomic.Bool
	c.OnInsert("users", func(ctx context.Context, _ []walex.Event) error {
		_, ok := walex.CallInfoFrom(ctx) // the context carries the call only when there is middleware
		sawInfo.Store(ok)
		return nil
	})
	if _, err := walexprom.Instrument(c, reg, walexprom.Options{Client: "app"}); err == nil {
		t.Fatal("Instrument with a client label in use: no error")
	}
	_, tx := insertRows(1)
	if _, err := walextest.New(c).Deliver(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	if sawInfo.Load() {
		t.Error("the failed Instrument installed its middleware")
	}
}

// TestOptionsErrors: bad options are errors, not panics.
func TestOptionsErrors(t *testing.T) {
	c := newClient(t)
	for name, tc := range map[string]struct {
		c    *walex.Client
		opts walexprom.Options
		want error
	}{
		"nil client":         {nil, walexprom.Options{Client: "app"}, walexprom.ErrNoClient},
		"unsorted durations": {c, walexprom.Options{Client: "app", DurationBuckets: []float64{1, 0.5}}, walexprom.ErrBadBuckets},
		"repeated events":    {c, walexprom.Options{Client: "app", EventBuckets: []float64{1, 2, 2}}, walexprom.ErrBadBuckets},
	} {
		if _, err := walexprom.New(tc.c, tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("%s: New: %v, want %v", name, err, tc.want)
		}
		if _, err := walexprom.Instrument(tc.c, prometheus.NewRegistry(), tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("%s: Instrument: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := walexprom.Instrument(c, nil, walexprom.Options{Client: "app"}); err == nil {
		t.Error("Instrument with a nil Registerer: no error")
	}
}

// TestMiddlewareOutsideClient: a call whose context is not a walex
// handler call is labelled "unknown", and its error is passed on.
func TestMiddlewareOutsideClient(t *testing.T) {
	m, err := walexprom.New(newClient(t), walexprom.Options{Client: "app"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	boom := errors.New("boom")
	h := m.Middleware(func(context.Context, []walex.Event) error { return boom })
	if err := h(context.Background(), make([]walex.Event, 2)); !errors.Is(err, boom) {
		t.Errorf("the middleware returned %v, want the handler's error", err)
	}
	if got, want := durationCounts(t, reg), map[string]uint64{"unknown unknown error": 1}; !maps.Equal(got, want) {
		t.Errorf("walex_handler_duration_seconds counts = %v, want %v", got, want)
	}
}

// lint fails t with the linter's complaints about reg's metrics.
func lint(t *testing.T, reg prometheus.Gatherer) {
	t.Helper()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// family gathers reg and returns the family name.
func family(t *testing.T, reg prometheus.Gatherer, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

// durationCounts returns the observations of the duration histogram as
// "method table outcome" → count.
func durationCounts(t *testing.T, reg prometheus.Gatherer) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, m := range family(t, reg, "walex_handler_duration_seconds").GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		out[l["handler_method"]+" "+l["table"]+" "+l["outcome"]] = m.GetHistogram().GetSampleCount()
	}
	return out
}
