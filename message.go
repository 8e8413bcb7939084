package walex

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Message is a logical decoding message: what an application writes with
// pg_logical_emit_message(transactional, prefix, content). A transactional
// message travels with its transaction: it is delivered only if the
// transaction commits, at its place among the transaction's events. A
// non-transactional one is delivered as soon as the stream reaches it,
// whatever becomes of the transaction that wrote it.
type Message struct {
	Prefix  string `json:"prefix"`
	Content []byte `json:"content"` // belongs to the message: read only
	// Transactional tells how the message was written.
	Transactional bool `json:"transactional"`
	// LSN is the message's own WAL position.
	LSN LSN `json:"lsn"`
	// CommitLSN is the commit LSN of the message's transaction; for a
	// non-transactional message, its LSN.
	CommitLSN LSN `json:"commit_lsn"`
	// XID is the transaction's ID; 0 for a non-transactional message.
	XID uint32 `json:"xid"`
	// Timestamp is the commit time of the transaction; for a
	// non-transactional message, when walex received it.
	Timestamp time.Time `json:"timestamp"`
}

// String is a short description for logs.
func (m Message) String() string {
	return fmt.Sprintf("message %q at %s", m.Prefix, m.LSN)
}

// MessageHandler handles one logical decoding message.
type MessageHandler func(ctx context.Context, m Message) error

// AllMessages, passed to OnMessage, registers a handler for the messages
// of every prefix.
const AllMessages = "*"

// reservedPrefix starts the prefixes of walex's own messages (the
// heartbeat, the snapshot watermarks): they are never delivered.
const reservedPrefix = "walex_"

// OnMessage registers h for the logical decoding messages whose prefix is
// prefix (exactly), or, with AllMessages ("*"), for every message.
//
// Nothing needs to be set up: walex asks pgoutput for messages on every
// connection (they are sent from PostgreSQL 14 on). A
// transactional message arrives in its transaction's dispatch, in WAL
// order with the transaction's events: the handlers of the events written
// before it run first, then the message handlers, then those of the events
// after it (a transaction with messages is thus handed to an event handler
// in several calls, split where a message with a handler falls). It is
// acknowledged with its transaction, and after a crash with a durable slot
// it is delivered again with it. A non-transactional message is delivered
// at once, between transactions, and acknowledged by itself.
//
// Message handlers run on the dispatch goroutine like event handlers,
// in registration order, with the same retries (Config.RetryPolicy); an
// error that outlasts them stops Run with a *HandlerError. Middleware
// registered with Use wraps event handlers only.
//
// The prefixes that begin with "walex_" are walex's own (its heartbeat and
// snapshot watermarks) and are never delivered; OnMessage panics on one,
// on an empty prefix and on a nil h. Of the options, only WithName
// applies; others make it panic.
//
// This is the outbox pattern without an outbox table: write the message in
// the transaction that changes your data, and the message reaches your
// handler if and only if the change commits, in order with it.
func (c *Client) OnMessage(prefix string, h MessageHandler, opts ...Option) {
	c.reg.addMessage(prefix, h, opts)
}

// msgRegistration is one OnMessage call.
type msgRegistration struct {
	seq     int
	prefix  string // AllMessages for all
	handler MessageHandler
	name    string
}

// String describes the registration for logs.
func (r *msgRegistration) String() string {
	return fmt.Sprintf("OnMessage(%q) #%d (%s)", r.prefix, r.seq, r.name)
}

func (r *msgRegistration) wants(prefix string) bool {
	return r.prefix == AllMessages || r.prefix == prefix
}

func (g *registry) addMessage(prefix string, h MessageHandler, opts []Option) {
	if h == nil {
		panic(fmt.Sprintf("walex: OnMessage(%q): nil handler", prefix))
	}
	if prefix == "" {
		panic("walex: OnMessage(\"\"): empty prefix (use AllMessages for every prefix)")
	}
	if isReserved(prefix) {
		panic(fmt.Sprintf("walex: OnMessage(%q): prefixes beginning with %q are walex's own and never delivered", prefix, reservedPrefix))
	}
	r := &msgRegistration{prefix: prefix, handler: h, name: optionName("OnMessage", prefix, opts)}
	if r.name == "" {
		r.name = funcName(h)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r.seq = len(g.msgs) + 1
	g.msgs = append(g.msgs, r)
}

// optionName applies opts to a scratch registration and returns the
// name they set; options other than WithName make it panic.
func optionName(method, arg string, opts []Option) string {
	var r registration
	for _, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("walex: %s(%q): nil Option", method, arg))
		}
		before := r
		o.apply(&r)
		if !r.filters.empty() || len(r.functions) > 0 || r.concurrency != before.concurrency || r.cp != nil {
			panic(fmt.Sprintf("walex: %s(%q): only WithName applies", method, arg))
		}
	}
	return r.name
}

// isReserved reports whether a message prefix is walex's own.
func isReserved(prefix string) bool { return strings.HasPrefix(prefix, reservedPrefix) }
