package walexotel

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walex-go/walex"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys of the handler spans.
const (
	keyTable         = attribute.Key("walex.table")
	keyHandler       = attribute.Key("walex.handler")
	keyMethod        = attribute.Key("walex.handler.method")
	keyEventType     = attribute.Key("walex.event.type")
	keyEventsCount   = attribute.Key("walex.events.count")
	keyCommitLSN     = attribute.Key("walex.commit_lsn")
	keyLastCommitLSN = attribute.Key("walex.last_commit_lsn")
	keyEventID       = attribute.Key("walex.event.id")
	keyAttempt       = attribute.Key("walex.attempt")
	keyDBSystem      = attribute.Key("db.system")
	keyDBSystemName  = attribute.Key("db.system.name")
	keyDBNamespace   = attribute.Key("db.namespace")
	keyOperationType = attribute.Key("messaging.operation.type")
	keyErrorType     = attribute.Key("error.type")
)

// middleware traces and times handler calls.
type middleware struct {
	tracer trace.Tracer
	calls  *callMetrics
	off    atomic.Bool // set by shutdown

	mu sync.Mutex
	// failed is, per registration, its last failed call: the next attempt
	// of the same call links to its span.
	failed map[string]failedCall
}

// failedCall is a handler call that returned an error.
type failedCall struct {
	eventID string
	span    trace.SpanContext
}

// wrap is the middleware given to Client.Use.
func (m *middleware) wrap(next walex.Handler) walex.Handler {
	return func(ctx context.Context, events []walex.Event) (err error) {
		if m.off.Load() {
			return next(ctx, events)
		}
		info, _ := walex.CallInfoFrom(ctx)
		ctx, span := m.start(ctx, info, events)
		start := time.Now()
		returned := false
		defer func() {
			if returned {
				m.finish(span, info, events, start, err)
				return
			}
			// A panic (or runtime.Goexit) is passing through: walex
			// recovers it outside the middleware chain.
			v := recover()
			var perr error
			if v != nil {
				perr = &walex.PanicError{Value: v, Stack: debug.Stack()}
			} else {
				perr = errGoexit
			}
			m.finish(span, info, events, start, perr)
			if v != nil {
				panic(v)
			}
		}()
		err = next(ctx, events)
		returned = true
		return err
	}
}

// errGoexit stands for a handler that neither returned nor panicked.
var errGoexit = errors.New("walexotel: the handler did not return (runtime.Goexit)")

// spanName is the name of a call's span: low-cardinality, the
// registration's method and table ("walex OnInsert public.users").
func spanName(info walex.CallInfo) string {
	if info.Method == "" {
		return "walex handler"
	}
	return "walex " + info.Method + " " + info.Table
}

// start starts the span of a handler call. It is a new trace (the
// context of Run would make every call of the client's life one trace),
// linked to the span ctx carries, if any, and to the span of the attempt
// before when the call is a retry.
func (m *middleware) start(ctx context.Context, info walex.CallInfo, events []walex.Event) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			keyTable.String(info.Table),
			keyMethod.String(info.Method),
			keyOperationType.String("process"),
			keyDBSystem.String("postgresql"),
			keyDBSystemName.String("postgresql"),
		),
	}
	if parent := trace.SpanContextFromContext(ctx); parent.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: parent}))
	}
	if prev, ok := m.previousAttempt(info, events); ok {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: prev,
			Attributes: []attribute.KeyValue{attribute.String("walex.link", "previous_attempt")}}))
	}
	ctx, span := m.tracer.Start(ctx, spanName(info), opts...)
	if span.IsRecording() {
		span.SetAttributes(callAttributes(info, events)...)
	}
	return ctx, span
}

// callAttributes are a span's attributes that take some work to make.
func callAttributes(info walex.CallInfo, events []walex.Event) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		keyHandler.String(info.Handler),
		keyAttempt.Int(info.Attempt),
		keyEventsCount.Int(len(events)),
	}
	if len(events) == 0 {
		return attrs
	}
	first, last := events[0], events[len(events)-1]
	attrs = append(attrs,
		keyEventType.String(eventType(events)),
		keyCommitLSN.String(first.CommitLSN.String()),
		keyEventID.String(first.ID()),
		keyDBNamespace.String(first.Source.DB),
	)
	if last.CommitLSN != first.CommitLSN {
		attrs = append(attrs, keyLastCommitLSN.String(last.CommitLSN.String()))
	}
	return attrs
}

// eventType is the type of the events when they share one, else "mixed".
func eventType(events []walex.Event) string {
	t := events[0].Type
	for _, e := range events[1:] {
		if e.Type != t {
			return "mixed"
		}
	}
	return string(t)
}

// finish ends a call's span and records its metrics.
func (m *middleware) finish(span trace.Span, info walex.CallInfo, events []walex.Event, start time.Time, err error) {
	m.calls.record(info, len(events), time.Since(start), err == nil)
	m.remember(info, events, span.SpanContext(), err)
	if err != nil {
		opts := []trace.EventOption{}
		if _, ok := errors.AsType[*walex.PanicError](err); ok {
			opts = append(opts, trace.WithStackTrace(true))
		}
		span.RecordError(err, opts...)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(keyErrorType.String(fmt.Sprintf("%T", err)))
	}
	span.End()
}

// previousAttempt returns the span of the failed attempt before this
// one of the same call.
func (m *middleware) previousAttempt(info walex.CallInfo, events []walex.Event) (trace.SpanContext, bool) {
	if info.Attempt < 2 || len(events) == 0 {
		return trace.SpanContext{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.failed[info.Handler]
	if !ok || f.eventID != events[0].ID() || !f.span.IsValid() {
		return trace.SpanContext{}, false
	}
	return f.span, true
}

// remember keeps the span of a failed call for its next attempt; one
// entry per registration, dropped when a call succeeds.
func (m *middleware) remember(info walex.CallInfo, events []walex.Event, sc trace.SpanContext, err error) {
	if info.Handler == "" || len(events) == 0 || (err != nil && !sc.IsValid()) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		delete(m.failed, info.Handler)
		return
	}
	m.failed[info.Handler] = failedCall{eventID: events[0].ID(), span: sc}
}
