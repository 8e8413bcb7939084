package walexotel_test

import (
	"context"
	"fmt"

	"github.com/walex-go/walex"
	walexotel "github.com/walex-go/walex/plugins/otel"
	"github.com/walex-go/walex/walextest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A client instrumented into the SDK, with in-memory exporters in place
// of OTLP, and one transaction delivered to its handler by walextest.
func ExampleInstrument() {
	client, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "app", Publication: "events", Subscriptions: []string{"users"}})
	if err != nil {
		panic(err)
	}
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	shutdown, err := walexotel.Instrument(client, walexotel.Options{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		panic(err)
	}
	defer shutdown()
	client.OnInsert("users", func(ctx context.Context, events []walex.Event) error {
		_, span := tp.Tracer("app").Start(ctx, "send welcome e-mail") // a child of walex's span
		defer span.End()
		return nil
	})

	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"))
	if _, err := walextest.New(client, walextest.Options{DB: "app"}).Deliver(context.Background(), s.Begin().Insert(users, walextest.Row{"id": 1}).Commit()); err != nil {
		panic(err)
	}

	for _, sp := range spans.Ended() {
		fmt.Printf("span %q, kind %s\n", sp.Name(), sp.SpanKind())
		for _, kv := range sp.Attributes() {
			if kv.Key == "walex.event.id" || kv.Key == "walex.attempt" || kv.Key == "db.namespace" {
				fmt.Printf("  %s=%s\n", kv.Key, kv.Value.Emit())
			}
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if h, ok := m.Data.(metricdata.Histogram[float64]); ok {
			fmt.Printf("%s: %d call(s)\n", m.Name, h.DataPoints[0].Count)
		}
	}
	// Output:
	// span "send welcome e-mail", kind internal
	// span "walex OnInsert public.users", kind consumer
	//   walex.attempt=1
	//   walex.event.id=0/1000078:0
	//   db.namespace=app
	// walex.handler.duration: 1 call(s)
}
