package walex_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/walex-go/walex"
)

const (
	txHelperEnv   = "WALEX_TX_HELPER" // the copy database's URL; the source's is in WALEX_FAULT_URL
	copySetup     = `CREATE TABLE dst (id int PRIMARY KEY, val int NOT NULL, payload text); CREATE TABLE applied (event_id text NOT NULL);`
	copySrcSetup  = `CREATE TABLE src (id int PRIMARY KEY, val int NOT NULL, payload text); ALTER TABLE src ALTER COLUMN payload SET STORAGE EXTERNAL; CREATE PUBLICATION pub FOR TABLE src;`
	copyBatchSize = 20 // MaxBatchEvents of the consumer: transactions come in chunks
)

// checkpointer returns a pool on url, closed when the test ends, and a
// PostgresCheckpointer on it that keeps positions in table.
func checkpointer(t *testing.T, url, table string) (*pgxpool.Pool, *walex.PostgresCheckpointer) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cp, err := walex.NewPostgresCheckpointer(pool, table)
	if err != nil {
		t.Fatal(err)
	}
	return pool, cp
}

// applyCopy applies events of table src to table dst, journalling each
// event's ID in table applied; a statement that does not change exactly
// one row is an error.
func applyCopy(ctx context.Context, tx pgx.Tx, events []walex.Event) error {
	var b pgx.Batch
	for _, e := range events {
		n, o := e.NewRecord, e.OldRecord
		switch e.Type {
		case walex.Insert:
			b.Queue(`INSERT INTO dst VALUES ($1, $2, $3)`, n["id"], n["val"], n["payload"])
		case walex.Update:
			key := n["id"]
			if o != nil {
				key = o["id"]
			}
			if n["payload"] == walex.Unchanged {
				b.Queue(`UPDATE dst SET id = $1, val = $2 WHERE id = $3`, n["id"], n["val"], key)
			} else {
				b.Queue(`UPDATE dst SET id = $1, val = $2, payload = $3 WHERE id = $4`, n["id"], n["val"], n["payload"], key)
			}
		case walex.Delete:
			b.Queue(`DELETE FROM dst WHERE id = $1`, o["id"])
		case walex.Read:
			b.Queue(`INSERT INTO dst VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET val = EXCLUDED.val, payload = EXCLUDED.payload`, n["id"], n["val"], n["payload"])
		default:
			return fmt.Errorf("unexpected %s", e)
		}
		b.Queue(`INSERT INTO applied VALUES ($1)`, e.ID())
	}
	res := tx.SendBatch(ctx, &b)
	defer res.Close()
	for i := 0; i < b.Len(); i++ {
		tag, err := res.Exec()
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%s changed %d rows of dst", events[i/2], tag.RowsAffected())
		}
	}
	return res.Close()
}

