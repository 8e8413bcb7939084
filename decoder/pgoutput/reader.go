package pgoutput

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/walex-go/walex/internal/pgtime"
)

// reader is a bounds-checked cursor over one pgoutput message with a
// sticky error: the first read that fails records a *ParseError naming the
// message, the offset and the field, and every later read returns a zero
// value, so that a message's fields are read one after the other and the
// error is looked at once, at the end.
type reader struct {
	buf  []byte
	off  int
	kind MessageType
	part string // the part being read ("old tuple"), prefixed to field names in errors
	err  error
}

// fail records the first error.
func (r *reader) fail(field, what string) {
	if r.err != nil {
		return
	}
	if r.part != "" {
		field = r.part + " " + field
	}
	r.err = &ParseError{Type: r.kind, Offset: r.off, Field: field, Reason: what}
}

// need reports whether n more bytes are there, and records an error if not.
func (r *reader) need(n int, field string) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || len(r.buf)-r.off < n {
		r.fail(field, fmt.Sprintf("need %d bytes, have %d", n, len(r.buf)-r.off))
		return false
	}
	return true
}

func (r *reader) u8(field string) byte {
	if !r.need(1, field) {
		return 0
	}
	v := r.buf[r.off]
	r.off++
	return v
}

func (r *reader) u16(field string) uint16 {
	if !r.need(2, field) {
		return 0
	}
	v := binary.BigEndian.Uint16(r.buf[r.off:])
	r.off += 2
	return v
}

func (r *reader) u32(field string) uint32 {
	if !r.need(4, field) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.buf[r.off:])
	r.off += 4
	return v
}

func (r *reader) u64(field string) uint64 {
	if !r.need(8, field) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.buf[r.off:])
	r.off += 8
	return v
}

func (r *reader) lsn(field string) pglogrepl.LSN { return pglogrepl.LSN(r.u64(field)) }

func (r *reader) time(field string) time.Time {
	v := r.u64(field)
	if r.err != nil {
		return time.Time{}
	}
	return pgtime.Time(int64(v))
}

// str reads a NUL-terminated string.
func (r *reader) str(field string) string {
	if r.err != nil {
		return ""
	}
	for i := r.off; i < len(r.buf); i++ {
		if r.buf[i] == 0 {
			s := string(r.buf[r.off:i])
			r.off = i + 1
			return s
		}
	}
	r.fail(field, "string is not NUL-terminated")
	return ""
}

// bytes reads n bytes without copying.
func (r *reader) bytes(n int, field string) []byte {
	if !r.need(n, field) {
		return nil
	}
	b := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// length reads an Int32 length that must fit in what is left of the
// message.
func (r *reader) length(field string) int {
	n := r.u32(field)
	if r.err == nil && n > uint32(len(r.buf)-r.off) {
		r.fail(field, fmt.Sprintf("length %d exceeds what is left of the message (%d bytes)", n, len(r.buf)-r.off))
		return 0
	}
	return int(n)
}

// streamXID reads the transaction ID that data messages carry inside a
// stream block.
func (r *reader) streamXID(inStream bool) uint32 {
	if !inStream {
		return 0
	}
	return r.u32("xid")
}

func (r *reader) done() bool { return r.off >= len(r.buf) }
