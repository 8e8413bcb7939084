package walex

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walex-go/walex/decoder"
	"github.com/walex-go/walex/replication"
)

// Client streams committed changes from PostgreSQL and calls the
// registered handlers. Create it with New, register handlers, then call
// Run. Registration and the subscription and configuration methods are
// safe for concurrent use, also while Run runs.
type Client struct {
	mu        sync.Mutex
	cfg       *validated
	reconnect context.CancelCauseFunc // cancels the current session; nil when none

	reg     registry
	subs    atomic.Pointer[map[tableName]bool]
	running atomic.Bool
	conn    atomic.Pointer[replication.Conn] // the current or last connection, for Stats
	warned  map[tableName]bool               // tables warned about in this Run (Run's goroutine only)
	stats   stats
}

// New validates cfg and returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	v, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: v}
	c.setSubs(v.subs)
	return c, nil
}

func (c *Client) setSubs(list []tableName) {
	m := make(map[tableName]bool, len(list))
	for _, t := range list {
		m[t] = true
	}
	c.subs.Store(&m)
}

// logger is the configured logger (UpdateConfig may replace it).
func (c *Client) logger() *slog.Logger { return c.config().Logger }

func (c *Client) config() *validated {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// OnInsert registers h for the inserts of table ("users", "schema.table").
// It panics if h is nil or the table name is invalid.
func (c *Client) OnInsert(table string, h Handler, opts ...Option) {
	c.reg.add("OnInsert", table, []EventType{Insert}, h, opts)
	c.checkLate(table)
}

// OnUpdate registers h for the updates of table.
func (c *Client) OnUpdate(table string, h Handler, opts ...Option) {
	c.reg.add("OnUpdate", table, []EventType{Update}, h, opts)
	c.checkLate(table)
}

// OnDelete registers h for the deletes of table.
func (c *Client) OnDelete(table string, h Handler, opts ...Option) {
	c.reg.add("OnDelete", table, []EventType{Delete}, h, opts)
	c.checkLate(table)
}

// OnTruncate registers h for truncations of table.
func (c *Client) OnTruncate(table string, h Handler, opts ...Option) {
	c.reg.add("OnTruncate", table, []EventType{Truncate}, h, opts)
	c.checkLate(table)
}

// OnEvent registers h for every event of table, or, with AllTables, for
// all events of every transaction (once per transaction).
func (c *Client) OnEvent(table string, h Handler, opts ...Option) {
	c.reg.add("OnEvent", table, nil, h, opts)
	c.checkLate(table)
}

// Use adds middleware around every handler call, outermost first. The
// middleware sees the call's events and its result (including the errors
// of WithFunctions), and runs again on each retry.
func (c *Client) Use(mw func(next Handler) Handler) { c.reg.use(mw) }

// AddSubscriptions subscribes to more tables; it takes effect from the
// next transaction the client decodes. Invalid names are reported and
// nothing is changed. With Config.CreatePublication, the tables are added
// to the publication at once when Run is running (otherwise when it
// starts).
func (c *Client) AddSubscriptions(tables ...string) error {
	if err := c.changeSubs(tables, true); err != nil {
		return err
	}
	cfg := c.config()
	if !cfg.CreatePublication || !c.running.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cat := &catalog{cfg: cfg.conn}
	defer cat.close()
	return cat.ensurePublication(ctx, cfg.Publication, c.subscribed(), c.logger())
}

// RemoveSubscriptions unsubscribes from tables; it takes effect from the
// next transaction.
func (c *Client) RemoveSubscriptions(tables ...string) error {
	return c.changeSubs(tables, false)
}

func (c *Client) changeSubs(tables []string, add bool) error {
	var parsed []tableName
	for _, s := range tables {
		t, err := parseTableName(s)
		if err != nil {
			return &ConfigError{Field: "Subscriptions", Reason: fmt.Sprintf("entry %q: %v", s, err)}
		}
		parsed = append(parsed, t)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := *c.cfg
	cfg.subs = nil
	cfg.Subscriptions = nil
	cur := *c.subs.Load()
	next := make(map[tableName]bool, len(cur))
	for t := range cur {
		next[t] = true
	}
	for _, t := range parsed {
		if add {
			next[t] = true
		} else {
			delete(next, t)
		}
	}
	for _, t := range c.cfg.subs {
		if next[t] {
			cfg.subs = append(cfg.subs, t)
		}
	}
	for _, t := range parsed {
		if add && !containsTable(cfg.subs, t) {
			cfg.subs = append(cfg.subs, t)
		}
	}
	for _, t := range cfg.subs {
		cfg.Subscriptions = append(cfg.Subscriptions, t.String())
	}
	c.cfg = &cfg
	c.subs.Store(&next)
	return nil
}

func containsTable(list []tableName, t tableName) bool {
	for _, x := range list {
		if x == t {
			return true
		}
	}
	return false
}

// UpdateConfig changes the configuration. fn gets a copy of the current
// Config; the result is validated and, if valid, used from the next
// connection on (call Reconnect to apply it now). Subscriptions changed
// here take effect at once, as with AddSubscriptions.
func (c *Client) UpdateConfig(fn func(cfg *Config)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := c.cfg.Config
	cfg.Subscriptions = append([]string(nil), cfg.Subscriptions...)
	fn(&cfg)
	v, err := cfg.validate()
	if err != nil {
		return err
	}
	c.cfg = v
	c.setSubs(v.subs)
	return nil
}

// errReconnect is the cause of a session ended by Reconnect.
var errReconnect = errors.New("walex: reconnect requested")

// Reconnect ends the current connection; Run connects again at once with
// the current configuration, resuming from the slot (with a temporary
// slot, changes made in between are lost).
func (c *Client) Reconnect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reconnect != nil {
		c.reconnect(errReconnect)
	}
}

// Run connects, streams and calls handlers until ctx ends, then sends a
// last acknowledgement and returns nil. It returns an error at once for a
// permanent problem (see IsPermanent: bad configuration, authentication,
// missing publication, wal_level, a handler that kept failing), and
// reconnects with backoff after transient ones (a dropped connection, a
// server restart).
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer c.running.Store(false)
	c.warned = make(map[tableName]bool)
	if err := c.checkRegistrations(); err != nil {
		return err
	}
	failures := 0
	var slotWaitStart time.Time
	var slotWaits int
	for {
		start := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			var he *HandlerError
			if errors.As(err, &he) {
				return err
			}
			return nil
		}
		c.stats.setErr(err)
		if IsPermanent(err) {
			c.logger().Error("walex stopped", "err", err)
			return err
		}
		var inUse *replication.SlotInUseError
		if errors.As(err, &inUse) {
			if slotWaitStart.IsZero() {
				slotWaitStart = time.Now()
			}
			timeout := c.config().SlotWaitTimeout
			if timeout > 0 && time.Since(slotWaitStart) >= timeout {
				return fmt.Errorf("walex: gave up waiting %v for the slot: %w", timeout, err)
			}
			slotWaits++
			d := min(time.Duration(slotWaits)*200*time.Millisecond, 5*time.Second)
			c.logger().Info("walex waiting for the replication slot held by another process", "slot", inUse.Slot, "active_pid", inUse.PID, "waited", time.Since(slotWaitStart).Round(time.Millisecond), "retry_in", d)
			if !sleepCtx(ctx, d) {
				return nil
			}
			continue
		}
		slotWaitStart, slotWaits = time.Time{}, 0
		policy := c.config().ReconnectPolicy
		if time.Since(start) > policy.MaxDelay {
			failures = 0
		}
		failures++
		if policy.MaxAttempts > 0 && failures >= policy.MaxAttempts {
			return fmt.Errorf("walex: giving up after %d connection attempts: %w", failures, err)
		}
		d := policy.delay(failures)
		if errors.Is(err, errReconnect) {
			d = 0
		} else {
			d = d/2 + rand.N(d/2+1) // jitter
		}
		c.stats.reconnects.Add(1)
		c.logger().Warn("walex reconnecting", "err", err, "attempt", failures, "in", d)
		if !sleepCtx(ctx, d) {
			return nil
		}
	}
}

