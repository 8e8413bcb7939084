package pgvalue

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walex-go/walex/decoder/pgoutput"
)

// TextOf converts the binary form of a value of the given type OID to its
// text form (walex asks the server to).
type TextOf func(ctx context.Context, typeOID uint32, binary []byte) ([]byte, error)

// Values decodes column values into the Go values pgx's rows.Values()
// returns for the same column. It holds pgx's type map and the planned
// scans of its Codecs, which are not safe for concurrent use: each
// goroutine that decodes needs its own Values, and a Codec is used only
// with the Values that made it.
type Values struct {
	typeMap  *pgtype.Map
	jsonKeys map[string]string // interned JSON object keys
	textOf   TextOf
}

// NewValues returns a Values. textOf converts binary values of types that
// are not BinarySafe; nil means such values are an error.
func NewValues(textOf TextOf) *Values {
	m := pgtype.NewMap()
	installTextCodecs(m)
	return &Values{typeMap: m, jsonKeys: make(map[string]string), textOf: textOf}
}

// Codec is how the values of one column are turned into Go values.
type Codec struct {
	typeOID uint32       // the column's type, as in the Relation message
	oid     uint32       // the OID pgx would see in a RowDescription (base type for domains)
	typ     *pgtype.Type // nil: pgx does not know the type; text form is kept
	fast    valueFunc    // optional faster path for the text form, same result
	// binary tells that binary values are decoded here (BinarySafe);
	// fastBin is the optional faster path for them.
	binary  bool
	fastBin valueFunc
}

// Codec returns the codec for a column of type typeOID whose base type
// (what pgx sees) is baseOID.
func (v *Values) Codec(typeOID, baseOID uint32) Codec {
	c := Codec{typeOID: typeOID, oid: baseOID}
	if t, ok := v.typeMap.TypeForOID(baseOID); ok {
		c.typ = t
		c.fast = fastText(v.typeMap, baseOID, t, v.jsonKeys)
		if BinarySafe(baseOID) {
			c.binary = true
			c.fastBin = fastBinary(v.typeMap, baseOID, t, v.jsonKeys)
		}
	}
	return c
}

// Rebuild returns, for use with v, the codec that c is for the Values that
// made it.
func (v *Values) Rebuild(c Codec) Codec { return v.Codec(c.typeOID, c.oid) }

// Decode turns one tuple column into its Go value: NULL is nil, a type pgx
// knows is decoded by its codec, an unknown type keeps its text form (a
// binary value is converted to text first), an unchanged TOASTed value is
// Unchanged.
func (v *Values) Decode(ctx context.Context, c *Codec, col pgoutput.Column) (any, error) {
	switch col.Kind {
	case pgoutput.ColNull:
		return nil, nil
	case pgoutput.ColUnchanged:
		return Unchanged, nil
	case pgoutput.ColText:
		if c.fast != nil {
			return c.fast(col.Data)
		}
		if c.typ == nil {
			return string(col.Data), nil
		}
		return c.typ.Codec.DecodeValue(v.typeMap, c.oid, pgtype.TextFormatCode, col.Data)
	case pgoutput.ColBinary:
		if c.fastBin != nil {
			return c.fastBin(col.Data)
		}
		if c.binary {
			return c.typ.Codec.DecodeValue(v.typeMap, c.oid, pgtype.BinaryFormatCode, col.Data)
		}
		// A type whose binary form only the server can read: have it
		// print the value, and decode the text.
		if v.textOf == nil {
			return nil, fmt.Errorf("a binary value of type %d, which walex cannot read itself (no TextOf is set); ask the server for text", c.typeOID)
		}
		text, err := v.textOf(ctx, c.typeOID, col.Data)
		if err != nil {
			return nil, fmt.Errorf("convert a binary value of type %d to text: %w", c.typeOID, err)
		}
		return v.Decode(ctx, c, pgoutput.Column{Kind: pgoutput.ColText, Data: text})
	}
	return nil, fmt.Errorf("unknown column kind 0x%02x", col.Kind)
}
