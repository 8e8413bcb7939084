package decoder

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"
)

// Relation is the decoder's view of a table, built from a Relation message.
// A Relation is immutable once built: a new Relation message for the same
// table produces a new *Relation, so events keep the shape they were
// decoded with.
type Relation struct {
	ID              uint32
	Schema          string
	Name            string
	ReplicaIdentity byte // 'd' default, 'n' nothing, 'f' full, 'i' index
	Columns         []RelationColumn
	// ColumnTypes maps each column name to its type name ("int4", "text",
	// "public.mood", ...). Shared by every event of the relation: read only.
	ColumnTypes map[string]string

	codecs []columnCodec
}

// HasOldValues reports whether updates and deletes of the relation carry
// the whole old row (REPLICA IDENTITY FULL).
func (r *Relation) HasOldValues() bool { return r.ReplicaIdentity == 'f' }

// columnCodec is how one column's values are turned into Go values.
type columnCodec struct {
	name string
	oid  uint32       // the OID pgx would see in a RowDescription (base type for domains)
	typ  *pgtype.Type // nil: pgx does not know the type; text form is kept
}

// TypeInfo is what a TypeResolver knows about a type OID.
type TypeInfo struct {
	// Name is the type's name as shown in Event.Source.Columns: the bare
	// name for types in pg_catalog, schema-qualified otherwise.
	Name string
	// BaseOID is the OID pgx sees in a query result for a column of this
	// type: the base type of a domain (resolved through nested domains),
	// the OID itself otherwise.
	BaseOID uint32
}

// TypeResolver looks up types the decoder cannot name by itself (domains,
// enums, extension types, built-ins unknown to pgx). It is called from the
// decoding goroutine when a Relation message arrives, never per row. The
// root package implements it with a catalog query on a normal connection.
type TypeResolver interface {
	ResolveType(oid uint32) (TypeInfo, error)
}

func (d *Decoder) buildRelation(m *RelationMessage) (*Relation, error) {
	rel := &Relation{
		ID:              m.RelationID,
		Schema:          m.Namespace,
		Name:            m.Name,
		ReplicaIdentity: m.ReplicaIdentity,
		Columns:         m.Columns,
		ColumnTypes:     make(map[string]string, len(m.Columns)),
		codecs:          make([]columnCodec, len(m.Columns)),
	}
	for i, c := range m.Columns {
		info, err := d.typeInfo(c.TypeOID)
		if err != nil {
			return nil, fmt.Errorf("decoder: relation %s.%s column %q: %w", m.Namespace, m.Name, c.Name, err)
		}
		rel.ColumnTypes[c.Name] = info.Name
		cc := columnCodec{name: c.Name, oid: info.BaseOID}
		if t, ok := d.typeMap.TypeForOID(info.BaseOID); ok {
			cc.typ = t
		}
		rel.codecs[i] = cc
	}
	return rel, nil
}

// firstNormalOID is FirstNormalObjectId: OIDs below it are built in.
const firstNormalOID = 16384

func (d *Decoder) typeInfo(oid uint32) (TypeInfo, error) {
	if info, ok := d.typeInfos[oid]; ok {
		return info, nil
	}
	var info TypeInfo
	t, known := d.typeMap.TypeForOID(oid)
	switch {
	case known && oid < firstNormalOID:
		info = TypeInfo{Name: t.Name, BaseOID: oid}
	case d.opts.Types != nil:
		var err error
		if info, err = d.opts.Types.ResolveType(oid); err != nil {
			return TypeInfo{}, fmt.Errorf("resolve type %d: %w", oid, err)
		}
		if info.BaseOID == 0 {
			info.BaseOID = oid
		}
	default:
		info = TypeInfo{Name: d.typeNames[oid], BaseOID: oid}
		if info.Name == "" {
			info.Name = fmt.Sprintf("oid:%d", oid)
		}
	}
	d.typeInfos[oid] = info
	return info, nil
}

// decodeTuple turns tuple columns into a record map. Values follow pgx's
// rows.Values(): NULL is nil, a type pgx knows is decoded by its codec, an
// unknown type keeps its text form (binary form as []byte), and an
// unchanged TOASTed value is Unchanged.
//
// keyOnly is for an old key tuple ('K'): Postgres sends every column but
// fills only the replica identity key, so only key columns are kept.
func (d *Decoder) decodeTuple(rel *Relation, cols []Column, keyOnly bool) (map[string]any, error) {
	if len(cols) > len(rel.codecs) {
		return nil, fmt.Errorf("decoder: tuple of %s.%s has %d columns, its relation %d", rel.Schema, rel.Name, len(cols), len(rel.codecs))
	}
	rec := make(map[string]any, len(cols))
	for i, c := range cols {
		if keyOnly && rel.Columns[i].Flags&1 == 0 {
			continue
		}
		cc := &rel.codecs[i]
		v, err := d.decodeValue(cc, c)
		if err != nil {
			return nil, fmt.Errorf("decoder: %s.%s column %q (type %s): %w", rel.Schema, rel.Name, cc.name, rel.ColumnTypes[cc.name], err)
		}
		rec[cc.name] = v
	}
	return rec, nil
}

func (d *Decoder) decodeValue(cc *columnCodec, c Column) (any, error) {
	switch c.Kind {
	case ColNull:
		return nil, nil
	case ColUnchanged:
		return Unchanged, nil
	case ColText:
		if cc.typ == nil {
			return string(c.Data), nil
		}
		return cc.typ.Codec.DecodeValue(d.typeMap, cc.oid, pgtype.TextFormatCode, c.Data)
	case ColBinary:
		if cc.typ == nil {
			return append([]byte(nil), c.Data...), nil
		}
		return cc.typ.Codec.DecodeValue(d.typeMap, cc.oid, pgtype.BinaryFormatCode, c.Data)
	}
	return nil, fmt.Errorf("unknown column kind 0x%02x", c.Kind)
}

// UnchangedValue is the type of [Unchanged].
type UnchangedValue struct{}

// String returns a marker that shows up in logs and JSON.
func (UnchangedValue) String() string { return "<unchanged-toast>" }

// MarshalJSON encodes Unchanged as the JSON object {"$walex":"unchanged-toast"}.
func (UnchangedValue) MarshalJSON() ([]byte, error) {
	return []byte(`{"$walex":"unchanged-toast"}`), nil
}

// Unchanged stands for an unchanged TOASTed value that Postgres did not
// send in an update. It is never reported as a change.
var Unchanged = UnchangedValue{}
