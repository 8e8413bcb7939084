package pgvalue

import (
	"context"
	"encoding/binary"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walex-go/walex/decoder/pgoutput"
)

// TestEqualsPgx is the test of this package: for each type it reads in
// binary itself, a value decodes, from its binary form and from its text
// form, to exactly what pgx decodes from the binary form (which is what
// rows.Values() gives for a query, as pgx asks for binary).
func TestEqualsPgx(t *testing.T) {
	m := pgtype.NewMap()
	cases := []struct {
		name string
		oid  uint32
		v    any
	}{
		{"int2", pgtype.Int2OID, int16(-5)},
		{"int4", pgtype.Int4OID, int32(1 << 30)},
		{"int8", pgtype.Int8OID, int64(1 << 40)},
		{"float4", pgtype.Float4OID, float32(1.5)},
		{"float8", pgtype.Float8OID, 0.1},
		{"bool", pgtype.BoolOID, true},
		{"text", pgtype.TextOID, "héllo"},
		{"varchar", pgtype.VarcharOID, "x"},
		{"bpchar", pgtype.BPCharOID, "ab   "},
		{"name", pgtype.NameOID, "pg_class"},
		{"bytea", pgtype.ByteaOID, []byte{0, 0xff}},
		{"uuid", pgtype.UUIDOID, [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{"timestamptz", pgtype.TimestamptzOID, time.Date(2026, 11, 24, 1, 2, 3, 456789000, time.UTC)},
		{"timestamptz infinity", pgtype.TimestamptzOID, pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}},
		{"timestamp", pgtype.TimestampOID, time.Date(2026, 11, 24, 1, 2, 3, 0, time.UTC)},
		{"date", pgtype.DateOID, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"date -infinity", pgtype.DateOID, pgtype.Date{InfinityModifier: pgtype.NegativeInfinity, Valid: true}},
		{"json", pgtype.JSONOID, map[string]any{"k": 1.0, "s": "x"}},
		{"jsonb", pgtype.JSONBOID, map[string]any{"k": []any{1.0, nil, true}}},
		{"numeric", pgtype.NumericOID, pgtype.Numeric{Int: big.NewInt(1250), Exp: -2, Valid: true}},
		{"numeric whole", pgtype.NumericOID, pgtype.Numeric{Int: big.NewInt(1), Exp: 6, Valid: true}},
		{"interval", pgtype.IntervalOID, pgtype.Interval{Months: 14, Days: 3, Microseconds: 4000000, Valid: true}},
		{"inet", pgtype.InetOID, netip.MustParsePrefix("10.1.2.3/32")},
		{"int4[]", pgtype.Int4ArrayOID, []int32{1, 2, 3}},
		{"text[]", pgtype.TextArrayOID, []string{"a", "b c"}},
		{"numeric[]", pgtype.NumericArrayOID, []pgtype.Numeric{{Int: big.NewInt(1000), Exp: 0, Valid: true}, {Int: big.NewInt(5), Exp: -1, Valid: true}}},
		{"numrange", pgtype.NumrangeOID, pgtype.Range[pgtype.Numeric]{Lower: pgtype.Numeric{Int: big.NewInt(100), Exp: 0, Valid: true}, LowerType: pgtype.Inclusive, UpperType: pgtype.Unbounded, Valid: true}},
		{"interval[]", pgtype.IntervalArrayOID, []pgtype.Interval{{Days: 1, Valid: true}, {Months: -2, Microseconds: 1, Valid: true}}},
		{"char", pgtype.QCharOID, rune('x')},
		{"int8 negative", pgtype.Int8OID, int64(-1) << 50},
		{"float8 large", pgtype.Float8OID, 1e300},
		{"timestamptz 1970", pgtype.TimestamptzOID, time.Date(1970, 1, 1, 0, 0, 0, 1000, time.UTC)},
	}
	v := NewValues(nil)
	ctx := context.Background()
	for _, c := range cases {
		if !BinarySafe(c.oid) {
			t.Fatalf("BinarySafe(%s) = false", c.name)
		}
		bin, err := m.Encode(c.oid, pgtype.BinaryFormatCode, c.v, nil)
		if err != nil {
			t.Fatalf("%s: encode binary: %v", c.name, err)
		}
		text, err := m.Encode(c.oid, pgtype.TextFormatCode, c.v, nil)
		if err != nil {
			t.Fatalf("%s: encode text: %v", c.name, err)
		}
		typ, _ := m.TypeForOID(c.oid)
		want, err := typ.Codec.DecodeValue(m, c.oid, pgtype.BinaryFormatCode, bin)
		if err != nil {
			t.Fatalf("%s: pgx decode: %v", c.name, err)
		}
		codec := v.Codec(c.oid, c.oid)
		for _, col := range []pgoutput.Column{{Kind: pgoutput.ColBinary, Data: bin}, {Kind: pgoutput.ColText, Data: text}} {
			got, err := v.Decode(ctx, &codec, col)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("%s: %c %q decoded to %#v (%v), pgx decodes the binary form to %#v", c.name, col.Kind, col.Data, got, err, want)
			}
		}
	}
}

