package decoder

import (
	"encoding/binary"
	"time"
)

// enc builds pgoutput messages for tests.
type enc struct{ b []byte }

func msg(t MessageType) *enc         { return &enc{b: []byte{byte(t)}} }
func (e *enc) u8(v byte) *enc        { e.b = append(e.b, v); return e }
func (e *enc) u16(v uint16) *enc     { e.b = binary.BigEndian.AppendUint16(e.b, v); return e }
func (e *enc) u32(v uint32) *enc     { e.b = binary.BigEndian.AppendUint32(e.b, v); return e }
func (e *enc) u64(v uint64) *enc     { e.b = binary.BigEndian.AppendUint64(e.b, v); return e }
func (e *enc) str(s string) *enc     { e.b = append(append(e.b, s...), 0); return e }
func (e *enc) time(t time.Time) *enc { return e.u64(uint64(t.Sub(pgEpoch).Microseconds())) }
func (e *enc) bytes() []byte         { return e.b }
func (e *enc) raw(b []byte) *enc     { e.b = append(e.b, b...); return e }
func (e *enc) xid(in bool, x uint32) *enc {
	if in {
		e.u32(x)
	}
	return e
}

// tuple encodes text values; nil is NULL, unchangedCol is 'u'.
type unchangedCol struct{}

func (e *enc) tuple(vals ...any) *enc {
	e.u16(uint16(len(vals)))
	for _, v := range vals {
		switch v := v.(type) {
		case nil:
			e.u8('n')
		case unchangedCol:
			e.u8('u')
		case string:
			e.u8('t').u32(uint32(len(v))).raw([]byte(v))
		case []byte:
			e.u8('b').u32(uint32(len(v))).raw(v)
		}
	}
	return e
}

var testTime = time.Date(2026, 11, 24, 1, 2, 3, 456000, time.UTC)

func beginMsg(final uint64, xid uint32) []byte {
	return msg(MsgBegin).u64(final).time(testTime).u32(xid).bytes()
}

func commitMsg(commit, end uint64) []byte {
	return msg(MsgCommit).u8(0).u64(commit).u64(end).time(testTime).bytes()
}

type col struct {
	name string
	oid  uint32
	key  bool
}

func relationMsg(in bool, xid, id uint32, ns, name string, ident byte, cols ...col) []byte {
	e := msg(MsgRelation).xid(in, xid).u32(id).str(ns).str(name).u8(ident).u16(uint16(len(cols)))
	for _, c := range cols {
		var f byte
		if c.key {
			f = 1
		}
		e.u8(f).str(c.name).u32(c.oid).u32(0xffffffff)
	}
	return e.bytes()
}

func insertMsg(in bool, xid, rel uint32, vals ...any) []byte {
	return msg(MsgInsert).xid(in, xid).u32(rel).u8('N').tuple(vals...).bytes()
}

func updateMsg(in bool, xid, rel uint32, oldKind byte, old []any, vals ...any) []byte {
	e := msg(MsgUpdate).xid(in, xid).u32(rel)
	if oldKind != 0 {
		e.u8(oldKind).tuple(old...)
	}
	return e.u8('N').tuple(vals...).bytes()
}

func deleteMsg(in bool, xid, rel uint32, oldKind byte, old ...any) []byte {
	return msg(MsgDelete).xid(in, xid).u32(rel).u8(oldKind).tuple(old...).bytes()
}

func truncateMsg(in bool, xid uint32, opts byte, rels ...uint32) []byte {
	e := msg(MsgTruncate).xid(in, xid).u32(uint32(len(rels))).u8(opts)
	for _, r := range rels {
		e.u32(r)
	}
	return e.bytes()
}

func streamStart(xid uint32, first bool) []byte {
	var f byte
	if first {
		f = 1
	}
	return msg(MsgStreamStart).u32(xid).u8(f).bytes()
}

func streamStop() []byte { return msg(MsgStreamStop).bytes() }

func streamCommit(xid uint32, commit, end uint64) []byte {
	return msg(MsgStreamCommit).u32(xid).u8(0).u64(commit).u64(end).time(testTime).bytes()
}

func streamAbort(xid, sub uint32) []byte { return msg(MsgStreamAbort).u32(xid).u32(sub).bytes() }
