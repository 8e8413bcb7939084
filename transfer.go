package walex

import "fmt"

// TransferFormat is the form in which the server sends column values over
// the replication connection (pgoutput's binary option, PostgreSQL 14+).
// Events are the same in every form; the difference is speed. The binary
// form is cheaper for the server to produce for numbers, floats and times
// (about 30% less walsender CPU on a row of floats, numerics and
// timestamps; no difference on a row of text and jsonb) and cheaper for
// walex to decode.
type TransferFormat int

const (
	// TransferAuto asks for binary when the server is PostgreSQL 14 or
	// later and every column of every subscribed table, as of the
	// connection's start, has a type walex reads in binary itself (the
	// built-in types pgx knows, and domains over them); text otherwise. A
	// table subscribed later, or a column added later, with another type
	// (an enum, a composite, an extension type such as hstore) still
	// works: the server converts each such value to text, one query per
	// value on walex's catalog connection, until the next connection,
	// which picks text.
	TransferAuto TransferFormat = iota
	// TransferText always asks for text.
	TransferText
	// TransferBinary always asks for binary (PostgreSQL 14+; text before).
	// Values of types walex does not read in binary itself are converted
	// by the server, one query per value: only for tables of such types
	// that change rarely.
	TransferBinary
)

// String returns "auto", "text" or "binary".
func (f TransferFormat) String() string {
	switch f {
	case TransferAuto:
		return "auto"
	case TransferText:
		return "text"
	case TransferBinary:
		return "binary"
	}
	return fmt.Sprintf("TransferFormat(%d)", int(f))
}
