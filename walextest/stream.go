package walextest

import (
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/decoder/pgoutput"
	"github.com/walex-go/walex/internal/pgoutputtest"
)

// Column is a column of a Table: a name and a PostgreSQL type name ("int4",
// "text", "jsonb", "timestamptz", "uuid", "numeric", "int4[]", or an
// alias such as "integer" or "bigint").
type Column struct {
	Name string
	Type string
	Key  bool // part of the replica identity (the primary key)
}

// Col is a column.
func Col(name, typ string) Column { return Column{Name: name, Type: typ} }

// Key is a primary key column.
func Key(name, typ string) Column { return Column{Name: name, Type: typ, Key: true} }

// Row is a row: column name → Go value, as a test would pass it to pgx
// (1, "a", time.Now(), map[string]any{...}); nil is NULL, walex.Unchanged
// an unchanged TOASTed value (in an update's new row). A column left out
// is NULL.
type Row map[string]any

// Table is a table of a Stream.
type Table struct {
	s        *Stream
	id       uint32
	schema   string
	name     string
	cols     []Column
	oids     []uint32
	identity byte
}

// Full sets the table's replica identity to FULL: updates and deletes
// carry the whole old row.
func (t *Table) Full() *Table {
	t.identity = 'f'
	for i := range t.cols {
		t.cols[i].Key = true // pgoutput flags every column under FULL
	}
	return t
}

// Alter gives the table new columns, as an ALTER TABLE would: the changes
// built after it use them, and the handlers registered with
// OnSchemaChange hear of it before the first of them.
func (t *Table) Alter(cols ...Column) *Table {
	t.cols, t.oids = t.s.columns(t.schema+"."+t.name, cols)
	if t.identity == 'f' {
		t.Full()
	}
	return t
}

// Stream builds transactions as PostgreSQL streams them: increasing
// transaction IDs, WAL positions and commit times. It is not safe for
// concurrent use.
type Stream struct {
	types  *pgtype.Map
	lsn    uint64
	xid    uint32
	tables uint32
	now    time.Time
}

