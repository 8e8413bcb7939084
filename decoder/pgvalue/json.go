package pgvalue

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// parseJSON decodes a JSON document into the same value encoding/json's
// Unmarshal into an `any` gives (map[string]any, []any, float64, string,
// bool, nil), with fewer allocations. It handles what PostgreSQL prints
// for json and jsonb; for anything it does not handle exactly like
// encoding/json (invalid UTF-8, malformed input) it reports ok == false and
// the caller falls back to encoding/json.
//
// keys, when not nil, interns object keys: documents of one column tend to
// repeat the same keys, and a shared immutable string saves an allocation
// per key. It is bounded by maxInternedKeys.
func parseJSON(src []byte, keys map[string]string) (v any, ok bool) {
	p := jsonParser{src: src, keys: keys}
	p.space()
	v, ok = p.value(0)
	if !ok {
		return nil, false
	}
	p.space()
	return v, p.i == len(p.src)
}

type jsonParser struct {
	src  []byte
	i    int
	keys map[string]string
}

// Interning limits: how many keys, and how long a key may be.
const (
	maxInternedKeys   = 4096
	maxInternedKeyLen = 64
)

func (p *jsonParser) key() (string, bool) {
	if p.keys == nil {
		return p.str()
	}
	// Fast path: a key without escapes is looked up without allocating.
	if p.i < len(p.src) && p.src[p.i] == '"' {
		for j := p.i + 1; j < len(p.src) && j-p.i <= maxInternedKeyLen+1; j++ {
			c := p.src[j]
			if c == '\\' || c < 0x20 {
				break
			}
			if c == '"' {
				if k, ok := p.keys[string(p.src[p.i+1:j])]; ok {
					p.i = j + 1
					return k, true
				}
				break
			}
		}
	}
	k, ok := p.str()
	if ok && len(k) <= maxInternedKeyLen && len(p.keys) < maxInternedKeys {
		p.keys[k] = k
	}
	return k, ok
}

// maxJSONDepth bounds recursion; deeper documents take the fallback.
const maxJSONDepth = 1000

func (p *jsonParser) space() {
	for p.i < len(p.src) {
		switch p.src[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) (any, bool) {
	if p.i >= len(p.src) || depth > maxJSONDepth {
		return nil, false
	}
	switch c := p.src[p.i]; {
	case c == '{':
		p.i++
		m := make(map[string]any)
		p.space()
		if p.i < len(p.src) && p.src[p.i] == '}' {
			p.i++
			return m, true
		}
		for {
			p.space()
			k, ok := p.key()
			if !ok {
				return nil, false
			}
			p.space()
			if p.i >= len(p.src) || p.src[p.i] != ':' {
				return nil, false
			}
			p.i++
			p.space()
			v, ok := p.value(depth + 1)
			if !ok {
				return nil, false
			}
			m[k] = v // a repeated key keeps the last value, as in encoding/json
			p.space()
			if p.i >= len(p.src) {
				return nil, false
			}
			if p.src[p.i] == ',' {
				p.i++
				continue
			}
			if p.src[p.i] == '}' {
				p.i++
				return m, true
			}
			return nil, false
		}
	case c == '[':
		p.i++
		a := []any{}
		p.space()
		if p.i < len(p.src) && p.src[p.i] == ']' {
			p.i++
			return a, true
		}
		for {
			p.space()
			v, ok := p.value(depth + 1)
			if !ok {
				return nil, false
			}
			a = append(a, v)
			p.space()
			if p.i >= len(p.src) {
				return nil, false
			}
			if p.src[p.i] == ',' {
				p.i++
				continue
			}
			if p.src[p.i] == ']' {
				p.i++
				return a, true
			}
			return nil, false
		}
	case c == '"':
		s, ok := p.str()
		if !ok {
			return nil, false
		}
		return s, true
	case c == 't':
		return true, p.lit("true")
	case c == 'f':
		return false, p.lit("false")
	case c == 'n':
		return nil, p.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.num()
	}
	return nil, false
}

func (p *jsonParser) lit(s string) bool {
	if len(p.src)-p.i >= len(s) && string(p.src[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// num scans a number with JSON's grammar and converts it as encoding/json
// does (strconv.ParseFloat, 64 bits).
func (p *jsonParser) num() (any, bool) {
	start := p.i
	if p.src[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.src) && p.src[p.i] >= '0' && p.src[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i < len(p.src) && p.src[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return nil, false
	}
	if p.i < len(p.src) && p.src[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return nil, false
		}
	}
	if p.i < len(p.src) && (p.src[p.i] == 'e' || p.src[p.i] == 'E') {
		p.i++
		if p.i < len(p.src) && (p.src[p.i] == '+' || p.src[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	f, err := strconv.ParseFloat(string(p.src[start:p.i]), 64)
	if err != nil {
		return nil, false // out of range: encoding/json reports an error too
	}
	return f, true
}

// str scans a string; escapes are decoded like encoding/json does, with
// unpaired surrogates becoming U+FFFD.
func (p *jsonParser) str() (string, bool) {
	if p.i >= len(p.src) || p.src[p.i] != '"' {
		return "", false
	}
	p.i++
	start := p.i
	for p.i < len(p.src) {
		c := p.src[p.i]
		if c == '"' {
			s := p.src[start:p.i]
			p.i++
			if !utf8.Valid(s) {
				return "", false
			}
			return string(s), true
		}
		if c == '\\' {
			return p.strEscaped(start)
		}
		if c < 0x20 {
			return "", false
		}
		p.i++
	}
	return "", false
}

func (p *jsonParser) strEscaped(start int) (string, bool) {
	buf := append([]byte(nil), p.src[start:p.i]...)
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == '"':
			p.i++
			if !utf8.Valid(buf) {
				return "", false
			}
			return string(buf), true
		case c < 0x20:
			return "", false
		case c != '\\':
			buf = append(buf, c)
			p.i++
			continue
		}
		p.i++
		if p.i >= len(p.src) {
			return "", false
		}
		e := p.src[p.i]
		p.i++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				save := p.i
				if p.i+1 < len(p.src) && p.src[p.i] == '\\' && p.src[p.i+1] == 'u' {
					p.i += 2
					if r2, ok = p.hex4(); !ok {
						return "", false
					}
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
				} else {
					p.i = save // the next escape is decoded on its own
					r = utf8.RuneError
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", false
		}
	}
	return "", false
}

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.src)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.src[p.i : p.i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	p.i += 4
	return r, true
}
