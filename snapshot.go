package walex

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// SnapshotMode says when the client reads the rows that already exist in
// the subscribed tables (see Config.Snapshot).
type SnapshotMode string

// Snapshot modes.
const (
	// SnapshotNever reads no existing rows by itself; Client.Snapshot
	// still does. The default ("" means never).
	SnapshotNever SnapshotMode = "never"
	// SnapshotInitial reads every subscribed table when the durable slot
	// is created (and on every new connection with a temporary slot, whose
	// changes made while disconnected are lost), then streams.
	SnapshotInitial SnapshotMode = "initial"
	// SnapshotInitialOnly reads every subscribed table as SnapshotInitial
	// does (the changes made meanwhile are delivered too, which keeps the
	// copy consistent), then Run returns nil.
	SnapshotInitialOnly SnapshotMode = "initial_only"
)

// SnapshotProgress is the state of one table's snapshot, in Stats.
type SnapshotProgress struct {
	// Table is "schema.table".
	Table string
	// Rows is the number of Read events delivered so far (a row read
	// again, see the README's Snapshots section, counts again).
	Rows uint64
	// EstimatedRows is the planner's estimate of the table's rows when
	// the snapshot started (pg_class.reltuples); 0 when unknown.
	EstimatedRows int64
	// Started is when the snapshot started; Done when its last row was
	// delivered and acknowledged (zero until then).
	Started, Done time.Time
	// Err is why the snapshot stopped for good, or nil.
	Err error
}

// Errors of snapshots, for errors.Is.
var (
	// ErrNotRunning: Snapshot was called while Run is not running, or Run
	// returned before the snapshot finished.
	ErrNotRunning = errors.New("walex: the client is not running")
	// ErrNoSnapshotKey: a table to snapshot has neither a primary key nor
	// a replica identity index, so its rows cannot be read in key order
	// and matched with the stream.
	ErrNoSnapshotKey error = &permanentSentinel{"walex: the table has no primary key or replica identity index to snapshot by"}
)

// errSnapshotDone ends the session of a Run with SnapshotInitialOnly once
// the initial snapshot is done.
var errSnapshotDone = errors.New("walex: initial snapshot done")

// OnRead registers h for the Read events of table: the rows that existed
// when its snapshot read them.
func (c *Client) OnRead(table string, h Handler, opts ...Option) {
	c.register("OnRead", table, []EventType{Read}, h, opts)
}

