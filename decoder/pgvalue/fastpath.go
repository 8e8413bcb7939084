package pgvalue

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walex-go/walex/internal/pgtime"
)

// valueFunc decodes one non-NULL text value.
type valueFunc func(src []byte) (any, error)

// fastText returns a decoder for the text form of the most common scalar
// types that gives exactly what the type's Codec.DecodeValue gives, but
// plans the scan once per column instead of once per value (pgx's
// DecodeValue calls PlanScan, which allocates, every time). It returns nil
// for other types, which then go through DecodeValue.
func fastText(m *pgtype.Map, oid uint32, t *pgtype.Type, jsonKeys map[string]string) valueFunc {
	switch oid {
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID:
		if _, ok := t.Codec.(pgtype.TextCodec); ok {
			return func(src []byte) (any, error) { return string(src), nil }
		}
		return nil
	case pgtype.JSONOID, pgtype.JSONBOID:
		return func(src []byte) (any, error) {
			if v, ok := parseJSON(src, jsonKeys); ok {
				return v, nil
			}
			return t.Codec.DecodeValue(m, oid, pgtype.TextFormatCode, src)
		}
	}
	return plannedScalar(m, oid, t.Codec, pgtype.TextFormatCode)
}

// fastBinary is fastText for the binary form (see BinarySafe): the same
// values as the type's Codec.DecodeValue for binary input, with the scan
// planned once per column. It returns nil for other types, which then go
// through DecodeValue.
func fastBinary(m *pgtype.Map, oid uint32, t *pgtype.Type, jsonKeys map[string]string) valueFunc {
	const bin int16 = pgtype.BinaryFormatCode
	switch oid {
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.JSONOID:
		// The binary form of these types is their text.
		return fastText(m, oid, t, jsonKeys)
	case pgtype.JSONBOID:
		// A version byte (1), then the text form.
		return func(src []byte) (any, error) {
			if len(src) > 0 && src[0] == 1 {
				if v, ok := parseJSON(src[1:], jsonKeys); ok {
					return v, nil
				}
			}
			return t.Codec.DecodeValue(m, oid, bin, src)
		}
	case pgtype.NumericOID:
		return func(src []byte) (any, error) {
			if v, ok := parseSmallNumericBinary(src); ok {
				return v, nil
			}
			return t.Codec.DecodeValue(m, oid, bin, src)
		}
	}
	slow := plannedScalar(m, oid, t.Codec, bin)
	if slow == nil {
		return nil
	}
	// The fixed-size types are read directly when the input is what the
	// server sends, and through pgx otherwise (for the same error).
	switch oid {
	case pgtype.Int2OID:
		return direct(2, slow, func(src []byte) any { return int16(binary.BigEndian.Uint16(src)) })
	case pgtype.Int4OID:
		return direct(4, slow, func(src []byte) any { return int32(binary.BigEndian.Uint32(src)) })
	case pgtype.Int8OID:
		return direct(8, slow, func(src []byte) any { return int64(binary.BigEndian.Uint64(src)) })
	case pgtype.Float4OID:
		return direct(4, slow, func(src []byte) any { return math.Float32frombits(binary.BigEndian.Uint32(src)) })
	case pgtype.Float8OID:
		return direct(8, slow, func(src []byte) any { return math.Float64frombits(binary.BigEndian.Uint64(src)) })
	case pgtype.TimestamptzOID:
		return func(src []byte) (any, error) {
			if len(src) != 8 {
				return slow(src)
			}
			// Microseconds since 2000-01-01 UTC. Within ±2,000 years of
			// it the value is in range; beyond (and for infinity), pgx.
			us := int64(binary.BigEndian.Uint64(src))
			if us <= -y2kRange || us >= y2kRange {
				return slow(src)
			}
			// As pgx builds it: time.Unix, so in time.Local.
			return time.Unix(pgtime.EpochUnixMicro/1_000_000+us/1_000_000, (pgtime.EpochUnixMicro%1_000_000*1_000)+(us%1_000_000*1_000)), nil
		}
	}
	return slow
}

// plannedScalar returns a planned decoder for the scalar types whose Go
// value is the scan target itself (integers, floats, bool) or derived from
// it (timestamps and dates: the time, or the infinity), in either format;
// nil for other types.
func plannedScalar(m *pgtype.Map, oid uint32, codec pgtype.Codec, format int16) valueFunc {
	switch oid {
	case pgtype.Int2OID:
		return planned(m, oid, codec, format, func(v int16) any { return v })
	case pgtype.Int4OID:
		return planned(m, oid, codec, format, func(v int32) any { return v })
	case pgtype.Int8OID:
		return planned(m, oid, codec, format, func(v int64) any { return v })
	case pgtype.Float4OID:
		return planned(m, oid, codec, format, func(v float32) any { return v })
	case pgtype.Float8OID:
		return planned(m, oid, codec, format, func(v float64) any { return v })
	case pgtype.BoolOID:
		return planned(m, oid, codec, format, func(v bool) any { return v })
	case pgtype.TimestamptzOID:
		return planned(m, oid, codec, format, func(v pgtype.Timestamptz) any { return timeValue(v.Time, v.InfinityModifier) })
	case pgtype.TimestampOID:
		return planned(m, oid, codec, format, func(v pgtype.Timestamp) any { return timeValue(v.Time, v.InfinityModifier) })
	case pgtype.DateOID:
		return planned(m, oid, codec, format, func(v pgtype.Date) any { return timeValue(v.Time, v.InfinityModifier) })
	}
	return nil
}

// timeValue is what pgx's DecodeValue gives for a timestamp or a date: the
// infinity, or the time.
func timeValue(t time.Time, inf pgtype.InfinityModifier) any {
	if inf != pgtype.Finite {
		return inf
	}
	return t
}

// planned plans a scan into a T once and returns a decoder that reuses the
// plan and its scan target. The returned function is used by the
// decoder's goroutine only: it is not safe for concurrent use.
func planned[T any](m *pgtype.Map, oid uint32, codec pgtype.Codec, format int16, conv func(T) any) valueFunc {
	var probe T
	plan := codec.PlanScan(m, oid, format, &probe)
	if plan == nil {
		return nil
	}
	// v is reused from value to value: a fresh one per call would escape to
	// the heap (plan.Scan takes it as an interface), one allocation per
	// value for nothing.
	var v, zero T
	return func(src []byte) (any, error) {
		v = zero
		if err := plan.Scan(src, &v); err != nil {
			return nil, err
		}
		return conv(v), nil
	}
}

// direct returns a decoder that reads a fixed-size binary value of size
// bytes with read, and anything else with slow.
func direct(size int, slow valueFunc, read func([]byte) any) valueFunc {
	return func(src []byte) (any, error) {
		if len(src) != size {
			return slow(src)
		}
		return read(src), nil
	}
}

// y2kRange is how far from PostgreSQL's epoch, in µs, timestamps are read
// directly: ±2,000 years.
const y2kRange = 2000 * 365 * 24 * 60 * 60 * 1_000_000
