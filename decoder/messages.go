package decoder

import (
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
)

// MessageType is the first byte of a pgoutput message.
type MessageType byte

// The pgoutput message types of protocol versions 1 to 4.
const (
	MsgBegin           MessageType = 'B'
	MsgCommit          MessageType = 'C'
	MsgOrigin          MessageType = 'O'
	MsgRelation        MessageType = 'R'
	MsgType            MessageType = 'Y'
	MsgInsert          MessageType = 'I'
	MsgUpdate          MessageType = 'U'
	MsgDelete          MessageType = 'D'
	MsgTruncate        MessageType = 'T'
	MsgMessage         MessageType = 'M'
	MsgStreamStart     MessageType = 'S'
	MsgStreamStop      MessageType = 'E'
	MsgStreamCommit    MessageType = 'c'
	MsgStreamAbort     MessageType = 'A'
	MsgBeginPrepare    MessageType = 'b'
	MsgPrepare         MessageType = 'P'
	MsgCommitPrepared  MessageType = 'K'
	MsgRollbackPrepare MessageType = 'r'
	MsgStreamPrepare   MessageType = 'p'
)

var messageNames = map[MessageType]string{
	MsgBegin: "Begin", MsgCommit: "Commit", MsgOrigin: "Origin", MsgRelation: "Relation",
	MsgType: "Type", MsgInsert: "Insert", MsgUpdate: "Update", MsgDelete: "Delete",
	MsgTruncate: "Truncate", MsgMessage: "Message", MsgStreamStart: "Stream Start",
	MsgStreamStop: "Stream Stop", MsgStreamCommit: "Stream Commit", MsgStreamAbort: "Stream Abort",
	MsgBeginPrepare: "Begin Prepare", MsgPrepare: "Prepare", MsgCommitPrepared: "Commit Prepared",
	MsgRollbackPrepare: "Rollback Prepared", MsgStreamPrepare: "Stream Prepare",
}

// String returns the protocol's name of the message type.
func (t MessageType) String() string {
	if n, ok := messageNames[t]; ok {
		return n
	}
	return fmt.Sprintf("unknown(0x%02x)", byte(t))
}

// ParseError reports a malformed pgoutput message. It names the message
// type, the byte offset inside the message and the field being read.
type ParseError struct {
	Type   MessageType
	Offset int
	Field  string
	Reason string
}

// Error implements the error interface.
func (e *ParseError) Error() string {
	return fmt.Sprintf("decoder: malformed pgoutput %s message at offset %d (%s): %s", e.Type, e.Offset, e.Field, e.Reason)
}

// Message is one parsed pgoutput message; its concrete type is one of the
// *XxxMessage types of this package.
type Message interface {
	Type() MessageType
}

// Tuple column kinds as sent by pgoutput.
const (
	ColNull      = 'n' // NULL
	ColUnchanged = 'u' // unchanged TOASTed value, not sent
	ColText      = 't' // text format
	ColBinary    = 'b' // binary format
)

// Column is one value of a tuple. Data aliases the message buffer.
type Column struct {
	Kind byte
	Data []byte
}

// BeginMessage starts a (non-streamed) transaction.
type BeginMessage struct {
	FinalLSN   pglogrepl.LSN // LSN of the commit record
	CommitTime time.Time
	XID        uint32
}

// CommitMessage ends a (non-streamed) transaction.
type CommitMessage struct {
	Flags      uint8
	CommitLSN  pglogrepl.LSN
	EndLSN     pglogrepl.LSN
	CommitTime time.Time
}

// OriginMessage names the replication origin of the current transaction.
type OriginMessage struct {
	CommitLSN pglogrepl.LSN
	Name      string
}

// RelationColumn describes one column of a relation.
type RelationColumn struct {
	Flags   uint8 // 1: part of the replica identity key
	Name    string
	TypeOID uint32
	TypeMod int32
}

// RelationMessage describes a table; it precedes the first change of the
// table in a session and is re-sent when the table's definition changes.
type RelationMessage struct {
	XID             uint32 // set inside a stream block
	RelationID      uint32
	Namespace       string
	Name            string
	ReplicaIdentity uint8 // 'd' default, 'n' nothing, 'f' full, 'i' index
	Columns         []RelationColumn
}

// TypeMessage names a non-built-in data type.
type TypeMessage struct {
	XID       uint32
	TypeOID   uint32
	Namespace string
	Name      string
}

// InsertMessage carries a new row.
type InsertMessage struct {
	XID        uint32
	RelationID uint32
	New        []Column
}

