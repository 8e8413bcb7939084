package pgvalue

import (
	"math"
	"math/big"

	"github.com/jackc/pgx/v5/pgtype"
)

// pgoutput sends values in their text form, while pgx asks for the binary
// form of every type it can decode in binary, and for some types the two
// decodings give different Go values for the same datum. The decoder's
// type map replaces the codecs of those types with a binaryShapedCodec that
// decodes text into exactly the value pgx decodes from the binary form
// (see installTextCodecs for the list). Containers of such types (arrays,
// ranges, multiranges) are re-registered over the wrapped element type so
// that their elements are decoded the same way.

// binaryShapedCodec is a pgx codec whose text decoding is replaced by
// decodeText; binary decoding, encoding and scanning into other targets are
// the wrapped codec's.
type binaryShapedCodec struct {
	pgtype.Codec
	// decodeText decodes a non-NULL text value into the Go value that the
	// wrapped codec's DecodeValue returns for the binary form of the same
	// datum.
	decodeText func(m *pgtype.Map, oid uint32, src []byte) (any, error)
}

// DecodeValue decodes src like pgx's binary decoding of the same datum.
func (c *binaryShapedCodec) DecodeValue(m *pgtype.Map, oid uint32, format int16, src []byte) (any, error) {
	if format == pgtype.TextFormatCode && src != nil {
		return c.decodeText(m, oid, src)
	}
	return c.Codec.DecodeValue(m, oid, format, src)
}

// PlanScan routes text scans into *any (which is how array, range and
// multirange codecs decode their elements for DecodeValue) to DecodeValue,
// and everything else to the wrapped codec.
func (c *binaryShapedCodec) PlanScan(m *pgtype.Map, oid uint32, format int16, target any) pgtype.ScanPlan {
	if _, ok := target.(*any); ok && format == pgtype.TextFormatCode {
		return &binaryShapedScanPlan{codec: c, m: m, oid: oid}
	}
	return c.Codec.PlanScan(m, oid, format, target)
}

// binaryShapedScanPlan scans text into *any with binaryShapedCodec.DecodeValue.
type binaryShapedScanPlan struct {
	codec *binaryShapedCodec
	m     *pgtype.Map
	oid   uint32
}

// Scan implements pgtype.ScanPlan.
func (p *binaryShapedScanPlan) Scan(src []byte, dst any) error {
	v, err := p.codec.DecodeValue(p.m, p.oid, pgtype.TextFormatCode, src)
	if err != nil {
		return err
	}
	*dst.(*any) = v
	return nil
}

// installTextCodecs registers binaryShapedCodecs in m for the types whose
// text and binary decodings differ in pgx, and re-registers the arrays,
// ranges and multiranges built on them. It is idempotent and cheap once
// done, so it may be called whenever a relation is built.
//
//   - numeric: text decoding keeps the digits as written ("1000000" is
//     Int 1000000, Exp 0; "0.00" is Int 0, Exp -2), binary decoding gives
//     Int 1, Exp 6 and Int 0, Exp 0 (see decodeNumericText).
//   - interval: Postgres 17 prints infinite intervals as "infinity" and
//     "-infinity", which pgx's text decoding rejects.
//   - "char": Postgres prints a byte with the high bit set as a backslash
//     and three octal digits, which pgx's text decoding rejects.
func installTextCodecs(m *pgtype.Map) {
	if t, ok := m.TypeForOID(pgtype.NumericOID); ok {
		if _, done := t.Codec.(*binaryShapedCodec); done {
			return
		}
	}
	wrap := func(oid uint32, decodeText func(inner pgtype.Codec, m *pgtype.Map, oid uint32, src []byte) (any, error)) *pgtype.Type {
		t, ok := m.TypeForOID(oid)
		if !ok {
			return nil
		}
		inner := t.Codec
		nt := &pgtype.Type{Name: t.Name, OID: oid, Codec: &binaryShapedCodec{
			Codec: inner,
			decodeText: func(m *pgtype.Map, oid uint32, src []byte) (any, error) {
				return decodeText(inner, m, oid, src)
			},
		}}
		m.RegisterType(nt)
		return nt
	}
	// register replaces the type oid with one of the same name and the
	// codec built by mk.
	register := func(oid uint32, mk func() pgtype.Codec) *pgtype.Type {
		t, ok := m.TypeForOID(oid)
		if !ok {
			return nil
		}
		nt := &pgtype.Type{Name: t.Name, OID: oid, Codec: mk()}
		m.RegisterType(nt)
		return nt
	}
	// containers re-registers the array, range, range array and
	// multirange types over elem (any OID may be 0: none).
	containers := func(elem *pgtype.Type, arrayOID, rangeOID, rangeArrayOID, multirangeOID uint32) {
		if elem == nil {
			return
		}
		if arrayOID != 0 {
			register(arrayOID, func() pgtype.Codec { return &pgtype.ArrayCodec{ElementType: elem} })
		}
		if rangeOID == 0 {
			return
		}
		rng := register(rangeOID, func() pgtype.Codec { return &pgtype.RangeCodec{ElementType: elem} })
		if rng == nil {
			return
		}
		register(rangeArrayOID, func() pgtype.Codec { return &pgtype.ArrayCodec{ElementType: rng} })
		register(multirangeOID, func() pgtype.Codec { return &pgtype.MultirangeCodec{ElementType: rng} })
	}

	numeric := wrap(pgtype.NumericOID, decodeNumericText)
	containers(numeric, pgtype.NumericArrayOID, pgtype.NumrangeOID, pgtype.NumrangeArrayOID, pgtype.NummultirangeOID)
	interval := wrap(pgtype.IntervalOID, decodeIntervalText)
	containers(interval, pgtype.IntervalArrayOID, 0, 0, 0)
	qchar := wrap(pgtype.QCharOID, decodeQCharText)
	containers(qchar, pgtype.QCharArrayOID, 0, 0, 0)
}

