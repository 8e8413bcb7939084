package decoder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestBinaryValues checks that a value sent in binary (pgoutput's binary
// option) decodes to what pgx decodes from the same bytes, and to what the
// decoder makes of the text form of the same value, for the types the
// decoder reads in binary itself.
func TestBinaryValues(t *testing.T) {
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
	}
	var cols []col
	var bin, text []any
	for _, c := range cases {
		if !BinarySafe(c.oid) {
			t.Fatalf("BinarySafe(%s) = false", c.name)
		}
		b, err := m.Encode(c.oid, pgtype.BinaryFormatCode, c.v, nil)
		if err != nil {
			t.Fatalf("%s: encode binary: %v", c.name, err)
		}
		s, err := m.Encode(c.oid, pgtype.TextFormatCode, c.v, nil)
		if err != nil {
			t.Fatalf("%s: encode text: %v", c.name, err)
		}
		cols = append(cols, col{c.name, c.oid, false})
		bin = append(bin, b)
		text = append(text, string(s))
	}
	d := New(Options{})
	bs := feed(t, d,
		beginMsg(0x100, 7),
		relationMsg(false, 0, 1, "public", "all_types", 'd', cols...),
		insertMsg(false, 0, 1, bin...),
		insertMsg(false, 0, 1, text...),
		commitMsg(0x100, 0x180),
	)
	fromBinary, fromText := bs[0].Changes[0].New, bs[0].Changes[1].New
	for i, c := range cases {
		typ, _ := m.TypeForOID(c.oid)
		want, err := typ.Codec.DecodeValue(m, c.oid, pgtype.BinaryFormatCode, bin[i].([]byte))
		if err != nil {
			t.Fatalf("%s: pgx decode: %v", c.name, err)
		}
		if got := fromBinary[c.name]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: binary decoded to %#v, pgx decodes %#v", c.name, got, want)
		}
		if got := fromText[c.name]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: text %q decoded to %#v, binary to %#v", c.name, text[i], got, want)
		}
	}
}

// TestBinaryValueOfUnknownType checks that a binary value of a type the
// decoder cannot read goes through Options.TextOf, and that without it the
// decoder fails with a clear error instead of guessing.
func TestBinaryValueOfUnknownType(t *testing.T) {
	const moodOID = 16500 // an enum: its binary form is its label
	msgs := [][]byte{
		beginMsg(0x100, 7),
		relationMsg(false, 0, 1, "public", "people", 'd', col{"id", oidInt4, true}, col{"mood", moodOID, false}),
		insertMsg(false, 0, 1, []byte{0, 0, 0, 1}, []byte("happy")),
		commitMsg(0x100, 0x180),
	}
	var asked []uint32
	d := New(Options{TextOf: func(oid uint32, b []byte) ([]byte, error) {
		asked = append(asked, oid)
		return bytes.ToUpper(b), nil // stands for the server's output function
	}})
	bs := feed(t, d, msgs...)
	if got := bs[0].Changes[0].New; !reflect.DeepEqual(got, map[string]any{"id": int32(1), "mood": "HAPPY"}) {
		t.Errorf("record = %#v, want the converted text of mood", got)
	}
	if len(asked) != 1 || asked[0] != moodOID {
		t.Errorf("TextOf asked for %v, want once for type %d", asked, moodOID)
	}

	boom := errors.New("server gone")
	d = New(Options{TextOf: func(uint32, []byte) ([]byte, error) { return nil, boom }})
	err := decodeAll(d, msgs)
	if !errors.Is(err, boom) {
		t.Errorf("a failing TextOf gave %v, want it wrapped", err)
	}
	if err := decodeAll(New(Options{}), msgs); err == nil {
		t.Error("a binary value of an unknown type without TextOf decoded without error")
	}
}

func decodeAll(d *Decoder, msgs [][]byte) error {
	for _, m := range msgs {
		if err := d.Decode(m, func(*Batch) error { return nil }); err != nil {
			return err
		}
	}
	return nil
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
