package decoder

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/bits"

	"github.com/jackc/pgx/v5/pgtype"
)

// Relation is the decoder's view of a table, built from a Relation message.
// A Relation is immutable once built: a new Relation message for the same
// table produces a new *Relation, so events keep the shape they were
// decoded with.
type Relation struct {
	ID              uint32
	Schema          string
	Name            string
	ReplicaIdentity byte // 'd' default, 'n' nothing, 'f' full, 'i' index
	Columns         []RelationColumn
	// ColumnTypes maps each column name to its type name ("int4", "text",
	// "public.mood", ...). Shared by every event of the relation: read only.
	ColumnTypes map[string]string

	codecs []columnCodec
}

// HasOldValues reports whether updates and deletes of the relation carry
// the whole old row (REPLICA IDENTITY FULL).
func (r *Relation) HasOldValues() bool { return r.ReplicaIdentity == 'f' }

// columnCodec is how one column's values are turned into Go values.
type columnCodec struct {
	name    string
	typeOID uint32       // the column's type, as in the Relation message
	oid     uint32       // the OID pgx would see in a RowDescription (base type for domains)
	typ     *pgtype.Type // nil: pgx does not know the type; text form is kept
	fast    valueFunc    // optional faster path for the text form, same result
	// binary tells that binary values are decoded here (BinarySafe);
	// fastBin is the optional faster path for them.
	binary  bool
	fastBin valueFunc
}

// TypeInfo is what a TypeResolver knows about a type OID.
type TypeInfo struct {
	// Name is the type's name as shown in Event.Source.Columns: the bare
	// name for types in pg_catalog, schema-qualified otherwise.
	Name string
	// BaseOID is the OID pgx sees in a query result for a column of this
	// type: the base type of a domain (resolved through nested domains),
	// the OID itself otherwise.
	BaseOID uint32
}

// TypeResolver looks up types the decoder cannot name by itself (domains,
// enums, extension types, built-ins unknown to pgx). It is called from the
// decoding goroutine when a Relation message arrives, never per row. The
// root package implements it with a catalog query on a normal connection.
type TypeResolver interface {
	ResolveType(oid uint32) (TypeInfo, error)
}

func (d *Decoder) buildRelation(m *RelationMessage) (*Relation, error) {
	rel := &Relation{
		ID:              m.RelationID,
		Schema:          m.Namespace,
		Name:            m.Name,
		ReplicaIdentity: m.ReplicaIdentity,
		Columns:         m.Columns,
		ColumnTypes:     make(map[string]string, len(m.Columns)),
		codecs:          make([]columnCodec, len(m.Columns)),
	}
	for i, c := range m.Columns {
		info, err := d.typeInfo(c.TypeOID)
		if err != nil {
			return nil, fmt.Errorf("decoder: relation %s.%s column %q: %w", m.Namespace, m.Name, c.Name, err)
		}
		rel.ColumnTypes[c.Name] = info.Name
		rel.codecs[i] = d.newColumnCodec(c.Name, c.TypeOID, info.BaseOID)
	}
	return rel, nil
}

// values turns tuples into records. A Decoder has one for its goroutine;
// each goroutine of a parallel replay (see replay.go) has its own, as pgx's
// type map and the planned scans are not safe for concurrent use.
type values struct {
	typeMap  *pgtype.Map
	jsonKeys map[string]string // interned JSON object keys
	textOf   func(typeOID uint32, binary []byte) ([]byte, error)
	// own holds this values' codecs of relations built by another one
	// (nil: use Relation.codecs, built by this one).
	own map[*Relation][]columnCodec
}

func newValues(textOf func(uint32, []byte) ([]byte, error), own map[*Relation][]columnCodec) values {
	m := pgtype.NewMap()
	installTextCodecs(m)
	return values{typeMap: m, jsonKeys: make(map[string]string), textOf: textOf, own: own}
}

// codecs returns the column codecs of rel to use with v.
func (v *values) codecs(rel *Relation) []columnCodec {
	if v.own == nil {
		return rel.codecs
	}
	if cs, ok := v.own[rel]; ok {
		return cs
	}
	cs := make([]columnCodec, len(rel.codecs))
	for i, cc := range rel.codecs {
		cs[i] = v.newColumnCodec(cc.name, cc.typeOID, cc.oid)
	}
	v.own[rel] = cs
	return cs
}

