package decoder

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
)

// pgEpoch is the PostgreSQL timestamp epoch; pgoutput sends times as
// microseconds since it.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// reader is a bounds-checked cursor over one pgoutput message. Every read
// reports a *ParseError naming the message and offset instead of panicking.
type reader struct {
	buf  []byte
	off  int
	kind MessageType
	part string   // the part being read ("old tuple"), prefixed to field names in errors
	sc   *scratch // reusable messages, or nil
}

func (r *reader) fail(field, what string) error {
	if r.part != "" {
		field = r.part + " " + field
	}
	return &ParseError{Type: r.kind, Offset: r.off, Field: field, Reason: what}
}

func (r *reader) need(n int, field string) error {
	if n < 0 || len(r.buf)-r.off < n {
		return r.fail(field, fmt.Sprintf("need %d bytes, have %d", n, len(r.buf)-r.off))
	}
	return nil
}

func (r *reader) u8(field string) (byte, error) {
	if err := r.need(1, field); err != nil {
		return 0, err
	}
	v := r.buf[r.off]
	r.off++
	return v, nil
}

func (r *reader) u16(field string) (uint16, error) {
	if err := r.need(2, field); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint16(r.buf[r.off:])
	r.off += 2
	return v, nil
}

func (r *reader) u32(field string) (uint32, error) {
	if err := r.need(4, field); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint32(r.buf[r.off:])
	r.off += 4
	return v, nil
}

func (r *reader) u64(field string) (uint64, error) {
	if err := r.need(8, field); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint64(r.buf[r.off:])
	r.off += 8
	return v, nil
}

func (r *reader) lsn(field string) (pglogrepl.LSN, error) {
	v, err := r.u64(field)
	return pglogrepl.LSN(v), err
}

func (r *reader) time(field string) (time.Time, error) {
	v, err := r.u64(field)
	if err != nil {
		return time.Time{}, err
	}
	return pgEpoch.Add(time.Duration(int64(v)) * time.Microsecond), nil
}

// str reads a NUL-terminated string.
func (r *reader) str(field string) (string, error) {
	for i := r.off; i < len(r.buf); i++ {
		if r.buf[i] == 0 {
			s := string(r.buf[r.off:i])
			r.off = i + 1
			return s, nil
		}
	}
	return "", r.fail(field, "string is not NUL-terminated")
}

// bytes reads n bytes without copying.
func (r *reader) bytes(n int, field string) ([]byte, error) {
	if err := r.need(n, field); err != nil {
		return nil, err
	}
	b := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return b, nil
}

func (r *reader) done() bool { return r.off >= len(r.buf) }
