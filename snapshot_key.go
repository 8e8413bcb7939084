package walex

import (
	"encoding/hex"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// canonKey is the canonical form of a row's key values, the same for the
// values decoded from the stream (text or binary) and from a snapshot's
// query: the identity snapshots match rows and stream events by.
func canonKey(vals []any) string {
	var b strings.Builder
	for _, v := range vals {
		s := canonValue(v)
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	return b.String()
}

func canonValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case int16:
		return strconv.FormatInt(int64(x), 10)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	case uint32:
		return strconv.FormatUint(uint64(x), 10)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case []byte:
		return hex.EncodeToString(x)
	case [16]byte:
		return hex.EncodeToString(x[:])
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case pgtype.Numeric:
		if !x.Valid || x.NaN || x.InfinityModifier != pgtype.Finite || x.Int == nil {
			return fmt.Sprintf("numeric:%v:%v:%v", x.Valid, x.NaN, x.InfinityModifier)
		}
		n, exp := new(big.Int).Set(x.Int), x.Exp
		ten, r := big.NewInt(10), new(big.Int)
		for n.Sign() != 0 {
			q, m := new(big.Int).QuoRem(n, ten, r)
			if m.Sign() != 0 {
				break
			}
			n, exp = q, exp+1
		}
		if n.Sign() == 0 {
			exp = 0
		}
		return n.String() + "e" + strconv.Itoa(int(exp))
	}
	return fmt.Sprintf("%T:%v", v, v)
}

// keyText is the text form of a key value decoded from the stream, as a
// statement parameter for the column's (base) type.
func keyText(m *pgtype.Map, oid uint32, v any) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	if t, ok := v.(time.Time); ok {
		v = t.UTC()
	}
	b, err := m.Encode(oid, pgtype.TextFormatCode, v, nil)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