// TestHelperTxConsumer is the consuming process of
// TestExactlyOnceConsumerKilled; it does nothing unless WALEX_TX_HELPER is
// set. It copies table src into table dst of another database with OnTx.
func TestHelperTxConsumer(t *testing.T) {
	copyURL := os.Getenv(txHelperEnv)
	if copyURL == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, cp := checkpointer(t, copyURL, "")
	c, err := walex.New(walex.Config{URL: os.Getenv(helperURLEnv), Name: "copy", Publication: "pub", Subscriptions: []string{"src"},
		DurableSlot: true, MaxBatchEvents: copyBatchSize, StatusInterval: 50 * time.Millisecond,
		RetryPolicy: walex.RetryPolicy{MaxAttempts: 3, InitialDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond},
		Logger:      slog.New(slog.NewTextHandler(os.Stdout, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c.OnTx("src", cp, applyCopy, walex.WithName("copy"))
	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run() = %v", err)
	}
}

// copyWriter changes table src until stop is closed, in transactions of
// 1 to 40 single-row statements (some rolled back): inserts, updates of a
// TOASTed value and of another column only (the TOASTed value then
// arrives Unchanged), key changes and deletes. It returns the number of
// committed statements (each is one event), which it also keeps in
// committed as it goes.
func copyWriter(ctx context.Context, url string, stop <-chan struct{}, committed *atomic.Int64) (int, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	rng := rand.New(rand.NewPCG(7, 11))
	var ids []int
	next, events := 1, 0
	payload := func() string {
		var b strings.Builder
		for b.Len() < 4000 {
			fmt.Fprintf(&b, "%016x", rng.Uint64())
		}
		return b.String()
	}
	for {
		select {
		case <-stop:
			return events, nil
		default:
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return events, err
		}
		n := 1 + rng.IntN(40)
		txIDs := append([]int(nil), ids...)
		txNext := next
		for range n {
			var err error
			switch op := rng.IntN(10); {
			case op < 4 || len(txIDs) < 10:
				_, err = tx.Exec(ctx, `INSERT INTO src VALUES ($1, $2, $3)`, txNext, rng.IntN(1000), payload())
				txIDs = append(txIDs, txNext)
				txNext++
			case op < 6:
				_, err = tx.Exec(ctx, `UPDATE src SET val = val + 1 WHERE id = $1`, txIDs[rng.IntN(len(txIDs))])
			case op < 7:
				_, err = tx.Exec(ctx, `UPDATE src SET payload = $2 WHERE id = $1`, txIDs[rng.IntN(len(txIDs))], payload())
			case op < 8:
				i := rng.IntN(len(txIDs))
				_, err = tx.Exec(ctx, `UPDATE src SET id = $2 WHERE id = $1`, txIDs[i], txNext)
				txIDs[i] = txNext
				txNext++
			default:
				i := rng.IntN(len(txIDs))
				_, err = tx.Exec(ctx, `DELETE FROM src WHERE id = $1`, txIDs[i])
				txIDs = append(txIDs[:i], txIDs[i+1:]...)
			}
			if err != nil {
				_ = tx.Rollback(ctx)
				return events, err
			}
		}
		if rng.IntN(10) == 0 {
			if err := tx.Rollback(ctx); err != nil {
				return events, err
			}
			continue
		}
		if err := tx.Commit(ctx); err != nil {
			return events, err
		}
		ids, next = txIDs, txNext
		events += n
		committed.Store(int64(events))
		time.Sleep(time.Duration(30+rng.IntN(50)) * time.Millisecond)
	}
}

// TestExactlyOnceConsumerKilled: a consumer that copies a table's changes
// into another database with OnTx and a PostgresCheckpointer is SIGKILLed
// at 20 random points while the table changes; in the end the copy equals
// the table, and every event was applied exactly once.
func TestExactlyOnceConsumerKilled(t *testing.T) {
	srcURL := testDB(t, copySrcSetup)
	copyURL := testDB(t, copySetup)
	start := func(n int) (*osexec.Cmd, *logs) {
		return startHelper(t, "TestHelperTxConsumer", n, txHelperEnv+"="+copyURL, helperURLEnv+"="+srcURL)
	}
	stopWriter := make(chan struct{})
	type result struct {
		events int
		err    error
	}
	written := make(chan result, 1)
	var committed atomic.Int64
	writing := func() {
		go func() {
			n, err := copyWriter(context.Background(), srcURL, stopWriter, &committed)
			written <- result{n, err}
		}()
	}
	applied := func() int {
		return int(queryRow(t, copyURL, `SELECT count(*) AS n FROM applied`)["n"].(int64))
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	const kills = 20
	for n := 1; n <= kills; n++ {
		cmd, out := start(n)
		before := applied()
		if n == 1 {
			waitStreaming(t, srcURL, "copy") // the slot exists: it has every change from here on
			writing()
		}
		// Kill it at a random point once it is applying: some kills land
		// inside a handler's transaction, some between two.
		waitFor(t, time.Minute, fmt.Sprintf("consumer %d to apply events", n), func() (bool, error) {
			if strings.Contains(out.String(), "--- FAIL") {
				return false, fmt.Errorf("consumer %d failed", n)
			}
			return applied() > before, nil
		})
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
	}
	const minEvents = 3000
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d events written", minEvents), func() (bool, error) { return committed.Load() >= minEvents, nil })
	close(stopWriter)
	w := <-written
	if w.err != nil {
		t.Fatal(w.err)
	}
	_, out := start(kills + 1)
	waitFor(t, 2*time.Minute, fmt.Sprintf("all %d events applied", w.events), func() (bool, error) {
		if strings.Contains(out.String(), "--- FAIL") {
			return false, fmt.Errorf("the last consumer failed")
		}
		return applied() >= w.events, nil
	})
	time.Sleep(300 * time.Millisecond) // anything more would be a duplicate: let it land
	dups := queryRow(t, copyURL, `SELECT count(*) AS n, coalesce(string_agg(event_id, ' '), '') AS ids FROM (SELECT event_id FROM applied GROUP BY event_id HAVING count(*) > 1) d`)
	if dups["n"].(int64) != 0 {
		t.Fatalf("%d events applied more than once: %s", dups["n"], dups["ids"])
	}
	if got := applied(); got != w.events {
		t.Fatalf("%d events applied, the writer committed %d", got, w.events)
	}
	const rows = `SELECT coalesce(string_agg(id || ':' || val || ':' || md5(coalesce(payload, '')), ',' ORDER BY id), '') AS s FROM `
	src, dst := queryRow(t, srcURL, rows+"src")["s"].(string), queryRow(t, copyURL, rows+"dst")["s"].(string)
	if src != dst {
		t.Fatalf("the copy differs from the source (%d and %d bytes)", len(src), len(dst))
	}
	t.Logf("%d events in %d kills, applied exactly once", w.events, kills)
}

// TestOnTxSnapshot: a transactional handler applies a snapshot's rows and
// the stream's changes once; the stored position follows the chunks, then
// the stream; a restart neither reads the table again nor applies an
// event twice.
func TestOnTxSnapshot(t *testing.T) {
	srcURL := testDB(t, copySrcSetup+`INSERT INTO src SELECT i, i, repeat('x', 10) FROM generate_series(1, 2000) i;`)
	copyURL := testDB(t, copySetup)
	ctx := context.Background()
	pool, cp := checkpointer(t, copyURL, "public.ckpt")
	stored := func() walex.Position {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		pos, ok, err := cp.Load(ctx, tx, dbName(srcURL)+"/tx_snap_walex/copy")
		if err != nil || !ok {
			t.Fatalf("Load() = %v, %v, %v", pos, ok, err)
		}
		return pos
	}
	var mu sync.Mutex
	var last walex.Event
	start := func() *runner {
		c := newClient(t, srcURL, "tx_snap", []string{"src"}, durable, func(cfg *walex.Config) {
			cfg.Publication = "pub"
			cfg.Snapshot = walex.SnapshotInitial
			cfg.SnapshotChunkSize = 300
			cfg.Logger = testLogger(t)
		})
		c.OnTx("src", cp, func(ctx context.Context, tx pgx.Tx, events []walex.Event) error {
			if err := applyCopy(ctx, tx, events); err != nil {
				return err
			}
			mu.Lock()
			last = events[len(events)-1]
			mu.Unlock()
			return nil
		}, walex.WithName("copy"))
		return startRun(t, c)
	}
	r := start()
	count := func(sql string) int64 { return queryRow(t, copyURL, sql)["n"].(int64) }
	waitFor(t, time.Minute, "the snapshot's rows", func() (bool, error) { return count(`SELECT count(*) AS n FROM dst`) == 2000, nil })
	mu.Lock()
	read := last
	mu.Unlock()
	if read.Type != walex.Read || stored() != walex.PositionOf(read) {
		t.Fatalf("after the snapshot: stored %s, last event %s", stored(), read)
	}
	exec(t, srcURL, `INSERT INTO src VALUES (5000, 1, 'y')`)
	waitFor(t, time.Minute, "the insert", func() (bool, error) { return count(`SELECT count(*) AS n FROM dst`) == 2001, nil })
	mu.Lock()
	ins := last
	mu.Unlock()
	if ins.Type != walex.Insert || stored() != walex.PositionOf(ins) || !walex.PositionOf(ins).After(walex.PositionOf(read)) {
		t.Fatalf("after the insert: stored %s, last event %s", stored(), ins)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// The position is ahead of the slot's acknowledgement by nothing or
	// by a little; either way a restart applies nothing twice.
	start()
	exec(t, srcURL, `UPDATE src SET val = 2 WHERE id = 5000`)
	waitFor(t, time.Minute, "the update", func() (bool, error) {
		return count(`SELECT count(*) AS n FROM dst WHERE id = 5000 AND val = 2`) == 1, nil
	})
	if n := count(`SELECT count(*) AS n FROM applied`); n != 2002 {
		t.Errorf("%d events applied, want 2000 reads, an insert and an update", n)
	}
	if n := count(`SELECT count(*) AS n FROM (SELECT event_id FROM applied GROUP BY event_id HAVING count(*) > 1) d`); n != 0 {
		t.Errorf("%d events applied twice", n)
	}
}

// TestOnTxRegistration: what OnTx accepts and refuses.
func TestOnTxRegistration(t *testing.T) {
	c, err := walex.New(walex.Config{URL: "postgres://localhost/db", Name: "x", Publication: "p", Subscriptions: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	pool, cp := checkpointer(t, "postgres://localhost/db", "app.checkpoints") // the pool connects lazily
	h := func(context.Context, pgx.Tx, []walex.Event) error { return nil }
	c.OnTx(walex.AllTables, cp, h, walex.WithName("all"))
	c.OnTx("t", cp, h, walex.WithFilters(walex.Filters{UnwatchedFields: []string{"a"}}))
	for name, f := range map[string]func(){
		"nil checkpointer": func() { c.OnTx("t", nil, h) },
		"nil handler":      func() { c.OnTx("t", cp, nil) },
		"functions": func() {
			c.OnTx("t", cp, h, walex.WithFunctions(func(context.Context, walex.Event) error { return nil }))
		},
		"bad table": func() { c.OnTx("a.b.c", cp, h) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	if _, err := walex.NewPostgresCheckpointer(pool, "a.b.c"); err == nil {
		t.Error("NewPostgresCheckpointer(a.b.c): no error")
	}
	if _, err := walex.NewPostgresCheckpointer(nil, ""); err == nil {
		t.Error("NewPostgresCheckpointer(nil): no error")
	}
}
