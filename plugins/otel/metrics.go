package walexotel

import (
	"context"
	"sync"
	"time"

	"github.com/walex-go/walex"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Attribute keys of the metrics. The Prometheus exporter turns the dots
// into underscores: handler_method.
const (
	keyClient  = attribute.Key("client")
	keyMethodM = attribute.Key("handler.method")
	keyTableM  = attribute.Key("table")
	keyOutcome = attribute.Key("outcome")
)

// Bucket boundaries of the handler histograms.
var (
	durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	eventsBuckets   = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}
)

// callMetrics are the instruments the middleware records into.
type callMetrics struct {
	client   attribute.KeyValue
	duration metric.Float64Histogram
	events   metric.Int64Histogram
	sets     sync.Map // callKey → callSets
}

// callKey is what a call's attributes depend on.
type callKey struct{ method, table string }

// callSets are a call's attribute sets, made once per registration kind.
type callSets struct {
	ok, failed, events metric.MeasurementOption
}

func newCallMetrics(meter metric.Meter, client string) (*callMetrics, error) {
	duration, err := meter.Float64Histogram("walex.handler.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of handler calls (each attempt), middleware below this one included."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		return nil, err
	}
	events, err := meter.Int64Histogram("walex.handler.events",
		metric.WithUnit("{event}"),
		metric.WithDescription("Events per handler call (each attempt)."),
		metric.WithExplicitBucketBoundaries(eventsBuckets...))
	if err != nil {
		return nil, err
	}
	return &callMetrics{client: keyClient.String(client), duration: duration, events: events}, nil
}

// record records one handler call.
func (m *callMetrics) record(info walex.CallInfo, events int, took time.Duration, ok bool) {
	s := m.setsFor(info)
	outcome := s.failed
	if ok {
		outcome = s.ok
	}
	ctx := context.Background()
	m.duration.Record(ctx, took.Seconds(), outcome)
	m.events.Record(ctx, int64(events), s.events)
}

func (m *callMetrics) setsFor(info walex.CallInfo) callSets {
	k := callKey{info.Method, info.Table}
	if s, ok := m.sets.Load(k); ok {
		return s.(callSets)
	}
	base := []attribute.KeyValue{m.client, keyMethodM.String(info.Method), keyTableM.String(info.Table)}
	with := func(kv ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append(append([]attribute.KeyValue(nil), base...), kv...)...))
	}
	s := callSets{ok: with(keyOutcome.String("ok")), failed: with(keyOutcome.String("error")), events: with()}
	m.sets.Store(k, s)
	return s
}

// statsInstruments are the observable instruments that report Stats.
type statsInstruments struct {
	received, acked, walEnd, lag, connected         metric.Int64ObservableGauge
	events, transactions, messages, schemaChanges   metric.Int64ObservableCounter
	retries, reconnects, snapshotRows               metric.Int64ObservableCounter
	snapshotEstimated, snapshotDone, snapshotFailed metric.Int64ObservableGauge
}

// registerStats creates the observable instruments and registers the one
// callback that reads c.Stats() at each collection.
func registerStats(meter metric.Meter, c *walex.Client, client string) (metric.Registration, error) {
	var in statsInstruments
	var err error
	gauge := func(dst *metric.Int64ObservableGauge, name, unit, desc string) {
		if err == nil {
			*dst, err = meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		}
	}
	counter := func(dst *metric.Int64ObservableCounter, name, unit, desc string) {
		if err == nil {
			*dst, err = meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		}
	}
	gauge(&in.received, "walex.received_lsn", "By", "Highest WAL position received from the server.")
	gauge(&in.acked, "walex.acked_lsn", "By", "WAL position acknowledged to the server: the end of the last transaction all handlers finished.")
	gauge(&in.walEnd, "walex.server_wal_end_lsn", "By", "The server's WAL end as of its last message.")
	gauge(&in.lag, "walex.lag", "By", "WAL the server holds for this client that it has not finished: server WAL end minus acknowledged position.")
	gauge(&in.connected, "walex.connected", "", "1 while a replication connection is up, else 0.")
	counter(&in.events, "walex.events", "{event}", "Events passed to the handlers' dispatch (again when a fault delivers them again).")
	counter(&in.transactions, "walex.transactions", "{transaction}", "Transactions fully handled.")
	counter(&in.messages, "walex.messages", "{message}", "Logical decoding messages passed to message handlers.")
	counter(&in.schemaChanges, "walex.schema_changes", "{change}", "Schema changes seen in subscribed tables.")
	counter(&in.retries, "walex.handler.retries", "{retry}", "Retries of handler calls.")
	counter(&in.reconnects, "walex.reconnects", "{reconnect}", "Reconnects of the replication connection.")
	counter(&in.snapshotRows, "walex.snapshot.rows", "{row}", "Rows a table's snapshot delivered.")
	gauge(&in.snapshotEstimated, "walex.snapshot.estimated_rows", "{row}", "The planner's estimate of a snapshotted table's rows when its snapshot started.")
	gauge(&in.snapshotDone, "walex.snapshot.done", "", "1 once a table's snapshot was delivered and acknowledged, else 0.")
	gauge(&in.snapshotFailed, "walex.snapshot.failed", "", "1 when a table's snapshot stopped for good, else 0.")
	if err != nil {
		return nil, err
	}
	attrs := metric.WithAttributeSet(attribute.NewSet(keyClient.String(client)))
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		in.observe(o, c.Stats(), client, attrs)
		return nil
	}, in.received, in.acked, in.walEnd, in.lag, in.connected,
		in.events, in.transactions, in.messages, in.schemaChanges, in.retries, in.reconnects,
		in.snapshotRows, in.snapshotEstimated, in.snapshotDone, in.snapshotFailed)
}

// observe reports one Stats.
func (in *statsInstruments) observe(o metric.Observer, st walex.Stats, client string, attrs metric.ObserveOption) {
	o.ObserveInt64(in.received, int64(st.ReceivedLSN), attrs)
	o.ObserveInt64(in.acked, int64(st.AckedLSN), attrs)
	o.ObserveInt64(in.walEnd, int64(st.ServerWALEnd), attrs)
	o.ObserveInt64(in.lag, int64(st.LagBytes), attrs)
	o.ObserveInt64(in.connected, flag(st.Connected), attrs)
	o.ObserveInt64(in.events, int64(st.Events), attrs)
	o.ObserveInt64(in.transactions, int64(st.Transactions), attrs)
	o.ObserveInt64(in.messages, int64(st.Messages), attrs)
	o.ObserveInt64(in.schemaChanges, int64(st.SchemaChanges), attrs)
	o.ObserveInt64(in.retries, int64(st.Retries), attrs)
	o.ObserveInt64(in.reconnects, int64(st.Reconnects), attrs)
	for _, p := range st.Snapshots {
		table := metric.WithAttributeSet(attribute.NewSet(keyClient.String(client), keyTableM.String(p.Table)))
		o.ObserveInt64(in.snapshotRows, int64(p.Rows), table)
		o.ObserveInt64(in.snapshotEstimated, p.EstimatedRows, table)
		o.ObserveInt64(in.snapshotDone, flag(!p.Done.IsZero()), table)
		o.ObserveInt64(in.snapshotFailed, flag(p.Err != nil), table)
	}
}

func flag(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
