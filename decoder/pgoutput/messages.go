package pgoutput

import (
	"time"

	"github.com/jackc/pglogrepl"
)

// Message is one parsed pgoutput message; its concrete type is one of the
// *XxxMessage types of this package.
type Message interface {
	Type() MessageType
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
