package decoder

import "github.com/walex-go/walex/internal/pgoutputtest"

// Short names for the message builders of pgoutputtest, which the tests
// of this package use on almost every line.
var (
	beginMsg     = pgoutputtest.Begin
	commitMsg    = pgoutputtest.Commit
	insertMsg    = pgoutputtest.Insert
	updateMsg    = pgoutputtest.Update
	deleteMsg    = pgoutputtest.Delete
	truncateMsg  = pgoutputtest.Truncate
	streamStart  = pgoutputtest.StreamStart
	streamStop   = pgoutputtest.StreamStop
	streamCommit = pgoutputtest.StreamCommit
	streamAbort  = pgoutputtest.StreamAbort
	msg          = pgoutputtest.Msg
	testTime     = pgoutputtest.CommitTime
)

type unchangedCol = pgoutputtest.UnchangedCol

// col is a column of relationMsg.
type col struct {
	name string
	oid  uint32
	key  bool
}

func relationMsg(in bool, xid, id uint32, ns, name string, ident byte, cols ...col) []byte {
	cs := make([]pgoutputtest.Col, len(cols))
	for i, c := range cols {
		cs[i] = pgoutputtest.Col{Name: c.name, OID: c.oid, Key: c.key}
	}
	return pgoutputtest.Relation(in, xid, id, ns, name, ident, cs...)
}
