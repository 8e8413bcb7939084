package walex

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/walex-go/walex/decoder"
	"github.com/walex-go/walex/internal/kit"
	"github.com/walex-go/walex/internal/logkey"
)

// flow is what the dispatch of one stream keeps from batch to batch: the
// tables' descriptions, to tell schema changes, and the positions of the
// transactional handlers. Run keeps one per Client (the descriptions
// outlive a connection; the positions are loaded again on each); the test
// kit makes its own. Only the dispatch goroutine uses it.
type flow struct {
	c  *Client
	db string
	// seen are the tables' descriptions as of the batch being dispatched;
	// history the descriptions after each finished transaction that
	// changed them, oldest first, so that a connection that resumes from
	// an earlier position (an acknowledgement the server did not get, a
	// server crash) compares with the descriptions as of that position.
	seen    map[uint32]*decoder.Relation
	dirty   bool // seen changed since the last finished transaction
	history []shapeState
	trimmed bool // history lost its oldest entries
	// positions are the transactional handlers' stored positions, loaded
	// on first use in a connection.
	positions map[*registration]storedPos
	observe   func(kit.Call) // nil but in the test kit
}

// shapeState is the tables' descriptions after the transaction that ends
// at end.
type shapeState struct {
	end    LSN
	shapes map[uint32]*decoder.Relation
}

// maxShapeHistory bounds flow.history: schema changes are rare, and a
// connection resumes at most a little before the last acknowledgement.
const maxShapeHistory = 64

func newFlow(c *Client) *flow {
	f := &flow{c: c}
	f.reconnect(^LSN(0))
	return f
}

// reconnect starts a new connection's dispatch, which resumes the stream
// at start: the descriptions are those as of start, and the
// transactional handlers' positions are read again.
func (f *flow) reconnect(start LSN) {
	f.seen = maps.Clone(f.shapesAt(start))
	if f.seen == nil {
		f.seen = map[uint32]*decoder.Relation{}
	}
	f.dirty = false
	f.positions = map[*registration]storedPos{}
}

// shapesAt returns the descriptions after the last transaction that ended
// at or before lsn (nil for none known).
func (f *flow) shapesAt(lsn LSN) map[uint32]*decoder.Relation {
	for i := len(f.history) - 1; i >= 0; i-- {
		if f.history[i].end <= lsn {
			return f.history[i].shapes
		}
	}
	if f.trimmed && len(f.history) > 0 {
		return f.history[0].shapes // the best left
	}
	return nil
}

// acked records that the dispatch of the transaction that ends at end
// finished.
func (f *flow) acked(end LSN) {
	if !f.dirty {
		return
	}
	f.dirty = false
	if len(f.history) == maxShapeHistory {
		f.history = slices.Delete(f.history, 0, 1)
		f.trimmed = true
	}
	f.history = append(f.history, shapeState{end: end, shapes: maps.Clone(f.seen)})
}

// dispatch calls the handlers for one batch: event handlers in
// registration order, and, at each mark of the batch that has handlers
// (a message, a schema change), the handlers of the events before it,
// then its own.
func (c *Client) dispatch(ctx context.Context, cfg *validated, f *flow, b *decoder.Batch) error {
	if b.Message != "" {
		if isReserved(b.Message) {
			return nil
		}
		return c.dispatchMessage(ctx, cfg, f, Message{Prefix: b.Message, Content: b.Content, LSN: b.EndLSN, CommitLSN: b.EndLSN, Timestamp: time.Now()})
	}
	if len(b.Changes) == 0 && len(b.Marks) == 0 {
		return nil
	}
	events := make([]Event, 0, len(b.Changes))
	full := make([]bool, 0, len(b.Changes))
	marks := b.Marks
	start := 0 // the events not dispatched yet
	for i := 0; ; i++ {
		for len(marks) > 0 && marks[0].At <= i {
			m := &marks[0]
			marks = marks[1:]
			run := c.markCall(f, b, m)
			if run == nil {
				continue
			}
			if err := c.dispatchEvents(ctx, cfg, f, events[start:], full[start:]); err != nil {
				return err
			}
			start = len(events)
			if err := run(ctx, cfg); err != nil {
				return err
			}
		}
		if i == len(b.Changes) {
			break
		}
		ch := &b.Changes[i]
		if !c.isSubscribed(ch.Relation.Schema, ch.Relation.Name) {
			continue
		}
		events = append(events, newEvent(b, ch, f.db))
		full = append(full, ch.Relation.HasOldValues())
	}
	return c.dispatchEvents(ctx, cfg, f, events[start:], full[start:])
}

