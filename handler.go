package walex

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// Handler handles the events of one transaction: for a table handler, the
// events of that table (after filters, never an empty list); for an
// AllTables handler, all events of the transaction. A transaction larger
// than Config.MaxBatchEvents arrives in several calls, in order.
//
// Handlers run one at a time, in registration order, on the Client's
// dispatch goroutine: a handler does not need to be safe for concurrent
// use with itself, and a slow handler holds back the events after it
// (while the client keeps the connection alive). A handler must not call
// Run. It may register handlers or change subscriptions; those take effect
// from the next transaction. The handlers and functions that see a
// transaction share its events: the slice (when a handler takes every
// event of the batch) and the record maps. Treat them as read-only; copy
// what you change.
//
// Returning an error (or panicking) makes the client retry the call
// according to Config.RetryPolicy, and then stop Run with a *HandlerError.
type Handler func(ctx context.Context, events []Event) error

// Function runs for each event that passed a registration's filters; see
// WithFunctions.
type Function func(ctx context.Context, event Event) error

// Option configures one handler registration.
type Option func(*registration)

// WithFilters drops events before the handler sees them; see Filters.
func WithFilters(f Filters) Option {
	return func(r *registration) { r.filters = f }
}

// WithFunctions runs each function for each event that passed the
// filters, after the handler returned nil. The functions of one call run
// concurrently on a bounded pool (WithConcurrency, default 8), and the call
// waits for all of them: an error or panic in any function fails the call
// like a handler error, and the whole call (handler and functions) is
// retried. Functions must therefore be safe for concurrent use and
// idempotent.
func WithFunctions(fns ...Function) Option {
	return func(r *registration) {
		for _, f := range fns {
			if f == nil {
				panic("walex: WithFunctions: nil function")
			}
		}
		r.functions = append(r.functions, fns...)
	}
}

// WithConcurrency sets how many functions of one handler call run at once.
func WithConcurrency(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("walex: WithConcurrency(%d): must be at least 1", n))
	}
	return func(r *registration) { r.concurrency = n }
}

// WithName names the registration in logs and errors (default: the
// handler function's name).
func WithName(name string) Option {
	return func(r *registration) { r.name = name }
}

// registration is one On* call.
type registration struct {
	seq         int
	table       tableName // zero for AllTables
	all         bool
	types       []EventType // nil: every type
	handler     Handler
	filters     Filters
	functions   []Function
	concurrency int
	name        string
}

func (r *registration) wants(t EventType) bool { return r.types == nil || slices.Contains(r.types, t) }

// String describes the value for logs.
func (r *registration) String() string {
	method := "OnEvent"
	if len(r.types) == 1 {
		method = map[EventType]string{Insert: "OnInsert", Update: "OnUpdate", Delete: "OnDelete", Truncate: "OnTruncate"}[r.types[0]]
	}
	table := AllTables
	if !r.all {
		table = r.table.String()
	}
	return fmt.Sprintf("%s(%q) #%d (%s)", method, table, r.seq, r.name)
}

// registry holds registrations; safe for concurrent use.
type registry struct {
	mu   sync.RWMutex
	regs []*registration
	mw   []func(Handler) Handler
}

func (g *registry) add(method, table string, types []EventType, h Handler, opts []Option) {
	if h == nil {
		panic(fmt.Sprintf("walex: %s(%q): nil handler", method, table))
	}
	r := &registration{types: types, handler: h, concurrency: 8}
	if table == AllTables {
		if method != "OnEvent" {
			panic(fmt.Sprintf("walex: %s(%q): AllTables is only for OnEvent", method, table))
		}
		r.all = true
	} else {
		t, err := parseTableName(table)
		if err != nil {
			panic(fmt.Sprintf("walex: %s(%q): invalid table name: %v", method, table, err))
		}
		r.table = t
	}
	for _, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("walex: %s(%q): nil Option", method, table))
		}
		o(r)
	}
	if r.name == "" {
		r.name = funcName(h)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r.seq = len(g.regs) + 1
	g.regs = append(g.regs, r)
}

func (g *registry) use(mw func(Handler) Handler) {
	if mw == nil {
		panic("walex: Use: nil middleware")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mw = append(g.mw, mw)
}

// snapshot returns the registrations and middleware as of now.
func (g *registry) snapshot() ([]*registration, []func(Handler) Handler) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return slices.Clip(g.regs), slices.Clip(g.mw)
}

func funcName(f any) string {
	if fn := runtime.FuncForPC(reflect.ValueOf(f).Pointer()); fn != nil {
		return fn.Name()
	}
	return "handler"
}

// call runs one handler call: middleware around the handler, then the
// functions; panics become errors.
func (r *registration) call(ctx context.Context, mw []func(Handler) Handler, events []Event) error {
	h := Handler(func(ctx context.Context, events []Event) error {
		if err := r.handler(ctx, events); err != nil {
			return err
		}
		return r.runFunctions(ctx, events)
	})
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return safeCall(func() error { return h(ctx, events) })
}

func safeCall(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return f()
}

func (r *registration) runFunctions(ctx context.Context, events []Event) error {
	if len(r.functions) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, r.concurrency)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i := range events {
		for _, fn := range r.functions {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				err := safeCall(func() error { return fn(ctx, events[i]) })
				if err != nil {
					once.Do(func() {
						first = fmt.Errorf("function %s on event %s: %w", funcName(fn), events[i].ID(), err)
						cancel(first)
					})
				}
			}()
		}
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return context.Cause(ctx)
}

// dispatchCall calls a registration with retries; it returns a
// *HandlerError once the retry policy is exhausted, or ctx's error.
func (c *Client) dispatchCall(ctx context.Context, r *registration, mw []func(Handler) Handler, table string, events []Event) error {
	policy := c.cfg.RetryPolicy
	for attempt := 1; ; attempt++ {
		err := r.call(ctx, mw, events)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.stats.retries.Add(1)
		if policy.MaxAttempts > 0 && attempt >= policy.MaxAttempts {
			return &HandlerError{Table: table, Handler: r.String(), EventID: events[0].ID(), Attempts: attempt, Err: err}
		}
		d := policy.delay(attempt)
		c.logger().Warn("walex handler failed; retrying", "handler", r.String(), "table", table, "event_id", events[0].ID(), "attempt", attempt, "retry_in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
