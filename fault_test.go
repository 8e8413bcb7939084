package walex_test

// Fault-injection tests. Each case drives a real PostgreSQL through a
// fault — walsenders terminated, the server crashed, the network stalled,
// the consuming process SIGKILLed, handlers failing or slow, bad
// configuration — and checks a ledger of delivered event IDs
// (ledger_test.go) against the delivery guarantees of the README: nothing
// lost, duplicates only of whole transactions the client had not
// acknowledged, never a redelivery of a transaction the slot had
// confirmed. The machinery that drives the faults is in faultkit_test.go.
//
// Cases that restart the server use a dedicated pgtest server, so that the
// shared one is not disturbed.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	neturl "net/url"
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

	mon := connect(t, url)
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
	err = poll(ctx, r.done, fmt.Sprintf("confirmed_flush_lsn past the last commit %s after every handler returned", last), func() (bool, error) {
		_, flush, err := slotInfo(ctx, mon, slot)
		return flush > last, err
	})
	if err != nil {
		t.Fatal(err)
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
		out  *logs
		done chan struct{}
		err  error
	}
	start := func(n int) *child {
		t.Helper()
		ch := &child{out: &logs{}, done: make(chan struct{})}
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
		return poll(ctx, c.done, fmt.Sprintf("%d rows in the ledger", n), func() (bool, error) {
			_, rows, _ := progress()
			return rows >= n, nil
		})
	}

	mon := connect(t, url)

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
					return poll(ctx, nil, "the consumers to keep up", func() (bool, error) {
						_, rows, _ := progress()
						return rows >= (k-lead)*rowsPerTxn, nil
					})
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
			err := poll(ctx, cur.done, "a handler call of the consumer to hold", func() (bool, error) {
				b, err := os.ReadFile(holdPath + ".held")
				if err != nil || len(b) == 0 {
					return false, nil
				}
				held, err = pglogrepl.ParseLSN(string(b))
				return true, err
			})
			if err != nil {
				t.Fatal(err)
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
	// The last handler has seen the rows; the transaction is counted once
	// the dispatch of all its handlers returned, a moment later.
	waitFor(t, 10*time.Second, "the transactions counted", func() (bool, error) { return c.Stats().Transactions >= txns, nil })
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
	mon := connect(t, url)
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

// TestFaultManyWalsenderKills kills the client's walsender 100 times, about
// once a second, while a writer commits a steady 200 small transactions a
// second, with the default status interval of 10 s. Before each kill the
// slot's confirmed_flush_lsn must have moved past where it was at the
// previous one, although the next periodic status update is seconds away:
// acknowledgements reach the server at once. Redelivery after each kill is
// then only of what was in flight, so the duplicated rows stay under 5% of
// the rows.
func TestFaultManyWalsenderKills(t *testing.T) {
	const (
		kills      = 100
		rowsPerTxn = 5
		rate       = 200 // transactions per second
		slot       = "faultmany_walex"
	)
	url := testDB(t, faultTable)
	ctx, cancel := context.WithTimeoutCause(context.Background(), 6*time.Minute, errors.New("test deadline"))
	defer cancel()

	lr := startLedgerRun(t, ctx, url, url, "faultmany", func(cfg *walex.Config) {
		cfg.StatusInterval = 0 // the default, 10 s
	})
	c, l, r, mon, pid := lr.c, lr.l, lr.r, lr.mon, lr.pid
	var err error

	// The writer commits at a steady rate until the kills are over.
	stopWriting := make(chan struct{})
	written := 0
	writerDone := make(chan error, 1)
	go func() {
		w := &writer{url: url, rowsPerTxn: rowsPerTxn}
		start := time.Now()
		writerDone <- w.run(ctx, 0, math.MaxInt32/rowsPerTxn, func(k int) error {
			select {
			case <-stopWriting:
				written = k
				return errStopWriting
			default:
			}
			if d := time.Until(start.Add(time.Duration(k) * time.Second / rate)); d > 0 {
				time.Sleep(d) // the writer's pace
			}
			return nil
		})
	}()

	var marks []killMark
	var prevFlush walex.LSN
	lastKill := time.Now()
	for i := 1; i <= kills; i++ {
		if i > 1 {
			if pid, err = waitWalsender(ctx, mon, slot, pid, r.done); err != nil {
				t.Fatalf("before kill %d: %v", i, err)
			}
		}
		err := poll(ctx, r.done, fmt.Sprintf("confirmed_flush_lsn past %s before kill %d", prevFlush, i), func() (bool, error) {
			_, flush, err := slotInfo(ctx, mon, slot)
			return flush > prevFlush, err
		})
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Until(lastKill.Add(700*time.Millisecond + time.Duration(rand.N(600))*time.Millisecond)); d > 0 {
			time.Sleep(d) // the rhythm of the faults: about one a second
		}
		session := c.Stats().Reconnects
		var flushText string
		var killed bool
		err = mon.QueryRow(ctx, `SELECT confirmed_flush_lsn::text, pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid = $2`, slot, pid).Scan(&flushText, &killed)
		if err != nil || !killed {
			t.Fatalf("kill %d: terminate walsender %d: killed=%v, %v", i, pid, killed, err)
		}
		lastKill = time.Now()
		handled := l.len()
		flush, err := pglogrepl.ParseLSN(flushText)
		if err != nil {
			t.Fatal(err)
		}
		marks = append(marks, killMark{session: session, acked: flush, handled: handled, resume: flush})
		prevFlush = flush
	}
	close(stopWriting)
	if err := <-writerDone; !errors.Is(err, errStopWriting) {
		t.Fatalf("writer: %v", err)
	}
	total := written * rowsPerTxn
	done := make(chan error, 1)
	done <- nil
	awaitDelivered(t, ctx, done, mon, slot, total, l, r, nil)
	if err := r.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil after cancel", err)
	}
	extra := checkLedger(t, l.snapshot(), rowsPerTxn, total, marks)
	dupRows := extra * rowsPerTxn
	t.Logf("%d kills over %d rows in %d transactions: %d rows delivered again (%.2f%%, %.1f transactions a kill)",
		kills, total, written, dupRows, 100*float64(dupRows)/float64(total), float64(extra)/kills)
	if dupRows*20 >= total {
		t.Errorf("%d of %d rows were delivered again (%.1f%%), want under 5%%: more than what was in flight at each kill", dupRows, total, 100*float64(dupRows)/float64(total))
	}
}

