package pgvalue

import (
	"context"

	"github.com/jackc/pgx/v5/pgtype"
)

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

// TypeResolver looks up types that walex cannot name by itself (domains,
// enums, extension types, built-ins unknown to pgx). The decoder calls it
// when a Relation message arrives, never per row. walex implements it with
// a catalog query on a normal connection.
type TypeResolver interface {
	ResolveType(ctx context.Context, oid uint32) (TypeInfo, error)
}

// firstNormalOID is FirstNormalObjectId: OIDs below it are built in.
const firstNormalOID = 16384

// BinarySafe reports whether values of the type with this OID (the base
// type, for a domain) are decoded from their binary form here, giving the
// same Go values as from their text form: the built-in types pgx knows.
// Values of other types that arrive in binary (pgoutput's binary option)
// must be converted to text by the server (see Values' textOf).
func BinarySafe(oid uint32) bool {
	_, ok := Builtin(oid)
	return ok
}

// Builtin returns the name of a built-in type (OID below 16384) that pgx
// knows, and whether it is one.
func Builtin(oid uint32) (name string, ok bool) {
	if oid >= firstNormalOID {
		return "", false
	}
	t, ok := builtinTypes.TypeForOID(oid)
	if !ok {
		return "", false
	}
	return t.Name, true
}

// builtinTypes is pgx's default type map, only ever read.
var builtinTypes = pgtype.NewMap()
