// Package pgoutputtest builds pgoutput messages: for the tests of the
// decoder's packages (the wire parser, the value decoding and the
// transaction assembly), and for walextest, which feeds the transactions
// it builds to the real decoder.
package pgoutputtest

import (
	"encoding/binary"
	"time"

	"github.com/walex-go/walex/decoder/pgoutput"
	"github.com/walex-go/walex/internal/pgtime"
)

// Encoder appends the fields of one message.
type Encoder struct{ b []byte }

// Msg starts a message of type t.
func Msg(t pgoutput.MessageType) *Encoder { return &Encoder{b: []byte{byte(t)}} }

// U8 appends a byte.
func (e *Encoder) U8(v byte) *Encoder { e.b = append(e.b, v); return e }

// U16 appends an Int16.
func (e *Encoder) U16(v uint16) *Encoder { e.b = binary.BigEndian.AppendUint16(e.b, v); return e }

// U32 appends an Int32.
func (e *Encoder) U32(v uint32) *Encoder { e.b = binary.BigEndian.AppendUint32(e.b, v); return e }

// U64 appends an Int64.
func (e *Encoder) U64(v uint64) *Encoder { e.b = binary.BigEndian.AppendUint64(e.b, v); return e }

// Str appends a NUL-terminated string.
func (e *Encoder) Str(s string) *Encoder { e.b = append(append(e.b, s...), 0); return e }

// Time appends a timestamp (microseconds since 2000-01-01).
func (e *Encoder) Time(t time.Time) *Encoder {
	return e.U64(uint64(pgtime.Micros(t)))
}

// Raw appends bytes as they are.
func (e *Encoder) Raw(b []byte) *Encoder { e.b = append(e.b, b...); return e }

// XID appends the transaction ID of a message inside a stream block (in).
func (e *Encoder) XID(in bool, x uint32) *Encoder {
	if in {
		e.U32(x)
	}
	return e
}

// Bytes returns the message.
func (e *Encoder) Bytes() []byte { return e.b }

// UnchangedCol, as a value of Tuple, is an unchanged TOASTed column ('u').
type UnchangedCol struct{}

// Tuple appends TupleData: a string is a text value, []byte a binary one,
// nil is NULL and UnchangedCol{} an unchanged TOASTed value.
func (e *Encoder) Tuple(vals ...any) *Encoder {
	e.U16(uint16(len(vals)))
	for _, v := range vals {
		switch v := v.(type) {
		case nil:
			e.U8('n')
		case UnchangedCol:
			e.U8('u')
		case string:
			e.U8('t').U32(uint32(len(v))).Raw([]byte(v))
		case []byte:
			e.U8('b').U32(uint32(len(v))).Raw(v)
		}
	}
	return e
}

// CommitTime is the commit time of the messages built here.
var CommitTime = time.Date(2026, 11, 24, 1, 2, 3, 456000, time.UTC)

// Begin builds a Begin message.
func Begin(final uint64, xid uint32) []byte {
	return Msg(pgoutput.MsgBegin).U64(final).Time(CommitTime).U32(xid).Bytes()
}

// Commit builds a Commit message.
func Commit(commit, end uint64) []byte {
	return Msg(pgoutput.MsgCommit).U8(0).U64(commit).U64(end).Time(CommitTime).Bytes()
}

// Col is a column of a Relation message.
type Col struct {
	Name string
	OID  uint32
	Key  bool
}

// Relation builds a Relation message (inside a stream block when in).
func Relation(in bool, xid, id uint32, ns, name string, ident byte, cols ...Col) []byte {
	e := Msg(pgoutput.MsgRelation).XID(in, xid).U32(id).Str(ns).Str(name).U8(ident).U16(uint16(len(cols)))
	for _, c := range cols {
		var f byte
		if c.Key {
			f = 1
		}
		e.U8(f).Str(c.Name).U32(c.OID).U32(0xffffffff)
	}
	return e.Bytes()
}

// Insert builds an Insert message.
func Insert(in bool, xid, rel uint32, vals ...any) []byte {
	return Msg(pgoutput.MsgInsert).XID(in, xid).U32(rel).U8('N').Tuple(vals...).Bytes()
}

// Update builds an Update message, with an old tuple of oldKind ('K' or
// 'O') unless it is 0.
func Update(in bool, xid, rel uint32, oldKind byte, old []any, vals ...any) []byte {
	e := Msg(pgoutput.MsgUpdate).XID(in, xid).U32(rel)
	if oldKind != 0 {
		e.U8(oldKind).Tuple(old...)
	}
	return e.U8('N').Tuple(vals...).Bytes()
}

// Delete builds a Delete message.
func Delete(in bool, xid, rel uint32, oldKind byte, old ...any) []byte {
	return Msg(pgoutput.MsgDelete).XID(in, xid).U32(rel).U8(oldKind).Tuple(old...).Bytes()
}

// Truncate builds a Truncate message.
func Truncate(in bool, xid uint32, opts byte, rels ...uint32) []byte {
	e := Msg(pgoutput.MsgTruncate).XID(in, xid).U32(uint32(len(rels))).U8(opts)
	for _, r := range rels {
		e.U32(r)
	}
	return e.Bytes()
}

// StreamStart builds a Stream Start message.
func StreamStart(xid uint32, first bool) []byte {
	var f byte
	if first {
		f = 1
	}
	return Msg(pgoutput.MsgStreamStart).U32(xid).U8(f).Bytes()
}

// StreamStop builds a Stream Stop message.
func StreamStop() []byte { return Msg(pgoutput.MsgStreamStop).Bytes() }

// StreamCommit builds a Stream Commit message.
func StreamCommit(xid uint32, commit, end uint64) []byte {
	return Msg(pgoutput.MsgStreamCommit).U32(xid).U8(0).U64(commit).U64(end).Time(CommitTime).Bytes()
}

// StreamAbort builds a Stream Abort message of protocol versions 2 and 3.
func StreamAbort(xid, sub uint32) []byte {
	return Msg(pgoutput.MsgStreamAbort).U32(xid).U32(sub).Bytes()
}

// Message builds a logical decoding message (pg_logical_emit_message).
func Message(in bool, xid uint32, transactional bool, lsn uint64, prefix string, content []byte) []byte {
	var f byte
	if transactional {
		f = 1
	}
	return Msg(pgoutput.MsgMessage).XID(in, xid).U8(f).U64(lsn).Str(prefix).U32(uint32(len(content))).Raw(content).Bytes()
}
