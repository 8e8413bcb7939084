package equal

import (
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestValuesEqual(t *testing.T) {
	nan := math.NaN()
	type point struct{ X, Y float64 }
	cases := []struct {
		a, b any
		want bool
	}{
		{nan, nan, true},
		{float32(nan), float32(nan), true},
		{[]any{nan, 1.0}, []any{nan, 1.0}, true},
		{point{nan, 1}, point{nan, 1}, true},
		{point{nan, 1}, point{nan, 2}, false},
		{map[string]any{"a": []any{1.0}}, map[string]any{"a": []any{1.0}}, true},
		{map[string]any{"a": 1.0}, map[string]any{"b": 1.0}, false},
		{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 1, 0, 0, 0, time.FixedZone("x", 3600)), true},
		{pgtype.Numeric{Int: big.NewInt(10), Exp: 0, Valid: true}, pgtype.Numeric{Int: big.NewInt(1), Exp: 1, Valid: true}, true},
		{pgtype.Numeric{Int: big.NewInt(150), Exp: -2, Valid: true}, pgtype.Numeric{Int: big.NewInt(15), Exp: -1, Valid: true}, true},
		{pgtype.Numeric{Int: big.NewInt(150), Exp: -2, Valid: true}, pgtype.Numeric{Int: big.NewInt(151), Exp: -2, Valid: true}, false},
		{pgtype.Numeric{Int: big.NewInt(150), Exp: -2, Valid: true}, pgtype.Numeric{Int: big.NewInt(150), Exp: -2, Valid: true}, true},
		{pgtype.Numeric{Int: big.NewInt(-15), Exp: -1, Valid: true}, pgtype.Numeric{Int: big.NewInt(150), Exp: -2, Valid: true}, false},
		{pgtype.Numeric{Int: big.NewInt(0), Exp: 0, Valid: true}, pgtype.Numeric{Int: big.NewInt(0), Exp: -2, Valid: true}, true},
		{int32(1), int64(1), false},
		{nil, nil, true},
		{[]byte{1}, []byte{1}, true},
	}
	for i, c := range cases {
		if got := Values(c.a, c.b); got != c.want {
			t.Errorf("case %d: Values(%#v, %#v) = %t, want %t", i, c.a, c.b, got, c.want)
		}
	}
}

func TestStrictAndLoose(t *testing.T) {
	nan := math.NaN()
	utc := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	plusOne := time.Date(2026, 1, 1, 1, 0, 0, 0, time.FixedZone("x", 3600))
	if !Strict([]any{nan, 1.0}, []any{nan, 1.0}) {
		t.Error("Strict: NaN inside a slice differs from itself")
	}
	if Strict(utc, plusOne) {
		t.Error("Strict: the same instant in two locations is equal; want a difference (the test oracle must see a wrong location)")
	}
	if !Values(utc, plusOne) {
		t.Error("Values: the same instant in two locations differs")
	}
	if Strict(int32(1), int64(1)) || Values(int32(1), int64(1)) {
		t.Error("Strict or Values: int32(1) equals int64(1); want them to differ")
	}
	one := pgtype.Numeric{Int: big.NewInt(10), Exp: -1, Valid: true}
	for _, v := range []any{1, int32(1), int64(1), uint8(1), float32(1), 1.0, one} {
		if !Loose(v, int16(1)) {
			t.Errorf("Loose(%#v, int16(1)) = false", v)
		}
	}
	if Loose("1", 1) || Loose(1.5, 1) {
		t.Error("Loose: a string or another number equals 1")
	}
}
