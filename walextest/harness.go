package walextest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/decoder"
	"github.com/walex-go/walex/internal/kit"
)

// Call is one handler call: which registration, what it got and what it
// returned. A retried call appears once per attempt.
type Call struct {
	// Handler names the registration as a *walex.HandlerError does:
	// `OnInsert("public.users") #1 (main.saveUser)`.
	Handler string
	// Table is the table of the registration ("*" for AllTables); "" for
	// a message handler.
	Table   string
	Attempt int
	// What the handler got: Events for an event handler, Message for a
	// message handler, SchemaChange for a schema change handler.
	Events       []walex.Event
	Message      *walex.Message
	SchemaChange *walex.SchemaChange
	Err          error
}

// Harness delivers transactions to a Client's handlers, as Run would
// from a connection, and records the calls. It is not safe for concurrent
// use; the Client must not be running.
type Harness struct {
	c     *walex.Client
	flow  kit.Flow
	dec   *decoder.Decoder
	mu    sync.Mutex
	calls []Call
	cut   func(n int) // set by DeliverCut; called with the number of calls so far
}

// Options configure a Harness.
type Options struct {
	// DB is the database name of the events' Source. Default "walextest".
	DB string
}

// New returns a Harness for c's handlers (registered before or after).
func New(c *walex.Client, opts ...Options) *Harness {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.DB == "" {
		o.DB = "walextest"
	}
	h := &Harness{c: c}
	h.flow = kit.NewFlow(c, o.DB, h.record)
	h.dec = decoder.New(decoder.Options{MaxBatchEvents: h.flow.MaxBatchEvents()})
	return h
}

func (h *Harness) record(kc kit.Call) {
	c := Call{Handler: kc.Handler, Table: kc.Table, Attempt: kc.Attempt, Err: kc.Err}
	switch a := kc.Arg.(type) {
	case []walex.Event:
		c.Events = a
	case walex.Message:
		c.Message = &a
	case walex.SchemaChange:
		c.SchemaChange = &a
	}
	h.mu.Lock()
	h.calls = append(h.calls, c)
	n := len(h.calls)
	cut := h.cut
	h.mu.Unlock()
	if cut != nil {
		cut(n)
	}
}

// Calls returns every call so far.
func (h *Harness) Calls() []Call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Call(nil), h.calls...)
}

func (h *Harness) since(n int) []Call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Call(nil), h.calls[n:]...)
}

// Deliver delivers committed transactions (and non-transactional
// messages) in order, and returns the calls they made. It stops at the
// first transaction whose handlers failed for good and returns the
// *walex.HandlerError Run would stop with; the harness then starts over as
// after a reconnect (that transaction was not acknowledged).
func (h *Harness) Deliver(ctx context.Context, txs ...*Tx) ([]Call, error) {
	n := len(h.Calls())
	for _, tx := range txs {
		if !tx.committed {
			return h.since(n), errors.New("walextest: Deliver of a transaction that was not committed")
		}
		if err := h.feed(ctx, tx.msgs); err != nil {
			return h.since(n), err
		}
	}
	return h.since(n), nil
}

// feed decodes messages and dispatches what they make.
func (h *Harness) feed(ctx context.Context, msgs [][]byte) error {
	for _, m := range msgs {
		err := h.dec.Decode(ctx, m, func(b *decoder.Batch) error { return h.flow.Dispatch(ctx, b) })
		if err != nil {
			h.Reconnect()
			return err
		}
	}
	return nil
}

// Reconnect makes the harness start over as Run does after a reconnect:
// it forgets the transaction in progress and the table descriptions of
// the connection, and transactional handlers read their positions again.
func (h *Harness) Reconnect() { h.reconnect(^walex.LSN(0)) }

// reconnect starts over as a connection that resumes the stream at start.
func (h *Harness) reconnect(start walex.LSN) {
	h.dec.Reset()
	h.flow.Reconnect(start)
}

// DeliverTwice delivers tx, then, as after a crash that lost its
// acknowledgement, reconnects and delivers it again: with a durable slot,
// this is what at-least-once delivery allows. A handler that is
// idempotent leaves the same state after both.
func (h *Harness) DeliverTwice(ctx context.Context, tx *Tx) ([]Call, error) {
	n := len(h.Calls())
	if _, err := h.Deliver(ctx, tx); err != nil {
		return h.since(n), err
	}
	h.reconnect(tx.start)
	_, err := h.Deliver(ctx, tx)
	return h.since(n), err
}

// DeliverCut delivers tx, but cuts the delivery short once after calls
// handler calls have returned (as a lost connection would: no handler
// starts after that, and the transaction is not acknowledged); then it
// reconnects and delivers tx whole, as Run would. It returns every call
// of both deliveries.
func (h *Harness) DeliverCut(ctx context.Context, tx *Tx, calls int) ([]Call, error) {
	if calls < 1 {
		return nil, fmt.Errorf("walextest: DeliverCut after %d calls: must be at least 1", calls)
	}
	n := len(h.Calls())
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fired := false
	h.mu.Lock()
	h.cut = func(k int) {
		if k-n >= calls && !fired {
			fired = true
			cancel()
		}
	}
	h.mu.Unlock()
	_, err := h.Deliver(cctx, tx)
	h.mu.Lock()
	h.cut = nil
	h.mu.Unlock()
	if !fired {
		if err != nil {
			return h.since(n), err
		}
		return h.since(n), fmt.Errorf("walextest: DeliverCut: the transaction made fewer than %d calls", calls)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return h.since(n), err
	}
	// Cut after the last call, the acknowledgement is what was lost.
	h.reconnect(tx.start)
	_, err = h.Deliver(ctx, tx)
	return h.since(n), err
}

// Events returns the events the decoder makes of tx, as the handlers
// would get them (every table's, whether the client subscribes to it or
// not), without calling any handler.
func (h *Harness) Events(tx *Tx) ([]walex.Event, error) {
	dec := decoder.New(decoder.Options{MaxBatchEvents: 1 << 30})
	defer dec.Close()
	var events []walex.Event
	for _, m := range tx.msgs {
		err := dec.Decode(context.Background(), m, func(b *decoder.Batch) error {
			events = append(events, h.flow.Events(b).([]walex.Event)...)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return events, nil
}

// DeliverSnapshot delivers rows of t as a snapshot chunk delivers them:
// Read events (NewRecord the row), at a new position of the stream, in
// calls of at most Config.MaxBatchEvents. What the handlers get is what
// OnRead and OnEvent handlers get from Client.Snapshot.
func (h *Harness) DeliverSnapshot(ctx context.Context, t *Table, rows ...Row) ([]Call, error) {
	n := len(h.Calls())
	tx := t.s.Begin()
	for _, r := range rows {
		tx.Insert(t, r)
	}
	tx.Commit()
	events, err := h.Events(tx)
	if err != nil {
		return nil, err
	}
	at := t.s.next() // the chunk's watermark
	for i := range events {
		e := &events[i]
		e.Type, e.CommitLSN, e.Index, e.XID = walex.Read, walex.LSN(at), i, 0
	}
	err = h.flow.DispatchReads(ctx, events)
	return h.since(n), err
}
