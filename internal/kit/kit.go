// Package kit connects package walextest to the unexported dispatch of
// package walex, so that the test kit drives handlers with the very code
// Run uses. Nothing here is for use outside the module.
package kit

import (
	"context"

	"github.com/walex-go/walex/decoder"
)

// Call is one handler call seen by an observer: which registration, what
// it was given and what it returned.
type Call struct {
	Handler string // the registration, as in a *walex.HandlerError
	Table   string // the table or "*"; the message prefix for a message handler
	Attempt int    // 1 for the first call, 2 for the first retry, ...
	// Arg is what the handler got: a []walex.Event, a walex.Message or a
	// walex.SchemaChange.
	Arg any
	Err error
}

// Flow is a dispatch state made by NewFlow.
type Flow interface {
	// Dispatch dispatches a decoded batch as Run does, and, when it is
	// the transaction's final one and every handler returned nil, counts
	// it as acknowledged.
	Dispatch(ctx context.Context, b *decoder.Batch) error
	// Reconnect forgets what a reconnect that resumes the stream at start
	// forgets: the transactions after start (and the table descriptions
	// they brought), and the positions of transactional handlers (loaded
	// again from their checkpointers).
	Reconnect(start decoder.LSN)
	// DispatchReads dispatches a snapshot chunk's Read events (a
	// []walex.Event) as Run does when the chunk's watermark arrives.
	DispatchReads(ctx context.Context, events any) error
	// MaxBatchEvents is the client's Config.MaxBatchEvents.
	MaxBatchEvents() int
	// Events returns the []walex.Event Run makes of a batch's changes
	// (every table's, subscribed or not).
	Events(b *decoder.Batch) any
}

// NewFlow returns a dispatch state for client (a *walex.Client) whose
// events name the database db, recording every handler call with observe.
// Package walex sets it at init.
var NewFlow func(client any, db string, observe func(Call)) Flow
