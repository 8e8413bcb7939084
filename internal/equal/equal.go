// Package equal compares decoded column values: the engine behind an
// update's Changes (which columns differ), the UnwatchedRecords filter, and
// the tests that hold events against pgx's own query results.
//
// Three relations, from strictest to loosest:
//
//   - [Strict]: reflect.DeepEqual, except that a floating-point NaN equals a
//     NaN wherever it is nested, as PostgreSQL itself has it ('NaN' = 'NaN').
//   - [Values]: [Strict], plus a numeric column's values equal by value
//     whatever their scale (1.0 = 1.00), and times equal when they are the
//     same instant.
//   - [Loose]: [Values], plus numbers of different Go types equal by value
//     (int 1 = int32(1) = numeric 1), for values written by users.
package equal

import (
	"bytes"
	"math/big"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Values reports whether two decoded values are the same datum: the
// comparison of an update's old and new value.
func Values(a, b any) bool {
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
		return ok && numericsEqual(x, y)
	}
	return deep(reflect.ValueOf(a), reflect.ValueOf(b), true)
}

// Strict reports whether a and b are deeply equal, with NaN equal to NaN.
func Strict(a, b any) bool {
	return deep(reflect.ValueOf(a), reflect.ValueOf(b), false)
}

// Loose is Values, plus numbers of different Go types (integers, floats,
// pgtype.Numeric) that hold the same value.
func Loose(a, b any) bool {
	if Values(a, b) {
		return true
	}
	if x, ok := toRat(a); ok {
		if y, ok := toRat(b); ok {
			return x.Cmp(y) == 0
		}
	}
	return false
}

func numericsEqual(x, y pgtype.Numeric) bool {
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

var timeType = reflect.TypeFor[time.Time]()

// deep is reflect.DeepEqual, except that NaN equals NaN; with byValue,
// times compare as instants (time.Time.Equal), so that an update that
// leaves a time unchanged is not a change whatever its location.
func deep(a, b reflect.Value, byValue bool) bool {
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
			if !deep(a.Index(i), b.Index(i), byValue) {
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
			if !bv.IsValid() || !deep(iter.Value(), bv, byValue) {
				return false
			}
		}
		return true
	case reflect.Struct:
		if byValue && a.Type() == timeType && a.CanInterface() && b.CanInterface() {
			return a.Interface().(time.Time).Equal(b.Interface().(time.Time))
		}
		for i := range a.NumField() {
			if !deep(a.Field(i), b.Field(i), byValue) {
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
		return deep(a.Elem(), b.Elem(), byValue)
	}
	// Func, Chan, UnsafePointer: equal only when they are the same.
	return a.Pointer() == b.Pointer()
}