// errStopWriting ends a writer's run early.
var errStopWriting = errors.New("stop writing")

// TestFaultStalledNetwork puts a proxy between the client and the server
// that stops forwarding, in both directions, without closing anything. The
// server's wal_sender_timeout is off for the client's connections, so only
// the client can find out: with ReceiveTimeout it treats the connection as
// broken, connects again, takes the slot over from its old walsender, and
// delivers what was committed meanwhile; with a durable slot nothing is
// lost.
func TestFaultStalledNetwork(t *testing.T) {
	const (
		rowsPerTxn = 10
		before     = 20 // transactions before the stall
		after      = 20 // and after it
		total      = (before + after) * rowsPerTxn
		slot       = "faultstall_walex"
		timeout    = 2 * time.Second
	)
	srv := pgtest.Shared()
	db := srv.NewDatabase(t)
	if err := srv.Exec(context.Background(), db, faultTable); err != nil {
		t.Fatal(err)
	}
	url := srv.URL(db)
	proxy := newStallProxy(t, fmt.Sprintf("%s:%d", srv.Host, srv.Port))
	viaProxy := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&options=%s", proxy.port(), db, strings.ReplaceAll(neturl.QueryEscape("-c wal_sender_timeout=0"), "+", "%20"))
	ctx, cancel := context.WithTimeoutCause(context.Background(), 90*time.Second, errors.New("test deadline"))
	defer cancel()

	lr := startLedgerRun(t, ctx, url, viaProxy, "faultstall", func(cfg *walex.Config) { cfg.ReceiveTimeout = timeout })
	c, l, r, mon, pid := lr.c, lr.l, lr.r, lr.mon, lr.pid
	w := &writer{url: url, rowsPerTxn: rowsPerTxn}
	if err := w.run(ctx, 0, before, func(int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := l.waitRows(ctx, before*rowsPerTxn, r.done); err != nil {
		t.Fatal(err)
	}
	_, flush, err := slotInfo(ctx, mon, slot)
	if err != nil {
		t.Fatal(err)
	}
	marks := []killMark{{session: c.Stats().Reconnects, acked: flush, handled: l.len(), resume: flush}}
	proxy.stall()
	stalled := time.Now()
	w = &writer{url: url, rowsPerTxn: rowsPerTxn}
	if err := w.run(ctx, before, before+after, func(int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := l.waitRows(ctx, total, r.done); err != nil {
		t.Fatalf("%v (the old walsender %d holds the slot until the client gives up on it)", err, pid)
	}
	took := time.Since(stalled)
	now, _, err := slotInfo(ctx, mon, slot)
	if err != nil {
		t.Fatal(err)
	}
	if now == pid || now == 0 {
		t.Errorf("the slot's walsender is %d after the stall, want a new one (was %d)", now, pid)
	}
	if le := c.Stats().LastError; !errors.Is(le, walex.ErrReceiveTimeout) {
		t.Errorf("Stats().LastError = %v, want ErrReceiveTimeout", le)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil after cancel", err)
	}
	t.Logf("the client delivered the rows committed after the stall %v after it (ReceiveTimeout %v)", took.Round(time.Millisecond), timeout)
	checkLedger(t, l.snapshot(), rowsPerTxn, total, marks)
}
