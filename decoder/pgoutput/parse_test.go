package pgoutput_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/walex-go/walex/decoder/pgoutput"
	"github.com/walex-go/walex/internal/pgoutputtest"
)

var (
	cols = []pgoutputtest.Col{{Name: "id", OID: 23, Key: true}, {Name: "name", OID: 25}, {Name: "data", OID: 3802}}
	t0   = pgoutputtest.CommitTime
)

// every is a message of each type, as (message, inside a stream block).
var every = []struct {
	data     []byte
	inStream bool
}{
	{pgoutputtest.Begin(1, 2), false},
	{pgoutputtest.Commit(1, 2), false},
	{pgoutputtest.Msg(pgoutput.MsgOrigin).U64(5).Str("node1").Bytes(), false},
	{pgoutputtest.Relation(false, 0, 1, "public", "users", 'f', cols...), false},
	{pgoutputtest.Relation(true, 9, 1, "public", "users", 'f', cols...), true},
	{pgoutputtest.Msg(pgoutput.MsgType).U32(16500).Str("public").Str("mood").Bytes(), false},
	{pgoutputtest.Insert(false, 0, 1, "1", nil, pgoutputtest.UnchangedCol{}, []byte{0, 1}), false},
	{pgoutputtest.Update(true, 9, 1, 'O', []any{"1", "x"}, "1", "y"), true},
	{pgoutputtest.Update(false, 0, 1, 0, nil, "1", "y"), false},
	{pgoutputtest.Delete(false, 0, 1, 'K', "1", nil), false},
	{pgoutputtest.Truncate(true, 9, 3, 1, 2, 3), true},
	{pgoutputtest.Msg(pgoutput.MsgMessage).U8(1).U64(77).Str("walex").U32(3).Raw([]byte("abc")).Bytes(), false},
	{pgoutputtest.StreamStart(9, true), false},
	{pgoutputtest.StreamStop(), false},
	{pgoutputtest.StreamCommit(9, 1, 2), false},
	{pgoutputtest.StreamAbort(9, 10), false},
	{pgoutputtest.Msg(pgoutput.MsgStreamAbort).U32(9).U32(10).U64(5).Time(t0).Bytes(), false},
	{pgoutputtest.Msg(pgoutput.MsgBeginPrepare).U64(1).U64(2).Time(t0).U32(3).Str("gid").Bytes(), false},
	{pgoutputtest.Msg(pgoutput.MsgRollbackPrepare).U8(0).U64(1).U64(2).Time(t0).Time(t0).U32(3).Str("gid").Bytes(), false},
}

func TestParseFields(t *testing.T) {
	for _, c := range []struct {
		data     []byte
		inStream bool
		want     pgoutput.Message
	}{
		{pgoutputtest.Begin(0x100, 7), false, &pgoutput.BeginMessage{FinalLSN: 0x100, CommitTime: t0, XID: 7}},
		{pgoutputtest.Commit(0x100, 0x180), false, &pgoutput.CommitMessage{CommitLSN: 0x100, EndLSN: 0x180, CommitTime: t0}},
		{pgoutputtest.Relation(true, 9, 4, "s", "t", 'i', cols[:1]...), true, &pgoutput.RelationMessage{XID: 9, RelationID: 4, Namespace: "s", Name: "t", ReplicaIdentity: 'i',
			Columns: []pgoutput.RelationColumn{{Flags: 1, Name: "id", TypeOID: 23, TypeMod: -1}}}},
		{pgoutputtest.Update(false, 0, 4, 'K', []any{"1", nil}, "2", pgoutputtest.UnchangedCol{}), false, &pgoutput.UpdateMessage{RelationID: 4, OldKind: 'K',
			Old: []pgoutput.Column{{Kind: 't', Data: []byte("1")}, {Kind: 'n'}}, New: []pgoutput.Column{{Kind: 't', Data: []byte("2")}, {Kind: 'u'}}}},
		{pgoutputtest.Truncate(false, 0, 3, 1, 2), false, &pgoutput.TruncateMessage{Options: 3, RelationIDs: []uint32{1, 2}}},
		{pgoutputtest.Msg(pgoutput.MsgMessage).U8(1).U64(77).Str("walex").U32(3).Raw([]byte("abc")).Bytes(), false, &pgoutput.LogicalMessage{Transactional: true, LSN: 77, Prefix: "walex", Content: []byte("abc")}},
		{pgoutputtest.Msg(pgoutput.MsgStreamAbort).U32(9).U32(10).U64(5).Time(t0).Bytes(), false, &pgoutput.StreamAbortMessage{XID: 9, SubXID: 10, AbortLSN: 5, AbortTime: t0}},
	} {
		got, err := pgoutput.Parse(c.data, c.inStream)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%s) = %+v, %v; want %+v", pgoutput.MessageType(c.data[0]), got, err, c.want)
		}
	}
}

