package decoder

import (
	"context"
	"fmt"

	"github.com/walex-go/walex/decoder/pgoutput"
	"github.com/walex-go/walex/decoder/pgvalue"
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
	Columns         []pgoutput.RelationColumn
	// ColumnTypes maps each column name to its type name ("int4", "text",
	// "public.mood", ...). Shared by every event of the relation: read only.
	ColumnTypes map[string]string

	codecs []pgvalue.Codec // made by the Decoder's own Values
}

// HasOldValues reports whether updates and deletes of the relation carry
// the whole old row (REPLICA IDENTITY FULL).
func (r *Relation) HasOldValues() bool { return r.ReplicaIdentity == 'f' }

func (d *Decoder) buildRelation(ctx context.Context, m *pgoutput.RelationMessage) (*Relation, error) {
	rel := &Relation{
		ID:              m.RelationID,
		Schema:          m.Namespace,
		Name:            m.Name,
		ReplicaIdentity: m.ReplicaIdentity,
		Columns:         m.Columns,
		ColumnTypes:     make(map[string]string, len(m.Columns)),
		codecs:          make([]pgvalue.Codec, len(m.Columns)),
	}
	for i, c := range m.Columns {
		info, err := d.typeInfo(ctx, c.TypeOID)
		if err != nil {
			return nil, fmt.Errorf("decoder: relation %s.%s column %q: %w", m.Namespace, m.Name, c.Name, err)
		}
		rel.ColumnTypes[c.Name] = info.Name
		rel.codecs[i] = d.rows.vals.Codec(c.TypeOID, info.BaseOID)
	}
	return rel, nil
}

// typeInfo names a column type and finds the type pgx sees for it: a
// built-in type by itself, anything else through Options.Types (or the
// Type messages of the stream, without it).
func (d *Decoder) typeInfo(ctx context.Context, oid uint32) (pgvalue.TypeInfo, error) {
	if info, ok := d.typeInfos[oid]; ok {
		return info, nil
	}
	var info pgvalue.TypeInfo
	if name, ok := pgvalue.Builtin(oid); ok {
		info = pgvalue.TypeInfo{Name: name, BaseOID: oid}
	} else if d.opts.Types != nil {
		var err error
		d.catalogMu.Lock()
		info, err = d.opts.Types.ResolveType(ctx, oid)
		d.catalogMu.Unlock()
		if err != nil {
			return pgvalue.TypeInfo{}, fmt.Errorf("resolve type %d: %w", oid, err)
		}
		if info.BaseOID == 0 {
			info.BaseOID = oid
		}
	} else {
		info = pgvalue.TypeInfo{Name: d.typeNames[oid], BaseOID: oid}
		if info.Name == "" {
			info.Name = fmt.Sprintf("oid:%d", oid)
		}
	}
	d.typeInfos[oid] = info
	return info, nil
}

// rows turns the tuples of row changes into records. A Decoder has one for
// its goroutine; each goroutine of a parallel replay (see replay.go) has its
// own, as the Values and their codecs are not safe for concurrent use.
type rows struct {
	vals *pgvalue.Values
	// own holds this rows' codecs of relations built with another Values
	// (nil: use Relation.codecs, built with vals).
	own map[*Relation][]pgvalue.Codec
}

// codecs returns the column codecs of rel to use with r.vals.
func (r *rows) codecs(rel *Relation) []pgvalue.Codec {
	if r.own == nil {
		return rel.codecs
	}
	if cs, ok := r.own[rel]; ok {
		return cs
	}
	cs := make([]pgvalue.Codec, len(rel.codecs))
	for i, c := range rel.codecs {
		cs[i] = r.vals.Rebuild(c)
	}
	r.own[rel] = cs
	return cs
}

// fill decodes the row change m (an insert, update or delete) of rel into c.
func (r *rows) fill(ctx context.Context, m pgoutput.Message, rel *Relation, c *Change) (err error) {
	switch m := m.(type) {
	case *pgoutput.InsertMessage:
		c.Op = OpInsert
		c.New, err = r.tuple(ctx, rel, m.New, false)
		return err
	case *pgoutput.UpdateMessage:
		c.Op = OpUpdate
		if c.New, err = r.tuple(ctx, rel, m.New, false); err != nil {
			return err
		}
		if m.OldKind != 0 {
			c.OldKind = m.OldKind
			if c.Old, err = r.tuple(ctx, rel, m.Old, m.OldKind == 'K'); err != nil {
				return err
			}
		}
		if m.OldKind == 'O' {
			completeRow(c.New, c.Old, m.New)
		}
		return nil
	case *pgoutput.DeleteMessage:
		c.Op = OpDelete
		c.OldKind = m.OldKind
		c.Old, err = r.tuple(ctx, rel, m.Old, m.OldKind == 'K')
		return err
	}
	return fmt.Errorf("decoder: %T is not a row change", m)
}

// completeRow fills the unchanged TOASTed values of an update's new row
// from its old row, which REPLICA IDENTITY FULL sends whole: the new row is
// then complete. The values are the same, so they are never a change.
func completeRow(new, old map[string]any, cols []pgoutput.Column) {
	for _, col := range cols {
		if col.Kind == pgoutput.ColUnchanged {
			for k, v := range new {
				if v == pgvalue.Unchanged {
					if ov, ok := old[k]; ok && ov != pgvalue.Unchanged {
						new[k] = ov
					}
				}
			}
			return
		}
	}
}

// tuple turns tuple columns into a record map, with the values of
// pgvalue.Values.Decode.
//
// keyOnly is for an old key tuple ('K'): Postgres sends every column but
// fills only the replica identity key, so only key columns are kept.
func (r *rows) tuple(ctx context.Context, rel *Relation, cols []pgoutput.Column, keyOnly bool) (map[string]any, error) {
	codecs := r.codecs(rel)
	if len(cols) > len(codecs) {
		return nil, fmt.Errorf("decoder: a tuple of %s.%s has %d columns, but its relation has %d", rel.Schema, rel.Name, len(cols), len(codecs))
	}
	rec := make(map[string]any, len(cols))
	for i, col := range cols {
		rc := &rel.Columns[i]
		if keyOnly && rc.Flags&1 == 0 {
			continue
		}
		val, err := r.vals.Decode(ctx, &codecs[i], col)
		if err != nil {
			return nil, fmt.Errorf("decoder: %s.%s column %q (type %s): %w", rel.Schema, rel.Name, rc.Name, rel.ColumnTypes[rc.Name], err)
		}
		rec[rc.Name] = val
	}
	return rec, nil
}
