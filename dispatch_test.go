package walex

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/walex-go/walex/decoder"
	"github.com/walex-go/walex/decoder/pgoutput"
)

func TestSelectEvents(t *testing.T) {
	ev := func(table string, typ EventType, idx int) Event {
		return Event{Name: table, Type: typ, Source: Source{Schema: "public", Table: table}, Index: idx}
	}
	events := []Event{ev("a", Insert, 0), ev("a", Update, 1), ev("b", Insert, 2), ev("a", Insert, 3)}
	full := make([]bool, len(events))
	indexes := func(sel []Event) []int {
		var out []int
		for _, e := range sel {
			out = append(out, e.Index)
		}
		return out
	}

	// A registration that takes every event gets the batch's slice itself.
	every := &registration{all: true, types: []EventType{Insert, Update}}
	if sel := every.selectEvents(events, full, nil); &sel[0] != &events[0] || len(sel) != len(events) {
		t.Errorf("taking every event copied the slice: %v", indexes(sel))
	}

	cases := []struct {
		name string
		r    *registration
		want []int
	}{
		{"one table, every type", &registration{table: tableName{"public", "a"}}, []int{0, 1, 3}},
		{"one table, inserts", &registration{table: tableName{"public", "a"}, types: []EventType{Insert}}, []int{0, 3}},
		{"other table", &registration{table: tableName{"public", "b"}}, []int{2}},
		{"none", &registration{table: tableName{"public", "c"}}, nil},
		{"filter", &registration{all: true, filters: Filters{UnwatchedRecords: map[string]any{"k": 1}}}, []int{0, 1, 2, 3}},
	}
	events[1].NewRecord = map[string]any{"k": 1}
	cases[4].want = []int{0, 2, 3}
	for _, c := range cases {
		sel := c.r.selectEvents(events, full, nil)
		if got := indexes(sel); !slices.Equal(got, c.want) {
			t.Errorf("%s: selected %v, want %v", c.name, got, c.want)
		}
		if len(sel) > 0 && len(sel) < len(events) && &sel[0] == &events[0] {
			t.Errorf("%s: a partial selection shares the batch's slice", c.name)
		}
	}
	for i, e := range events {
		if e.Index != i {
			t.Fatalf("selection changed the batch: event %d has index %d", i, e.Index)
		}
	}
}

// TestFlowShapesAcrossReconnects: a connection that resumes the stream
// from an earlier position compares the descriptions it gets with those
// as of that position: a schema change whose transaction comes again is
// reported again, and none is reported backwards.
func TestFlowShapesAcrossReconnects(t *testing.T) {
	c, err := New(Config{URL: "postgres://localhost/db", Name: "x", Publication: "p", Subscriptions: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	var changes []string
	c.OnSchemaChange("t", func(_ context.Context, s SchemaChange) error {
		changes = append(changes, fmt.Sprintf("%s@%s", s.Changes[0].Kind, s.CommitLSN))
		return nil
	})
	rel := func(cols ...string) *decoder.Relation {
		r := &decoder.Relation{ID: 7, Schema: "public", Name: "t", ReplicaIdentity: 'd', ColumnTypes: map[string]string{}}
		for _, n := range cols {
			r.Columns = append(r.Columns, pgoutput.RelationColumn{Name: n, TypeOID: 23, TypeMod: -1})
			r.ColumnTypes[n] = "int4"
		}
		return r
	}
	// What a connection sends: the table described in a transaction that
	// commits at commit and ends at commit+8.
	tx := func(commit LSN, r *decoder.Relation) *decoder.Batch {
		return &decoder.Batch{CommitLSN: commit, EndLSN: commit + 8, Final: true, Marks: []decoder.Mark{{Op: decoder.OpRelation, Relation: r}}}
	}
	f := newFlow(c)
	cfg := c.config()
	deliver := func(bs ...*decoder.Batch) {
		for _, b := range bs {
			if err := c.dispatch(context.Background(), cfg, f, b); err != nil {
				t.Fatal(err)
			}
			f.acked(b.EndLSN)
		}
	}
	v1, v2 := rel("a"), rel("a", "b")
	deliver(tx(100, v1), tx(200, rel("a", "b"))) // the reference, then a column added
	if want := "added@0/C8"; strings.Join(changes, " ") != want {
		t.Fatalf("changes %v, want %s", changes, want)
	}
	// The acknowledgement of 200 was lost: the server resumes after 100
	// and sends that transaction again, with the table's new description.
	f.reconnect(150)
	deliver(tx(200, v2))
	// A connection that resumes after 200 sees the new description again:
	// nothing to report.
	f.reconnect(300)
	deliver(tx(300, rel("a", "b")))
	// One that resumes before anything was seen starts a new reference.
	f.reconnect(50)
	deliver(tx(100, v1))
	if want := "added@0/C8 added@0/C8"; strings.Join(changes, " ") != want {
		t.Errorf("changes %v, want %s", changes, want)
	}
}
