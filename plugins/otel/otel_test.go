package walexotel_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/walex-go/walex"
	walexotel "github.com/walex-go/walex/plugins/otel"
	"github.com/walex-go/walex/walextest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// rig is a client instrumented into in-memory SDK providers.
type rig struct {
	c        *walex.Client
	spans    *tracetest.SpanRecorder
	tp       *sdktrace.TracerProvider
	reader   *sdkmetric.ManualReader
	shutdown func() error
}

// config is a client's configuration for the tables, with quick retries.
func config(url string, tables ...string) walex.Config {
	return walex.Config{URL: url, Name: "app", Publication: "events", Subscriptions: tables,
		RetryPolicy: walex.RetryPolicy{MaxAttempts: 3, InitialDelay: time.Millisecond}}
}

// newRig returns a client (not running) made of cfg, instrumented with
// Instrument; the metrics go to a ManualReader and to the other readers.
func newRig(tb testing.TB, cfg walex.Config, readers ...sdkmetric.Reader) *rig {
	tb.Helper()
	c, err := walex.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	r := &rig{c: c, spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	mopts := []sdkmetric.Option{sdkmetric.WithReader(r.reader)}
	for _, rd := range readers {
		mopts = append(mopts, sdkmetric.WithReader(rd))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	tb.Cleanup(func() {
		_ = r.tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	r.shutdown, err = walexotel.Instrument(c, walexotel.Options{TracerProvider: r.tp, MeterProvider: mp})
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// collect collects the metrics.
func (r *rig) collect(tb testing.TB) metricdata.ResourceMetrics {
	tb.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		tb.Fatal(err)
	}
	return rm
}

// ended returns the spans ended so far.
func (r *rig) ended() []sdktrace.ReadOnlySpan { return r.spans.Ended() }

// attrs returns a span's attributes by key.
func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// find returns the metric named name, or fails.
func find(tb testing.TB, rm metricdata.ResourceMetrics, name string) metricdata.Metrics {
	tb.Helper()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m
			}
		}
	}
	tb.Fatalf("no metric %q collected", name)
	return metricdata.Metrics{}
}

// value returns the int64 value of a gauge or sum data point whose
// attributes include want, or fails.
func value(tb testing.TB, rm metricdata.ResourceMetrics, name string, want ...attribute.KeyValue) int64 {
	tb.Helper()
	var points []metricdata.DataPoint[int64]
	switch d := find(tb, rm, name).Data.(type) {
	case metricdata.Gauge[int64]:
		points = d.DataPoints
	case metricdata.Sum[int64]:
		points = d.DataPoints
	default:
		tb.Fatalf("metric %q is a %T, want an int64 gauge or sum", name, d)
	}
	for _, p := range points {
		if hasAll(p.Attributes, want) {
			return p.Value
		}
	}
	tb.Fatalf("metric %q has no point with %v (points %v)", name, want, points)
	return 0
}

func hasAll(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

func TestSpanAttributes(t *testing.T) {
	r := newRig(t, config("postgres://localhost/app", "users"))
	var got trace.SpanContext
	r.c.OnInsert("users", func(ctx context.Context, events []walex.Event) error {
		got = trace.SpanContextFromContext(ctx)
		return nil
	})
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"), walextest.Col("email", "text"))
	h := walextest.New(r.c, walextest.Options{DB: "shop"})
	tx := s.Begin().Insert(users, walextest.Row{"id": 1, "email": "a@example.com"}).
		Insert(users, walextest.Row{"id": 2, "email": "b@example.com"}).Commit()
	calls, err := h.Deliver(context.Background(), tx)
	if err != nil {
		t.Fatal(err)
	}
	spans := r.ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	sp := spans[0]
	if got, want := sp.Name(), "walex OnInsert public.users"; got != want {
		t.Errorf("span name %q, want %q", got, want)
	}
	if sp.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("span kind %v, want consumer", sp.SpanKind())
	}
	if sp.Status().Code != codes.Unset {
		t.Errorf("status %v, want unset", sp.Status())
	}
	if !got.Equal(sp.SpanContext()) {
		t.Errorf("the handler's context carries span %v, want the walex span %v", got, sp.SpanContext())
	}
	ev := calls[0].Events
	want := map[attribute.Key]attribute.Value{
		"walex.table":              attribute.StringValue("public.users"),
		"walex.handler":            attribute.StringValue(calls[0].Handler),
		"walex.handler.method":     attribute.StringValue("OnInsert"),
		"walex.event.type":         attribute.StringValue("insert"),
		"walex.events.count":       attribute.IntValue(2),
		"walex.commit_lsn":         attribute.StringValue(ev[0].CommitLSN.String()),
		"walex.event.id":           attribute.StringValue(ev[0].ID()),
		"walex.attempt":            attribute.IntValue(1),
		"db.system":                attribute.StringValue("postgresql"),
		"db.system.name":           attribute.StringValue("postgresql"),
		"db.namespace":             attribute.StringValue("shop"),
		"messaging.operation.type": attribute.StringValue("process"),
	}
	a := attrs(sp)
	for k, v := range want {
		if a[k] != v {
			t.Errorf("attribute %s = %v, want %v", k, a[k].Emit(), v.Emit())
		}
	}
	if _, ok := a["walex.last_commit_lsn"]; ok {
		t.Errorf("walex.last_commit_lsn set for events of one commit")
	}
	if sp.Parent().IsValid() {
		t.Errorf("span has parent %v, want a root span", sp.Parent())
	}
}

// TestMixedEventTypes: an OnEvent call with an insert and a delete has
// event type "mixed".
func TestMixedEventTypes(t *testing.T) {
	r := newRig(t, config("postgres://localhost/app", "users"))
	r.c.OnEvent(walex.AllTables, func(context.Context, []walex.Event) error { return nil })
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"))
	tx := s.Begin().Insert(users, walextest.Row{"id": 1}).Delete(users, walextest.Row{"id": 1}).Commit()
	if _, err := walextest.New(r.c).Deliver(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	spans := r.ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	if got, want := spans[0].Name(), "walex OnEvent *"; got != want {
		t.Errorf("span name %q, want %q", got, want)
	}
	if got := attrs(spans[0])["walex.event.type"].AsString(); got != "mixed" {
		t.Errorf("walex.event.type = %q, want mixed", got)
	}
}

// TestRetrySpans: a handler that fails once and then succeeds makes two
// spans, the first with the error, the second linked to it.
func TestRetrySpans(t *testing.T) {
	r := newRig(t, config("postgres://localhost/app", "users"))
	boom := errors.New("boom")
	failures := 1
	r.c.OnInsert("users", func(context.Context, []walex.Event) error {
		if failures > 0 {
			failures--
			return boom
		}
		return nil
	})
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"))
	if _, err := walextest.New(r.c).Deliver(context.Background(), s.Begin().Insert(users, walextest.Row{"id": 1}).Commit()); err != nil {
		t.Fatal(err)
	}
	spans := r.ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	first, second := spans[0], spans[1]
	if a := attrs(first)["walex.attempt"].AsInt64(); a != 1 {
		t.Errorf("first span: attempt %d, want 1", a)
	}
	if first.Status().Code != codes.Error || first.Status().Description != "boom" {
		t.Errorf("first span: status %+v, want error boom", first.Status())
	}
	if got := attrs(first)["error.type"].AsString(); got != "*errors.errorString" {
		t.Errorf("first span: error.type %q, want *errors.errorString", got)
	}
	if evs := first.Events(); len(evs) != 1 || evs[0].Name != "exception" {
		t.Errorf("first span: events %+v, want one exception", evs)
	}
	if a := attrs(second)["walex.attempt"].AsInt64(); a != 2 {
		t.Errorf("second span: attempt %d, want 2", a)
	}
	if second.Status().Code != codes.Unset || len(second.Events()) != 0 {
		t.Errorf("second span: status %+v, events %v, want ok", second.Status(), second.Events())
	}
	links := second.Links()
	if len(links) != 1 || links[0].SpanContext.SpanID() != first.SpanContext().SpanID() {
		t.Errorf("second span: links %+v, want one to the first attempt %v", links, first.SpanContext())
	}
	// The duration histogram has an error point and an ok point.
	rm := r.collect(t)
	h, ok := find(t, rm, "walex.handler.duration").Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("walex.handler.duration is a %T", find(t, rm, "walex.handler.duration").Data)
	}
	counts := map[string]uint64{}
	for _, p := range h.DataPoints {
		o, _ := p.Attributes.Value("outcome")
		counts[o.AsString()] += p.Count
		for _, kv := range []attribute.KeyValue{
			attribute.String("client", "app"), attribute.String("handler.method", "OnInsert"), attribute.String("table", "public.users"),
		} {
			if v, _ := p.Attributes.Value(kv.Key); v != kv.Value {
				t.Errorf("duration point %v: %s = %q, want %q", p.Attributes.ToSlice(), kv.Key, v.Emit(), kv.Value.Emit())
			}
		}
	}
	if counts["ok"] != 1 || counts["error"] != 1 || len(counts) != 2 {
		t.Errorf("duration histogram counts by outcome %v, want ok 1, error 1", counts)
	}
}

// TestPanicRecorded: a panicking handler's span records the panic and
// ends; walex still turns the panic into an error and retries.
func TestPanicRecorded(t *testing.T) {
	r := newRig(t, func() walex.Config {
		cfg := config("postgres://localhost/app", "users")
		cfg.RetryPolicy.MaxAttempts = 1
		return cfg
	}())
	r.c.OnInsert("users", func(context.Context, []walex.Event) error { panic("kaboom") })
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"))
	_, err := walextest.New(r.c).Deliver(context.Background(), s.Begin().Insert(users, walextest.Row{"id": 1}).Commit())
	var perr *walex.PanicError
	if !errors.As(err, &perr) || perr.Value != "kaboom" {
		t.Fatalf("Deliver: %v, want the handler's panic as a *walex.PanicError", err)
	}
	spans := r.ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	sp := spans[0]
	if sp.Status().Code != codes.Error || sp.Status().Description != "panic: kaboom" {
		t.Errorf("status %+v, want error \"panic: kaboom\"", sp.Status())
	}
	evs := sp.Events()
	if len(evs) != 1 || evs[0].Name != "exception" {
		t.Fatalf("events %+v, want one exception", evs)
	}
	ea := map[attribute.Key]attribute.Value{}
	for _, kv := range evs[0].Attributes {
		ea[kv.Key] = kv.Value
	}
	if ea["exception.message"].AsString() != "panic: kaboom" || ea["exception.type"].AsString() != "*walex.PanicError" || ea["exception.stacktrace"].AsString() == "" {
		t.Errorf("exception attributes %v, want the panic with its stack", evs[0].Attributes)
	}
	rm := r.collect(t)
	h := find(t, rm, "walex.handler.duration").Data.(metricdata.Histogram[float64])
	if len(h.DataPoints) != 1 || !hasAll(h.DataPoints[0].Attributes, []attribute.KeyValue{attribute.String("outcome", "error")}) {
		t.Errorf("duration points %+v, want one with outcome error", h.DataPoints)
	}
}

// TestUserSpanIsChild: a span a handler starts is a child of the walex
// span.
func TestUserSpanIsChild(t *testing.T) {
	r := newRig(t, config("postgres://localhost/app", "users"))
	r.c.OnInsert("users", func(ctx context.Context, _ []walex.Event) error {
		_, span := r.tp.Tracer("app").Start(ctx, "send welcome e-mail")
		span.End()
		return nil
	})
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"))
	if _, err := walextest.New(r.c).Deliver(context.Background(), s.Begin().Insert(users, walextest.Row{"id": 1}).Commit()); err != nil {
		t.Fatal(err)
	}
	spans := r.ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	user, walexSpan := spans[0], spans[1]
	if user.Name() != "send welcome e-mail" || walexSpan.Name() != "walex OnInsert public.users" {
		t.Fatalf("spans %q, %q", user.Name(), walexSpan.Name())
	}
	if user.Parent().SpanID() != walexSpan.SpanContext().SpanID() || user.SpanContext().TraceID() != walexSpan.SpanContext().TraceID() {
		t.Errorf("user span's parent %v, want the walex span %v", user.Parent(), walexSpan.SpanContext())
	}
}

// TestNewRootLinkedToContext: the span of a call is a new trace even when
// the context given to Run (here Deliver) carries a span; it links to it.
func TestNewRootLinkedToContext(t *testing.T) {
	r := newRig(t, config("postgres://localhost/app", "users"))
	r.c.OnInsert("users", func(context.Context, []walex.Event) error { return nil })
	ctx, outer := r.tp.Tracer("app").Start(context.Background(), "service start")
	defer outer.End()
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"))
	if _, err := walextest.New(r.c).Deliver(ctx, s.Begin().Insert(users, walextest.Row{"id": 1}).Commit()); err != nil {
		t.Fatal(err)
	}
	spans := r.ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	sp := spans[0]
	if sp.Parent().IsValid() || sp.SpanContext().TraceID() == outer.SpanContext().TraceID() {
		t.Errorf("span parent %v trace %v: want a new trace", sp.Parent(), sp.SpanContext().TraceID())
	}
	if l := sp.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != outer.SpanContext().SpanID() {
		t.Errorf("links %+v, want one to the context's span", l)
	}
}

// TestEventsHistogram: events per call, by method and table.
func TestEventsHistogram(t *testing.T) {
	r := newRig(t, config("postgres://localhost/app", "users"))
	r.c.OnInsert("users", func(context.Context, []walex.Event) error { return nil })
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"))
	h := walextest.New(r.c)
	for _, n := range []int{1, 3} {
		tx := s.Begin()
		for i := range n {
			tx.Insert(users, walextest.Row{"id": i})
		}
		if _, err := h.Deliver(context.Background(), tx.Commit()); err != nil {
			t.Fatal(err)
		}
	}
	rm := r.collect(t)
	hist := find(t, rm, "walex.handler.events").Data.(metricdata.Histogram[int64])
	if len(hist.DataPoints) != 1 {
		t.Fatalf("%d points, want 1", len(hist.DataPoints))
	}
	p := hist.DataPoints[0]
	if p.Count != 2 || p.Sum != 4 {
		t.Errorf("events histogram count %d sum %d, want 2 and 4", p.Count, p.Sum)
	}
	want := []attribute.KeyValue{attribute.String("client", "app"), attribute.String("handler.method", "OnInsert"), attribute.String("table", "public.users")}
	if !hasAll(p.Attributes, want) || p.Attributes.Len() != len(want) {
		t.Errorf("events histogram attributes %v, want %v", p.Attributes.ToSlice(), want)
	}
}

// TestShutdown: after shutdown, calls make no spans and the callback no
// longer reports.
func TestShutdown(t *testing.T) {
	r := newRig(t, config("postgres://localhost/app", "users"))
	r.c.OnInsert("users", func(context.Context, []walex.Event) error { return nil })
	if got := value(t, r.collect(t), "walex.connected", attribute.String("client", "app")); got != 0 {
		t.Errorf("walex.connected = %d before Run, want 0", got)
	}
	if err := r.shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := r.shutdown(); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"))
	if _, err := walextest.New(r.c).Deliver(context.Background(), s.Begin().Insert(users, walextest.Row{"id": 1}).Commit()); err != nil {
		t.Fatal(err)
	}
	if n := len(r.ended()); n != 0 {
		t.Errorf("%d spans after shutdown, want 0", n)
	}
	rm := r.collect(t)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if slices.Contains([]string{"walex.connected", "walex.events"}, m.Name) {
				t.Errorf("metric %s still reported after shutdown", m.Name)
			}
		}
	}
}

// TestClientAttribute: Options.Client names the client in the metrics.
func TestClientAttribute(t *testing.T) {
	c, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "app", Publication: "events", Subscriptions: []string{"users"}})
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	if _, err := walexotel.Instrument(c, walexotel.Options{MeterProvider: mp, Client: "billing"}); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if got := value(t, rm, "walex.events", attribute.String("client", "billing")); got != 0 {
		t.Errorf("walex.events = %d, want 0", got)
	}
}
