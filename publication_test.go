package walex_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

// The tests of this file check the events of what a publication can
// restrict or rename: row filters, column lists, partitioned tables and
// generated columns. Each subscribes to a table "mark" besides the tables
// under test and ends with an insert into it: once that insert arrives,
// every change made before it has been delivered, so that a change that
// must not arrive is seen not to.

// markSetup is the setup SQL of the table that ends a test's changes.
const markSetup = `CREATE TABLE mark (id int PRIMARY KEY);`

// pubEvents collects every event a client delivers.
type pubEvents struct {
	mu  sync.Mutex
	evs []walex.Event
}

// collectEvents registers an AllTables handler on c that collects its
// events.
func collectEvents(c *walex.Client) *pubEvents {
	k := &pubEvents{}
	c.OnEvent(walex.AllTables, func(ctx context.Context, events []walex.Event) error {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.evs = append(k.evs, events...)
		return nil
	})
	return k
}

// untilMark inserts row id into mark and waits for it; it returns the
// events before it (of other tables than mark) and forgets them.
func (k *pubEvents) untilMark(t *testing.T, url string, id int32) []walex.Event {
	t.Helper()
	exec(t, url, `INSERT INTO mark VALUES ($1)`, id)
	var out []walex.Event
	waitFor(t, 30*time.Second, "the insert into mark", func() (bool, error) {
		k.mu.Lock()
		defer k.mu.Unlock()
		for i, e := range k.evs {
			if e.Source.Table == "mark" && e.NewRecord["id"] == id {
				out = nil
				for _, e := range k.evs[:i] {
					if e.Source.Table != "mark" {
						out = append(out, e)
					}
				}
				k.evs = append([]walex.Event(nil), k.evs[i+1:]...)
				return true, nil
			}
		}
		return false, nil
	})
	return out
}

// wantEvent is what a test expects of one event.
type wantEvent struct {
	typ      walex.EventType
	table    string
	new, old map[string]any
	changes  []string // the columns of Changes, for updates
}

// checkEvents compares events with what is expected, in order: type,
// table (Name and Source.Table), the records (nil for none) and the
// columns of Changes.
func checkEvents(t *testing.T, what string, got []walex.Event, want []wantEvent) {
	t.Helper()
	if len(got) != len(want) {
		var desc []string
		for _, e := range got {
			desc = append(desc, string(e.Type)+" "+e.Source.Table+" new="+recordString(e.NewRecord)+" old="+recordString(e.OldRecord))
		}
		t.Fatalf("%s: got %d events, want %d:\n%s", what, len(got), len(want), strings.Join(desc, "\n"))
	}
	for i, w := range want {
		e := got[i]
		if e.Type != w.typ || e.Name != w.table || e.Source.Table != w.table {
			t.Errorf("%s: event %d is %s of %s (Name %s), want %s of %s", what, i, e.Type, e.Source.Table, e.Name, w.typ, w.table)
		}
		if !reflect.DeepEqual(e.NewRecord, w.new) {
			t.Errorf("%s: event %d (%s): NewRecord = %s, want %s", what, i, e.Type, recordString(e.NewRecord), recordString(w.new))
		}
		if !reflect.DeepEqual(e.OldRecord, w.old) {
			t.Errorf("%s: event %d (%s): OldRecord = %s, want %s", what, i, e.Type, recordString(e.OldRecord), recordString(w.old))
		}
		var changed []string
		for col := range e.Changes {
			changed = append(changed, col)
		}
		sort.Strings(changed)
		if e.Type == walex.Update && !reflect.DeepEqual(changed, w.changes) {
			t.Errorf("%s: event %d (update): Changes has %v, want %v", what, i, changed, w.changes)
		}
		if e.Type != walex.Update && len(e.Changes) > 0 {
			t.Errorf("%s: event %d (%s) has Changes %v", what, i, e.Type, e.Changes)
		}
	}
}

