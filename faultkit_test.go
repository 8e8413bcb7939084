package walex_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
)

// waitReported waits until the walsender pid has received a status update
// whose write position is past lsn: the client reported its position after
// it had received that transaction.
func waitReported(ctx context.Context, conn *pgx.Conn, pid int32, lsn walex.LSN) error {
	return poll(ctx, nil, fmt.Sprintf("a status update past %s from walsender %d", lsn, pid), func() (bool, error) {
		var s *string
		if err := conn.QueryRow(ctx, `SELECT write_lsn::text FROM pg_stat_replication WHERE pid = $1`, pid).Scan(&s); err != nil {
			return false, fmt.Errorf("walsender %d: %w", pid, err)
		}
		w, err := parseLSN(s)
		return w > lsn, err
	})
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
func waitWalsender(ctx context.Context, conn *pgx.Conn, slot string, not int32, abort <-chan struct{}) (pid int32, err error) {
	err = poll(ctx, abort, fmt.Sprintf("a walsender on slot %s other than %d", slot, not), func() (bool, error) {
		var err error
		pid, _, err = slotInfo(ctx, conn, slot)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil
		}
		return pid != 0 && pid != not, err
	})
	return pid, err
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
	n := 0
	return poll(ctx, abort, fmt.Sprintf("%d delivered rows", total), func() (bool, error) {
		_, flush, err := slotInfo(ctx, mon, slot)
		if err != nil {
			return false, err
		}
		n = rows() // read after flush: every acknowledged transaction is in it
		if n < total && flush >= walEnd {
			return false, fmt.Errorf("the slot confirmed %s, the end of the workload (%s), but only %d of %d rows were delivered: rows lost", flush, walEnd, n, total)
		}
		return n >= total, nil
	})
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
	var last error
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := poll(ctx, nil, "the writer's connection", func() (bool, error) {
		conn, err := pgx.Connect(ctx, w.url)
		if err == nil && w.syncCommit {
			if _, err = conn.Exec(ctx, `SET synchronous_commit = on`); err != nil {
				conn.Close(context.Background())
			}
		}
		if err == nil {
			w.conn = conn
			return true, nil
		}
		last = err
		if !w.tolerate {
			return false, err
		}
		return false, nil // the server is restarting: try again
	})
	if err != nil {
		return fmt.Errorf("writer: connect (last error: %v): %w", last, err)
	}
	return nil
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
	return poll(ctx, nil, fmt.Sprintf("walsender %d to send past %s and the client to reply", pid, end), func() (bool, error) {
		var sent bool
		var now time.Time
		if err := conn.QueryRow(ctx, `SELECT coalesce(sent_lsn >= $2::text::pg_lsn, false), clock_timestamp() FROM pg_stat_replication WHERE pid = $1`, pid, end).Scan(&sent, &now); err != nil {
			return false, fmt.Errorf("walsender %d: %w", pid, err)
		}
		if sent && sentAt.IsZero() {
			sentAt = now
		}
		if sentAt.IsZero() {
			return false, nil
		}
		var replied bool
		err := conn.QueryRow(ctx, `SELECT coalesce(reply_time > $2, false) FROM pg_stat_replication WHERE pid = $1`, pid, sentAt.Add(300*time.Millisecond)).Scan(&replied)
		return replied, err
	})
}

// stallProxy forwards TCP connections to a target until it is told to
// stall: then the connections open at that moment stop forwarding in both
// directions without being closed, as on a network path that drops every
// packet (a NAT that lost its state, a partition). Connections made after
// the stall are forwarded normally.
type stallProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   []*proxied
	closing chan struct{}
	wg      sync.WaitGroup
}

// proxied is one forwarded connection.
type proxied struct {
	client, server net.Conn
	stalled        chan struct{} // closed when the connection stalls
}

// newStallProxy listens on a free port of 127.0.0.1; it is closed at the
// end of the test.
func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, closing: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// port is the proxy's port.
func (p *stallProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *stallProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxied{client: client, server: server, stalled: make(chan struct{})}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, server, client)
		go p.pipe(c, client, server)
	}
}

// pipe copies src to dst until either side closes or the connection
// stalls; a stalled pipe holds on to both sides until the proxy closes.
func (p *stallProxy) pipe(c *proxied, dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-c.stalled:
			<-p.closing
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			dst.Close()
			src.Close()
			return
		}
	}
}

// stall stops forwarding on every connection open now.
func (p *stallProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		select {
		case <-c.stalled:
		default:
			close(c.stalled)
		}
	}
}

func (p *stallProxy) close() {
	close(p.closing)
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.client.Close()
		c.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// ledgerRun is a client with a durable slot, quick reconnects and the
// test's logger, recording its deliveries of table t in a ledger, running.
type ledgerRun struct {
	c   *walex.Client
	l   *ledger
	r   *runner
	mon *pgx.Conn // to the database, not through the client's URL
	pid int32     // the walsender when the client first streamed
}

// startLedgerRun starts such a client on clientURL (which may lead through
// a proxy) for the database at url, and waits for its walsender on the
// slot <name>_walex.
func startLedgerRun(t *testing.T, ctx context.Context, url, clientURL, name string, edit ...func(*walex.Config)) *ledgerRun {
	t.Helper()
	lr := &ledgerRun{l: newLedger()}
	edit = append([]func(*walex.Config){durable, fastReconnect, func(cfg *walex.Config) { cfg.Logger = testLogger(t) }}, edit...)
	lr.c = newClient(t, clientURL, name, []string{"t"}, edit...)
	lr.c.OnInsert("t", lr.l.handler(func() uint64 { return lr.c.Stats().Reconnects }, nil, 0))
	lr.r = startRun(t, lr.c)
	lr.mon = connect(t, url)
	var err error
	if lr.pid, err = waitWalsender(ctx, lr.mon, name+"_walex", 0, lr.r.done); err != nil {
		t.Fatal(err)
	}
	return lr
}