// newColumnCodec returns the codec of a column of type typeOID whose base
// type (what pgx sees) is baseOID.
func (v *values) newColumnCodec(name string, typeOID, baseOID uint32) columnCodec {
	cc := columnCodec{name: name, typeOID: typeOID, oid: baseOID}
	if t, ok := v.typeMap.TypeForOID(baseOID); ok {
		cc.typ = t
		cc.fast = fastText(v.typeMap, baseOID, t, v.jsonKeys)
		if BinarySafe(baseOID) {
			cc.binary = true
			cc.fastBin = fastBinary(v.typeMap, baseOID, t, v.jsonKeys)
		}
	}
	return cc
}

// firstNormalOID is FirstNormalObjectId: OIDs below it are built in.
const firstNormalOID = 16384

func (d *Decoder) typeInfo(oid uint32) (TypeInfo, error) {
	if info, ok := d.typeInfos[oid]; ok {
		return info, nil
	}
	var info TypeInfo
	t, known := d.typeMap.TypeForOID(oid)
	switch {
	case known && oid < firstNormalOID:
		info = TypeInfo{Name: t.Name, BaseOID: oid}
	case d.opts.Types != nil:
		var err error
		d.catalogMu.Lock()
		info, err = d.opts.Types.ResolveType(oid)
		d.catalogMu.Unlock()
		if err != nil {
			return TypeInfo{}, fmt.Errorf("resolve type %d: %w", oid, err)
		}
		if info.BaseOID == 0 {
			info.BaseOID = oid
		}
	default:
		info = TypeInfo{Name: d.typeNames[oid], BaseOID: oid}
		if info.Name == "" {
			info.Name = fmt.Sprintf("oid:%d", oid)
		}
	}
	d.typeInfos[oid] = info
	return info, nil
}

// decodeTuple turns tuple columns into a record map. Values follow pgx's
// rows.Values(): NULL is nil, a type pgx knows is decoded by its codec, an
// unknown type keeps its text form (binary form as []byte), and an
// unchanged TOASTed value is Unchanged.
//
// keyOnly is for an old key tuple ('K'): Postgres sends every column but
// fills only the replica identity key, so only key columns are kept.
func (v *values) decodeTuple(rel *Relation, cols []Column, keyOnly bool) (map[string]any, error) {
	codecs := v.codecs(rel)
	if len(cols) > len(codecs) {
		return nil, fmt.Errorf("decoder: tuple of %s.%s has %d columns, its relation %d", rel.Schema, rel.Name, len(cols), len(codecs))
	}
	rec := make(map[string]any, len(cols))
	for i, c := range cols {
		if keyOnly && rel.Columns[i].Flags&1 == 0 {
			continue
		}
		cc := &codecs[i]
		val, err := v.decodeValue(cc, c)
		if err != nil {
			return nil, fmt.Errorf("decoder: %s.%s column %q (type %s): %w", rel.Schema, rel.Name, cc.name, rel.ColumnTypes[cc.name], err)
		}
		rec[cc.name] = val
	}
	return rec, nil
}

func (v *values) decodeValue(cc *columnCodec, c Column) (any, error) {
	switch c.Kind {
	case ColNull:
		return nil, nil
	case ColUnchanged:
		return Unchanged, nil
	case ColText:
		if cc.fast != nil {
			return cc.fast(c.Data)
		}
		if cc.typ == nil {
			return string(c.Data), nil
		}
		return cc.typ.Codec.DecodeValue(v.typeMap, cc.oid, pgtype.TextFormatCode, c.Data)
	case ColBinary:
		if cc.fastBin != nil {
			return cc.fastBin(c.Data)
		}
		if cc.binary {
			return cc.typ.Codec.DecodeValue(v.typeMap, cc.oid, pgtype.BinaryFormatCode, c.Data)
		}
		// A type whose binary form only the server can read: have it
		// print the value, and decode the text.
		if v.textOf == nil {
			return nil, fmt.Errorf("a binary value of type %d, which the decoder cannot read (Options.TextOf is not set); ask the server for text", cc.typeOID)
		}
		text, err := v.textOf(cc.typeOID, c.Data)
		if err != nil {
			return nil, fmt.Errorf("convert a binary value of type %d to text: %w", cc.typeOID, err)
		}
		return v.decodeValue(cc, Column{Kind: ColText, Data: text})
	}
	return nil, fmt.Errorf("unknown column kind 0x%02x", c.Kind)
}

// UnchangedValue is the type of [Unchanged].
type UnchangedValue struct{}

// String returns a marker that shows up in logs and JSON.
func (UnchangedValue) String() string { return "<unchanged-toast>" }

// MarshalJSON encodes Unchanged as the JSON object {"$walex":"unchanged-toast"}.
func (UnchangedValue) MarshalJSON() ([]byte, error) {
	return []byte(`{"$walex":"unchanged-toast"}`), nil
}

