package walexotel

import (
	"errors"
	"fmt"
	"sync"

	"github.com/walex-go/walex"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and the meter:
// the import path of this package.
const ScopeName = "github.com/walex-go/walex/plugins/otel"

// Options configure Instrument. The zero value uses the global providers
// and the client's Config.Name.
type Options struct {
	// TracerProvider creates the tracer of the handler spans. Default:
	// otel.GetTracerProvider() at the time of Instrument. Pass
	// trace/noop.NewTracerProvider() for metrics only.
	TracerProvider trace.TracerProvider
	// MeterProvider creates the meter of the metrics. Default:
	// otel.GetMeterProvider() at the time of Instrument. Pass
	// metric/noop.NewMeterProvider() for tracing only.
	MeterProvider metric.MeterProvider
	// Client is the value of the "client" attribute on every metric, which
	// tells the clients of one process apart. Default: the client's
	// Config.Name.
	Client string
}

// Instrument makes c report to OpenTelemetry: it installs a middleware
// (Client.Use) that traces and times every handler call, and registers
// one callback that reports c.Stats() as observable instruments at each
// collection. See the package documentation for the spans and
// instruments.
//
// Call it once per client, before Run, next to the other Use calls: the
// middleware wraps the middleware installed after it, so install it
// first for the span to cover them. Called while Run runs, it traces the
// calls of the transactions that start after it.
//
// shutdown unregisters the callback and turns the middleware into a
// pass-through (a walex client cannot remove middleware). It does not
// shut the providers down: they are the caller's. An error means an
// instrument could not be created; nothing is installed then.
func Instrument(c *walex.Client, opts Options) (shutdown func() error, err error) {
	if c == nil {
		return nil, errors.New("walexotel: Instrument: nil *walex.Client: pass the client walex.New returned")
	}
	tp, mp := opts.TracerProvider, opts.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	name := opts.Client
	if name == "" {
		name = c.Name()
	}
	meter := mp.Meter(ScopeName, metric.WithInstrumentationVersion(walex.Version))
	calls, err := newCallMetrics(meter, name)
	if err != nil {
		return nil, fmt.Errorf("walexotel: Instrument: %w", err)
	}
	reg, err := registerStats(meter, c, name)
	if err != nil {
		return nil, fmt.Errorf("walexotel: Instrument: %w", err)
	}
	mw := &middleware{
		tracer: tp.Tracer(ScopeName, trace.WithInstrumentationVersion(walex.Version)),
		calls:  calls,
		failed: map[string]failedCall{},
	}
	c.Use(mw.wrap)
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() {
			mw.off.Store(true)
			err = reg.Unregister()
		})
		return err
	}, nil
}