// Snapshot reads the existing rows of the given subscribed tables (all
// subscribed tables when none is given) while Run streams, and delivers
// them as Read events, in order with the stream: a consumer that applies
// the events in delivery order ends with the table's rows. Writers are not
// blocked and the stream goes on meanwhile. A table whose snapshot is
// running starts again from its first row.
//
// Snapshot returns nil when every table's last row was delivered and
// acknowledged, the snapshot's error if one failed (ErrNoSnapshotKey, a
// missing privilege), or ctx's error when ctx ends first; the snapshot
// then goes on. With a durable slot, a snapshot interrupted by a restart
// resumes after it from its last acknowledged chunk (see
// Config.SnapshotTable). It returns ErrNotRunning when Run is not running,
// and an error wrapping ErrNotSubscribed for a table outside the
// subscriptions.
func (c *Client) Snapshot(ctx context.Context, tables ...string) error {
	if !c.running.Load() {
		return fmt.Errorf("%w: call Snapshot while Run runs", ErrNotRunning)
	}
	subs := *c.subs.Load()
	var list []tableName
	if len(tables) == 0 {
		list = c.subscribed()
	}
	for _, s := range tables {
		t, err := parseTableName(s)
		if err != nil {
			return fmt.Errorf("walex: Snapshot(%q): invalid table name: %w", s, err)
		}
		if !subs[t] {
			return fmt.Errorf("%w: Snapshot(%q): add it with AddSubscriptions (and to the publication) first", ErrNotSubscribed, s)
		}
		if !slices.Contains(list, t) {
			list = append(list, t)
		}
	}
	waits := c.snaps.request(list, false, true)
	if waits == nil {
		return fmt.Errorf("%w: Run returned", ErrNotRunning)
	}
	for _, w := range waits {
		select {
		case err := <-w:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// snapshots is a Client's snapshot state: the tables whose snapshot was
// asked for, with their progress. It outlives sessions (a new connection
// resumes the work) and, with a durable slot, is saved in
// Config.SnapshotTable.
type snapshots struct {
	mu     sync.Mutex
	tables map[tableName]*tableSnap
	order  []tableName   // first request first
	wake   chan struct{} // a table was asked for
	// running is set while Run runs; requests made when it is not get
	// no answer, so they are refused.
	running bool
}

// maxMarks is how many delivered chunks a table's progress remembers.
const maxMarks = 64

// tableSnap is one table's snapshot.
type tableSnap struct {
	table   tableName
	initial bool // part of the initial snapshot (SnapshotInitial*)
	// gen grows when the snapshot is asked for again, which restarts it.
	gen uint64
	// chunkSize, when not 0, is the chunk size after chunk queries were
	// cancelled by statement_timeout (halved each time).
	chunkSize int
	rows      uint64
	estimated int64
	started   time.Time
	done      time.Time
	err       error
	// marks are the last delivered chunks, oldest first: where the
	// snapshot resumes from.
	marks []chunkMark
	// rereads are keys to read again (see session.observe), as the text
	// of their key columns, by their canonical form.
	rereads map[string][]string
	waiters []chan error
}

// chunkMark is a delivered chunk: the WAL position where its rows were
// delivered, the key of its last row (nil: none), and the table's Read
// events up to it.
type chunkMark struct {
	LSN  LSN      `json:"lsn"`
	Key  []string `json:"key"`
	Rows uint64   `json:"rows"`
}

func (s *snapshots) init() {
	if s.wake == nil {
		s.tables = make(map[tableName]*tableSnap)
		s.wake = make(chan struct{}, 1)
	}
}

// request asks for the tables' snapshots; restart starts a running or
// finished one again. It returns a channel per table that receives the
// snapshot's outcome, or nil when Run is not running.
func (s *snapshots) request(tables []tableName, initial, restart bool) []chan error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	if !s.running {
		return nil
	}
	waits := []chan error{}
	for _, t := range tables {
		ts, known := s.table(t)
		if known && !restart && ts.done.IsZero() && ts.err == nil {
			ts.initial = ts.initial || initial
			continue
		}
		if restart || ts.err != nil || !ts.done.IsZero() {
			ts.reset()
		}
		ts.initial = initial
		w := make(chan error, 1)
		ts.waiters = append(ts.waiters, w)
		waits = append(waits, w)
	}
	s.signal()
	return waits
}

// table returns t's state, made now if it had none (s.mu held), and
// whether it had one.
func (s *snapshots) table(t tableName) (*tableSnap, bool) {
	if ts := s.tables[t]; ts != nil {
		return ts, true
	}
	ts := &tableSnap{table: t}
	s.tables[t] = ts
	s.order = append(s.order, t)
	return ts, false
}

// signal wakes the coordinator: there is work.
func (s *snapshots) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// reset makes ts start again from its first row.
func (ts *tableSnap) reset() {
	ts.gen++
	ts.rows, ts.estimated = 0, 0
	ts.started, ts.done = time.Time{}, time.Time{}
	ts.err = nil
	ts.marks = nil
	ts.rereads = nil
}

// finish records the outcome of ts and tells its waiters.
func (ts *tableSnap) finish(err error) {
	if err == nil {
		ts.done = time.Now()
	}
	ts.err = err
	for _, w := range ts.waiters {
		w <- err
	}
	ts.waiters = nil
}

// position is the key of the last row delivered, nil at the start.
func (ts *tableSnap) position() []string {
	if len(ts.marks) == 0 {
		return nil
	}
	return ts.marks[len(ts.marks)-1].Key
}

// rewind forgets the chunks delivered after start, the WAL position a new
// connection streams from: the server sends their stream events again,
// and the chunks must come after them again. It reports whether anything
// was forgotten.
func (ts *tableSnap) rewind(start LSN) bool {
	n := len(ts.marks)
	for n > 0 && ts.marks[n-1].LSN > start {
		n--
	}
	if n == len(ts.marks) {
		return false
	}
	if n == 0 && len(ts.marks) > 0 {
		ts.marks, ts.rows = nil, 0
	} else {
		ts.marks = ts.marks[:n]
		ts.rows = ts.marks[n-1].Rows
	}
	ts.done = time.Time{}
	return true
}

// next returns the first table with work left, or nil.
func (s *snapshots) next() *tableSnap {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.order {
		if ts := s.tables[t]; ts.err == nil && ts.done.IsZero() {
			return ts
		}
	}
	return nil
}

// initialPending reports whether a table of the initial snapshot has work
// left, and whether one failed.
func (s *snapshots) initialPending() (pending bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ts := range s.tables {
		if ts.initial {
			if ts.err != nil {
				return false, ts.err
			}
			if ts.done.IsZero() {
				pending = true
			}
		}
	}
	return pending, nil
}

// start records that Run runs.
func (s *snapshots) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = true
}

// stopped tells the waiters that Run returned.
func (s *snapshots) stopped() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = false
	for _, ts := range s.tables {
		for _, w := range ts.waiters {
			w <- fmt.Errorf("%w: Run returned before the snapshot of %s finished", ErrNotRunning, ts.table)
		}
		ts.waiters = nil
	}
}

// progress returns Stats.Snapshots.
func (s *snapshots) progress() []SnapshotProgress {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SnapshotProgress, 0, len(s.order))
	for _, t := range s.order {
		ts := s.tables[t]
		out = append(out, SnapshotProgress{Table: t.String(), Rows: ts.rows, EstimatedRows: ts.estimated, Started: ts.started, Done: ts.done, Err: ts.err})
	}
	return out
}
