// Package pgoutput parses the messages of PostgreSQL's pgoutput logical
// decoding plugin, protocol versions 1 to 4: the wire layer of walex's
// decoder, as pgproto3 is pgx's.
//
// [Parse] (or a [Parser], which reuses its row messages) turns one message
// — the payload of an XLogData of the replication stream — into one of the
// *Message types: Begin, Commit, Origin, Relation, Type, Insert, Update,
// Delete, Truncate, Message, the stream messages of version 2 (Stream
// Start/Stop/Commit/Abort, with the abort LSN and time of version 4), and
// the two-phase messages of version 3. Tuple data aliases the input.
//
// It is safe to feed untrusted bytes: every read is bounds-checked, and a
// malformed message is a [*ParseError] naming the message type, the byte
// offset and the field, never a panic. Values are not interpreted here;
// package pgvalue turns tuple columns into Go values, and package decoder
// assembles transactions.
package pgoutput
