package pgvalue

import (
	"math/big"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestSmallNumericMatchesGeneralPath compares the numeric fast path with
// the general path (pgx's text decoding, reshaped like its binary one).
func TestSmallNumericMatchesGeneralPath(t *testing.T) {
	m := pgtype.NewMap()
	inner, _ := m.TypeForOID(pgtype.NumericOID)
	slow := func(src []byte) any {
		v, err := inner.Codec.DecodeValue(m, pgtype.NumericOID, pgtype.TextFormatCode, src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		n := v.(pgtype.Numeric)
		// Reshape as decodeNumericText does, without its fast path.
		if n.Int.Sign() == 0 {
			return pgtype.Numeric{Int: n.Int.SetInt64(0), Valid: true}
		}
		for n.Exp >= 0 && new(big.Int).Rem(n.Int, big10).Sign() == 0 {
			n.Int.Quo(n.Int, big10)
			n.Exp++
		}
		return n
	}
	for _, s := range []string{"0", "0.00", "-0.5", "12.50", "1000000", "-1000", "7", "123456789012345678", "9999999999999999999", "0.0001", "100.10", "-00.010"} {
		got, ok := parseSmallNumeric([]byte(s))
		if !ok {
			t.Errorf("%s: fast path refused", s)
			continue
		}
		if want := slow([]byte(s)); !reflect.DeepEqual(any(got), want) {
			t.Errorf("%s: fast %+v, general %+v", s, got, want)
		}
	}
	for _, s := range []string{"", "-", "NaN", "Infinity", "-Infinity", "1.2.3", "12345678901234567890", "1e5", "."} {
		if got, ok := parseSmallNumeric([]byte(s)); ok {
			t.Errorf("%q: fast path took it: %+v", s, got)
		}
	}
}
