// Package decoder turns a pgoutput logical replication stream into
// committed transactions of typed row changes. It does no network I/O and
// is safe to feed untrusted bytes: a malformed message is a [*ParseError]
// naming the message type and offset, never a panic.
//
// # Messages
//
// [Parse] parses one message of protocol versions 1 to 4: Begin, Commit,
// Origin, Relation, Type, Insert, Update, Delete, Truncate, Message, the
// stream messages of version 2 (Stream Start/Stop/Commit/Abort, with the
// abort LSN and time of version 4) and the two-phase messages of version
// 3 (parsed, and refused by the [Decoder], since walex never enables
// two_phase). Tuple data aliases the input.
//
// # Transactions
//
// A [Decoder] keeps the relation and type cache (a new Relation message
// replaces the old one, so ALTER TABLE mid-stream decodes correctly) and
// assembles transactions: Begin … Commit, and streamed transactions, whose
// changes are held until their Stream Commit — in memory up to
// [Options.MemoryBudget], then in a spill file — and dropped on Stream
// Abort (of the transaction or of a subtransaction). Committed
// transactions are emitted as [Batch]es of at most [Options.MaxBatchEvents]
// changes; the last one is Final. A large streamed transaction is decoded
// at its commit by several goroutines ([Options.ReplayWorkers]) and still
// emitted in order.
//
// # Values
//
// Tuple values become the Go values that pgx's rows.Values() returns for
// the same column with pgx's default type map: a type pgx knows is decoded
// by its codec (domains by their base type, via [TypeResolver]); a type it
// does not know keeps its text form; NULL is nil; an unchanged TOASTed
// value is [Unchanged]. Values may come in text or in binary (pgoutput's
// binary option) and decode alike: binary values of the types [BinarySafe]
// accepts are decoded here, others are converted to text by
// [Options.TextOf].
package decoder