func TestBinarySafe(t *testing.T) {
	for oid, want := range map[uint32]bool{
		pgtype.Int4OID: true, pgtype.NumericOID: true, pgtype.TextArrayOID: true,
		16500: false, // user-defined
		790:   false, // money: built in, but pgx has no codec for it
	} {
		if got := BinarySafe(oid); got != want {
			t.Errorf("BinarySafe(%d) = %v, want %v", oid, got, want)
		}
	}
}

// TestSmallNumericBinary compares parseSmallNumericBinary with pgx's
// binary decoding over random small numerics of every shape (weights,
// display scales shorter and longer than the digits, signs), and checks
// that it declines what it does not handle.
func TestSmallNumericBinary(t *testing.T) {
	m := pgtype.NewMap()
	typ, _ := m.TypeForOID(pgtype.NumericOID)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		ndigits := rng.IntN(5)
		b := binary.BigEndian.AppendUint16(nil, uint16(ndigits))
		b = binary.BigEndian.AppendUint16(b, uint16(int16(rng.IntN(9)-4)))
		b = binary.BigEndian.AppendUint16(b, []uint16{0, 0x4000}[rng.IntN(2)])
		b = binary.BigEndian.AppendUint16(b, uint16(rng.IntN(20)))
		for range ndigits {
			d := rng.IntN(10000)
			if rng.IntN(4) == 0 {
				d = 0
			}
			b = binary.BigEndian.AppendUint16(b, uint16(d))
		}
		got, ok := parseSmallNumericBinary(b)
		want, err := typ.Codec.DecodeValue(m, pgtype.NumericOID, pgtype.BinaryFormatCode, b)
		if err != nil {
			if ok {
				t.Fatalf("%x: pgx fails (%v), fast path gives %v", b, err, got)
			}
			continue
		}
		w := want.(pgtype.Numeric)
		// Compared by value: a zero reached by division has a different
		// (equally valid) representation inside big.Int.
		if ok && (got.Int.Cmp(w.Int) != 0 || got.Exp != w.Exp || got.NaN || !got.Valid || got.InfinityModifier != w.InfinityModifier) {
			t.Fatalf("%x: fast path %v (Int %v Exp %d), pgx %v", b, got, got.Int, got.Exp, want)
		}
	}
	for _, b := range [][]byte{
		{0, 0, 0, 0, 0xc0, 0, 0, 0},          // NaN
		{0, 5, 0, 0, 0, 0, 0, 0},             // five digits, none given
		{0, 1, 0, 0, 0, 0, 0, 0, 0},          // truncated digit
		{0, 1, 0, 0, 0x12, 0x34, 0, 0, 0, 1}, // unknown sign
	} {
		if v, ok := parseSmallNumericBinary(b); ok {
			t.Errorf("%x: decoded to %v, want declined", b, v)
		}
	}
}

// TestBinaryFixedSizeFallback checks that the direct readers of fixed-size
// binary values leave anything unusual to pgx: a wrong length is pgx's
// error, and timestamps far from 2000 (and infinity) are pgx's values.
func TestBinaryFixedSizeFallback(t *testing.T) {
	m := pgtype.NewMap()
	for _, c := range []struct {
		oid uint32
		src []byte
	}{
		{pgtype.Int8OID, []byte{1, 2, 3}},
		{pgtype.Int4OID, []byte{1, 2, 3, 4, 5}},
		{pgtype.Float8OID, []byte{1}},
		{pgtype.TimestamptzOID, []byte{1, 2}},
	} {
		typ, _ := m.TypeForOID(c.oid)
		fast := fastBinary(m, c.oid, typ, map[string]string{})
		if _, err := fast(c.src); err == nil {
			t.Errorf("type %d: %d bytes decoded without error", c.oid, len(c.src))
		}
	}
	typ, _ := m.TypeForOID(pgtype.TimestamptzOID)
	fast := fastBinary(m, pgtype.TimestamptzOID, typ, map[string]string{})
	for _, v := range []any{
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 1000, time.UTC), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}, pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true},
	} {
		b, err := m.Encode(pgtype.TimestamptzOID, pgtype.BinaryFormatCode, v, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fast(b)
		want, werr := typ.Codec.DecodeValue(m, pgtype.TimestamptzOID, pgtype.BinaryFormatCode, b)
		if err != nil || werr != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%v: got %#v (%v), pgx %#v (%v)", v, got, err, want, werr)
		}
	}
}
