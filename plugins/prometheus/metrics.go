package walexprom

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/walex-go/walex"
)

// Options configure the metrics of one walex Client.
type Options struct {
	// Client is the value of the constant label "client" on every metric,
	// which tells the clients of one process apart. Default: the
	// client's Config.Name (Client.Name).
	Client string
	// DurationBuckets are the upper bounds, in seconds, of the buckets of
	// walex_handler_duration_seconds, strictly increasing. Default:
	// 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	// 1, 2.5, 5, 10, 30.
	DurationBuckets []float64
	// EventBuckets are the upper bounds of the buckets of
	// walex_handler_events (events per handler call), strictly
	// increasing. Default: 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000,
	// 2000, 5000, 10000.
	EventBuckets []float64
}

// defaultDurationBuckets span a handler from a map lookup (half a
// millisecond) to a slow remote call (30 s).
func defaultDurationBuckets() []float64 {
	return []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
}

// defaultEventBuckets span a one-row transaction to a full batch
// (Config.MaxBatchEvents).
func defaultEventBuckets() []float64 {
	return []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}
}

// Metrics are the Prometheus metrics of one walex Client: a
// prometheus.Collector that reads the client's Stats at each scrape, and
// the handler-call histograms that its Middleware fills. Create it with
// New (then register it and install Middleware yourself) or, more simply,
// with Instrument. Safe for concurrent use.
type Metrics struct {
	client   *walex.Client
	stats    *statsCollector
	duration *prometheus.HistogramVec
	events   *prometheus.HistogramVec
}

// Errors of New and Instrument, for errors.Is.
var (
	// ErrNoClient: New or Instrument was given a nil *walex.Client.
	ErrNoClient = errors.New("walexprom: nil *walex.Client: pass the client whose metrics to export")
	// ErrBadBuckets: Options.DurationBuckets or EventBuckets are not
	// strictly increasing.
	ErrBadBuckets = errors.New("walexprom: histogram buckets must be strictly increasing")
)

// New returns the metrics of c, labelled client=opts.Client (default
// c.Name()). Nothing is
// registered or installed: register the result with a
// prometheus.Registerer and install its Middleware with c.Use, or call
// Instrument, which does both.
func New(c *walex.Client, opts Options) (*Metrics, error) {
	if c == nil {
		return nil, ErrNoClient
	}
	if opts.Client == "" {
		opts.Client = c.Name()
	}
	durations, err := buckets("DurationBuckets", opts.DurationBuckets, defaultDurationBuckets)
	if err != nil {
		return nil, err
	}
	events, err := buckets("EventBuckets", opts.EventBuckets, defaultEventBuckets)
	if err != nil {
		return nil, err
	}
	labels := prometheus.Labels{labelClient: opts.Client}
	return &Metrics{
		client: c,
		stats:  newStatsCollector(c, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        nameHandlerDuration,
			Help:        "Duration of walex handler calls (each attempt), in seconds, by registration and outcome (ok or error).",
			ConstLabels: labels,
			Buckets:     durations,
		}, []string{labelMethod, labelTable, labelOutcome}),
		events: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        nameHandlerEvents,
			Help:        "Events passed to each walex handler call (each attempt), by registration.",
			ConstLabels: labels,
			Buckets:     events,
		}, []string{labelMethod, labelTable}),
	}, nil
}

// buckets returns b, or the default when b is empty, after checking that
// it is strictly increasing (Prometheus would panic otherwise).
func buckets(field string, b []float64, def func() []float64) ([]float64, error) {
	if len(b) == 0 {
		return def(), nil
	}
	for i := 1; i < len(b); i++ {
		if !(b[i-1] < b[i]) {
			return nil, fmt.Errorf("%w: Options.%s[%d] = %g follows %g", ErrBadBuckets, field, i, b[i], b[i-1])
		}
	}
	return append([]float64(nil), b...), nil
}

// Instrument exports c's metrics: it registers them with reg and installs
// their Middleware with c.Use, so that no handler call goes unmeasured.
// Call it before Run (middleware added later applies from the next
// transaction on). If registration fails (for example because metrics
// with the same client label are registered already), nothing is
// installed and the error is returned.
func Instrument(c *walex.Client, reg prometheus.Registerer, opts Options) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("walexprom: Instrument: nil prometheus.Registerer: pass prometheus.DefaultRegisterer or a registry of your own")
	}
	m, err := New(c, opts)
	if err != nil {
		return nil, err
	}
	if err := reg.Register(m); err != nil {
		return nil, fmt.Errorf("walexprom: registering the metrics of client %q: %w", opts.Client, err)
	}
	c.Use(m.Middleware)
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.stats.Describe(ch)
	m.duration.Describe(ch)
	m.events.Describe(ch)
}

// Collect implements prometheus.Collector: it reads the client's Stats
// once and sends them with the handler histograms.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.stats.Collect(ch)
	m.duration.Collect(ch)
	m.events.Collect(ch)
}