// UpdateMessage carries a new row and, depending on the replica identity,
// the old key ('K') or the whole old row ('O').
type UpdateMessage struct {
	XID        uint32
	RelationID uint32
	OldKind    byte // 0, 'K' or 'O'
	Old        []Column
	New        []Column
}

// DeleteMessage carries the old key ('K') or the whole old row ('O').
type DeleteMessage struct {
	XID        uint32
	RelationID uint32
	OldKind    byte
	Old        []Column
}

// Truncate option bits.
const (
	TruncateCascade         = 1
	TruncateRestartIdentity = 2
)

// TruncateMessage lists the truncated relations.
type TruncateMessage struct {
	XID         uint32
	Options     uint8
	RelationIDs []uint32
}

// LogicalMessage is a message written by pg_logical_emit_message.
type LogicalMessage struct {
	XID           uint32
	Transactional bool
	LSN           pglogrepl.LSN
	Prefix        string
	Content       []byte // aliases the message buffer
}

// StreamStartMessage opens a block of changes of an in-progress transaction.
type StreamStartMessage struct {
	XID          uint32
	FirstSegment bool
}

// StreamStopMessage closes a stream block.
type StreamStopMessage struct{}

// StreamCommitMessage commits a streamed transaction.
type StreamCommitMessage struct {
	XID        uint32
	Flags      uint8
	CommitLSN  pglogrepl.LSN
	EndLSN     pglogrepl.LSN
	CommitTime time.Time
}

// StreamAbortMessage aborts a streamed transaction (SubXID == XID) or one
// of its subtransactions. AbortLSN and AbortTime are sent from protocol
// version 4 with parallel streaming; they are zero otherwise.
type StreamAbortMessage struct {
	XID       uint32
	SubXID    uint32
	AbortLSN  pglogrepl.LSN
	AbortTime time.Time
}

// TwoPhaseMessage is any of the two-phase commit messages of protocol
// version 3 (Begin Prepare, Prepare, Commit Prepared, Rollback Prepared,
// Stream Prepare). walex does not enable two_phase, so the server never
// sends them; they are parsed so that a stream containing them is handled
// safely.
type TwoPhaseMessage struct {
	Kind   MessageType
	Flags  uint8
	LSN    pglogrepl.LSN // prepare or commit LSN (prepare end LSN for rollback)
	EndLSN pglogrepl.LSN
	Time   time.Time
	Time2  time.Time // rollback time, Rollback Prepared only
	XID    uint32
	GID    string
}

// Type returns the message type.
func (*BeginMessage) Type() MessageType { return MsgBegin }

// Type returns the message type.
func (*CommitMessage) Type() MessageType { return MsgCommit }

// Type returns the message type.
func (*OriginMessage) Type() MessageType { return MsgOrigin }

// Type returns the message type.
func (*RelationMessage) Type() MessageType { return MsgRelation }

// Type returns the message type.
func (*TypeMessage) Type() MessageType { return MsgType }

// Type returns the message type.
func (*InsertMessage) Type() MessageType { return MsgInsert }

// Type returns the message type.
func (*UpdateMessage) Type() MessageType { return MsgUpdate }

// Type returns the message type.
func (*DeleteMessage) Type() MessageType { return MsgDelete }

// Type returns the message type.
func (*TruncateMessage) Type() MessageType { return MsgTruncate }

// Type returns the message type.
func (*LogicalMessage) Type() MessageType { return MsgMessage }

// Type returns the message type.
func (*StreamStartMessage) Type() MessageType { return MsgStreamStart }

// Type returns the message type.
func (*StreamStopMessage) Type() MessageType { return MsgStreamStop }

// Type returns the message type.
func (*StreamCommitMessage) Type() MessageType { return MsgStreamCommit }

// Type returns the message type.
func (*StreamAbortMessage) Type() MessageType { return MsgStreamAbort }

// Type returns the concrete two-phase message type.
func (m *TwoPhaseMessage) Type() MessageType { return m.Kind }

// Parse parses one pgoutput message. inStream tells whether the message is
// inside a Stream Start … Stream Stop block, where data messages carry the
// transaction ID. Values in the result alias data. Parse never panics: a
// malformed message yields a *ParseError.
func Parse(data []byte, inStream bool) (Message, error) {
	return parse(data, inStream, nil)
}

// scratch holds messages and column slices that parse reuses, so that the
// decoder's hot path does not allocate them per row. A message parsed into
// scratch is valid until the next parse with the same scratch.
type scratch struct {
	ins      InsertMessage
	upd      UpdateMessage
	del      DeleteMessage
	old, new []Column
}

