package walex

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
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
// An error that retrying cannot fix — one with a Permanent() bool method
// that reports true, or wrapping one (see IsPermanent) — stops Run with a
// *HandlerError at once, without retries.
type Handler func(ctx context.Context, events []Event) error

// Function runs for each event that passed a registration's filters; see
// WithFunctions.
type Function func(ctx context.Context, event Event) error

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
	// A transactional handler (OnTx): its checkpointer and handler.
	cp  Checkpointer
	txh TxHandler
}

func (r *registration) wants(t EventType) bool { return r.types == nil || slices.Contains(r.types, t) }

// method returns the name of the method that registered r.
func (r *registration) method() string {
	switch {
	case r.cp != nil:
		return "OnTx"
	case len(r.types) == 1:
		return map[EventType]string{Insert: "OnInsert", Update: "OnUpdate", Delete: "OnDelete", Truncate: "OnTruncate", Read: "OnRead"}[r.types[0]]
	}
	return "OnEvent"
}

// String describes the value for logs.
func (r *registration) String() string {
	method := r.method()
	table := AllTables
	if !r.all {
		table = r.table.String()
	}
	return fmt.Sprintf("%s(%q) #%d (%s)", method, table, r.seq, r.name)
}

// registry holds registrations; safe for concurrent use.
type registry struct {
	mu      sync.RWMutex
	regs    []*registration
	mw      []func(Handler) Handler
	msgs    []*msgRegistration
	schemas []*schemaRegistration
}

func (g *registry) add(method, table string, types []EventType, h Handler, opts []Option) {
	if h == nil {
		panic(fmt.Sprintf("walex: %s(%q): nil handler", method, table))
	}
	r := &registration{types: types, handler: h, concurrency: 8}
	if table == AllTables {
		if method != "OnEvent" && method != "OnTx" {
			panic(fmt.Sprintf("walex: %s(%q): AllTables is only for OnEvent and OnTx", method, table))
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
		o.apply(r)
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

// marks returns the message and schema change registrations as of now.
func (g *registry) marks() ([]*msgRegistration, []*schemaRegistration) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return slices.Clip(g.msgs), slices.Clip(g.schemas)
}

func funcName(f any) string {
	if fn := runtime.FuncForPC(reflect.ValueOf(f).Pointer()); fn != nil {
		return fn.Name()
	}
	return "handler"
}

// call runs one handler call: middleware around the handler, then the
// functions; panics become errors. With middleware, ctx carries the call
// (see CallInfoFrom).
func (r *registration) call(ctx context.Context, mw []func(Handler) Handler, inner Handler, events []Event, attempt int) error {
	if len(mw) > 0 {
		ctx = context.WithValue(ctx, callInfoKey{}, &callInfo{reg: r, attempt: attempt})
	}
	h := Handler(func(ctx context.Context, events []Event) error {
		if err := inner(ctx, events); err != nil {
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
