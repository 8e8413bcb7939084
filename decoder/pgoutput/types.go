package pgoutput

import (
	"fmt"
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

// StreamedData reports whether a message of this type, inside a Stream
// Start … Stream Stop block, belongs to the streamed transaction (and
// carries its transaction ID after the type byte).
func (t MessageType) StreamedData() bool {
	switch t {
	case MsgRelation, MsgType, MsgInsert, MsgUpdate, MsgDelete, MsgTruncate, MsgMessage, MsgOrigin:
		return true
	}
	return false
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

// Truncate option bits.
const (
	TruncateCascade         = 1
	TruncateRestartIdentity = 2
)
