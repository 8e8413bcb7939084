package walex

import (
	"sync"
	"sync/atomic"
)

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
	// Messages passed to message handlers (OnMessage), and schema changes
	// seen in subscribed tables (OnSchemaChange). Like Events, they count
	// again what a fault delivers again.
	Messages, SchemaChanges uint64
	// Retries of handler calls, and reconnects.
	Retries, Reconnects uint64
	// Connected reports whether a replication connection is up.
	Connected bool
	// LastError is the last error that ended a connection, or nil.
	LastError error
	// Snapshots is the progress of each table's snapshot, in the order
	// they were asked for (see Config.Snapshot and Client.Snapshot).
	Snapshots []SnapshotProgress
}

// stats are the counters behind Stats.
type stats struct {
	events, transactions, retries, reconnects atomic.Uint64
	messages, schemaChanges                   atomic.Uint64
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
		Events:        c.stats.events.Load(),
		Transactions:  c.stats.transactions.Load(),
		Messages:      c.stats.messages.Load(),
		SchemaChanges: c.stats.schemaChanges.Load(),
		Retries:       c.stats.retries.Load(),
		Reconnects:    c.stats.reconnects.Load(),
		Connected:     c.stats.connected.Load(),
	}
	if conn := c.conn.Load(); conn != nil {
		st.ReceivedLSN, st.AckedLSN, st.ServerWALEnd = conn.Received(), conn.Acked(), conn.ServerWALEnd()
		if st.ServerWALEnd > st.AckedLSN && st.AckedLSN > 0 {
			st.LagBytes = uint64(st.ServerWALEnd - st.AckedLSN)
		}
	}
	st.Snapshots = c.snaps.progress()
	c.stats.mu.Lock()
	st.LastError = c.stats.lastErr
	c.stats.mu.Unlock()
	return st
}
