package walex_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/walex-go/walex"
)

// delivery is one handler call: the events of one transaction as the
// handler saw them.
type delivery struct {
	session uint64 // connection the call came from (increases with every reconnect)
	commit  walex.LSN
	index   []int
	ids     []int32 // row ids, in event order
	eventID []string
}

// killMark describes one fault.
type killMark struct {
	// session: deliveries from later sessions came after the fault.
	session uint64
	// acked is the slot's confirmed_flush_lsn read just before the fault,
	// and handled the number of ledger entries recorded when it had been
	// read (counted after reading it): every transaction with a commit LSN
	// below acked must be among them, or the client acknowledged a
	// transaction whose handler had not finished.
	acked   walex.LSN
	handled int
	// resume is the position the slot resumed from: acked, or for a server
	// crash the position crash recovery restored. No transaction with a
	// commit LSN below it may be delivered after the fault.
	resume walex.LSN
}

// ledger records deliveries in the order the handler saw them.
type ledger struct {
	mu      sync.Mutex
	ds      []delivery
	rows    map[int32]bool
	changed chan struct{} // closed and replaced on every delivery
}

func newLedger() *ledger {
	return &ledger{rows: map[int32]bool{}, changed: make(chan struct{})}
}

func (l *ledger) add(d delivery) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ds = append(l.ds, d)
	for _, id := range d.ids {
		l.rows[id] = true
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// handler returns a handler that records each call with the session
// reported by session(); before, if set, runs first (and may block).
func (l *ledger) handler(session func() uint64, before func(ctx context.Context, session uint64, commit walex.LSN) error, work time.Duration) walex.Handler {
	return func(ctx context.Context, events []walex.Event) error {
		s := session()
		if before != nil {
			if err := before(ctx, s, events[0].CommitLSN); err != nil {
				return err
			}
		}
		d := delivery{session: s, commit: events[0].CommitLSN}
		for _, e := range events {
			if e.CommitLSN != d.commit {
				return fmt.Errorf("one handler call holds commit LSNs %s and %s", d.commit, e.CommitLSN)
			}
			d.index = append(d.index, e.Index)
			d.ids = append(d.ids, e.NewRecord["id"].(int32))
			d.eventID = append(d.eventID, e.ID())
		}
		if work > 0 {
			time.Sleep(work) // simulated work, so that batches queue up behind the handler
		}
		l.add(d)
		return nil
	}
}

func (l *ledger) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.rows)
}

func (l *ledger) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ds)
}

// holder blocks one handler call on request, so that a fault can be
// injected while a transaction is in flight.
type holder struct {
	mu    sync.Mutex
	armed bool
	held  chan walex.LSN
}

// arm makes the next handler call block until its context ends (the
// fault ends the session), as a handler that honours cancellation does.
func (h *holder) arm() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed, h.held = true, make(chan walex.LSN, 1)
}

func (h *holder) before(ctx context.Context, commit walex.LSN) error {
	h.mu.Lock()
	if !h.armed {
		h.mu.Unlock()
		return nil
	}
	h.armed = false
	held := h.held
	h.mu.Unlock()
	held <- commit
	<-ctx.Done()
	return ctx.Err()
}

// waitHeld returns the commit LSN of the held transaction.
func (h *holder) waitHeld(ctx context.Context, abort <-chan struct{}) (walex.LSN, error) {
	h.mu.Lock()
	held := h.held
	h.mu.Unlock()
	select {
	case lsn := <-held:
		return lsn, nil
	case <-abort:
		return 0, errors.New("stopped while waiting for a handler call to hold")
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for a handler call to hold: %w", context.Cause(ctx))
	}
}

func (l *ledger) snapshot() []delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]delivery(nil), l.ds...)
}

// waitRows waits until n distinct rows were delivered, ctx ends or
// abort is closed.
func (l *ledger) waitRows(ctx context.Context, n int, abort <-chan struct{}) error {
	for {
		l.mu.Lock()
		got, ch := len(l.rows), l.changed
		l.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-abort:
			return fmt.Errorf("stopped while waiting for %d delivered rows (have %d)", n, got)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d delivered rows (have %d): %w", n, got, context.Cause(ctx))
		}
	}
}