func parse(data []byte, inStream bool, sc *scratch) (Message, error) {
	if len(data) == 0 {
		return nil, &ParseError{Reason: "empty message"}
	}
	r := &reader{buf: data, off: 1, kind: MessageType(data[0]), sc: sc}
	var (
		m   Message
		err error
	)
	switch r.kind {
	case MsgBegin:
		m, err = parseBegin(r)
	case MsgCommit:
		m, err = parseCommit(r)
	case MsgOrigin:
		m, err = parseOrigin(r)
	case MsgRelation:
		m, err = parseRelation(r, inStream)
	case MsgType:
		m, err = parseType(r, inStream)
	case MsgInsert:
		m, err = parseInsert(r, inStream)
	case MsgUpdate:
		m, err = parseUpdate(r, inStream)
	case MsgDelete:
		m, err = parseDelete(r, inStream)
	case MsgTruncate:
		m, err = parseTruncate(r, inStream)
	case MsgMessage:
		m, err = parseLogical(r, inStream)
	case MsgStreamStart:
		m, err = parseStreamStart(r)
	case MsgStreamStop:
		m = &StreamStopMessage{}
	case MsgStreamCommit:
		m, err = parseStreamCommit(r)
	case MsgStreamAbort:
		m, err = parseStreamAbort(r)
	case MsgBeginPrepare, MsgPrepare, MsgCommitPrepared, MsgRollbackPrepare, MsgStreamPrepare:
		m, err = parseTwoPhase(r)
	default:
		return nil, &ParseError{Type: r.kind, Offset: 0, Field: "type", Reason: "unknown message type"}
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

func parseBegin(r *reader) (m *BeginMessage, err error) {
	m = &BeginMessage{}
	if m.FinalLSN, err = r.lsn("final LSN"); err != nil {
		return nil, err
	}
	if m.CommitTime, err = r.time("commit time"); err != nil {
		return nil, err
	}
	if m.XID, err = r.u32("xid"); err != nil {
		return nil, err
	}
	return m, nil
}

func parseCommit(r *reader) (m *CommitMessage, err error) {
	m = &CommitMessage{}
	if m.Flags, err = r.u8("flags"); err != nil {
		return nil, err
	}
	if m.CommitLSN, err = r.lsn("commit LSN"); err != nil {
		return nil, err
	}
	if m.EndLSN, err = r.lsn("end LSN"); err != nil {
		return nil, err
	}
	if m.CommitTime, err = r.time("commit time"); err != nil {
		return nil, err
	}
	return m, nil
}

func parseOrigin(r *reader) (m *OriginMessage, err error) {
	m = &OriginMessage{}
	if m.CommitLSN, err = r.lsn("commit LSN"); err != nil {
		return nil, err
	}
	if m.Name, err = r.str("name"); err != nil {
		return nil, err
	}
	return m, nil
}

func streamXID(r *reader, inStream bool) (uint32, error) {
	if !inStream {
		return 0, nil
	}
	return r.u32("xid")
}

func parseRelation(r *reader, inStream bool) (m *RelationMessage, err error) {
	m = &RelationMessage{}
	if m.XID, err = streamXID(r, inStream); err != nil {
		return nil, err
	}
	if m.RelationID, err = r.u32("relation id"); err != nil {
		return nil, err
	}
	if m.Namespace, err = r.str("namespace"); err != nil {
		return nil, err
	}
	if m.Name, err = r.str("relation name"); err != nil {
		return nil, err
	}
	if m.ReplicaIdentity, err = r.u8("replica identity"); err != nil {
		return nil, err
	}
	n, err := r.u16("column count")
	if err != nil {
		return nil, err
	}
	// Each column takes at least 10 bytes; refuse counts the message cannot hold
	// before allocating for them.
	if err := r.need(int(n)*10, "columns"); err != nil {
		return nil, err
	}
	m.Columns = make([]RelationColumn, n)
	for i := range m.Columns {
		c := &m.Columns[i]
		if c.Flags, err = r.u8("column flags"); err != nil {
			return nil, err
		}
		if c.Name, err = r.str("column name"); err != nil {
			return nil, err
		}
		if c.TypeOID, err = r.u32("column type"); err != nil {
			return nil, err
		}
		mod, err := r.u32("column type modifier")
		if err != nil {
			return nil, err
		}
		c.TypeMod = int32(mod)
	}
	return m, nil
}

func parseType(r *reader, inStream bool) (m *TypeMessage, err error) {
	m = &TypeMessage{}
	if m.XID, err = streamXID(r, inStream); err != nil {
		return nil, err
	}
	if m.TypeOID, err = r.u32("type oid"); err != nil {
		return nil, err
	}
	if m.Namespace, err = r.str("namespace"); err != nil {
		return nil, err
	}
	if m.Name, err = r.str("type name"); err != nil {
		return nil, err
	}
	return m, nil
}

// parseTuple reads TupleData: Int16 column count, then per column a kind
// byte and, for 't' and 'b', an Int32 length and the bytes.
// parseTuple reads a tuple into buf's storage when it is large enough.
func parseTuple(r *reader, part string, buf *[]Column) ([]Column, error) {
	r.part = part
	defer func() { r.part = "" }()
	n, err := r.u16("column count")
	if err != nil {
		return nil, err
	}
	if err := r.need(int(n), "columns"); err != nil { // one byte per column at least
		return nil, err
	}
	var cols []Column
	if buf != nil && cap(*buf) >= int(n) {
		cols = (*buf)[:n]
		clear(cols)
	} else {
		cols = make([]Column, n)
		if buf != nil {
			*buf = cols
		}
	}
	for i := range cols {
		k, err := r.u8("column kind")
		if err != nil {
			return nil, err
		}
		cols[i].Kind = k
		switch k {
		case ColNull, ColUnchanged:
		case ColText, ColBinary:
			l, err := r.u32("column length")
			if err != nil {
				return nil, err
			}
			if l > uint32(len(r.buf)) {
				return nil, r.fail("column data", fmt.Sprintf("length %d exceeds message size %d", l, len(r.buf)))
			}
			if cols[i].Data, err = r.bytes(int(l), "column data"); err != nil {
				return nil, err
			}
		default:
			r.off--
			return nil, r.fail("column kind", fmt.Sprintf("unknown column kind 0x%02x", k))
		}
	}
	return cols, nil
}

func parseInsert(r *reader, inStream bool) (m *InsertMessage, err error) {
	var newBuf *[]Column
	if r.sc != nil {
		m, newBuf = &r.sc.ins, &r.sc.new
		*m = InsertMessage{}
	} else {
		m = &InsertMessage{}
	}
	if m.XID, err = streamXID(r, inStream); err != nil {
		return nil, err
	}
	if m.RelationID, err = r.u32("relation id"); err != nil {
		return nil, err
	}
	k, err := r.u8("tuple kind")
	if err != nil {
		return nil, err
	}
	if k != 'N' {
		r.off--
		return nil, r.fail("tuple kind", fmt.Sprintf("want 'N', got 0x%02x", k))
	}
	if m.New, err = parseTuple(r, "new tuple", newBuf); err != nil {
		return nil, err
	}
	return m, nil
}

func parseUpdate(r *reader, inStream bool) (m *UpdateMessage, err error) {
	var oldBuf, newBuf *[]Column
	if r.sc != nil {
		m, oldBuf, newBuf = &r.sc.upd, &r.sc.old, &r.sc.new
		*m = UpdateMessage{}
	} else {
		m = &UpdateMessage{}
	}
	if m.XID, err = streamXID(r, inStream); err != nil {
		return nil, err
	}
	if m.RelationID, err = r.u32("relation id"); err != nil {
		return nil, err
	}
	k, err := r.u8("tuple kind")
	if err != nil {
		return nil, err
	}
	if k == 'K' || k == 'O' {
		m.OldKind = k
		if m.Old, err = parseTuple(r, "old tuple", oldBuf); err != nil {
			return nil, err
		}
		if k, err = r.u8("tuple kind"); err != nil {
			return nil, err
		}
	}
	if k != 'N' {
		r.off--
		return nil, r.fail("tuple kind", fmt.Sprintf("want 'K', 'O' or 'N', got 0x%02x", k))
	}
	if m.New, err = parseTuple(r, "new tuple", newBuf); err != nil {
		return nil, err
	}
	return m, nil
}

func parseDelete(r *reader, inStream bool) (m *DeleteMessage, err error) {
	var oldBuf *[]Column
	if r.sc != nil {
		m, oldBuf = &r.sc.del, &r.sc.old
		*m = DeleteMessage{}
	} else {
		m = &DeleteMessage{}
	}
	if m.XID, err = streamXID(r, inStream); err != nil {
		return nil, err
	}
	if m.RelationID, err = r.u32("relation id"); err != nil {
		return nil, err
	}
	if m.OldKind, err = r.u8("tuple kind"); err != nil {
		return nil, err
	}
	if m.OldKind != 'K' && m.OldKind != 'O' {
		r.off--
		return nil, r.fail("tuple kind", fmt.Sprintf("want 'K' or 'O', got 0x%02x", m.OldKind))
	}
	if m.Old, err = parseTuple(r, "old tuple", oldBuf); err != nil {
		return nil, err
	}
	return m, nil
}

func parseTruncate(r *reader, inStream bool) (m *TruncateMessage, err error) {
	m = &TruncateMessage{}
	if m.XID, err = streamXID(r, inStream); err != nil {
		return nil, err
	}
	n, err := r.u32("relation count")
	if err != nil {
		return nil, err
	}
	if m.Options, err = r.u8("options"); err != nil {
		return nil, err
	}
	if n > uint32(len(r.buf)) {
		return nil, r.fail("relation ids", fmt.Sprintf("count %d exceeds message size", n))
	}
	if err := r.need(int(n)*4, "relation ids"); err != nil {
		return nil, err
	}
	m.RelationIDs = make([]uint32, n)
	for i := range m.RelationIDs {
		if m.RelationIDs[i], err = r.u32("relation id"); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func parseLogical(r *reader, inStream bool) (m *LogicalMessage, err error) {
	m = &LogicalMessage{}
	if m.XID, err = streamXID(r, inStream); err != nil {
		return nil, err
	}
	flags, err := r.u8("flags")
	if err != nil {
		return nil, err
	}
	m.Transactional = flags&1 != 0
	if m.LSN, err = r.lsn("lsn"); err != nil {
		return nil, err
	}
	if m.Prefix, err = r.str("prefix"); err != nil {
		return nil, err
	}
	n, err := r.u32("content length")
	if err != nil {
		return nil, err
	}
	if n > uint32(len(r.buf)) {
		return nil, r.fail("content", fmt.Sprintf("length %d exceeds message size", n))
	}
	if m.Content, err = r.bytes(int(n), "content"); err != nil {
		return nil, err
	}
	return m, nil
}

func parseStreamStart(r *reader) (m *StreamStartMessage, err error) {
	m = &StreamStartMessage{}
	if m.XID, err = r.u32("xid"); err != nil {
		return nil, err
	}
	first, err := r.u8("first segment")
	if err != nil {
		return nil, err
	}
	m.FirstSegment = first == 1
	return m, nil
}

func parseStreamCommit(r *reader) (m *StreamCommitMessage, err error) {
	m = &StreamCommitMessage{}
	if m.XID, err = r.u32("xid"); err != nil {
		return nil, err
	}
	if m.Flags, err = r.u8("flags"); err != nil {
		return nil, err
	}
	if m.CommitLSN, err = r.lsn("commit LSN"); err != nil {
		return nil, err
	}
	if m.EndLSN, err = r.lsn("end LSN"); err != nil {
		return nil, err
	}
	if m.CommitTime, err = r.time("commit time"); err != nil {
		return nil, err
	}
	return m, nil
}

func parseStreamAbort(r *reader) (m *StreamAbortMessage, err error) {
	m = &StreamAbortMessage{}
	if m.XID, err = r.u32("xid"); err != nil {
		return nil, err
	}
	if m.SubXID, err = r.u32("subxid"); err != nil {
		return nil, err
	}
	if r.done() {
		return m, nil
	}
	// Protocol version 4 with streaming = parallel adds the abort LSN and time.
	if m.AbortLSN, err = r.lsn("abort LSN"); err != nil {
		return nil, err
	}
	if m.AbortTime, err = r.time("abort time"); err != nil {
		return nil, err
	}
	return m, nil
}

func parseTwoPhase(r *reader) (m *TwoPhaseMessage, err error) {
	m = &TwoPhaseMessage{Kind: r.kind}
	if r.kind != MsgBeginPrepare {
		if m.Flags, err = r.u8("flags"); err != nil {
			return nil, err
		}
	}
	if m.LSN, err = r.lsn("lsn"); err != nil {
		return nil, err
	}
	if m.EndLSN, err = r.lsn("end LSN"); err != nil {
		return nil, err
	}
	if m.Time, err = r.time("time"); err != nil {
		return nil, err
	}
	if r.kind == MsgRollbackPrepare {
		if m.Time2, err = r.time("rollback time"); err != nil {
			return nil, err
		}
	}
	if m.XID, err = r.u32("xid"); err != nil {
		return nil, err
	}
	if m.GID, err = r.str("gid"); err != nil {
		return nil, err
	}
	return m, nil
}
