// Package decoder turns a pgoutput logical replication stream into
// committed transactions of typed row changes. It does no network I/O and
// is safe to feed untrusted bytes: a malformed message is a
// [*pgoutput.ParseError] naming the message type and offset, never a panic.
//
// # Layers
//
// The decoder is built in three layers, as pgx is (pgproto3, pgtype, pgx):
//
//   - [github.com/walex-go/walex/decoder/pgoutput], the wire layer: parses
//     one message into a *Message value (imports nothing of walex);
//   - [github.com/walex-go/walex/decoder/pgvalue], the values layer: turns
//     tuple columns into Go values equal to pgx's;
//   - this package, the transaction assembly: the relation and type cache,
//     transactions from Begin to Commit, streamed transactions spooled
//     until their Stream Commit (spool.go) and replayed then, on several
//     goroutines when they are large (replay.go), and the chunking of large
//     transactions into [Batch]es.
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
// emitted in order. Two-phase messages are refused: walex never enables
// two_phase.
//
// Besides its row changes, a Batch carries [Mark]s, each placed among the
// changes: the transactional logical decoding messages written in the
// transaction, and the Relation messages received in it (a table is
// described before its first change after a connect or an ALTER TABLE:
// compare a description with the previous one to see a schema change). A
// non-transactional message is a Batch of its own, with Message set.
// Under REPLICA IDENTITY FULL, an update's unchanged TOASTed values are
// taken from the old row, so the new row is whole.
//
// # Values
//
// Record values are pgvalue's: the Go values pgx's rows.Values() returns
// for the same column. Domains are decoded by their base type, found
// through [Options.Types]; binary values of types pgvalue cannot read are
// converted by [Options.TextOf].
package decoder