// sleepCtx waits d; it returns false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// checkLate warns about a handler registered while Run runs for a table
// outside the subscriptions (at start-up, Run returns ErrNotSubscribed).
func (c *Client) checkLate(table string) {
	if table == AllTables || !c.running.Load() {
		return
	}
	if t, err := parseTableName(table); err == nil && !(*c.subs.Load())[t] {
		c.logger().Warn("walex handler registered for a table that is not subscribed: it will not be called until the table is added with AddSubscriptions",
			"table", t.String())
	}
}

// checkRegistrations reports handlers for tables outside the subscriptions.
func (c *Client) checkRegistrations() error {
	regs, _ := c.reg.snapshot()
	subs := *c.subs.Load()
	for _, r := range regs {
		if !r.all && !subs[r.table] {
			return fmt.Errorf("%w: %s is registered for %s; add %q to Config.Subscriptions (and to the publication)", ErrNotSubscribed, r, r.table, r.table.String())
		}
	}
	return nil
}

// session runs one connection: connect, stream, dispatch, until an error
// or ctx ends.
func (c *Client) session(parent context.Context) error {
	cfg := c.config()
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	c.mu.Lock()
	c.reconnect = cancel
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.reconnect = nil
		c.mu.Unlock()
	}()

	types := &catalog{cfg: cfg.conn}
	defer types.close()
	if err := c.prepareTables(ctx, cfg, types); err != nil {
		return err
	}

	binary := cfg.Transfer == TransferBinary
	if cfg.Transfer == TransferAuto {
		ready, others, err := types.binaryReady(ctx, c.subscribed())
		if err != nil {
			return err
		}
		binary = ready
		if !ready {
			c.logger().Debug("walex: values come in text: walex does not read these subscribed column types in binary", "types", others)
		}
	}

	conn, err := replication.Connect(ctx, replication.Config{
		Binary:         binary,
		Conn:           cfg.conn,
		Slot:           cfg.SlotName,
		Temporary:      !cfg.DurableSlot,
		Publication:    cfg.Publication,
		StatusInterval: cfg.StatusInterval,
		ReadCoalesce:   cfg.ReadCoalesce,
		OriginNone:     cfg.SkipOriginChanges,
		Logger:         cfg.Logger,
	})
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && parent.Err() == nil {
			return cause
		}
		return err
	}
	defer conn.Close(ctx)
	c.conn.Store(conn)
	c.stats.connected.Store(true)
	defer c.stats.connected.Store(false)
	c.logger().Info("walex connected", "slot", conn.Slot(), "server_version", conn.ServerVersion(), "publication", cfg.Publication)

	dec := decoder.New(decoder.Options{
		MaxBatchEvents: cfg.MaxBatchEvents,
		MemoryBudget:   cfg.MemoryBudget,
		SpillDir:       cfg.SpillDir,
		SkipOrigins:    cfg.SkipOriginChanges,
		Types:          types,
		TextOf:         c.textOf(cfg, types),
		Logger:         cfg.Logger,
		Skip: func(r *decoder.Relation) bool {
			return !(*c.subs.Load())[tableName{Schema: r.Schema, Table: r.Name}]
		},
	})
	defer dec.Close()

	batches := make(chan *decoder.Batch, 1) // bounded: the back-pressure between reader and handlers
	var acked atomic.Uint64                 // end LSN of the last dispatched transaction
	var enqueued LSN                        // end LSN of the last enqueued transaction (reader goroutine)
	var wg sync.WaitGroup
	var dispatchErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case b := <-batches:
				if err := c.dispatch(ctx, cfg, b); err != nil {
					// A handler cut short by the end of the session has
					// no error of its own: the session's cause stands.
					var he *HandlerError
					if ctx.Err() == nil || errors.As(err, &he) {
						dispatchErr = err
						cancel(err)
					}
					return
				}
				if b.Final {
					if b.Message == "" {
						c.stats.transactions.Add(1)
					}
					conn.Ack(b.EndLSN)
					acked.Store(uint64(b.EndLSN))
				}
			}
		}
	}()

	if cfg.HeartbeatInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.heartbeat(ctx, cfg)
		}()
	}

	// While emit waits for the dispatcher, this ticker keeps the status
	// updates going; Conn.KeepAlive sends only when one is due, so tick
	// often enough for a status interval cut to a third of a short
	// wal_sender_timeout.
	keepalive := time.NewTicker(100 * time.Millisecond)
	defer keepalive.Stop()
	emit := func(b *decoder.Batch) error {
		for {
			select {
			case batches <- b:
				if b.Final {
					enqueued = b.EndLSN
				}
				return nil
			case <-keepalive.C:
				if err := conn.KeepAlive(); err != nil {
					return &emitError{err}
				}
			case <-ctx.Done():
				return &emitError{context.Cause(ctx)}
			}
		}
	}
	streamErr := conn.Stream(ctx, replication.Handler{
		Data: func(walStart replication.LSN, data []byte) error {
			err := dec.Decode(data, emit)
			var ee *emitError
			if err == nil || errors.As(err, &ee) {
				return err
			}
			// The same bytes would come again after a reconnect: stop.
			return &replication.PermanentError{Err: fmt.Errorf("walex: cannot decode the change stream at WAL position %s: %w (nothing from this transaction on was acknowledged)", walStart, err)}
		},
		Idle: func() bool {
			return !dec.InTransaction() && LSN(acked.Load()) == enqueued
		},
	})
	cancel(streamErr)
	wg.Wait()
	if err := conn.Finish(); err != nil {
		// Expected after the connection broke; the slot keeps the last
		// acknowledged position the server received.
		c.logger().Debug("walex could not send the final acknowledgement", "slot", conn.Slot(), "err", err)
	} else {
		c.logger().Info("walex acknowledged", "slot", conn.Slot(), "flush_lsn", conn.Acked().String())
	}
	if dispatchErr != nil {
		return dispatchErr
	}
	if cause := context.Cause(ctx); errors.Is(cause, errReconnect) {
		return cause
	}
	return streamErr
}

