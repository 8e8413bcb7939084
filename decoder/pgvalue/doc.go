// Package pgvalue turns the column values of a pgoutput tuple into the Go
// values that pgx's rows.Values() returns for the same column with pgx's
// default type map: the values layer of walex's decoder, as pgtype is
// pgx's.
//
// A [Values] holds pgx's type map; [Values.Codec] makes, once per column
// of a relation, the [Codec] that [Values.Decode] then uses for every value
// of the column. Values come in text or in binary (pgoutput's binary
// option) and decode alike:
//
//   - a type pgx knows is decoded by its codec, with the scan planned once
//     per column for the common scalar types (fastpath.go), small numerics
//     read without big.Int arithmetic (numeric.go), and JSON parsed by a
//     parser of its own that interns object keys (json.go);
//   - where pgx's text and binary decodings differ for the same datum
//     (numeric scales, infinite intervals, non-ASCII "char"), text is
//     decoded into what pgx decodes from binary (textcodecs.go), since
//     pgx asks for binary in a query;
//   - a type pgx does not know keeps its text form; a binary value of such
//     a type is converted to text by the server ([TextOf]);
//   - NULL is nil; an unchanged TOASTed value is [Unchanged].
//
// [BinarySafe] tells which types are read in binary here. The test of the
// package, TestEqualsPgx, holds every path against pgx itself.
package pgvalue
