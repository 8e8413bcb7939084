package walex

import (
	"encoding/hex"
	"math"
	"net"

	"github.com/jackc/pgx/v5/pgtype"
)

// jsonRecord converts a record's values to their documented JSON form.
// It returns a new map, so that the event's own record is never changed.
func jsonRecord(rec map[string]any) map[string]any {
	if rec == nil {
		return nil
	}
	out := make(map[string]any, len(rec))
	for k, v := range rec {
		out[k] = jsonValue(v)
	}
	return out
}

// jsonValue maps a decoded value to the value encoding/json should write:
//   - numeric (pgtype.Numeric): a string holding the exact decimal ("12.50",
//     "NaN", "Infinity"), so no precision is lost in float64;
//   - float4/float8 NaN and ±Inf: the strings "NaN", "Infinity", "-Infinity"
//     (JSON has no such numbers);
//   - uuid ([16]byte): its canonical text "xxxxxxxx-xxxx-...";
//   - ±infinity dates and timestamps: "infinity" / "-infinity";
//   - macaddr (net.HardwareAddr): "08:00:2b:01:02:03";
//   - bytea ([]byte): base64, as encoding/json does;
//   - Unchanged: {"$walex":"unchanged-toast"};
//   - arrays ([]any): element by element;
//   - everything else: its own JSON encoding.
func jsonValue(v any) any {
	switch x := v.(type) {
	case pgtype.Numeric:
		if !x.Valid {
			return nil
		}
		t, err := x.Value()
		if err != nil {
			return nil
		}
		return t
	case float64:
		return jsonFloat(x)
	case float32:
		return jsonFloat(float64(x))
	case [16]byte:
		var b [36]byte
		hex.Encode(b[0:8], x[0:4])
		b[8] = '-'
		hex.Encode(b[9:13], x[4:6])
		b[13] = '-'
		hex.Encode(b[14:18], x[6:8])
		b[18] = '-'
		hex.Encode(b[19:23], x[8:10])
		b[23] = '-'
		hex.Encode(b[24:], x[10:])
		return string(b[:])
	case pgtype.InfinityModifier:
		switch x {
		case pgtype.Infinity:
			return "infinity"
		case pgtype.NegativeInfinity:
			return "-infinity"
		}
		return nil
	case net.HardwareAddr:
		return x.String()
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	}
	return v
}

func jsonFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return f
}

func jsonChanges(ch map[string]Change) map[string]Change {
	if ch == nil {
		return nil
	}
	out := make(map[string]Change, len(ch))
	for k, c := range ch {
		out[k] = Change{OldValue: jsonValue(c.OldValue), NewValue: jsonValue(c.NewValue)}
	}
	return out
}