// markCall returns what a mark calls, or nil when no handler wants it (the
// events around it are then dispatched together). It notes the
// descriptions of tables on the way.
func (c *Client) markCall(f *flow, b *decoder.Batch, m *decoder.Mark) func(context.Context, *validated) error {
	msgs, schemas := c.reg.marks()
	switch m.Op {
	case decoder.OpMessage:
		if isReserved(m.Prefix) || !slices.ContainsFunc(msgs, func(r *msgRegistration) bool { return r.wants(m.Prefix) }) {
			return nil
		}
		msg := Message{Prefix: m.Prefix, Content: m.Content, Transactional: m.Transactional, LSN: m.LSN, CommitLSN: b.CommitLSN, XID: b.XID, Timestamp: b.CommitTime}
		return func(ctx context.Context, cfg *validated) error { return c.dispatchMessage(ctx, cfg, f, msg) }
	case decoder.OpRelation:
		rel := m.Relation
		prev := f.seen[rel.ID]
		if prev != nil && sameShape(prev, rel) {
			return nil // described again (a new connection): nothing changed
		}
		f.seen[rel.ID], f.dirty = rel, true
		if prev == nil || !c.isSubscribed(rel.Schema, rel.Name) {
			return nil
		}
		before, after := columnsOf(prev), columnsOf(rel)
		sc := SchemaChange{Schema: rel.Schema, Table: rel.Name, Before: before, After: after, Changes: diffColumns(before, after),
			CommitLSN: b.CommitLSN, XID: b.XID, Timestamp: b.CommitTime, Index: m.Index}
		c.stats.schemaChanges.Add(1)
		c.logger().Info("walex: a subscribed table changed shape", logkey.Table, tableName{rel.Schema, rel.Name}.String(), logkey.EventID, Position{sc.CommitLSN, sc.Index}.String())
		if !slices.ContainsFunc(schemas, func(r *schemaRegistration) bool { return r.wants(sc.Schema, sc.Table) }) {
			return nil
		}
		return func(ctx context.Context, cfg *validated) error {
			for _, r := range schemas {
				if !r.wants(sc.Schema, sc.Table) {
					continue
				}
				err := c.retry(ctx, cfg.RetryPolicy, f, &callSite{schemaReg: r, sc: &sc},
					func(int) error { return safeCall(func() error { return r.handler(ctx, sc) }) })
				if err != nil {
					return err
				}
			}
			return nil
		}
	}
	return nil
}

// dispatchMessage calls the message handlers that want m.
func (c *Client) dispatchMessage(ctx context.Context, cfg *validated, f *flow, m Message) error {
	msgs, _ := c.reg.marks()
	counted := false
	for _, r := range msgs {
		if !r.wants(m.Prefix) {
			continue
		}
		if !counted {
			counted = true
			c.stats.messages.Add(1)
		}
		err := c.retry(ctx, cfg.RetryPolicy, f, &callSite{msgReg: r, msg: &m},
			func(int) error { return safeCall(func() error { return r.handler(ctx, m) }) })
		if err != nil {
			return err
		}
	}
	return nil
}

