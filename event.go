package walex

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/walex-go/walex/decoder"
	"github.com/walex-go/walex/decoder/pgvalue"
	"github.com/walex-go/walex/internal/equal"
)

// LSN is a PostgreSQL WAL position ("16/B374D848").
type LSN = pglogrepl.LSN

// EventType is the kind of change an Event reports.
type EventType string

// Event types.
const (
	Insert   EventType = "insert"
	Update   EventType = "update"
	Delete   EventType = "delete"
	Truncate EventType = "truncate"
	// Read is a row that existed before the stream reached it: a
	// snapshot read it (see Client.Snapshot). NewRecord holds the row.
	Read EventType = "read"
)

// AllTables, passed to OnEvent, registers a handler for every event of
// every subscribed table.
const AllTables = "*"

// Name of this library in Event.Source, and its version.
const (
	SourceName = "walex"
	Version    = "0.1.0"
)

// UnchangedValue is the type of Unchanged.
type UnchangedValue = pgvalue.UnchangedValue

// Unchanged stands for an unchanged TOASTed value that Postgres did not
// send with an update (a large text, jsonb or bytea column the update did
// not touch). It is never reported as a change. In JSON it is the object
// {"$walex":"unchanged-toast"}.
var Unchanged = pgvalue.Unchanged

// Source describes where an event comes from.
type Source struct {
	Name    string            `json:"name"`    // "walex"
	Version string            `json:"version"` // walex's version
	DB      string            `json:"db"`
	Schema  string            `json:"schema"`
	Table   string            `json:"table"`
	Columns map[string]string `json:"columns"` // column name → type name; shared between events: read only
}

// Change is the old and new value of a column that an update changed.
type Change struct {
	OldValue any `json:"old_value"`
	NewValue any `json:"new_value"`
}

// TruncateFlags are the options of a TRUNCATE.
type TruncateFlags struct {
	Cascade         bool `json:"cascade"`
	RestartIdentity bool `json:"restart_identity"`
}

// Event is one row change (or the truncation of a table) of a committed
// transaction.
//
// Record values are the Go values pgx returns from rows.Values() for the
// same column (int4 → int32, numeric → pgtype.Numeric, timestamptz →
// time.Time, jsonb → map[string]any, ...); NULL is nil; a type pgx does not
// know is its text form; an unchanged TOASTed value is Unchanged. The maps
// belong to the event: handlers may read them concurrently but must not
// modify them when several handlers or functions see the same event.
type Event struct {
	// Name is the table name.
	Name   string    `json:"name"`
	Type   EventType `json:"type"`
	Source Source    `json:"source"`
	// NewRecord is the new row of an insert or update.
	NewRecord map[string]any `json:"new_record"`
	// OldRecord is the old row of a delete, and of an update when Postgres
	// sends it: all columns under REPLICA IDENTITY FULL, the key columns
	// when the key changed (DEFAULT or USING INDEX); nil otherwise.
	OldRecord map[string]any `json:"old_record"`
	// Changes lists, for an update, the columns whose value differs between
	// OldRecord and NewRecord. Without an old value for a column (no
	// REPLICA IDENTITY FULL) it cannot be judged and is absent.
	Changes map[string]Change `json:"changes"`
	// Timestamp is the commit time of the transaction.
	Timestamp time.Time `json:"timestamp"`
	// CommitLSN is the commit LSN of the transaction.
	CommitLSN LSN `json:"lsn"`
	// Index is the position of the event in its transaction, in WAL order.
	Index int    `json:"index"`
	XID   uint32 `json:"xid"`
	// TruncateFlags are set on Truncate events.
	TruncateFlags TruncateFlags `json:"truncate_flags"`
}

// ID returns "<commit LSN>:<index>", e.g. "0/16B3748:3": unique for a
// database and increasing in delivery order, so a consumer of a durable
// slot can drop events it has already handled.
func (e Event) ID() string {
	return e.CommitLSN.String() + ":" + strconv.Itoa(e.Index)
}

// String is a short description for logs.
func (e Event) String() string {
	return fmt.Sprintf("%s %s.%s %s", e.Type, e.Source.Schema, e.Source.Table, e.ID())
}

// eventJSON is the wire shape of MarshalJSON.
type eventJSON struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Type          EventType         `json:"type"`
	Source        Source            `json:"source"`
	NewRecord     map[string]any    `json:"new_record"`
	OldRecord     map[string]any    `json:"old_record"`
	Changes       map[string]Change `json:"changes"`
	Timestamp     time.Time         `json:"timestamp"`
	CommitLSN     string            `json:"lsn"`
	Index         int               `json:"index"`
	XID           uint32            `json:"xid"`
	TruncateFlags *TruncateFlags    `json:"truncate_flags,omitempty"`
}

// MarshalJSON encodes the event as a stable JSON object: "id" (ID()),
// "name", "type", "source", "new_record", "old_record", "changes",
// "timestamp" (RFC 3339), "lsn" ("X/Y"), "index", "xid", and
// "truncate_flags" on truncate events. Record values are encoded as
// described in the README's JSON section: numeric as a string, bytea as
// base64, uuid as text, NaN/±Inf and ±infinity as strings, Unchanged as
// {"$walex":"unchanged-toast"}.
func (e Event) MarshalJSON() ([]byte, error) {
	j := eventJSON{
		ID: e.ID(), Name: e.Name, Type: e.Type, Source: e.Source,
		NewRecord: jsonRecord(e.NewRecord), OldRecord: jsonRecord(e.OldRecord), Changes: jsonChanges(e.Changes),
		Timestamp: e.Timestamp, CommitLSN: e.CommitLSN.String(), Index: e.Index, XID: e.XID,
	}
	if e.Type == Truncate {
		j.TruncateFlags = &e.TruncateFlags
	}
	return json.Marshal(j)
}

var opTypes = [...]EventType{decoder.OpInsert: Insert, decoder.OpUpdate: Update, decoder.OpDelete: Delete, decoder.OpTruncate: Truncate}

// newEvent builds an Event from a decoded change; the record maps are
// reused as they are.
func newEvent(b *decoder.Batch, c *decoder.Change, db string) Event {
	rel := c.Relation
	e := Event{
		Name: rel.Name,
		Type: opTypes[c.Op],
		Source: Source{
			Name: SourceName, Version: Version, DB: db,
			Schema: rel.Schema, Table: rel.Name, Columns: rel.ColumnTypes,
		},
		NewRecord: c.New,
		OldRecord: c.Old,
		Timestamp: b.CommitTime,
		CommitLSN: b.CommitLSN,
		Index:     c.Index,
		XID:       b.XID,
	}
	switch c.Op {
	case decoder.OpUpdate:
		e.Changes = changes(c.Old, c.New)
	case decoder.OpTruncate:
		e.TruncateFlags = TruncateFlags{Cascade: c.Cascade, RestartIdentity: c.RestartIdentity}
	}
	return e
}

// changes returns the columns present in both records whose values differ.
// Unchanged on either side is never a change.
func changes(old, new map[string]any) map[string]Change {
	if old == nil {
		return map[string]Change{}
	}
	ch := make(map[string]Change)
	for k, nv := range new {
		ov, ok := old[k]
		if !ok || nv == Unchanged || ov == Unchanged {
			continue
		}
		if !equal.Values(ov, nv) {
			ch[k] = Change{OldValue: ov, NewValue: nv}
		}
	}
	return ch
}
