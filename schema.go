package walex

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/walex-go/walex/decoder"
)

// Column describes a column of a table as the change stream describes it.
type Column struct {
	Name string `json:"name"`
	// Type is the type name, as in Source.Columns ("int4", "text",
	// "public.mood").
	Type string `json:"type"`
	// TypeModifier is the type's modifier (the length of a varchar(n) plus
	// 4, a numeric's precision and scale, ...); -1 for none.
	TypeModifier int32 `json:"type_modifier"`
	// Key tells that the column is part of the replica identity: the
	// primary key or the index of REPLICA IDENTITY USING INDEX, or every
	// column under REPLICA IDENTITY FULL.
	Key bool `json:"key"`
}

// ColumnChangeKind is what happened to a column in a SchemaChange.
type ColumnChangeKind string

// Column change kinds.
const (
	ColumnAdded       ColumnChangeKind = "added"
	ColumnDropped     ColumnChangeKind = "dropped"
	ColumnRenamed     ColumnChangeKind = "renamed"
	ColumnTypeChanged ColumnChangeKind = "type_changed" // the type or its modifier
	ColumnKeyChanged  ColumnChangeKind = "key_changed"  // joined or left the replica identity
)

// ColumnChange is one difference between a table's shape before and after
// a SchemaChange. Before is the zero Column for an added column, After for
// a dropped one. A column whose type and key flag both changed is
// reported once, as ColumnTypeChanged.
type ColumnChange struct {
	Kind   ColumnChangeKind `json:"kind"`
	Before Column           `json:"before"`
	After  Column           `json:"after"`
}

// SchemaChange reports that a subscribed table changed shape in the
// stream: a column was added, dropped, renamed or changed type, or the
// replica identity's columns changed.
//
// walex sees it in the change stream itself (a new Relation message that
// differs from the last one), so it needs no event trigger and no
// privilege beyond replication, and it is reported in stream order: after
// the events written under the old shape and before the first event
// written under the new one, in the dispatch of that event's transaction
// (acknowledged with it, and delivered again with it after a crash with a
// durable slot). Several ALTERs between two changes of the table come as
// one SchemaChange. The stream describes a table only when a change needs
// it, so a SchemaChange comes with the first change after the ALTER, not
// with the ALTER. The first description of a table that Run sees is the
// reference: changes made while walex was not running, before the first
// description of a new process, are not reported.
//
// What the stream cannot tell apart: columns are matched by name, then
// an unmatched column that has the same position and type as an unmatched
// column of the old shape is reported as its rename. So a rename that also
// changes the type is reported as a drop and an add, and dropping a column
// and adding one of the same type at the same position between two
// changes looks like a rename.
type SchemaChange struct {
	Schema string `json:"schema"`
	Table  string `json:"table"`
	// Before and After are the table's columns in order, before and after.
	Before []Column `json:"before"`
	After  []Column `json:"after"`
	// Changes lists the differences, in the order of After's columns, then
	// the dropped ones.
	Changes []ColumnChange `json:"changes"`
	// CommitLSN, XID and Timestamp are those of the transaction whose
	// change first used the new shape; Index is that change's Index.
	CommitLSN LSN       `json:"lsn"`
	XID       uint32    `json:"xid"`
	Timestamp time.Time `json:"timestamp"`
	Index     int       `json:"index"`
}

// String is a short description for logs.
func (s SchemaChange) String() string {
	return fmt.Sprintf("schema change %s.%s at %s:%d (%d column changes)", s.Schema, s.Table, s.CommitLSN, s.Index, len(s.Changes))
}

// SchemaChangeHandler handles one SchemaChange.
type SchemaChangeHandler func(ctx context.Context, s SchemaChange) error

// OnSchemaChange registers h for the schema changes of table ("users",
// "schema.table"), or, with AllTables, of every subscribed table. See
// SchemaChange for when they come. Handlers run like message handlers (see
// OnMessage): in registration order on the dispatch goroutine, retried
// under Config.RetryPolicy, not wrapped by Use's middleware. Of the
// options, only WithName applies. It panics if h is nil or the table name
// is invalid.
func (c *Client) OnSchemaChange(table string, h SchemaChangeHandler, opts ...Option) {
	c.reg.addSchema(table, h, opts)
	c.checkLate(table)
}

// schemaRegistration is one OnSchemaChange call.
type schemaRegistration struct {
	seq     int
	all     bool
	table   tableName
	handler SchemaChangeHandler
	name    string
}

// String describes the registration for logs.
func (r *schemaRegistration) String() string {
	t := AllTables
	if !r.all {
		t = r.table.String()
	}
	return fmt.Sprintf("OnSchemaChange(%q) #%d (%s)", t, r.seq, r.name)
}

func (r *schemaRegistration) wants(schema, table string) bool {
	return r.all || (r.table.Schema == schema && r.table.Table == table)
}

func (g *registry) addSchema(table string, h SchemaChangeHandler, opts []Option) {
	if h == nil {
		panic(fmt.Sprintf("walex: OnSchemaChange(%q): nil handler", table))
	}
	r := &schemaRegistration{handler: h, name: optionName("OnSchemaChange", table, opts)}
	if table == AllTables {
		r.all = true
	} else {
		t, err := parseTableName(table)
		if err != nil {
			panic(fmt.Sprintf("walex: OnSchemaChange(%q): invalid table name: %v", table, err))
		}
		r.table = t
	}
	if r.name == "" {
		r.name = funcName(h)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r.seq = len(g.schemas) + 1
	g.schemas = append(g.schemas, r)
}

// columnsOf returns the columns of a relation.
func columnsOf(rel *decoder.Relation) []Column {
	cols := make([]Column, len(rel.Columns))
	for i, c := range rel.Columns {
		cols[i] = Column{Name: c.Name, Type: rel.ColumnTypes[c.Name], TypeModifier: c.TypeMod, Key: c.Flags&1 != 0}
	}
	return cols
}

// sameShape reports whether two descriptions of a table have the same
// columns (names, types, modifiers and key flags, in order).
func sameShape(a, b *decoder.Relation) bool {
	return slices.Equal(a.Columns, b.Columns)
}

// diffColumns lists what changed from before to after; see SchemaChange
// for how renames are told.
func diffColumns(before, after []Column) []ColumnChange {
	oldByName := make(map[string]int, len(before))
	for i, c := range before {
		oldByName[c.Name] = i
	}
	newNames := make(map[string]bool, len(after))
	for _, c := range after {
		newNames[c.Name] = true
	}
	matched := make([]bool, len(before))
	var out []ColumnChange
	for i, a := range after {
		if j, ok := oldByName[a.Name]; ok {
			matched[j] = true
			b := before[j]
			switch {
			case b.Type != a.Type || b.TypeModifier != a.TypeModifier:
				out = append(out, ColumnChange{Kind: ColumnTypeChanged, Before: b, After: a})
			case b.Key != a.Key:
				out = append(out, ColumnChange{Kind: ColumnKeyChanged, Before: b, After: a})
			}
			continue
		}
		// A rename keeps the column's position and type; the old name
		// must be gone.
		if i < len(before) {
			b := before[i]
			if !newNames[b.Name] && b.Type == a.Type && b.TypeModifier == a.TypeModifier && !matched[i] {
				matched[i] = true
				out = append(out, ColumnChange{Kind: ColumnRenamed, Before: b, After: a})
				continue
			}
		}
		out = append(out, ColumnChange{Kind: ColumnAdded, After: a})
	}
	for j, b := range before {
		if !matched[j] && !newNames[b.Name] {
			out = append(out, ColumnChange{Kind: ColumnDropped, Before: b})
		}
	}
	return out
}