// dispatchEvents calls the event handlers for events of one batch (full
// tells, per event, whether its table's updates carry the whole old row).
func (c *Client) dispatchEvents(ctx context.Context, cfg *validated, f *flow, events []Event, full []bool) error {
	if len(events) == 0 {
		return nil
	}
	c.stats.events.Add(uint64(len(events)))
	regs, mw := c.reg.snapshot()
	for _, r := range regs {
		var done *Position // a transactional handler's stored position
		if r.cp != nil {
			pos, ok, err := f.position(ctx, cfg, r)
			if err != nil {
				return err
			}
			if ok {
				done = &pos
			}
		}
		sel := events
		if !r.all || r.types != nil || !r.filters.empty() || done != nil {
			sel = r.selectEvents(events, full, done)
		}
		if len(sel) == 0 {
			continue
		}
		inner := r.handler
		if r.cp != nil {
			inner = r.txHandler(f, cfg)
		}
		err := c.retry(ctx, cfg.RetryPolicy, f, &callSite{reg: r, events: sel},
			func(attempt int) error { return r.call(ctx, mw, inner, sel, attempt) })
		if err != nil {
			return err
		}
	}
	return nil
}

// selectEvents returns the events r takes: events itself when it takes
// them all (the common case, which then costs no copy), else a new slice.
// Events at or before done (when set) are not taken.
func (r *registration) selectEvents(events []Event, full []bool, done *Position) []Event {
	takes := func(i int) bool {
		e := &events[i]
		if !r.all && (e.Source.Schema != r.table.Schema || e.Source.Table != r.table.Table) {
			return false
		}
		if done != nil && !PositionOf(*e).After(*done) {
			return false
		}
		return r.wants(e.Type) && r.filters.keep(e, full[i])
	}
	for i := range events {
		if takes(i) {
			continue
		}
		sel := make([]Event, i, len(events)-1)
		copy(sel, events[:i])
		for j := i + 1; j < len(events); j++ {
			if takes(j) {
				sel = append(sel, events[j])
			}
		}
		return sel
	}
	return events
}

// callSite is what a handler call is about, for the logs and errors of
// retry (computed only when needed: a call that succeeds costs nothing).
// One of reg, msgReg and schemaReg is set.
type callSite struct {
	reg       *registration
	events    []Event
	msgReg    *msgRegistration
	msg       *Message
	schemaReg *schemaRegistration
	sc        *SchemaChange
}

// describe returns the registration, its table ("" for a message
// handler), what the call was about, and the handler's argument.
func (s *callSite) describe() (handler, table, id string, arg any) {
	switch {
	case s.reg != nil:
		table = AllTables
		if !s.reg.all {
			table = s.reg.table.String()
		}
		return s.reg.String(), table, s.events[0].ID(), s.events
	case s.msgReg != nil:
		return s.msgReg.String(), "", s.msg.String(), *s.msg
	default:
		return s.schemaReg.String(), tableName{s.sc.Schema, s.sc.Table}.String(), s.sc.String(), *s.sc
	}
}

// retry calls fn with retries under policy; it returns a *HandlerError
// once the policy is exhausted, or ctx's error.
func (c *Client) retry(ctx context.Context, policy RetryPolicy, f *flow, site *callSite, fn func(attempt int) error) error {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err // the session ended: no handler starts
		}
		err := fn(attempt)
		if f.observe != nil {
			handler, table, _, arg := site.describe()
			f.observe(kit.Call{Handler: handler, Table: table, Attempt: attempt, Arg: arg, Err: err})
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		handler, table, id, _ := site.describe()
		if IsPermanent(err) { // retrying cannot fix it: stop now, whatever the policy
			return &HandlerError{Table: table, Handler: handler, EventID: id, Attempts: attempt, Err: err}
		}
		c.stats.retries.Add(1)
		if policy.MaxAttempts > 0 && attempt >= policy.MaxAttempts {
			return &HandlerError{Table: table, Handler: handler, EventID: id, Attempts: attempt, Err: err}
		}
		d := policy.delay(attempt)
		c.logger().Warn("walex: handler failed; retrying", logkey.Handler, handler, logkey.Table, table, logkey.EventID, id, logkey.Attempt, attempt, logkey.Delay, d, logkey.Err, err)
		if !sleepCtx(ctx, d) {
			return ctx.Err()
		}
	}
}