// checkLedger checks deliveries of a workload of transactions of
// rowsPerTxn rows each, with ids 1..totalRows in consecutive blocks (the
// k-th transaction inserts ids k*rowsPerTxn+1 ..): every row delivered;
// every delivery a whole transaction, in WAL order, with stable event IDs;
// within one session each transaction at most once and in commit order;
// at each fault, everything below the slot's confirmed_flush_lsn already
// handled, and nothing below the position the slot resumed from delivered
// after it. Duplicates are thus only of whole transactions the client had
// not acknowledged. It returns how many deliveries repeated a transaction
// delivered before.
func checkLedger(t *testing.T, ds []delivery, rowsPerTxn, totalRows int, kills []killMark) (extra int) {
	t.Helper()
	type txnInfo struct {
		first    int32
		sessions []uint64
	}
	txns := map[walex.LSN]*txnInfo{}
	byFirst := map[int32]walex.LSN{}
	lastInSession := map[uint64]walex.LSN{}
	covered := make([]bool, totalRows+1)
	nerr := 0
	fail := func(format string, args ...any) {
		t.Helper()
		nerr++
		if nerr <= 25 {
			t.Errorf(format, args...)
		}
	}
	for n, d := range ds {
		if len(d.ids) != rowsPerTxn {
			fail("delivery #%d (session %d) of transaction %s has %d events, want %d: not a whole transaction", n, d.session, d.commit, len(d.ids), rowsPerTxn)
			continue
		}
		first := d.ids[0]
		if first < 1 || int(first) > totalRows || (int(first)-1)%rowsPerTxn != 0 {
			fail("delivery #%d of transaction %s starts with row %d, which no transaction starts with", n, d.commit, first)
			continue
		}
		for j := range d.ids {
			if d.index[j] != j || d.ids[j] != first+int32(j) {
				fail("delivery #%d of transaction %s: event %d has Index %d and row %d, want Index %d and row %d", n, d.commit, j, d.index[j], d.ids[j], j, first+int32(j))
			}
			if want := fmt.Sprintf("%s:%d", d.commit, j); d.eventID[j] != want {
				fail("delivery #%d: event ID %q, want %q", n, d.eventID[j], want)
			}
			if id := d.ids[j]; id >= 1 && int(id) <= totalRows {
				covered[id] = true
			}
		}
		ti := txns[d.commit]
		if ti == nil {
			ti = &txnInfo{first: first}
			txns[d.commit] = ti
		} else if ti.first != first {
			fail("transaction %s delivered once with rows %d.. and once with rows %d..", d.commit, ti.first, first)
		}
		if c, ok := byFirst[first]; ok && c != d.commit {
			fail("rows %d.. delivered with commit LSN %s and with %s: event IDs are not stable", first, c, d.commit)
		}
		byFirst[first] = d.commit
		if last, ok := lastInSession[d.session]; ok && d.commit <= last {
			fail("session %d delivered transaction %s after %s: a duplicate or out of order within one connection", d.session, d.commit, last)
		}
		lastInSession[d.session] = d.commit
		for k, km := range kills {
			if d.session > km.session && d.commit < km.resume {
				fail("transaction %s (rows %d..) delivered in session %d, after fault #%d, although it is below the confirmed_flush_lsn %s the slot resumed from (sessions <= %d were before the fault)", d.commit, first, d.session, k+1, km.resume, km.session)
			}
		}
		ti.sessions = append(ti.sessions, d.session)
	}
	// Acknowledged means handled: at each fault, every transaction below
	// the slot's confirmed_flush_lsn had been recorded by its handler.
	for k, km := range kills {
		done := map[walex.LSN]bool{}
		for _, d := range ds[:min(km.handled, len(ds))] {
			done[d.commit] = true
		}
		for commit, ti := range txns {
			if commit < km.acked && !done[commit] {
				fail("fault #%d: confirmed_flush_lsn was %s, past transaction %s (rows %d..), whose handler had not finished: acknowledged before handled", k+1, km.acked, commit, ti.first)
			}
		}
	}
	var missing []int
	for id := 1; id <= totalRows; id++ {
		if !covered[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		fail("%d of %d rows never delivered (first: %v)", len(missing), totalRows, missing[:min(10, len(missing))])
	}
	if got, want := len(txns), totalRows/rowsPerTxn; got != want && len(missing) == 0 {
		fail("%d distinct transactions delivered, want %d", got, want)
	}
	dups := 0
	for _, ti := range txns {
		if len(ti.sessions) > 1 {
			dups++
			extra += len(ti.sessions) - 1
		}
	}
	if nerr > 25 {
		t.Errorf("... and %d more ledger errors", nerr-25)
	}
	t.Logf("ledger: %d deliveries of %d transactions (%d rows); %d transactions delivered more than once (%d extra deliveries); %d faults",
		len(ds), len(txns), totalRows, dups, extra, len(kills))
	return extra
}
