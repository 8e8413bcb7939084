package walex

import (
	"slices"
	"testing"
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
