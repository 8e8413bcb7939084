package walex

import (
	"context"

	"github.com/walex-go/walex/decoder"
	"github.com/walex-go/walex/internal/logkey"
)

// dispatch calls the handlers for one batch, in registration order.
func (c *Client) dispatch(ctx context.Context, cfg *validated, b *decoder.Batch) error {
	if len(b.Changes) == 0 {
		return nil
	}
	events := make([]Event, 0, len(b.Changes))
	full := make([]bool, 0, len(b.Changes))
	for i := range b.Changes {
		ch := &b.Changes[i]
		if !c.isSubscribed(ch.Relation.Schema, ch.Relation.Name) {
			continue
		}
		events = append(events, newEvent(b, ch, cfg.conn.Database))
		full = append(full, ch.Relation.HasOldValues())
	}
	return c.dispatchEvents(ctx, cfg, events, full)
}

// dispatchEvents calls the handlers for the events of one batch (full
// tells, per event, whether its table's updates carry the whole old row).
func (c *Client) dispatchEvents(ctx context.Context, cfg *validated, events []Event, full []bool) error {
	if len(events) == 0 {
		return nil
	}
	c.stats.events.Add(uint64(len(events)))
	regs, mw := c.reg.snapshot()
	for _, r := range regs {
		sel := events
		if !r.all || r.types != nil || !r.filters.empty() {
			sel = r.selectEvents(events, full)
		}
		if len(sel) == 0 {
			continue
		}
		table := AllTables
		if !r.all {
			table = r.table.String()
		}
		if err := c.dispatchCall(ctx, cfg.RetryPolicy, r, mw, table, sel); err != nil {
			return err
		}
	}
	return nil
}

// selectEvents returns the events r takes: events itself when it takes
// them all (the common case, which then costs no copy), else a new slice.
func (r *registration) selectEvents(events []Event, full []bool) []Event {
	takes := func(i int) bool {
		e := &events[i]
		if !r.all && (e.Source.Schema != r.table.Schema || e.Source.Table != r.table.Table) {
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

// dispatchCall calls a registration with retries; it returns a
// *HandlerError once the retry policy is exhausted, or ctx's error.
func (c *Client) dispatchCall(ctx context.Context, policy RetryPolicy, r *registration, mw []func(Handler) Handler, table string, events []Event) error {
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
		c.logger().Warn("walex: handler failed; retrying", logkey.Handler, r.String(), logkey.Table, table, logkey.EventID, events[0].ID(), logkey.Attempt, attempt, logkey.Delay, d, logkey.Err, err)
		if !sleepCtx(ctx, d) {
			return ctx.Err()
		}
	}
}