// Unchanged stands for an unchanged TOASTed value that Postgres did not
// send in an update. It is never reported as a change.
var Unchanged = UnchangedValue{}

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

var big10 = big.NewInt(10)

// parseSmallNumeric is the fast path of decodeNumericText for finite
// values whose digits fit in a uint64 (up to 19 digits), with the same
// result: zero is Int 0, Exp 0; with a fractional part, Int holds every
// digit and Exp is minus the scale; without one, trailing zeros move into
// Exp. It reports false for anything else (NaN, infinities, long values),
// which takes the general path.
func parseSmallNumeric(src []byte) (pgtype.Numeric, bool) {
	i, neg := 0, false
	if len(src) > 0 && src[0] == '-' {
		i, neg = 1, true
	}
	if i >= len(src) {
		return pgtype.Numeric{}, false
	}
	var u uint64
	scale, digits := -1, 0
	for ; i < len(src); i++ {
		c := src[i]
		if c == '.' {
			if scale >= 0 {
				return pgtype.Numeric{}, false
			}
			scale = 0
			continue
		}
		if c < '0' || c > '9' || digits == 19 {
			return pgtype.Numeric{}, false
		}
		u = u*10 + uint64(c-'0')
		digits++
		if scale >= 0 {
			scale++
		}
	}
	if digits == 0 {
		return pgtype.Numeric{}, false
	}
	if u == 0 {
		return pgtype.Numeric{Int: big.NewInt(0), Valid: true}, true
	}
	var exp int32
	if scale > 0 {
		exp = int32(-scale)
	} else {
		for u%10 == 0 {
			u /= 10
			exp++
		}
	}
	c := new(smallBigInt)
	c.set(u, neg)
	return pgtype.Numeric{Int: &c.i, Exp: exp, Valid: true}, true
}

// parseSmallNumericBinary decodes the binary form of a numeric that has
// at most four base-10000 digits (16 decimal digits) into what pgx's binary
// decoding gives, with one allocation for the big.Int. It reports false for
// anything else (NaN, infinities, longer values, malformed input), which
// takes pgx's path.
func parseSmallNumericBinary(src []byte) (pgtype.Numeric, bool) {
	if len(src) < 8 {
		return pgtype.Numeric{}, false
	}
	ndigits := int(binary.BigEndian.Uint16(src))
	weight := int32(int16(binary.BigEndian.Uint16(src[2:])))
	sign := binary.BigEndian.Uint16(src[4:])
	dscale := int(int16(binary.BigEndian.Uint16(src[6:])))
	if ndigits > 4 || len(src) != 8+2*ndigits || (sign != 0 && sign != 0x4000) {
		return pgtype.Numeric{}, false
	}
	if ndigits == 0 {
		return pgtype.Numeric{Int: big.NewInt(0), Valid: true}, true
	}
	var u uint64
	for i := range ndigits {
		u = u*10000 + uint64(binary.BigEndian.Uint16(src[8+2*i:]))
	}
	exp := (weight - int32(ndigits) + 1) * 4
	if dscale > 0 {
		frac := (ndigits - int(weight) - 1) * 4
		for ; dscale > frac; frac++ {
			if u > math.MaxUint64/10 {
				return pgtype.Numeric{}, false
			}
			u *= 10
			exp--
		}
		for ; dscale < frac; frac-- {
			u /= 10
			exp++
		}
	}
	if exp >= 0 && u != 0 {
		for u%10 == 0 {
			u /= 10
			exp++
		}
	}
	if u == 0 { // zero digits (not what the server sends): as pgx has it
		return pgtype.Numeric{Int: new(big.Int), Exp: exp, Valid: true}, true
	}
	c := new(smallBigInt)
	c.set(u, sign != 0)
	return pgtype.Numeric{Int: &c.i, Exp: exp, Valid: true}, true
}

// smallBigInt is a big.Int with room for a uint64 of digits in the same
// allocation (one word on 64-bit platforms, two on 32-bit ones).
type smallBigInt struct {
	i big.Int
	w [64 / bits.UintSize]big.Word
}

// set makes c.i u, negated if neg, with its digits in c.w: the big.Int and
// its digits share one allocation.
func (c *smallBigInt) set(u uint64, neg bool) {
	k := 0
	for ; u != 0; k++ {
		c.w[k] = big.Word(u)
		u >>= bits.UintSize - 1
		u >>= 1
	}
	c.i.SetBits(c.w[:k])
	if neg {
		c.i.Neg(&c.i)
	}
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
