package pgoutput

import (
	"encoding/binary"
	"fmt"
)

// Parse parses one pgoutput message. inStream tells whether the message is
// inside a Stream Start … Stream Stop block, where data messages carry the
// transaction ID. Values in the result alias data. Parse never panics: a
// malformed message yields a *ParseError.
func Parse(data []byte, inStream bool) (Message, error) {
	return parse(data, inStream, nil)
}

// Parser parses messages like Parse, but reuses its Insert, Update and
// Delete messages and their column slices from one call to the next: a row
// message it returns is valid until its next Parse. The zero value is
// ready to use; a Parser is not safe for concurrent use.
type Parser struct {
	ins      InsertMessage
	upd      UpdateMessage
	del      DeleteMessage
	old, new []Column
}

// Parse parses one message; see the package function Parse.
func (p *Parser) Parse(data []byte, inStream bool) (Message, error) {
	return parse(data, inStream, p)
}

func parse(data []byte, inStream bool, p *Parser) (Message, error) {
	if len(data) == 0 {
		return nil, &ParseError{Reason: "empty message"}
	}
	r := &reader{buf: data, off: 1, kind: MessageType(data[0])}
	var m Message
	switch r.kind {
	case MsgBegin:
		m = &BeginMessage{FinalLSN: r.lsn("final LSN"), CommitTime: r.time("commit time"), XID: r.u32("xid")}
	case MsgCommit:
		m = &CommitMessage{Flags: r.u8("flags"), CommitLSN: r.lsn("commit LSN"), EndLSN: r.lsn("end LSN"), CommitTime: r.time("commit time")}
	case MsgOrigin:
		m = &OriginMessage{CommitLSN: r.lsn("commit LSN"), Name: r.str("name")}
	case MsgRelation:
		m = parseRelation(r, inStream)
	case MsgType:
		m = &TypeMessage{XID: r.streamXID(inStream), TypeOID: r.u32("type oid"), Namespace: r.str("namespace"), Name: r.str("type name")}
	case MsgInsert:
		m = parseInsert(r, inStream, p)
	case MsgUpdate:
		m = parseUpdate(r, inStream, p)
	case MsgDelete:
		m = parseDelete(r, inStream, p)
	case MsgTruncate:
		m = parseTruncate(r, inStream)
	case MsgMessage:
		m = parseLogical(r, inStream)
	case MsgStreamStart:
		m = &StreamStartMessage{XID: r.u32("xid"), FirstSegment: r.u8("first segment") == 1}
	case MsgStreamStop:
		m = &StreamStopMessage{}
	case MsgStreamCommit:
		m = &StreamCommitMessage{XID: r.u32("xid"), Flags: r.u8("flags"), CommitLSN: r.lsn("commit LSN"), EndLSN: r.lsn("end LSN"), CommitTime: r.time("commit time")}
	case MsgStreamAbort:
		m = parseStreamAbort(r)
	case MsgBeginPrepare, MsgPrepare, MsgCommitPrepared, MsgRollbackPrepare, MsgStreamPrepare:
		m = parseTwoPhase(r)
	default:
		return nil, &ParseError{Type: r.kind, Offset: 0, Field: "type", Reason: "unknown message type"}
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

func parseRelation(r *reader, inStream bool) *RelationMessage {
	m := &RelationMessage{XID: r.streamXID(inStream), RelationID: r.u32("relation id"), Namespace: r.str("namespace"),
		Name: r.str("relation name"), ReplicaIdentity: r.u8("replica identity")}
	n := int(r.u16("column count"))
	// Each column takes at least 10 bytes; refuse counts the message cannot
	// hold before allocating for them.
	if !r.need(n*10, "columns") {
		return nil
	}
	m.Columns = make([]RelationColumn, n)
	for i := range m.Columns {
		m.Columns[i] = RelationColumn{Flags: r.u8("column flags"), Name: r.str("column name"), TypeOID: r.u32("column type"), TypeMod: int32(r.u32("column type modifier"))}
	}
	return m
}

// tuple reads TupleData into buf's storage when it is large enough: an
// Int16 column count, then per column a kind byte and, for 't' and 'b', an
// Int32 length and the bytes.
func (r *reader) tuple(part string, buf *[]Column) []Column {
	r.part = part
	defer func() { r.part = "" }()
	n := int(r.u16("column count"))
	if !r.need(n, "columns") { // one byte per column at least
		return nil
	}
	var cols []Column
	if buf != nil && cap(*buf) >= n {
		cols = (*buf)[:n]
		clear(cols)
	} else {
		cols = make([]Column, n)
		if buf != nil {
			*buf = cols
		}
	}
	// The loop of the hot path reads the buffer directly; anything short
	// or unknown goes to the reader's checked reads, which name the error.
	data := r.buf
	for i := range cols {
		if r.off >= len(data) {
			r.u8("column kind")
			return nil
		}
		k := data[r.off]
		r.off++
		cols[i].Kind = k
		switch k {
		case ColNull, ColUnchanged:
		case ColText, ColBinary:
			if len(data)-r.off >= 4 {
				if n := binary.BigEndian.Uint32(data[r.off:]); uint64(n) <= uint64(len(data)-r.off-4) {
					l := int(n)
					r.off += 4
					cols[i].Data = data[r.off : r.off+l : r.off+l]
					r.off += l
					continue
				}
			}
			r.bytes(r.length("column length"), "column data")
			return nil
		default:
			r.off--
			r.fail("column kind", fmt.Sprintf("unknown column kind 0x%02x", k))
			return nil
		}
	}
	return cols
}

// tupleKind reads a tuple's kind byte and checks it against what may come
// here ('N' for a new tuple, 'K' or 'O' for an old one).
func (r *reader) tupleKind(allowed string) byte {
	k := r.u8("tuple kind")
	if r.err == nil && !containsByte(allowed, k) {
		r.off--
		want := fmt.Sprintf("'%c'", allowed[0])
		for i := 1; i < len(allowed); i++ {
			sep := ", "
			if i == len(allowed)-1 {
				sep = " or "
			}
			want += fmt.Sprintf("%s'%c'", sep, allowed[i])
		}
		r.fail("tuple kind", fmt.Sprintf("want %s, got 0x%02x", want, k))
	}
	return k
}

func containsByte(s string, b byte) bool {
	for i := range len(s) {
		if s[i] == b {
			return true
		}
	}
	return false
}

func parseInsert(r *reader, inStream bool, p *Parser) *InsertMessage {
	var m *InsertMessage
	var newBuf *[]Column
	if p != nil {
		m, newBuf = &p.ins, &p.new
		*m = InsertMessage{}
	} else {
		m = &InsertMessage{}
	}
	m.XID, m.RelationID = r.streamXID(inStream), r.u32("relation id")
	r.tupleKind("N")
	m.New = r.tuple("new tuple", newBuf)
	return m
}

func parseUpdate(r *reader, inStream bool, p *Parser) *UpdateMessage {
	var m *UpdateMessage
	var oldBuf, newBuf *[]Column
	if p != nil {
		m, oldBuf, newBuf = &p.upd, &p.old, &p.new
		*m = UpdateMessage{}
	} else {
		m = &UpdateMessage{}
	}
	m.XID, m.RelationID = r.streamXID(inStream), r.u32("relation id")
	if k := r.tupleKind("KON"); k == 'K' || k == 'O' {
		m.OldKind = k
		m.Old = r.tuple("old tuple", oldBuf)
		r.tupleKind("N")
	}
	m.New = r.tuple("new tuple", newBuf)
	return m
}

func parseDelete(r *reader, inStream bool, p *Parser) *DeleteMessage {
	var m *DeleteMessage
	var oldBuf *[]Column
	if p != nil {
		m, oldBuf = &p.del, &p.old
		*m = DeleteMessage{}
	} else {
		m = &DeleteMessage{}
	}
	m.XID, m.RelationID = r.streamXID(inStream), r.u32("relation id")
	m.OldKind = r.tupleKind("KO")
	m.Old = r.tuple("old tuple", oldBuf)
	return m
}

func parseTruncate(r *reader, inStream bool) *TruncateMessage {
	m := &TruncateMessage{XID: r.streamXID(inStream)}
	n := r.u32("relation count")
	m.Options = r.u8("options")
	if r.err == nil && n > uint32(len(r.buf)) {
		r.fail("relation ids", fmt.Sprintf("count %d exceeds message size", n))
	}
	if !r.need(int(n)*4, "relation ids") {
		return nil
	}
	m.RelationIDs = make([]uint32, n)
	for i := range m.RelationIDs {
		m.RelationIDs[i] = r.u32("relation id")
	}
	return m
}

func parseLogical(r *reader, inStream bool) *LogicalMessage {
	m := &LogicalMessage{XID: r.streamXID(inStream)}
	m.Transactional = r.u8("flags")&1 != 0
	m.LSN, m.Prefix = r.lsn("lsn"), r.str("prefix")
	m.Content = r.bytes(r.length("content length"), "content")
	return m
}

func parseStreamAbort(r *reader) *StreamAbortMessage {
	m := &StreamAbortMessage{XID: r.u32("xid"), SubXID: r.u32("subxid")}
	if r.err != nil || r.done() {
		return m
	}
	// Protocol version 4 with streaming = parallel adds the abort LSN and time.
	m.AbortLSN, m.AbortTime = r.lsn("abort LSN"), r.time("abort time")
	return m
}

func parseTwoPhase(r *reader) *TwoPhaseMessage {
	m := &TwoPhaseMessage{Kind: r.kind}
	if r.kind != MsgBeginPrepare {
		m.Flags = r.u8("flags")
	}
	m.LSN, m.EndLSN, m.Time = r.lsn("lsn"), r.lsn("end LSN"), r.time("time")
	if r.kind == MsgRollbackPrepare {
		m.Time2 = r.time("rollback time")
	}
	m.XID, m.GID = r.u32("xid"), r.str("gid")
	return m
}
