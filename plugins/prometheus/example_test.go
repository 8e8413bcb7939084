package walexprom_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/walex-go/walex"
	walexprom "github.com/walex-go/walex/plugins/prometheus"
)

// Instrument registers the metrics and installs the middleware; promhttp
// serves them.
func ExampleInstrument() {
	cfg := walex.Config{URL: "postgres://app@localhost/app", Name: "myapp", Publication: "events", Subscriptions: []string{"users"}}
	c, err := walex.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	c.OnInsert("users", func(ctx context.Context, events []walex.Event) error { return nil })

	reg := prometheus.NewRegistry()
	if _, err := walexprom.Instrument(c, reg, walexprom.Options{}); err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// go http.ListenAndServe(":9187", mux); c.Run(ctx)

	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		fmt.Println(f.GetName(), f.GetType())
	}
	// Output:
	// walex_acked_lsn_bytes GAUGE
	// walex_connected GAUGE
	// walex_events_total COUNTER
	// walex_handler_retries_total COUNTER
	// walex_lag_bytes GAUGE
	// walex_messages_total COUNTER
	// walex_received_lsn_bytes GAUGE
	// walex_reconnects_total COUNTER
	// walex_schema_changes_total COUNTER
	// walex_server_wal_end_lsn_bytes GAUGE
	// walex_transactions_total COUNTER
}

// New and Metrics.Middleware place the measurement among other
// middleware: installed after a logging middleware, it measures the
// handler without the logging.
func ExampleMetrics_Middleware() {
	c, err := walex.New(walex.Config{URL: "postgres://app@localhost/app", Name: "myapp", Publication: "events", Subscriptions: []string{"users"}})
	if err != nil {
		log.Fatal(err)
	}
	m, err := walexprom.New(c, walexprom.Options{Client: "myapp", DurationBuckets: []float64{0.01, 0.1, 1, 10}})
	if err != nil {
		log.Fatal(err)
	}
	prometheus.MustRegister(m) // the default registry, served by promhttp.Handler()
	c.Use(func(next walex.Handler) walex.Handler {
		return func(ctx context.Context, events []walex.Event) error {
			err := next(ctx, events)
			slog.InfoContext(ctx, "handled", "events", len(events), "err", err)
			return err
		}
	})
	c.Use(m.Middleware)
	http.Handle("/metrics", promhttp.Handler())
}
