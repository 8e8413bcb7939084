package pgvalue

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/bits"

	"github.com/jackc/pgx/v5/pgtype"
)

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
