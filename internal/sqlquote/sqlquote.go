// Package sqlquote quotes identifiers and literals for the SQL that walex
// writes itself (replication commands, catalog queries that cannot take
// parameters, publication DDL). Every name that comes from a user goes
// through it.
package sqlquote

import "strings"

// Ident quotes a SQL identifier: "a""b" for a"b.
func Ident(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// Literal quotes a SQL string literal (standard_conforming_strings on, the
// default since PostgreSQL 9.1 and the only setting a replication
// connection reads commands with).
func Literal(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}