// textOf returns the decoder's TextOf for one session: the catalog's, with
// a warning the first time each type needs it under TransferAuto (a table
// or column of that type came after the connection started in binary).
func (c *Client) textOf(cfg *validated, cat *catalog) func(uint32, []byte) ([]byte, error) {
	warned := map[uint32]bool{}
	return func(oid uint32, b []byte) ([]byte, error) {
		if !warned[oid] && cfg.Transfer == TransferAuto {
			warned[oid] = true
			name := strconv.FormatUint(uint64(oid), 10)
			if info, err := cat.ResolveType(oid); err == nil {
				name = info.Name
			}
			c.logger().Warn("walex: values of a type walex does not read in binary arrive in binary (a table or column added after the connection started); the server converts each one, with a query, until the next connection, which uses text",
				"type", name)
		}
		return cat.TextOf(oid, b)
	}
}

// emitError wraps what stopped the hand-over of a batch to the dispatcher
// (as opposed to a decoding error).
type emitError struct{ err error }

// Error implements the error interface.
func (e *emitError) Error() string { return e.err.Error() }

// Unwrap returns the underlying error.
func (e *emitError) Unwrap() error { return e.err }

// dispatch calls the handlers for one batch.
func (c *Client) dispatch(ctx context.Context, cfg *validated, b *decoder.Batch) error {
	if len(b.Changes) == 0 {
		return nil
	}
	subs := *c.subs.Load()
	events := make([]Event, 0, len(b.Changes))
	full := make([]bool, 0, len(b.Changes))
	for i := range b.Changes {
		ch := &b.Changes[i]
		if !subs[tableName{Schema: ch.Relation.Schema, Table: ch.Relation.Name}] {
			continue
		}
		events = append(events, newEvent(b, ch, cfg.conn.Database))
		full = append(full, ch.Relation.HasOldValues())
	}
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
		if err := c.dispatchCall(ctx, r, mw, table, sel); err != nil {
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

// Stats is a snapshot of a Client's counters and positions.
type Stats struct {
	// ReceivedLSN is the highest WAL position received from the server.
	ReceivedLSN LSN
	// AckedLSN is the end of the last transaction all handlers finished:
	// the flush position reported to the server.
	AckedLSN LSN
	// ServerWALEnd is the server's WAL end as of its last message.
	ServerWALEnd LSN
	// LagBytes is ServerWALEnd - AckedLSN: WAL the server holds for this
	// client that it has not finished.
	LagBytes uint64
	// Events passed to handlers' dispatch, and transactions fully handled.
	Events, Transactions uint64
	// Retries of handler calls, and reconnects.
	Retries, Reconnects uint64
	// Connected reports whether a replication connection is up.
	Connected bool
	// LastError is the last error that ended a connection, or nil.
	LastError error
}

type stats struct {
	events, transactions, retries, reconnects atomic.Uint64
	connected                                 atomic.Bool
	mu                                        sync.Mutex
	lastErr                                   error
}

func (s *stats) setErr(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// Stats returns the client's counters. Safe from any goroutine.
func (c *Client) Stats() Stats {
	st := Stats{
		Events:       c.stats.events.Load(),
		Transactions: c.stats.transactions.Load(),
		Retries:      c.stats.retries.Load(),
		Reconnects:   c.stats.reconnects.Load(),
		Connected:    c.stats.connected.Load(),
	}
	if conn := c.conn.Load(); conn != nil {
		st.ReceivedLSN, st.AckedLSN, st.ServerWALEnd = conn.Received(), conn.Acked(), conn.ServerWALEnd()
		if st.ServerWALEnd > st.AckedLSN && st.AckedLSN > 0 {
			st.LagBytes = uint64(st.ServerWALEnd - st.AckedLSN)
		}
	}
	c.stats.mu.Lock()
	st.LastError = c.stats.lastErr
	c.stats.mu.Unlock()
	return st
}

// heartbeat writes a non-transactional logical message every
// HeartbeatInterval until ctx ends; the decoder turns it into an empty
// batch that is acknowledged in order. Errors are logged and retried on
// the next tick.
func (c *Client) heartbeat(ctx context.Context, cfg *validated) {
	cat := &catalog{cfg: cfg.conn}
	defer cat.close()
	t := time.NewTicker(cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, cfg.HeartbeatInterval+5*time.Second)
		_, err := cat.query(qctx, `SELECT pg_logical_emit_message(false, 'walex_heartbeat', '')`)
		cancel()
		if err != nil && ctx.Err() == nil {
			c.logger().Warn("walex heartbeat failed", "err", err)
			cat.close()
			cat.conn = nil
		}
	}
}