// NewStream returns a Stream.
func NewStream() *Stream {
	return &Stream{types: pgtype.NewMap(), lsn: 0x1000000, xid: 1000, tables: 16384,
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Table declares a table ("users" is "public.users"). It panics on a type
// name pgx does not know.
func (s *Stream) Table(name string, cols ...Column) *Table {
	schema, table, ok := strings.Cut(name, ".")
	if !ok {
		schema, table = "public", name
	}
	s.tables++
	t := &Table{s: s, id: s.tables, schema: schema, name: table, identity: 'd'}
	t.cols, t.oids = s.columns(name, cols)
	return t
}

var aliases = map[string]string{
	"integer": "int4", "int": "int4", "bigint": "int8", "smallint": "int2", "boolean": "bool",
	"real": "float4", "double precision": "float8", "character varying": "varchar",
	"timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp",
}

func (s *Stream) columns(table string, cols []Column) ([]Column, []uint32) {
	cols = append([]Column(nil), cols...)
	oids := make([]uint32, len(cols))
	for i, c := range cols {
		name := strings.ToLower(c.Type)
		if a, ok := aliases[name]; ok {
			name = a
		}
		if elem, ok := strings.CutSuffix(name, "[]"); ok {
			if a, ok := aliases[elem]; ok {
				elem = a
			}
			name = "_" + elem
		}
		typ, ok := s.types.TypeForName(name)
		if !ok {
			panic(fmt.Sprintf("walextest: table %s column %q: pgx does not know type %q", table, c.Name, c.Type))
		}
		oids[i] = typ.OID
	}
	return cols, oids
}

func (s *Stream) next() uint64 {
	s.lsn += 0x28
	return s.lsn
}

// Tx is a transaction being built, or, once committed, to deliver.
type Tx struct {
	s         *Stream
	xid       uint32
	msgs      [][]byte
	described map[*Table]bool
	committed bool
	start     walex.LSN // a position before the transaction: where a stream that delivers it again resumes
}

// Begin begins a transaction.
func (s *Stream) Begin() *Tx {
	s.xid++
	return &Tx{s: s, xid: s.xid, described: map[*Table]bool{}}
}

// Message is a non-transactional logical decoding message
// (pg_logical_emit_message(false, prefix, content)), ready to deliver.
func (s *Stream) Message(prefix string, content []byte) *Tx {
	lsn := s.next()
	return &Tx{s: s, msgs: [][]byte{pgoutputtest.Message(false, 0, false, lsn, prefix, content)}, committed: true, start: walex.LSN(lsn - 1)}
}

func (tx *Tx) add(m []byte) *Tx {
	if tx.committed {
		panic("walextest: change to a committed transaction")
	}
	tx.msgs = append(tx.msgs, m)
	return tx
}

// describe sends t's Relation message before its first change in tx:
// every transaction carries its own, so that it can be delivered alone,
// again, or after a reconnect.
func (tx *Tx) describe(t *Table) {
	if tx.described[t] {
		return
	}
	tx.described[t] = true
	e := pgoutputtest.Msg(pgoutput.MsgRelation).U32(t.id).Str(t.schema).Str(t.name).U8(t.identity).U16(uint16(len(t.cols)))
	for i, c := range t.cols {
		var f byte
		if c.Key {
			f = 1
		}
		e.U8(f).Str(c.Name).U32(t.oids[i]).U32(0xffffffff)
	}
	tx.add(e.Bytes())
}

// tuple encodes a row in text, as pgoutput sends it.
func (tx *Tx) tuple(t *Table, row Row, keyOnly bool) []any {
	for k := range row {
		if !t.has(k) {
			panic(fmt.Sprintf("walextest: table %s.%s has no column %q", t.schema, t.name, k))
		}
	}
	vals := make([]any, len(t.cols))
	for i, c := range t.cols {
		v := row[c.Name]
		switch {
		case keyOnly && !c.Key, v == nil:
			vals[i] = nil
		case v == walex.Unchanged:
			vals[i] = pgoutputtest.UnchangedCol{}
		default:
			b, err := tx.s.types.Encode(t.oids[i], pgtype.TextFormatCode, v, nil)
			if err != nil {
				panic(fmt.Sprintf("walextest: table %s.%s column %q (%s): %v", t.schema, t.name, c.Name, c.Type, err))
			}
			if b == nil {
				vals[i] = nil
			} else {
				vals[i] = string(b)
			}
		}
	}
	return vals
}

func (t *Table) has(col string) bool {
	for _, c := range t.cols {
		if c.Name == col {
			return true
		}
	}
	return false
}

// keyChanged reports whether old and new differ in a key column.
func (t *Table) keyChanged(old, new Row) bool {
	for _, c := range t.cols {
		if c.Key && old != nil && fmt.Sprint(old[c.Name]) != fmt.Sprint(new[c.Name]) {
			return true
		}
	}
	return false
}

// Insert adds an insert of row.
func (tx *Tx) Insert(t *Table, row Row) *Tx {
	tx.describe(t)
	return tx.add(pgoutputtest.Msg(pgoutput.MsgInsert).U32(t.id).U8('N').Tuple(tx.tuple(t, row, false)...).Bytes())
}

// Update adds an update from old to new, with what PostgreSQL sends of
// old: the whole row under REPLICA IDENTITY FULL; otherwise the key
// columns, and only when the key changed (old may then be nil, or hold the
// key only). A walex.Unchanged value in new is an unchanged TOASTed value.
func (tx *Tx) Update(t *Table, old, new Row) *Tx {
	tx.describe(t)
	e := pgoutputtest.Msg(pgoutput.MsgUpdate).U32(t.id)
	switch {
	case t.identity == 'f':
		e.U8('O').Tuple(tx.tuple(t, old, false)...)
	case t.keyChanged(old, new):
		e.U8('K').Tuple(tx.tuple(t, old, true)...)
	}
	return tx.add(e.U8('N').Tuple(tx.tuple(t, new, false)...).Bytes())
}

// Delete adds a delete of old (its key columns, or the whole row under
// REPLICA IDENTITY FULL).
func (tx *Tx) Delete(t *Table, old Row) *Tx {
	tx.describe(t)
	kind := byte('K')
	if t.identity == 'f' {
		kind = 'O'
	}
	return tx.add(pgoutputtest.Msg(pgoutput.MsgDelete).U32(t.id).U8(kind).Tuple(tx.tuple(t, old, kind == 'K')...).Bytes())
}

// Truncate adds a TRUNCATE of tables.
func (tx *Tx) Truncate(tables ...*Table) *Tx {
	ids := make([]uint32, len(tables))
	for i, t := range tables {
		tx.describe(t)
		ids[i] = t.id
	}
	return tx.add(pgoutputtest.Truncate(false, 0, 0, ids...))
}

// Message adds a transactional logical decoding message
// (pg_logical_emit_message(true, prefix, content)).
func (tx *Tx) Message(prefix string, content []byte) *Tx {
	return tx.add(pgoutputtest.Message(false, 0, true, tx.s.next(), prefix, content))
}

// Commit commits the transaction: it gets its commit LSN and time, and
// can be delivered (several times).
func (tx *Tx) Commit() *Tx {
	if tx.committed {
		panic("walextest: transaction committed twice")
	}
	s := tx.s
	for range tx.msgs {
		s.next()
	}
	commit := s.next()
	end := commit + 0x30
	s.lsn = end
	s.now = s.now.Add(time.Millisecond)
	begin := pgoutputtest.Msg(pgoutput.MsgBegin).U64(commit).Time(s.now).U32(tx.xid).Bytes()
	done := pgoutputtest.Msg(pgoutput.MsgCommit).U8(0).U64(commit).U64(end).Time(s.now).Bytes()
	tx.msgs = append(append([][]byte{begin}, tx.msgs...), done)
	tx.committed, tx.start = true, walex.LSN(commit)
	return tx
}
