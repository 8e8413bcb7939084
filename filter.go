package walex

import (
	"slices"

	"github.com/walex-go/walex/internal/equal"
)

// Filters drop events before a handler sees them (WalEx's
// unwatched_records and unwatched_fields).
type Filters struct {
	// UnwatchedRecords drops an event when every listed column has the
	// given value: in NewRecord, or in OldRecord for a delete. Values
	// compare as Go values, with numbers compared by value whatever their
	// type (1 matches an int4 column's int32(1)). An empty map drops nothing.
	UnwatchedRecords map[string]any
	// UnwatchedFields drops an update when every column it changed is in
	// the list (an update that changed nothing is dropped too). Updates of
	// a table whose replica identity does not send old values (anything but
	// REPLICA IDENTITY FULL) cannot be judged and are kept; the client logs
	// a warning naming the table at start-up.
	UnwatchedFields []string
}

func (f *Filters) empty() bool { return len(f.UnwatchedRecords) == 0 && len(f.UnwatchedFields) == 0 }

// keep reports whether the event passes the filters. fullIdentity tells
// whether updates of the event's table carry the whole old row.
func (f *Filters) keep(e *Event, fullIdentity bool) bool {
	if len(f.UnwatchedRecords) > 0 {
		rec := e.NewRecord
		if e.Type == Delete {
			rec = e.OldRecord
		}
		if rec != nil && matchesAll(rec, f.UnwatchedRecords) {
			return false
		}
	}
	if len(f.UnwatchedFields) > 0 && e.Type == Update && fullIdentity {
		for col := range e.Changes {
			if !slices.Contains(f.UnwatchedFields, col) {
				return true
			}
		}
		return false
	}
	return true
}

func matchesAll(rec, want map[string]any) bool {
	for col, v := range want {
		got, ok := rec[col]
		if !ok || !equal.Loose(got, v) {
			return false
		}
	}
	return true
}

// FilterEvents returns the events for which keep returns true, in order
// (WalEx's TransactionFilter, for use inside handlers).
func FilterEvents(events []Event, keep func(Event) bool) []Event {
	var out []Event
	for _, e := range events {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// EventsOfType returns the events of the given types.
func EventsOfType(events []Event, types ...EventType) []Event {
	return FilterEvents(events, func(e Event) bool { return slices.Contains(types, e.Type) })
}

// EventsOfTable returns the events of a table: "users" (schema public) or
// "schema.table".
func EventsOfTable(events []Event, table string) []Event {
	t, err := parseTableName(table)
	if err != nil {
		return nil
	}
	return FilterEvents(events, func(e Event) bool { return e.Source.Schema == t.Schema && e.Source.Table == t.Table })
}

// EventsChanging returns the updates that changed at least one of the
// columns, plus every insert and delete (they change every column).
func EventsChanging(events []Event, columns ...string) []Event {
	return FilterEvents(events, func(e Event) bool {
		if e.Type != Update {
			return e.Type != Truncate
		}
		for _, c := range columns {
			if _, ok := e.Changes[c]; ok {
				return true
			}
		}
		return false
	})
}

// HasChanged reports whether an update event changed the column.
func (e Event) HasChanged(column string) bool {
	_, ok := e.Changes[column]
	return ok
}
