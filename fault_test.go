package walex_test

// Fault-injection tests (issue 5, item 7). Each case drives a real
// PostgreSQL through a fault — walsenders terminated, the server crashed,
// the consuming process SIGKILLed, handlers failing or slow, bad
// configuration — and checks a ledger of delivered event IDs against the
// delivery guarantees of DESIGN.md: nothing lost, duplicates only of whole
// transactions the client had not acknowledged, never a redelivery of a
// transaction the slot had confirmed.
//
// Cases that restart the server use a dedicated pgtest server, so that the
// shared one is not disturbed.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
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

// waitReported waits until the walsender pid has received a status update
// whose write position is past lsn: the client reported its position after
// it had received that transaction.
func waitReported(ctx context.Context, conn *pgx.Conn, pid int32, lsn walex.LSN) error {
	for {
		var s *string
		err := conn.QueryRow(ctx, `SELECT write_lsn::text FROM pg_stat_replication WHERE pid = $1`, pid).Scan(&s)
		if err != nil {
			return fmt.Errorf("walsender %d: %w", pid, err)
		}
		if s != nil {
			if w, err := pglogrepl.ParseLSN(*s); err == nil && w > lsn {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a status update past %s from walsender %d: %w", lsn, pid, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
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
// not acknowledged.
func checkLedger(t *testing.T, ds []delivery, rowsPerTxn, totalRows int, kills []killMark) {
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
	dups, extra := 0, 0
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
}

// runner runs a Client in a goroutine.
type runner struct {
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, valid after done
	cancel context.CancelFunc
}

func startRun(t *testing.T, c *walex.Client) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{done: make(chan struct{}), cancel: cancel}
	go func() {
		r.err = c.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// stop cancels Run and returns its result.
func (r *runner) stop() error {
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		return errors.New("Run did not return within 30s of cancel")
	}
}

// exited reports Run's result if it returned.
func (r *runner) exited() (bool, error) {
	select {
	case <-r.done:
		return true, r.err
	default:
		return false, nil
	}
}

// testLogger returns a logger that keeps the client's log and prints its
// tail if the test fails.
func testLogger(t *testing.T) *slog.Logger {
	var buf bytes.Buffer
	var mu sync.Mutex
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("client log (tail):\n%s", tail(buf.String(), 60))
		}
	})
	return slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d lines omitted]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

func fastReconnect(cfg *walex.Config) {
	cfg.ReconnectPolicy = walex.RetryPolicy{InitialDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond}
}

// slotInfo reads a slot's active walsender (0 when inactive) and its
// confirmed_flush_lsn.
func slotInfo(ctx context.Context, conn *pgx.Conn, slot string) (pid int32, flush walex.LSN, err error) {
	var p *int32
	var f *string
	err = conn.QueryRow(ctx, `SELECT active_pid, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&p, &f)
	if err != nil {
		return 0, 0, fmt.Errorf("slot %s: %w", slot, err)
	}
	if p != nil {
		pid = *p
	}
	if f != nil {
		if flush, err = pglogrepl.ParseLSN(*f); err != nil {
			return 0, 0, err
		}
	}
	return pid, flush, nil
}

// waitWalsender waits until slot is active under a walsender other than
// not, and returns its pid.
func waitWalsender(ctx context.Context, conn *pgx.Conn, slot string, not int32, abort <-chan struct{}) (int32, error) {
	for {
		pid, _, err := slotInfo(ctx, conn, slot)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return 0, err
		}
		if pid != 0 && pid != not {
			return pid, nil
		}
		select {
		case <-abort:
			return 0, fmt.Errorf("stopped while waiting for a walsender on slot %s", slot)
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for a walsender on slot %s (other than %d): %w", slot, not, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// awaitDelivered waits for the writer to finish and then for every row to
// be delivered; onFail, when set, runs before the failure is reported.
func awaitDelivered(t *testing.T, ctx context.Context, writerDone <-chan error, mon *pgx.Conn, slot string, total int, l *ledger, r *runner, onFail func()) {
	t.Helper()
	select {
	case err := <-writerDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatalf("writer did not finish: %v", context.Cause(ctx))
	}
	if err := waitAll(ctx, mon, slot, total, l.distinct, r.done); err != nil {
		if ok, rerr := r.exited(); ok {
			t.Fatalf("Run returned %v; %v", rerr, err)
		}
		if onFail != nil {
			onFail()
		}
		t.Fatal(err)
	}
}

// waitAll waits, after the workload was written, until rows() reaches
// total. Once the slot has confirmed the whole workload (confirmed_flush_lsn
// at the WAL end) while rows are still missing, they are lost, and it
// fails at once rather than at the deadline.
func waitAll(ctx context.Context, mon *pgx.Conn, slot string, total int, rows func() int, abort <-chan struct{}) error {
	var s string
	if err := mon.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&s); err != nil {
		return err
	}
	walEnd, err := pglogrepl.ParseLSN(s)
	if err != nil {
		return err
	}
	for {
		_, flush, err := slotInfo(ctx, mon, slot)
		if err != nil {
			return err
		}
		n := rows() // read after flush: every acknowledged transaction is in it
		if n >= total {
			return nil
		}
		if flush >= walEnd {
			return fmt.Errorf("the slot confirmed %s, the end of the workload (%s), but only %d of %d rows were delivered: rows lost", flush, walEnd, n, total)
		}
		select {
		case <-abort:
			return fmt.Errorf("stopped with %d of %d rows delivered", n, total)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d rows (have %d; slot at %s, WAL end %s): %w", total, n, flush, walEnd, context.Cause(ctx))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// writer inserts transactions k = from..to-1, each of rowsPerTxn rows with
// ids k*rowsPerTxn+1 .. (k+1)*rowsPerTxn, calling pace(k) before each.
// With tolerate, connection errors (a server crash) are survived: the
// writer reconnects and finds out whether the transaction committed.
type writer struct {
	url        string
	rowsPerTxn int
	syncCommit bool
	tolerate   bool
	retries    int // transactions written again after an error
	conn       *pgx.Conn
}

func (w *writer) connect(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		conn, err := pgx.Connect(ctx, w.url)
		if err == nil && w.syncCommit {
			if _, err = conn.Exec(ctx, `SET synchronous_commit = on`); err != nil {
				conn.Close(context.Background())
			}
		}
		if err == nil {
			w.conn = conn
			return nil
		}
		if !w.tolerate || attempt > 600 || ctx.Err() != nil {
			return fmt.Errorf("writer: connect: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (w *writer) run(ctx context.Context, from, to int, pace func(k int) error) error {
	defer func() {
		if w.conn != nil {
			w.conn.Close(context.Background())
		}
	}()
	for k := from; k < to; k++ {
		if err := pace(k); err != nil {
			return err
		}
		lo, hi := k*w.rowsPerTxn+1, (k+1)*w.rowsPerTxn
		for attempt := 0; ; attempt++ {
			if w.conn == nil {
				if err := w.connect(ctx); err != nil {
					return err
				}
			}
			_, err := w.conn.Exec(ctx, `INSERT INTO t (id, txn) SELECT g, $1 FROM generate_series($2::int, $3::int) g`, k, lo, hi)
			if err == nil {
				break
			}
			if !w.tolerate || attempt > 20 || ctx.Err() != nil {
				return fmt.Errorf("writer: transaction %d: %w", k, err)
			}
			// The connection broke: did the transaction commit?
			w.conn.Close(context.Background())
			w.conn = nil
			if err := w.connect(ctx); err != nil {
				return err
			}
			var n int
			if err := w.conn.QueryRow(ctx, `SELECT count(*) FROM t WHERE id BETWEEN $1 AND $2`, lo, hi).Scan(&n); err != nil {
				w.conn.Close(context.Background())
				w.conn = nil
				continue
			}
			if n == w.rowsPerTxn {
				break
			}
			if n != 0 {
				return fmt.Errorf("writer: transaction %d is partly there (%d of %d rows)", k, n, w.rowsPerTxn)
			}
			w.retries++
		}
	}
	return nil
}

// faultTable is the workload's table t, published, and an unpublished
// table other.
const faultTable = `CREATE TABLE t (id int PRIMARY KEY, txn int NOT NULL); CREATE TABLE other (id int); CREATE PUBLICATION events FOR TABLE t;`

// probeKeepalive writes WAL the publication does not carry, waits until the
// walsender pid has read past it (it then sends the client a keepalive
// carrying its WAL position) and until the client has sent status updates
// for a while after that.
func probeKeepalive(ctx context.Context, conn *pgx.Conn, pid int32) error {
	if _, err := conn.Exec(ctx, `INSERT INTO other VALUES (1)`); err != nil {
		return err
	}
	var end string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&end); err != nil {
		return err
	}
	var sentAt time.Time
	for {
		var sent bool
		var now time.Time
		if err := conn.QueryRow(ctx, `SELECT coalesce(sent_lsn >= $2::text::pg_lsn, false), clock_timestamp() FROM pg_stat_replication WHERE pid = $1`, pid, end).Scan(&sent, &now); err != nil {
			return fmt.Errorf("walsender %d: %w", pid, err)
		}
		if sent && sentAt.IsZero() {
			sentAt = now
		}
		if !sentAt.IsZero() {
			var replied bool
			if err := conn.QueryRow(ctx, `SELECT coalesce(reply_time > $2, false) FROM pg_stat_replication WHERE pid = $1`, pid, sentAt.Add(300*time.Millisecond)).Scan(&replied); err != nil {
				return fmt.Errorf("walsender %d: %w", pid, err)
			}
			if replied {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for walsender %d to send past %s and the client to reply: %w", pid, end, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestFaultTerminateWalsender kills the client's walsender 20 times with
// pg_terminate_backend while a goroutine writes 500 transactions of 100
// rows; the client has a durable slot and reconnects quickly.
func TestFaultTerminateWalsender(t *testing.T) {
	const (
		txns       = 500
		rowsPerTxn = 100
		total      = txns * rowsPerTxn
		kills      = 20
		lead       = 40 // transactions the writer may be ahead of the deliveries
		slot       = "faultterm_walex"
	)
	url := testDB(t, faultTable)
	ctx, cancel := context.WithTimeoutCause(context.Background(), 100*time.Second, errors.New("test deadline"))
	defer cancel()

	l := newLedger()
	var hold holder
	var c *walex.Client
	c = newClient(t, url, "faultterm", []string{"t"}, durable, fastReconnect, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
	c.OnInsert("t", l.handler(func() uint64 { return c.Stats().Reconnects }, func(ctx context.Context, _ uint64, commit walex.LSN) error {
		return hold.before(ctx, commit)
	}, 200*time.Microsecond))
	r := startRun(t, c)

	mon, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close(context.Background())
	pid, err := waitWalsender(ctx, mon, slot, 0, r.done)
	if err != nil {
		t.Fatal(err)
	}

	var marks []killMark
	writerRunning := 0
	writerDone := make(chan error, 1)
	kill := func(i int, held walex.LSN) {
		t.Helper()
		session := c.Stats().Reconnects
		var flushText string
		var killed bool
		err := mon.QueryRow(ctx, `SELECT confirmed_flush_lsn::text, pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid = $2`, slot, pid).Scan(&flushText, &killed)
		if err != nil || !killed {
			t.Fatalf("kill %d: terminate walsender %d of slot %s: killed=%v, %v (did the client reconnect on its own?)", i, pid, slot, killed, err)
		}
		handled := l.len()
		flush, err := pglogrepl.ParseLSN(flushText)
		if err != nil {
			t.Fatal(err)
		}
		if held != 0 {
			if flush > held {
				t.Errorf("kill %d: confirmed_flush_lsn %s is past transaction %s, whose handler is still running", i, flush, held)
			}
		}
		marks = append(marks, killMark{session: session, acked: flush, handled: handled, resume: flush})
		select {
		case err := <-writerDone:
			writerDone <- err
		default:
			writerRunning++
		}
	}

	// Kill 1: nothing in flight but one transaction whose handler is
	// blocked, while the walsender sends keepalives (WAL the publication
	// does not carry): they must not be acknowledged.
	hold.arm()
	if err := (&writer{url: url, rowsPerTxn: rowsPerTxn}).run(ctx, 0, 1, func(int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	held, err := hold.waitHeld(ctx, r.done)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitReported(ctx, mon, pid, held); err != nil {
		t.Fatal(err)
	}
	if err := probeKeepalive(ctx, mon, pid); err != nil {
		t.Fatal(err)
	}
	kill(1, held)

	w := &writer{url: url, rowsPerTxn: rowsPerTxn}
	go func() {
		writerDone <- w.run(ctx, 1, txns, func(k int) error { return l.waitRows(ctx, (k-lead)*rowsPerTxn, r.done) })
	}()
	for i := 2; i <= kills; i++ {
		if pid, err = waitWalsender(ctx, mon, slot, pid, r.done); err != nil {
			t.Fatalf("before kill %d: %v", i, err)
		}
		// The connection's own error, not that of a handler it cut short.
		if le := c.Stats().LastError; le == nil || errors.Is(le, context.Canceled) {
			t.Errorf("after kill %d: Stats().LastError = %v, want the error that ended the connection", i-1, le)
		}
		if err := l.waitRows(ctx, i*total/(kills+4), r.done); err != nil {
			t.Fatalf("before kill %d: %v", i, err)
		}
		// Every third kill hits while a handler call is blocked, after the
		// client has reported receiving that transaction; the others hit
		// wherever the stream is.
		var held walex.LSN
		if i%3 == 0 {
			hold.arm()
			if held, err = hold.waitHeld(ctx, r.done); err != nil {
				t.Fatalf("kill %d: %v", i, err)
			}
			if err := waitReported(ctx, mon, pid, held); err != nil {
				t.Fatalf("kill %d: %v", i, err)
			}
		}
		kill(i, held)
	}
	awaitDelivered(t, ctx, writerDone, mon, slot, total, l, r, func() {
		checkLedger(t, l.snapshot(), rowsPerTxn, total, marks) // for the details
	})
	// Everything is handled: the slot must get past the last transaction.
	ds := l.snapshot()
	var last walex.LSN
	for _, d := range ds {
		last = max(last, d.commit)
	}
	for {
		_, flush, err := slotInfo(ctx, mon, slot)
		if err != nil {
			t.Fatal(err)
		}
		if flush > last {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("confirmed_flush_lsn %s did not pass the last commit %s after every handler returned", flush, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
	st := c.Stats()
	if err := r.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil after cancel", err)
	}
	if st.Reconnects != kills {
		t.Errorf("Stats().Reconnects = %d, want %d (one per terminated walsender)", st.Reconnects, kills)
	}
	t.Logf("%d kills, %d of them while the writer was still writing", kills, writerRunning)
	checkLedger(t, l.snapshot(), rowsPerTxn, total, marks)
}

// TestFaultServerCrash restarts the server with an immediate shutdown (crash
// recovery) twice while transactions are written and delivered, each time
// while a handler call is blocked. The writer commits with
// synchronous_commit = on, so every committed row survives. PostgreSQL
// saves a slot's confirmed_flush_lsn to disk only now and then (when the
// slot's restart_lsn or xmin moves, or at a checkpoint), so crash recovery
// can take the slot back to an older position: transactions acknowledged
// after it are then delivered again, which at-least-once allows. What the
// client acknowledged is therefore checked against the position before the
// crash, and redeliveries against the position the slot recovered.
func TestFaultServerCrash(t *testing.T) {
	const (
		txns       = 200
		rowsPerTxn = 50
		total      = txns * rowsPerTxn
		crashes    = 2
		lead       = 20
		slot       = "faultcrash_walex"
	)
	ctx, cancel := context.WithTimeoutCause(context.Background(), 100*time.Second, errors.New("test deadline"))
	defer cancel()
	srv, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	if err := srv.Exec(ctx, "postgres", faultTable); err != nil {
		t.Fatal(err)
	}
	url := srv.URL("postgres")

	// The first session after a crash waits in its handler until the test
	// has read the slot's recovered position, so that what the slot lost in
	// the crash can be told from what the client acknowledges afterwards.
	var gateMu sync.Mutex
	gateAfter := ^uint64(0)
	gate := make(chan struct{})
	var hold holder
	before := func(ctx context.Context, session uint64, commit walex.LSN) error {
		gateMu.Lock()
		after, ch := gateAfter, gate
		gateMu.Unlock()
		if session > after {
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return hold.before(ctx, commit)
	}

	l := newLedger()
	var c *walex.Client
	c = newClient(t, url, "faultcrash", []string{"t"}, durable, fastReconnect, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
	c.OnInsert("t", l.handler(func() uint64 { return c.Stats().Reconnects }, before, 200*time.Microsecond))
	r := startRun(t, c)

	monitor := func() *pgx.Conn {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	mon := monitor()
	if _, err := waitWalsender(ctx, mon, slot, 0, r.done); err != nil {
		t.Fatal(err)
	}

	w := &writer{url: url, rowsPerTxn: rowsPerTxn, syncCommit: true, tolerate: true}
	writerDone := make(chan error, 1)
	go func() {
		writerDone <- w.run(ctx, 0, txns, func(k int) error { return l.waitRows(ctx, (k-lead)*rowsPerTxn, r.done) })
	}()

	var marks []killMark
	redeliveredAcked := map[walex.LSN]bool{}
	for i := 1; i <= crashes; i++ {
		pid, err := waitWalsender(ctx, mon, slot, 0, r.done)
		if err != nil {
			t.Fatalf("before crash %d: %v", i, err)
		}
		if err := l.waitRows(ctx, i*total/(crashes+1), r.done); err != nil {
			t.Fatalf("before crash %d: %v", i, err)
		}
		// The crash hits while a handler call is blocked.
		hold.arm()
		held, err := hold.waitHeld(ctx, r.done)
		if err != nil {
			t.Fatalf("crash %d: %v", i, err)
		}
		if err := waitReported(ctx, mon, pid, held); err != nil {
			t.Fatalf("crash %d: %v", i, err)
		}
		session := c.Stats().Reconnects
		_, flushBefore, err := slotInfo(ctx, mon, slot)
		if err != nil {
			t.Fatal(err)
		}
		handled := l.len()
		if flushBefore > held {
			t.Errorf("crash %d: confirmed_flush_lsn %s is past transaction %s, whose handler is still running", i, flushBefore, held)
		}
		gateMu.Lock()
		gateAfter, gate = session, make(chan struct{})
		gateMu.Unlock()
		mon.Close(context.Background())
		if err := srv.Restart(ctx, "immediate"); err != nil {
			t.Fatalf("crash %d: %v", i, err)
		}
		mon = monitor()
		_, flushAfter, err := slotInfo(ctx, mon, slot)
		if err != nil {
			t.Fatalf("after crash %d: %v", i, err)
		}
		gateMu.Lock()
		close(gate)
		gateMu.Unlock()
		marks = append(marks, killMark{session: session, acked: flushBefore, handled: handled, resume: flushAfter})
		t.Logf("crash %d: confirmed_flush_lsn %s shortly before, %s after crash recovery", i, flushBefore, flushAfter)
		// Transactions acknowledged before the crash, to be delivered again
		// because the slot's position went back: count them for the log.
		for _, d := range l.snapshot() {
			if d.commit < flushBefore && d.commit >= flushAfter {
				redeliveredAcked[d.commit] = true
			}
		}
	}
	defer mon.Close(context.Background())
	awaitDelivered(t, ctx, writerDone, mon, slot, total, l, r, nil)
	var n int
	if err := mon.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != total {
		t.Fatalf("table holds %d rows (%v), want %d", n, err, total)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil after cancel", err)
	}
	t.Logf("writer rewrote %d transactions whose commit the crash interrupted; %d acknowledged transactions lay between the slot's position before and after a crash", w.retries, len(redeliveredAcked))
	checkLedger(t, l.snapshot(), rowsPerTxn, total, marks)
}

// Child process for TestFaultConsumerKilled.
const (
	helperEnv        = "WALEX_FAULT_HELPER"
	helperURLEnv     = "WALEX_FAULT_URL"
	helperLedgerEnv  = "WALEX_FAULT_LEDGER"
	helperSessionEnv = "WALEX_FAULT_SESSION"
	helperHoldEnv    = "WALEX_FAULT_HOLD"
)

// TestHelperFaultConsumer is the consuming process of
// TestFaultConsumerKilled; it does nothing unless WALEX_FAULT_HELPER is
// set. It streams table t with a durable slot and appends each handler
// call to a ledger file, fsynced before the handler returns, until SIGINT.
// When the file named by WALEX_FAULT_HOLD exists, the next handler call
// writes its commit LSN to that name plus ".held" and blocks.
func TestHelperFaultConsumer(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return
	}
	base, err := strconv.ParseUint(os.Getenv(helperSessionEnv), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(os.Getenv(helperLedgerEnv), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var c *walex.Client
	c = newClient(t, os.Getenv(helperURLEnv), "faultproc", []string{"t"}, durable, fastReconnect)
	holdPath := os.Getenv(helperHoldEnv)
	c.OnInsert("t", func(ctx context.Context, events []walex.Event) error {
		if holdPath != "" {
			if _, err := os.Stat(holdPath); err == nil {
				if err := os.WriteFile(holdPath+".held", []byte(events[0].CommitLSN.String()), 0o644); err != nil {
					return err
				}
				<-ctx.Done()
				return ctx.Err()
			}
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "B %d %s %d\n", base+c.Stats().Reconnects, events[0].CommitLSN, len(events))
		for _, e := range events {
			fmt.Fprintf(&b, "E %s %d %d\n", e.ID(), e.Index, e.NewRecord["id"].(int32))
		}
		b.WriteString("C\n")
		time.Sleep(time.Millisecond) // simulated work: let batches queue up
		if _, err := f.Write(b.Bytes()); err != nil {
			return err
		}
		return f.Sync()
	})
	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run() = %v", err)
	}
}

// readLedgerFile parses the child's ledger: complete handler calls only;
// partial counts a trailing call cut off by the kill.
func readLedgerFile(path string) (ds []delivery, partial int, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var cur *delivery
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case len(f) == 4 && f[0] == "B":
			if cur != nil {
				return nil, 0, fmt.Errorf("ledger: call without end before %q", line)
			}
			s, err1 := strconv.ParseUint(f[1], 10, 64)
			lsn, err2 := pglogrepl.ParseLSN(f[2])
			if err := errors.Join(err1, err2); err != nil {
				return nil, 0, fmt.Errorf("ledger: %q: %w", line, err)
			}
			cur = &delivery{session: s, commit: lsn}
		case len(f) == 4 && f[0] == "E" && cur != nil:
			idx, err1 := strconv.Atoi(f[2])
			id, err2 := strconv.ParseInt(f[3], 10, 32)
			if err := errors.Join(err1, err2); err != nil {
				return nil, 0, fmt.Errorf("ledger: %q: %w", line, err)
			}
			cur.eventID = append(cur.eventID, f[1])
			cur.index = append(cur.index, idx)
			cur.ids = append(cur.ids, int32(id))
		case len(f) == 1 && f[0] == "C" && cur != nil:
			ds = append(ds, *cur)
			cur = nil
		default:
			// A line cut off by the kill can only be the last one.
			if !bytes.HasSuffix(data, []byte(line)) {
				return nil, 0, fmt.Errorf("ledger: bad line %q", line)
			}
			partial = 1
		}
	}
	if cur != nil {
		partial = 1
	}
	return ds, partial, nil
}

// safeBuffer collects a child's output.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestFaultConsumerKilled SIGKILLs the consuming process mid-stream, twice
// (once wherever the stream is, once while a handler call is blocked), and
// starts a new one each time; the third finishes.
func TestFaultConsumerKilled(t *testing.T) {
	const (
		txns       = 100
		rowsPerTxn = 100
		total      = txns * rowsPerTxn
		lead       = 20
		slot       = "faultproc_walex"
	)
	url := testDB(t, faultTable)
	ctx, cancel := context.WithTimeoutCause(context.Background(), 100*time.Second, errors.New("test deadline"))
	defer cancel()
	dir := t.TempDir()
	ledgerPath := filepath.Join(dir, "ledger")
	holdPath := filepath.Join(dir, "hold")

	type child struct {
		cmd  *osexec.Cmd
		out  *safeBuffer
		done chan struct{}
		err  error
	}
	start := func(n int) *child {
		t.Helper()
		ch := &child{out: &safeBuffer{}, done: make(chan struct{})}
		ch.cmd = osexec.Command(os.Args[0], "-test.run=^TestHelperFaultConsumer$", "-test.count=1", "-test.v", "-test.timeout=3m")
		ch.cmd.Env = append(os.Environ(), helperEnv+"=1", helperURLEnv+"="+url, helperLedgerEnv+"="+ledgerPath, helperSessionEnv+"="+strconv.Itoa(n*1000), helperHoldEnv+"="+holdPath)
		ch.cmd.Stdout, ch.cmd.Stderr = ch.out, ch.out
		if err := ch.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			ch.err = ch.cmd.Wait()
			close(ch.done)
		}()
		t.Cleanup(func() {
			select {
			case <-ch.done:
			default:
				_ = ch.cmd.Process.Kill()
				<-ch.done
			}
			if t.Failed() {
				t.Logf("consumer %d output (tail):\n%s", n, tail(ch.out.String(), 40))
			}
		})
		return ch
	}

	// progress polls the ledger file.
	var progMu sync.Mutex
	progress := func() (ds []delivery, rows int, partial int) {
		progMu.Lock()
		defer progMu.Unlock()
		ds, partial, err := readLedgerFile(ledgerPath)
		if err != nil {
			t.Error(err)
			return nil, 0, 0
		}
		seen := map[int32]bool{}
		for _, d := range ds {
			for _, id := range d.ids {
				seen[id] = true
			}
		}
		return ds, len(seen), partial
	}
	waitRows := func(n int, c *child) error {
		for {
			if _, rows, _ := progress(); rows >= n {
				return nil
			}
			select {
			case <-c.done:
				return fmt.Errorf("consumer exited (%v) while waiting for %d rows in the ledger", c.err, n)
			case <-ctx.Done():
				_, rows, _ := progress()
				return fmt.Errorf("waiting for %d rows in the ledger (have %d): %w", n, rows, context.Cause(ctx))
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	mon, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close(context.Background())

	var marks []killMark
	var cur *child
	w := &writer{url: url, rowsPerTxn: rowsPerTxn}
	writerDone := make(chan error, 1)
	writerStarted := false
	for n := 1; n <= 3; n++ {
		cur = start(n)
		pid, err := waitWalsender(ctx, mon, slot, 0, cur.done)
		if err != nil {
			t.Fatalf("consumer %d: %v", n, err)
		}
		if !writerStarted {
			writerStarted = true
			go func() {
				writerDone <- w.run(ctx, 0, txns, func(k int) error {
					for {
						if _, rows, _ := progress(); rows >= (k-lead)*rowsPerTxn {
							return nil
						}
						select {
						case <-ctx.Done():
							return context.Cause(ctx)
						case <-time.After(20 * time.Millisecond):
						}
					}
				})
			}()
		}
		if n == 3 {
			break
		}
		if err := waitRows(total*(n*3-1)/10, cur); err != nil {
			t.Fatal(err)
		}
		var held walex.LSN
		if n == 2 {
			// Block the next handler call and wait until the consumer has
			// reported receiving that transaction.
			if err := os.WriteFile(holdPath, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			for {
				if b, err := os.ReadFile(holdPath + ".held"); err == nil && len(b) > 0 {
					if held, err = pglogrepl.ParseLSN(string(b)); err != nil {
						t.Fatal(err)
					}
					break
				}
				select {
				case <-cur.done:
					t.Fatalf("consumer %d exited: %v", n, cur.err)
				case <-ctx.Done():
					t.Fatal("no handler call held")
				case <-time.After(10 * time.Millisecond):
				}
			}
			if err := waitReported(ctx, mon, pid, held); err != nil {
				t.Fatal(err)
			}
		}
		_, flush, err := slotInfo(ctx, mon, slot)
		if err != nil {
			t.Fatal(err)
		}
		if err := cur.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-cur.done
		if held != 0 {
			if flush > held {
				t.Errorf("consumer %d: confirmed_flush_lsn %s is past transaction %s, whose handler is still running", n, flush, held)
			}
			if err := os.Remove(holdPath); err != nil {
				t.Fatal(err)
			}
		}
		ds, rows, partial := progress() // read after flush: holds every call that had returned when flush was read
		marks = append(marks, killMark{session: uint64(n*1000 + 999), acked: flush, handled: len(ds), resume: flush})
		t.Logf("consumer %d SIGKILLed after %d handler calls in all (%d rows; %d call cut off mid-write; held %s); confirmed_flush_lsn before the kill: %s", n, len(ds), rows, partial, held, flush)
	}
	select {
	case err := <-writerDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-cur.done:
		t.Fatalf("last consumer exited: %v", cur.err)
	case <-ctx.Done():
		t.Fatalf("writer did not finish: %v", context.Cause(ctx))
	}
	if err := waitAll(ctx, mon, slot, total, func() int { _, rows, _ := progress(); return rows }, cur.done); err != nil {
		t.Fatal(err)
	}
	if err := cur.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cur.done:
		if cur.err != nil {
			t.Errorf("last consumer did not stop cleanly on SIGINT: %v", cur.err)
		}
	case <-ctx.Done():
		t.Fatal("last consumer did not stop on SIGINT")
	}
	ds, _, partial := progress()
	if partial != 0 {
		t.Errorf("the ledger ends in a cut-off call after a clean stop")
	}
	checkLedger(t, ds, rowsPerTxn, total, marks)
}

// TestFaultHandlerRetries has a handler fail three times per transaction
// before it succeeds: the handler registered before it must not run again,
// the one after it must run once, and nothing may be lost.
func TestFaultHandlerRetries(t *testing.T) {
	const (
		txns       = 5
		rowsPerTxn = 10
		fails      = 3
	)
	url := testDB(t, faultTable)
	c := newClient(t, url, "faultretry", []string{"t"}, func(cfg *walex.Config) {
		cfg.RetryPolicy = walex.RetryPolicy{MaxAttempts: fails + 2, InitialDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond}
		cfg.Logger = testLogger(t)
	})
	var mu sync.Mutex
	calls := map[string]map[walex.LSN]int{} // handler → commit LSN → calls
	fnCalls := map[string]int{}             // event ID → calls of the first handler's function
	var order []string
	count := func(name string, evs []walex.Event) int {
		mu.Lock()
		defer mu.Unlock()
		if calls[name] == nil {
			calls[name] = map[walex.LSN]int{}
		}
		calls[name][evs[0].CommitLSN]++
		order = append(order, name)
		return calls[name][evs[0].CommitLSN]
	}
	l := newLedger()
	c.OnInsert("t", func(ctx context.Context, evs []walex.Event) error {
		count("first", evs)
		return nil
	}, walex.WithFunctions(func(ctx context.Context, e walex.Event) error {
		mu.Lock()
		defer mu.Unlock()
		fnCalls[e.ID()]++
		return nil
	}))
	c.OnInsert("t", func(ctx context.Context, evs []walex.Event) error {
		if n := count("flaky", evs); n <= fails {
			return fmt.Errorf("attempt %d fails", n)
		}
		return nil
	})
	c.OnEvent(walex.AllTables, func(ctx context.Context, evs []walex.Event) error {
		count("after", evs)
		return l.handler(func() uint64 { return 0 }, nil, 0)(ctx, evs)
	})
	r := startRun(t, c)
	waitStreaming(t, url, "faultretry_walex")
	w := &writer{url: url, rowsPerTxn: rowsPerTxn}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.run(ctx, 0, txns, func(int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := l.waitRows(ctx, txns*rowsPerTxn, r.done); err != nil {
		_, rerr := r.exited()
		t.Fatalf("%v (Run: %v)", err, rerr)
	}
	ds := l.snapshot()
	checkLedger(t, ds, rowsPerTxn, txns*rowsPerTxn, nil)
	mu.Lock()
	defer mu.Unlock()
	for _, d := range ds {
		if got := calls["first"][d.commit]; got != 1 {
			t.Errorf("transaction %s: the handler registered before the failing one ran %d times, want 1", d.commit, got)
		}
		if got := calls["flaky"][d.commit]; got != fails+1 {
			t.Errorf("transaction %s: the failing handler ran %d times, want %d", d.commit, got, fails+1)
		}
		if got := calls["after"][d.commit]; got != 1 {
			t.Errorf("transaction %s: the handler registered after the failing one ran %d times, want 1", d.commit, got)
		}
		for _, id := range d.eventID {
			if fnCalls[id] != 1 {
				t.Errorf("event %s: the first handler's function ran %d times, want 1", id, fnCalls[id])
			}
		}
	}
	want := strings.Repeat("first "+strings.Repeat("flaky ", fails+1)+"after ", txns)
	if got := strings.Join(order, " ") + " "; got != want {
		t.Errorf("call order:\n%s\nwant\n%s", got, want)
	}
	if st := c.Stats(); st.Retries != txns*fails || st.Reconnects != 0 || st.Transactions < txns {
		t.Errorf("Stats() = %+v, want %d retries, no reconnects, %d transactions", st, txns*fails, txns)
	}
	if ok, err := r.exited(); ok {
		t.Fatalf("Run returned %v", err)
	}
}

// TestFaultSlowHandler runs a handler that takes longer than the server's
// wal_sender_timeout while more transactions queue up behind it: the
// client must keep the connection alive, and deliver what comes later.
func TestFaultSlowHandler(t *testing.T) {
	for _, tc := range []struct {
		timeout string
		status  time.Duration // Config.StatusInterval; 0: the default, which the client cuts to a third of the timeout
		slow    time.Duration
	}{
		{"2s", 500 * time.Millisecond, 5 * time.Second},
		{"800ms", 0, 3 * time.Second},
	} {
		t.Run("wal_sender_timeout="+tc.timeout, func(t *testing.T) {
			testSlowHandler(t, tc.timeout, tc.status, tc.slow)
		})
	}
}

func testSlowHandler(t *testing.T, timeout string, status, slow time.Duration) {
	const (
		queued = 10 // transactions written while the slow handler runs
		total  = 1 + queued + 1
		slot   = "faultslow_walex"
	)
	ctx, cancel := context.WithTimeoutCause(context.Background(), 60*time.Second, errors.New("test deadline"))
	defer cancel()
	srv, err := pgtest.Start(ctx, pgtest.Options{Settings: map[string]string{"wal_sender_timeout": timeout}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	if err := srv.Exec(ctx, "postgres", faultTable); err != nil {
		t.Fatal(err)
	}
	url := srv.URL("postgres")
	c := newClient(t, url, "faultslow", []string{"t"}, durable, func(cfg *walex.Config) {
		cfg.StatusInterval = status
		cfg.Logger = testLogger(t)
	})
	l := newLedger()
	entered := make(chan struct{}, 1)
	var slowTook time.Duration
	record := l.handler(func() uint64 { return c.Stats().Reconnects }, nil, 0)
	c.OnInsert("t", func(ctx context.Context, evs []walex.Event) error {
		if evs[0].NewRecord["id"] == int32(1) {
			start := time.Now()
			entered <- struct{}{}
			select {
			case <-time.After(slow): // the slow work itself, not a wait for a condition
			case <-ctx.Done():
				return ctx.Err()
			}
			slowTook = time.Since(start)
		}
		return record(ctx, evs)
	})
	r := startRun(t, c)
	mon, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close(context.Background())
	pid, err := waitWalsender(ctx, mon, slot, 0, r.done)
	if err != nil {
		t.Fatal(err)
	}
	write := func(from, to int) {
		t.Helper()
		if err := (&writer{url: url, rowsPerTxn: 1}).run(ctx, from, to, func(int) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 1)
	select {
	case <-entered:
	case <-r.done:
		t.Fatalf("Run returned %v", r.err)
	case <-ctx.Done():
		t.Fatal("the slow handler was not called")
	}
	write(1, 1+queued) // these queue up behind the slow handler
	if err := l.waitRows(ctx, 1+queued, r.done); err != nil {
		_, rerr := r.exited()
		t.Fatalf("%v (Run: %v)", err, rerr)
	}
	if slowTook < slow {
		t.Fatalf("the slow handler took %v, want >= %v", slowTook, slow)
	}
	write(1+queued, total) // and one after it
	if err := l.waitRows(ctx, total, r.done); err != nil {
		_, rerr := r.exited()
		t.Fatalf("%v (Run: %v)", err, rerr)
	}
	st := c.Stats()
	now, _, err := slotInfo(ctx, mon, slot)
	if err != nil {
		t.Fatal(err)
	}
	if st.Reconnects != 0 || !st.Connected || now != pid {
		t.Errorf("after a handler of %v with wal_sender_timeout %s: Reconnects = %d, Connected = %v, walsender pid %d -> %d (LastError %v); want the connection kept",
			slowTook.Round(time.Millisecond), timeout, st.Reconnects, st.Connected, pid, now, st.LastError)
	}
	checkLedger(t, l.snapshot(), 1, total, nil)
}

// TestFaultPermanentErrorsNoRetry checks that errors retrying cannot fix
// end Run quickly, without a reconnect loop. (client_test.go checks the
// error values themselves.)
func TestFaultPermanentErrorsNoRetry(t *testing.T) {
	const quick = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	check := func(t *testing.T, c *walex.Client, want error, wantText string) {
		t.Helper()
		runCtx, cancel := context.WithTimeout(ctx, 2*quick) // long enough to see a retry loop
		defer cancel()
		start := time.Now()
		err := c.Run(runCtx)
		took := time.Since(start)
		st := c.Stats()
		if err == nil || took > quick || st.Reconnects != 0 {
			t.Fatalf("Run() = %v after %v with %d reconnects; want an error within %v and no reconnect", err, took.Round(time.Millisecond), st.Reconnects, quick)
		}
		if want != nil && !errors.Is(err, want) {
			t.Errorf("Run() = %v, want %v", err, want)
		}
		if !strings.Contains(err.Error(), wantText) || !walex.IsPermanent(err) {
			t.Errorf("Run() = %v, want a permanent error mentioning %q", err, wantText)
		}
		if st.LastError == nil || st.LastError.Error() != err.Error() {
			t.Errorf("Stats().LastError = %v, want %v", st.LastError, err)
		}
	}
	nop := func(context.Context, []walex.Event) error { return nil }

	t.Run("missing publication", func(t *testing.T) {
		url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY)`)
		c := newClient(t, url, "faultnopub", []string{"t"}, durable, fastReconnect, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
		c.OnInsert("t", nop)
		check(t, c, walex.ErrPublicationNotFound, `"events"`)
	})
	t.Run("missing table", func(t *testing.T) {
		url := testDB(t, `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t`)
		c := newClient(t, url, "faultnotable", []string{"t", "gone"}, durable, fastReconnect, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
		c.OnInsert("t", nop)
		check(t, c, walex.ErrTableNotFound, "public.gone")
	})

	srv, err := pgtest.Start(ctx, pgtest.Options{Settings: map[string]string{"wal_level": "replica"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if err := srv.Exec(ctx, "postgres", `CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION events FOR TABLE t; CREATE ROLE walex_pw LOGIN REPLICATION PASSWORD 'right-Secret-456'`); err != nil {
		t.Fatal(err)
	}
	t.Run("wal_level replica", func(t *testing.T) {
		c := newClient(t, srv.URL("postgres"), "faultwal", []string{"t"}, durable, fastReconnect, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
		c.OnInsert("t", nop)
		check(t, c, walex.ErrWALLevel, "wal_level")
	})
	t.Run("wrong password", func(t *testing.T) {
		url := fmt.Sprintf("postgres://walex_pw:wrong-Secret@%s:%d/postgres?sslmode=disable", srv.Host, srv.Port)
		c := newClient(t, url, "faultpw", []string{"t"}, durable, fastReconnect, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
		c.OnInsert("t", nop)
		check(t, c, nil, "authentication failed")
	})
}