// decodeNumericText decodes numeric text into the pgtype.Numeric that pgx
// decodes from the binary form of the same value. Postgres's binary form
// holds base-10000 digits, a weight and the display scale (the number of
// digits after the point, as printed in the text form); pgx turns it into
// Int and Exp such that:
//
//   - zero is Int 0 (big.NewInt(0)), Exp 0, whatever its scale;
//   - with a display scale s > 0, Int is the value times 10^s and Exp is -s,
//     which is what the text decoding gives too;
//   - with scale 0, all trailing decimal zeros move into Exp: 1000000 is
//     Int 1, Exp 6 (the text decoding gives Int 1000000, Exp 0).
//
// NaN and ±Infinity decode alike in both forms.
func decodeNumericText(inner pgtype.Codec, m *pgtype.Map, oid uint32, src []byte) (any, error) {
	if v, ok := parseSmallNumeric(src); ok {
		return v, nil
	}
	v, err := inner.DecodeValue(m, oid, pgtype.TextFormatCode, src)
	if err != nil {
		return nil, err
	}
	n, ok := v.(pgtype.Numeric)
	if !ok || !n.Valid || n.NaN || n.InfinityModifier != pgtype.Finite || n.Int == nil {
		return v, nil
	}
	if n.Int.Sign() == 0 {
		return pgtype.Numeric{Int: big.NewInt(0), Valid: true}, nil
	}
	if n.Exp < 0 {
		return n, nil
	}
	i, exp := new(big.Int).Set(n.Int), n.Exp
	q, r := new(big.Int), new(big.Int)
	for {
		q.QuoRem(i, big10, r)
		if r.Sign() != 0 {
			break
		}
		i, q = q, i
		exp++
	}
	return pgtype.Numeric{Int: i, Exp: exp, Valid: true}, nil
}

// decodeIntervalText decodes interval text like pgx decodes the binary
// form. The only difference is infinity (PostgreSQL 17 and later): Postgres
// prints "infinity" and "-infinity", which pgx's text decoding rejects, and
// sends the largest or smallest months, days and microseconds in binary,
// which pgx decodes as an ordinary pgtype.Interval holding those numbers.
func decodeIntervalText(inner pgtype.Codec, m *pgtype.Map, oid uint32, src []byte) (any, error) {
	switch string(src) {
	case "infinity":
		return pgtype.Interval{Microseconds: math.MaxInt64, Days: math.MaxInt32, Months: math.MaxInt32, Valid: true}, nil
	case "-infinity":
		return pgtype.Interval{Microseconds: math.MinInt64, Days: math.MinInt32, Months: math.MinInt32, Valid: true}, nil
	}
	return inner.DecodeValue(m, oid, pgtype.TextFormatCode, src)
}

// decodeQCharText decodes "char" text. Postgres prints a byte with the high
// bit set as \ooo (three octal digits) and the zero byte as the empty
// string; in binary it sends the byte, which pgx decodes as a rune of that
// byte's value.
func decodeQCharText(inner pgtype.Codec, m *pgtype.Map, oid uint32, src []byte) (any, error) {
	if len(src) == 4 && src[0] == '\\' && src[1] >= '0' && src[1] <= '3' && isOctal(src[2]) && isOctal(src[3]) {
		return rune(src[1]-'0')<<6 | rune(src[2]-'0')<<3 | rune(src[3]-'0'), nil
	}
	return inner.DecodeValue(m, oid, pgtype.TextFormatCode, src)
}

func isOctal(b byte) bool { return b >= '0' && b <= '7' }
