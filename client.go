package walex

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/walex-go/walex/internal/logkey"
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
	// Run's goroutine only, reset by each Run:
	warned     map[string]bool    // warnings given once per Run
	missing    map[tableName]bool // subscribed tables found missing at the last check
	snapLoaded bool               // the durable snapshot progress was read
	stats      stats
	snaps      snapshots
	flow       *flow // the dispatch's state (dispatcher goroutine)
}

// New validates cfg and returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	v, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: v}
	c.flow = newFlow(c)
	c.setSubs(v.subs)
	c.snaps.init()
	return c, nil
}

// config returns the current configuration. The value is never modified
// once published: a change replaces it.
func (c *Client) config() *validated {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// Name returns Config.Name, the application name the client was
// configured with (as of the last UpdateConfig). Metrics and tracing
// plugins label a client with it.
func (c *Client) Name() string { return c.config().Name }

// logger is the configured logger (UpdateConfig may replace it).
func (c *Client) logger() *slog.Logger { return c.config().Logger }

// OnInsert registers h for the inserts of table ("users", "schema.table").
// It panics if h is nil or the table name is invalid.
func (c *Client) OnInsert(table string, h Handler, opts ...Option) {
	c.register("OnInsert", table, []EventType{Insert}, h, opts)
}

// OnUpdate registers h for the updates of table.
func (c *Client) OnUpdate(table string, h Handler, opts ...Option) {
	c.register("OnUpdate", table, []EventType{Update}, h, opts)
}

// OnDelete registers h for the deletes of table.
func (c *Client) OnDelete(table string, h Handler, opts ...Option) {
	c.register("OnDelete", table, []EventType{Delete}, h, opts)
}

// OnTruncate registers h for truncations of table.
func (c *Client) OnTruncate(table string, h Handler, opts ...Option) {
	c.register("OnTruncate", table, []EventType{Truncate}, h, opts)
}

// OnEvent registers h for every event of table, or, with AllTables, for
// all events of every transaction (once per transaction).
func (c *Client) OnEvent(table string, h Handler, opts ...Option) {
	c.register("OnEvent", table, nil, h, opts)
}

func (c *Client) register(method, table string, types []EventType, h Handler, opts []Option) {
	c.reg.add(method, table, types, h, opts)
	c.checkLate(table)
}

// Use adds middleware around every handler call, outermost first. The
// middleware sees the call's events and its result (including the errors
// of WithFunctions), and runs again on each retry.
func (c *Client) Use(mw func(next Handler) Handler) { c.reg.use(mw) }

// checkLate warns about a handler registered while Run runs for a table
// outside the subscriptions (at start-up, Run returns ErrNotSubscribed).
func (c *Client) checkLate(table string) {
	if table == AllTables || !c.running.Load() {
		return
	}
	if t, err := parseTableName(table); err == nil && !(*c.subs.Load())[t] {
		c.logger().Warn("walex: handler registered for a table that is not subscribed: it will not be called until the table is added with AddSubscriptions",
			logkey.Table, t.String())
	}
}

// UpdateConfig changes the configuration. fn gets a copy of the Config as
// it was given (to New, or to the last UpdateConfig; with the
// subscriptions as they are now), without defaults filled in: a field left
// at its zero value keeps following its default (the slot name follows
// Name). The result is validated; if it is invalid, nothing changes.
//
// What takes effect when:
//   - Subscriptions: at once, as with AddSubscriptions and
//     RemoveSubscriptions (without their checks against the catalog: Run
//     checks at the next connection).
//   - Logger: at once for the client's own messages, from the next
//     connection for the connection's.
//   - Everything else (connection settings, the slot, the publication,
//     RetryPolicy, timeouts, batching): from the next connection on; the
//     transaction being handled finishes under the settings it started
//     with. Call Reconnect to apply them now.
func (c *Client) UpdateConfig(fn func(cfg *Config)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := c.cfg.user
	cfg.Subscriptions = append([]string(nil), c.cfg.Subscriptions...)
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
