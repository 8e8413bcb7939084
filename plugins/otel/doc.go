// Package walexotel reports a walex.Client to OpenTelemetry: a span for
// every handler call, and the client's statistics and handler timings as
// metrics. It uses only the OpenTelemetry API; the application chooses
// the SDK and the exporters.
//
//	shutdown, err := walexotel.Instrument(client, walexotel.Options{}) // the global providers
//	if err != nil {
//		return err
//	}
//	defer shutdown()
//	err = client.Run(ctx)
//
// [Instrument] installs a middleware with Client.Use and registers one
// callback on the meter that reads Client.Stats once per collection.
// [Options] take a TracerProvider and a MeterProvider (default: the
// global ones, otel.GetTracerProvider and otel.GetMeterProvider) and the
// value of the "client" attribute (default: Config.Name).
//
// # Spans
//
// Each handler call (each attempt of it) is one span, named after the
// registration: "walex OnInsert public.users", "walex OnEvent *". Its
// kind is Consumer: in OpenTelemetry's messaging conventions, a span
// that processes messages received from another system (here, changes
// that PostgreSQL sends) is a consumer span, and tracing backends treat a
// consumer span as the entry of a trace into the service, where an
// Internal span would stand for a step inside an operation that has
// already begun. A call's span begins a new trace: the context of Run
// lives as long as the client, and would otherwise make every call of
// the client's life one trace. If that context carries a span, the call's
// span links to it; a retry's span links to the span of the attempt
// before it.
//
// The span's context is the handler's context: spans the handler starts
// are its children. Attributes:
//
//	walex.table              the registration's table ("public.users", or "*")
//	walex.handler            the registration, as in walex.HandlerError: `OnInsert("public.users") #1 (main.save)`
//	walex.handler.method     OnInsert, OnUpdate, OnDelete, OnTruncate, OnRead, OnEvent, OnTx
//	walex.event.type         insert, update, delete, truncate, read; "mixed" when the events differ
//	walex.events.count       the number of events
//	walex.commit_lsn         the first event's commit LSN ("0/16B3748")
//	walex.last_commit_lsn    the last event's, only when it differs
//	walex.event.id           the first event's ID (walex.Event.ID)
//	walex.attempt            1 for the first call, 2 for the first retry, ...
//	db.system, db.system.name  "postgresql" (the older and the current convention's name)
//	db.namespace             the database (walex.Source.DB)
//	messaging.operation.type "process"
//
// A call that returns an error records it (an "exception" event, status
// Error, and the error's Go type in error.type). A handler that panics
// ends its span the same way, with the panic as a *walex.PanicError and
// its stack trace; the panic then goes on to walex, which turns it into
// the call's error and retries.
//
// # Metrics
//
// Names and units follow OpenTelemetry's conventions; the Prometheus
// exporter (go.opentelemetry.io/otel/exporters/prometheus, with its
// UnderscoreEscapingWithSuffixes translation) shows them under the names
// of the walex Prometheus plugin, in the right column. Every metric has
// the attribute client. walex.connected, walex.snapshot.done and
// walex.snapshot.failed are 0 or 1.
//
//	instrument                     type                    unit           attributes                              Prometheus
//	walex.received_lsn             Int64ObservableGauge    By             client                                  walex_received_lsn_bytes
//	walex.acked_lsn                Int64ObservableGauge    By             client                                  walex_acked_lsn_bytes
//	walex.server_wal_end_lsn       Int64ObservableGauge    By             client                                  walex_server_wal_end_lsn_bytes
//	walex.lag                      Int64ObservableGauge    By             client                                  walex_lag_bytes
//	walex.connected                Int64ObservableGauge    (none)         client                                  walex_connected
//	walex.events                   Int64ObservableCounter  {event}        client                                  walex_events_total
//	walex.transactions             Int64ObservableCounter  {transaction}  client                                  walex_transactions_total
//	walex.messages                 Int64ObservableCounter  {message}      client                                  walex_messages_total
//	walex.schema_changes           Int64ObservableCounter  {change}       client                                  walex_schema_changes_total
//	walex.handler.retries          Int64ObservableCounter  {retry}        client                                  walex_handler_retries_total
//	walex.reconnects               Int64ObservableCounter  {reconnect}    client                                  walex_reconnects_total
//	walex.snapshot.rows            Int64ObservableCounter  {row}          client, table                           walex_snapshot_rows_total
//	walex.snapshot.estimated_rows  Int64ObservableGauge    {row}          client, table                           walex_snapshot_estimated_rows
//	walex.snapshot.done            Int64ObservableGauge    (none)         client, table                           walex_snapshot_done
//	walex.snapshot.failed          Int64ObservableGauge    (none)         client, table                           walex_snapshot_failed
//	walex.handler.duration         Float64Histogram        s              client, handler.method, table, outcome  walex_handler_duration_seconds
//	walex.handler.events           Int64Histogram          {event}        client, handler.method, table           walex_handler_events
//
// The observable instruments report walex.Stats (see its fields); the
// snapshot ones have a point per table a snapshot was asked for. The
// histograms record every handler call, each attempt of a retried call
// too: outcome is "ok" or "error" (a panic is an error), handler.method
// and table are those of the span. The duration covers the handler, its
// functions (walex.WithFunctions) and the middleware installed after
// Instrument; its buckets go from 0.5 ms to 30 s, those of the events
// from 1 to 10,000 (Config.MaxBatchEvents' default).
//
// # Exporting with OTLP
//
// The package needs nothing but the API; an application that sends
// traces and metrics to a collector over OTLP sets the SDK up with the
// exporters of its choice (go.opentelemetry.io/otel/exporters/otlp/...):
//
//	traceExp, err := otlptracegrpc.New(ctx) // OTEL_EXPORTER_OTLP_ENDPOINT etc.
//	if err != nil {
//		return err
//	}
//	metricExp, err := otlpmetricgrpc.New(ctx)
//	if err != nil {
//		return err
//	}
//	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName("orders-indexer"))
//	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(traceExp), sdktrace.WithResource(res))
//	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricExp)),
//		sdkmetric.WithResource(res))
//	defer tp.Shutdown(context.WithoutCancel(ctx))
//	defer mp.Shutdown(context.WithoutCancel(ctx))
//
//	shutdown, err := walexotel.Instrument(client, walexotel.Options{TracerProvider: tp, MeterProvider: mp})
//	if err != nil {
//		return err
//	}
//	defer shutdown()
//	return client.Run(ctx)
//
// To turn one half off, pass trace/noop.NewTracerProvider() or
// metric/noop.NewMeterProvider().
package walexotel
