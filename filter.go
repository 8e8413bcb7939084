package walex

import (
	"bytes"
	"math/big"
	"reflect"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
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
		if !ok || !looseEqual(got, v) {
			return false
		}
	}
	return true
}

// looseEqual is valuesEqual, plus numbers of different Go types that hold
// the same value, and a string against text-like values.
func looseEqual(a, b any) bool {
	if valuesEqual(a, b) {
		return true
	}
	if x, ok := toRat(a); ok {
		if y, ok := toRat(b); ok {
			return x.Cmp(y) == 0
		}
	}
	return false
}

func toRat(v any) (*big.Rat, bool) {
	r := new(big.Rat)
	switch v := v.(type) {
	case int:
		return r.SetInt64(int64(v)), true
	case int8:
		return r.SetInt64(int64(v)), true
	case int16:
		return r.SetInt64(int64(v)), true
	case int32:
		return r.SetInt64(int64(v)), true
	case int64:
		return r.SetInt64(v), true
	case uint:
		return r.SetUint64(uint64(v)), true
	case uint8:
		return r.SetUint64(uint64(v)), true
	case uint16:
		return r.SetUint64(uint64(v)), true
	case uint32:
		return r.SetUint64(uint64(v)), true
	case uint64:
		return r.SetUint64(v), true
	case float32:
		if _, ok := r.SetString(big.NewFloat(float64(v)).Text('g', -1)); ok {
			return r, true
		}
	case float64:
		if r.SetFloat64(v) != nil {
			return r, true
		}
	case pgtype.Numeric:
		if !v.Valid || v.NaN || v.InfinityModifier != pgtype.Finite || v.Int == nil {
			return nil, false
		}
		r.SetInt(v.Int)
		exp := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(v.Exp))), nil)
		if v.Exp >= 0 {
			return r.Mul(r, new(big.Rat).SetInt(exp)), true
		}
		return r.Quo(r, new(big.Rat).SetInt(exp)), true
	}
	return nil, false
}

func abs(x int32) int32 {
	if x < 0 {
		return -x
	}
	return x
}

// valuesEqual compares two decoded values: fast paths for common types,
// numerics by value, reflect.DeepEqual for the rest.
func valuesEqual(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case int32:
		y, ok := b.(int32)
		return ok && x == y
	case int64:
		y, ok := b.(int64)
		return ok && x == y
	case int16:
		y, ok := b.(int16)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || x != x && y != y)
	case float32:
		y, ok := b.(float32)
		return ok && (x == y || x != x && y != y)
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	case pgtype.Numeric:
		y, ok := b.(pgtype.Numeric)
		if !ok {
			return false
		}
		if x.NaN || y.NaN || x.InfinityModifier != pgtype.Finite || y.InfinityModifier != pgtype.Finite || x.Int == nil || y.Int == nil {
			return x.NaN == y.NaN && x.InfinityModifier == y.InfinityModifier && x.Valid == y.Valid && (x.Int == nil) == (y.Int == nil)
		}
		if x.Exp == y.Exp { // the common case (same column, same scale): no big.Rat
			return x.Int.Cmp(y.Int) == 0
		}
		if x.Int.Sign() != y.Int.Sign() {
			return false
		}
		rx, _ := toRat(x)
		ry, _ := toRat(y)
		return rx.Cmp(ry) == 0
	}
	return deepEqual(reflect.ValueOf(a), reflect.ValueOf(b))
}

// deepEqual is reflect.DeepEqual, except that NaN equals NaN, as it does
// in PostgreSQL: an update that leaves a NaN float (or a point holding
// one) unchanged is not a change.
func deepEqual(a, b reflect.Value) bool {
	if !a.IsValid() || !b.IsValid() {
		return a.IsValid() == b.IsValid()
	}
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		return x == y || x != x && y != y
	case reflect.Complex64, reflect.Complex128:
		return a.Complex() == b.Complex()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.String:
		return a.String() == b.String()
	case reflect.Slice:
		if a.IsNil() != b.IsNil() {
			return false
		}
		fallthrough
	case reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !deepEqual(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		iter := a.MapRange()
		for iter.Next() {
			bv := b.MapIndex(iter.Key())
			if !bv.IsValid() || !deepEqual(iter.Value(), bv) {
				return false
			}
		}
		return true
	case reflect.Struct:
		if t, ok := asTime(a); ok {
			u, _ := asTime(b)
			return t.Equal(u)
		}
		for i := range a.NumField() {
			if !deepEqual(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		if a.Kind() == reflect.Pointer && a.Pointer() == b.Pointer() {
			return true
		}
		return deepEqual(a.Elem(), b.Elem())
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

var timeType = reflect.TypeFor[time.Time]()

// asTime returns v as a time.Time when it is one and readable.
func asTime(v reflect.Value) (time.Time, bool) {
	if v.Type() != timeType || !v.CanInterface() {
		return time.Time{}, false
	}
	return v.Interface().(time.Time), true
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
