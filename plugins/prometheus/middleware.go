package walexprom

import (
	"context"
	"time"

	"github.com/walex-go/walex"
)

// Outcomes of a handler call, the values of the label "outcome".
const (
	outcomeOK    = "ok"
	outcomeError = "error"
)

// unknown labels a call whose context does not say which registration it
// belongs to: Middleware used outside a walex Client.
const unknown = "unknown"

// Middleware measures each handler call (each attempt, retries included)
// into walex_handler_duration_seconds and walex_handler_events, labelled
// with the registration's method and table from walex.CallInfoFrom.
// Install it with c.Use(m.Middleware), or let Instrument install it. It
// measures what it wraps: installed first (outermost), it includes the
// other middleware's time. A call that panics counts as an error, and the
// panic goes on to the Client, which makes it an error of its own.
func (m *Metrics) Middleware(next walex.Handler) walex.Handler {
	return func(ctx context.Context, events []walex.Event) (err error) {
		method, table := unknown, unknown
		if info, ok := walex.CallInfoFrom(ctx); ok {
			method, table = info.Method, info.Table
		}
		m.events.WithLabelValues(method, table).Observe(float64(len(events)))
		start := time.Now()
		outcome := outcomeError // until next returns nil: a panic is an error
		defer func() {
			m.duration.WithLabelValues(method, table, outcome).Observe(time.Since(start).Seconds())
		}()
		err = next(ctx, events)
		if err == nil {
			outcome = outcomeOK
		}
		return err
	}
}