// recordString shows a record with its keys sorted and each value with
// its Go type, nil as "nil".
func recordString(r map[string]any) string {
	if r == nil {
		return "nil"
	}
	var parts []string
	for k, v := range r {
		parts = append(parts, fmt.Sprintf("%s:%T(%v)", k, v, v))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, " ") + "}"
}

// columnsOf returns the sorted column names of Source.Columns.
func columnsOf(e walex.Event) []string {
	var cols []string
	for c := range e.Source.Columns {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	return cols
}

// TestPublicationRowFilter: a row filter (PostgreSQL 15+) keeps the rows
// outside it from the stream, and the server turns an update that moves a
// row into the filter into an insert of the new row, and one that moves a
// row out of it into a delete of the old row. The filter's column must be
// covered by the replica identity for updates and deletes to be published
// (the server refuses them otherwise), hence REPLICA IDENTITY FULL.
func TestPublicationRowFilter(t *testing.T) {
	if pgtest.Shared().Version < 15 {
		t.Skip("row filters need PostgreSQL 15")
	}
	url := testDB(t, markSetup+`CREATE TABLE t (id int PRIMARY KEY, status text, note text);
		ALTER TABLE t REPLICA IDENTITY FULL;
		CREATE PUBLICATION events FOR TABLE t WHERE (status = 'active'), mark;`)
	c := newClient(t, url, "rowfilter", []string{"t", "mark"})
	k := collectEvents(c)
	running(t, c)
	waitStreaming(t, url, "rowfilter_walex")

	row := func(id int32, status, note string) map[string]any {
		return map[string]any{"id": id, "status": status, "note": note}
	}
	exec(t, url, `INSERT INTO t VALUES (1, 'active', 'a'), (2, 'inactive', 'b'), (3, 'inactive', 'c')`)
	exec(t, url, `UPDATE t SET status = 'active' WHERE id = 2`) // into the filter
	exec(t, url, `UPDATE t SET note = 'a2' WHERE id = 1`)       // inside it
	exec(t, url, `UPDATE t SET note = 'c2' WHERE id = 3`)       // outside it
	exec(t, url, `UPDATE t SET status = 'gone' WHERE id = 1`)   // out of it
	exec(t, url, `DELETE FROM t WHERE id = 3`)                  // outside it
	exec(t, url, `DELETE FROM t WHERE id = 2`)                  // inside it
	checkEvents(t, "row filter", k.untilMark(t, url, 1), []wantEvent{
		{typ: walex.Insert, table: "t", new: row(1, "active", "a")},
		{typ: walex.Insert, table: "t", new: row(2, "active", "b")},
		{typ: walex.Update, table: "t", new: row(1, "active", "a2"), old: row(1, "active", "a"), changes: []string{"note"}},
		{typ: walex.Delete, table: "t", old: row(1, "active", "a2")},
		{typ: walex.Delete, table: "t", old: row(2, "active", "b")},
	})
}

// TestPublicationColumnList: a column that a column list (PostgreSQL 15+)
// leaves out is absent from the records, from Changes and from
// Source.Columns (not present with nil), in the stream and in a snapshot.
// Under the DEFAULT replica identity the old record of a delete (and of an
// update of the key) has the key alone. Under REPLICA IDENTITY FULL the
// server refuses to update or delete rows of a table with a column list,
// even one that names every column.
func TestPublicationColumnList(t *testing.T) {
	if pgtest.Shared().Version < 15 {
		t.Skip("column lists need PostgreSQL 15")
	}
	url := testDB(t, markSetup+`CREATE TABLE c (id int PRIMARY KEY, name text, secret text);
		CREATE TABLE f (id int PRIMARY KEY, name text, secret text);
		ALTER TABLE f REPLICA IDENTITY FULL;
		CREATE TABLE g (id int PRIMARY KEY, name text);
		ALTER TABLE g REPLICA IDENTITY FULL;
		INSERT INTO g VALUES (1, 'g1');
		INSERT INTO c VALUES (1, 'one', 's1'), (2, 'two', 's2');
		CREATE PUBLICATION events FOR TABLE c (id, name), f (id, name), g (name, id), mark;`)
	c := newClient(t, url, "collist", []string{"c", "f", "g", "mark"}, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
	k := collectEvents(c)
	running(t, c)
	waitStreaming(t, url, "collist_walex")
	ctx := context.Background()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Snapshot(sctx, "c", "g"); err != nil {
		t.Fatal(err)
	}

	rec := func(id int32, name string) map[string]any { return map[string]any{"id": id, "name": name} }
	key := func(id int32) map[string]any { return map[string]any{"id": id} }
	exec(t, url, `INSERT INTO c VALUES (3, 'three', 's3')`)
	exec(t, url, `UPDATE c SET name = 'three2', secret = 's3b' WHERE id = 3`)
	exec(t, url, `UPDATE c SET secret = 's3c' WHERE id = 3`) // only an unpublished column
	exec(t, url, `UPDATE c SET id = 4 WHERE id = 3`)
	exec(t, url, `DELETE FROM c WHERE id = 4`)
	got := k.untilMark(t, url, 1)
	checkEvents(t, "column list", got, []wantEvent{
		{typ: walex.Read, table: "c", new: rec(1, "one")},
		{typ: walex.Read, table: "c", new: rec(2, "two")},
		{typ: walex.Read, table: "g", new: rec(1, "g1")},
		{typ: walex.Insert, table: "c", new: rec(3, "three")},
		{typ: walex.Update, table: "c", new: rec(3, "three2")},
		{typ: walex.Update, table: "c", new: rec(3, "three2")},
		{typ: walex.Update, table: "c", new: rec(4, "three2"), old: key(3), changes: []string{"id"}},
		{typ: walex.Delete, table: "c", old: key(4)},
	})
	for _, e := range got {
		want := []string{"id", "name"}
		if cols := columnsOf(e); !reflect.DeepEqual(cols, want) {
			t.Errorf("%s: Source.Columns has %v, want %v", e, cols, want)
		}
	}

	// FULL identity with a column list, even one of every column: inserts
	// are published, updates and deletes refused by the server.
	exec(t, url, `INSERT INTO f VALUES (1, 'f1', 'x')`)
	conn := connect(t, url)
	for _, sql := range []string{`UPDATE f SET name = 'f2' WHERE id = 1`, `DELETE FROM f WHERE id = 1`,
		`UPDATE g SET name = 'g2' WHERE id = 1`, `DELETE FROM g WHERE id = 1`} {
		_, err := conn.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || !strings.Contains(pe.Detail, "Column list used by the publication does not cover the replica identity") {
			t.Errorf("%s on a FULL identity table with a column list: err = %v, want the server's refusal", sql, err)
		}
	}
	checkEvents(t, "column list, FULL identity", k.untilMark(t, url, 2), []wantEvent{
		{typ: walex.Insert, table: "f", new: rec(1, "f1")},
	})
}

// TestPublicationGeneratedColumns: a stored generated column is in the
// records (of the stream and of a snapshot) exactly when the publication
// publishes it: on PostgreSQL 18 with publish_generated_columns = stored
// or a column list that names it; never before 18, where the stream
// leaves it out.
func TestPublicationGeneratedColumns(t *testing.T) {
	const table = `CREATE TABLE h (id int PRIMARY KEY, name text, gen int GENERATED ALWAYS AS (id * 10) STORED);
		INSERT INTO h (id, name) VALUES (1, 'a');`
	type pubCase struct {
		name, publication string
		cols              []string // the published columns, sorted
	}
	run := func(t *testing.T, srv *pgtest.Server, pc pubCase) {
		db := srv.NewDatabase(t)
		if err := srv.Exec(context.Background(), db, markSetup+table+pc.publication); err != nil {
			t.Fatal(err)
		}
		url := srv.URL(db)
		c := newClient(t, url, "gencols", []string{"h", "mark"}, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
		k := collectEvents(c)
		running(t, c)
		waitStreaming(t, url, "gencols_walex")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Snapshot(ctx, "h"); err != nil {
			t.Fatal(err)
		}
		exec(t, url, `INSERT INTO h (id, name) VALUES (2, 'b')`)
		exec(t, url, `UPDATE h SET name = 'b2' WHERE id = 2`)
		exec(t, url, `DELETE FROM h WHERE id = 2`)
		rec := func(id int32, name string) map[string]any {
			all := map[string]any{"id": id, "name": name, "gen": id * 10}
			r := map[string]any{}
			for _, col := range pc.cols {
				r[col] = all[col]
			}
			return r
		}
		got := k.untilMark(t, url, 1)
		checkEvents(t, pc.name, got, []wantEvent{
			{typ: walex.Read, table: "h", new: rec(1, "a")},
			{typ: walex.Insert, table: "h", new: rec(2, "b")},
			{typ: walex.Update, table: "h", new: rec(2, "b2")},
			{typ: walex.Delete, table: "h", old: map[string]any{"id": int32(2)}},
		})
		for _, e := range got {
			if cols := columnsOf(e); !reflect.DeepEqual(cols, pc.cols) {
				t.Errorf("%s: %s: Source.Columns has %v, want %v", pc.name, e, cols, pc.cols)
			}
		}
	}
	plain := pubCase{"no option", `CREATE PUBLICATION events FOR TABLE h, mark;`, []string{"id", "name"}}
	if v := pgtest.Shared().Version; v < 18 {
		t.Run(fmt.Sprintf("pg%d", v), func(t *testing.T) { run(t, pgtest.Shared(), plain) })
	}
	srv := pgtest.Version(t, 18)
	for _, pc := range []pubCase{
		plain,
		{"publish_generated_columns = stored", `CREATE PUBLICATION events FOR TABLE h, mark WITH (publish_generated_columns = stored);`, []string{"gen", "id", "name"}},
		{"column list with the generated column", `CREATE PUBLICATION events FOR TABLE h (id, gen), mark;`, []string{"gen", "id"}},
	} {
		t.Run("pg18 "+pc.name, func(t *testing.T) { run(t, srv, pc) })
	}
}

// partitionSetup is a table partitioned by region, with one row in each
// partition.
const partitionSetup = markSetup + `CREATE TABLE m (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
	CREATE TABLE m_eu PARTITION OF m FOR VALUES IN ('eu');
	CREATE TABLE m_us PARTITION OF m FOR VALUES IN ('us');
	INSERT INTO m VALUES (1, 'eu', 10), (2, 'us', 20);`

// partitionChanges makes the changes whose events TestPublicationPartitions
// checks: an insert into each partition, an update within one, an update
// that moves a row to the other partition (a delete and an insert), and a
// delete.
func partitionChanges(t *testing.T, url string) {
	exec(t, url, `INSERT INTO m VALUES (3, 'eu', 30), (4, 'us', 40)`)
	exec(t, url, `UPDATE m SET v = 31 WHERE id = 3`)
	exec(t, url, `UPDATE m SET region = 'us' WHERE id = 1`)
	exec(t, url, `DELETE FROM m WHERE id = 4`)
}

// partitionEvents are the events of partitionChanges, named by the tables
// an event of each partition names.
func partitionEvents(eu, us string) []wantEvent {
	row := func(id int32, region string, v int32) map[string]any {
		return map[string]any{"id": id, "region": region, "v": v}
	}
	key := func(id int32, region string) map[string]any { return map[string]any{"id": id, "region": region} }
	return []wantEvent{
		{typ: walex.Insert, table: eu, new: row(3, "eu", 30)},
		{typ: walex.Insert, table: us, new: row(4, "us", 40)},
		{typ: walex.Update, table: eu, new: row(3, "eu", 31)},
		{typ: walex.Delete, table: eu, old: key(1, "eu")},
		{typ: walex.Insert, table: us, new: row(1, "us", 10)},
		{typ: walex.Delete, table: us, old: key(4, "us")},
	}
}

// TestPublicationPartitions: with publish_via_partition_root the changes
// of a partitioned table's partitions name the table; without it they
// name the partition, and a subscription to the table alone is refused
// (it would get no events).
func TestPublicationPartitions(t *testing.T) {
	t.Run("via root", func(t *testing.T) {
		url := testDB(t, partitionSetup+`CREATE PUBLICATION events FOR TABLE m, mark WITH (publish_via_partition_root = true);`)
		c := newClient(t, url, "viaroot", []string{"m", "mark"}, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
		k := collectEvents(c)
		running(t, c)
		waitStreaming(t, url, "viaroot_walex")
		partitionChanges(t, url)
		checkEvents(t, "via root", k.untilMark(t, url, 1), partitionEvents("m", "m"))
	})
	t.Run("partitions subscribed", func(t *testing.T) {
		url := testDB(t, partitionSetup+`CREATE PUBLICATION events FOR TABLE m, mark;`)
		c := newClient(t, url, "partsubs", []string{"m_eu", "m_us", "mark"}, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
		k := collectEvents(c)
		running(t, c)
		waitStreaming(t, url, "partsubs_walex")
		partitionChanges(t, url)
		checkEvents(t, "partitions subscribed", k.untilMark(t, url, 1), partitionEvents("m_eu", "m_us"))
	})
	t.Run("root subscribed", func(t *testing.T) {
		// Its events would name the partitions: Run refuses to start,
		// and AddSubscriptions to add it, with the two fixes.
		url := testDB(t, partitionSetup+`CREATE PUBLICATION events FOR TABLE m, mark;`)
		c := newClient(t, url, "rootsub", []string{"m", "mark"}, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.Run(ctx)
		if !errors.Is(err, walex.ErrNotPublished) || !walex.IsPermanent(err) ||
			!strings.Contains(err.Error(), "publish_via_partition_root = true") || !strings.Contains(err.Error(), "public.m_eu, public.m_us") {
			t.Fatalf("Run subscribed to a partitioned table published under its partitions' names: %v, want a permanent ErrNotPublished with the fixes", err)
		}
		c = newClient(t, url, "rootsub", []string{"m_eu", "mark"}, func(cfg *walex.Config) { cfg.Logger = testLogger(t) })
		running(t, c)
		waitStreaming(t, url, "rootsub_walex")
		if err := c.AddSubscriptions("m"); !errors.Is(err, walex.ErrNotPublished) {
			t.Errorf("AddSubscriptions(m) = %v, want ErrNotPublished", err)
		}
		// With every partition subscribed as well, the table's
		// subscription serves its snapshots (Read events name it).
		if err := c.AddSubscriptions("m_us", "m"); err != nil {
			t.Fatal(err)
		}
		k := collectEvents(c)
		if err := c.Snapshot(ctx, "m"); err != nil {
			t.Fatal(err)
		}
		partitionChanges(t, url)
		got := k.untilMark(t, url, 1)
		checkEvents(t, "root and partitions subscribed", got[2:], partitionEvents("m_eu", "m_us"))
		checkEvents(t, "snapshot of the root", got[:2], []wantEvent{
			{typ: walex.Read, table: "m", new: map[string]any{"id": int32(1), "region": "eu", "v": int32(10)}},
			{typ: walex.Read, table: "m", new: map[string]any{"id": int32(2), "region": "us", "v": int32(20)}},
		})
	})
	t.Run("created publication", func(t *testing.T) {
		// Config.CreatePublication publishes via the root.
		url := testDB(t, partitionSetup)
		c := newClient(t, url, "rootcreate", []string{"m", "mark"}, func(cfg *walex.Config) {
			cfg.CreatePublication = true
			cfg.Logger = testLogger(t)
		})
		k := collectEvents(c)
		running(t, c)
		waitStreaming(t, url, "rootcreate_walex")
		partitionChanges(t, url)
		checkEvents(t, "created publication", k.untilMark(t, url, 1), partitionEvents("m", "m"))
	})
}