// TestParserEqualsParse: a Parser, which reuses its row messages, parses
// every message as Parse does.
func TestParserEqualsParse(t *testing.T) {
	var p pgoutput.Parser
	for _, m := range every {
		want, werr := pgoutput.Parse(m.data, m.inStream)
		got, err := p.Parse(m.data, m.inStream)
		if werr != nil || err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Parser gives %+v (%v), Parse %+v (%v)", pgoutput.MessageType(m.data[0]), got, err, want, werr)
		}
	}
}

func TestTruncatedMessages(t *testing.T) {
	for _, m := range every {
		for _, inStream := range []bool{false, true} {
			for n := 0; n < len(m.data); n++ {
				_, err := pgoutput.Parse(m.data[:n], inStream)
				var pe *pgoutput.ParseError
				if err != nil && !errors.As(err, &pe) {
					t.Errorf("%s prefix %d: error %T, want *pgoutput.ParseError", pgoutput.MessageType(m.data[0]), n, err)
				}
			}
		}
	}
}

func TestParseErrorNamesTypeOffsetAndField(t *testing.T) {
	for _, c := range []struct {
		data   []byte
		offset int
		field  string
	}{
		// type, relation id (4), 'N', column count (2), kind 't', then a length cut short
		{pgoutputtest.Insert(false, 0, 1, "hello")[:12], 9, "new tuple column length"},
		{pgoutputtest.Begin(1, 2)[:5], 1, "final LSN"},
		{pgoutputtest.Msg(pgoutput.MsgInsert).U32(1).U8('X').Bytes(), 5, "tuple kind"},
		{pgoutputtest.Msg(pgoutput.MsgOrigin).U64(5).Raw([]byte("no terminator")).Bytes(), 9, "name"},
		{pgoutputtest.Msg(pgoutput.MsgInsert).U32(1).U8('N').U16(1).U8('z').Bytes(), 8, "new tuple column kind"},
	} {
		_, err := pgoutput.Parse(c.data, false)
		var pe *pgoutput.ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("% x: err = %v, want *ParseError", c.data, err)
		}
		if pe.Type != pgoutput.MessageType(c.data[0]) || pe.Offset != c.offset || pe.Field != c.field {
			t.Errorf("% x: %+v, want type %s, offset %d, field %q", c.data, pe, pgoutput.MessageType(c.data[0]), c.offset, c.field)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, m := range every {
		f.Add(m.data, m.inStream)
	}
	var p pgoutput.Parser
	f.Fuzz(func(t *testing.T, data []byte, inStream bool) {
		want, werr := pgoutput.Parse(data, inStream)
		got, err := p.Parse(data, inStream)
		if (err == nil) != (werr == nil) || err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("Parser: %+v (%v), Parse: %+v (%v)", got, err, want, werr)
		}
	})
}

// w1Insert is an Insert of the W1 benchmark row.
var w1Insert = pgoutputtest.Insert(false, 0, 1, "1", "c4ca4238a0b923820dcc509a6f75849b", "1.01", "2026-11-24 01:02:03.456789+00", `{"k": 1, "tag": "x"}`)

func BenchmarkParseInsert(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pgoutput.Parse(w1Insert, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParserInsert is the decoder's hot path: a Parser reuses the
// message and its columns.
func BenchmarkParserInsert(b *testing.B) {
	var p pgoutput.Parser
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(w1Insert, false); err != nil {
			b.Fatal(err)
		}
	}
}
