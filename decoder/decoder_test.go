package decoder

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walex-go/walex/decoder/pgoutput"
	"github.com/walex-go/walex/decoder/pgvalue"
	"github.com/walex-go/walex/internal/pgoutputtest"
)

const (
	oidInt4  = 23
	oidText  = 25
	oidJSONB = 3802
	oidNum   = 1700
)

var usersCols = []col{{"id", oidInt4, true}, {"name", oidText, false}, {"data", oidJSONB, false}}

// feed decodes messages and returns the emitted batches.
func feed(t *testing.T, d *Decoder, msgs ...[]byte) []*Batch {
	t.Helper()
	var out []*Batch
	for i, m := range msgs {
		if err := d.Decode(context.Background(), m, func(b *Batch) error { out = append(out, b); return nil }); err != nil {
			t.Fatalf("Decode(message %d, %s) = %v", i, pgoutput.MessageType(m[0]), err)
		}
	}
	return out
}

func TestTransactionV1(t *testing.T) {
	d := New(Options{})
	bs := feed(t, d,
		beginMsg(0x100, 7),
		relationMsg(false, 0, 1, "public", "users", 'd', usersCols...),
		insertMsg(false, 0, 1, "1", "ann", `{"a":1}`),
		updateMsg(false, 0, 1, 0, nil, "1", "bob", unchangedCol{}),
		updateMsg(false, 0, 1, 'K', []any{"1", nil, nil}, "2", "bob", nil),
		deleteMsg(false, 0, 1, 'K', "2", nil, nil),
		truncateMsg(false, 0, pgoutput.TruncateCascade, 1),
		commitMsg(0x100, 0x180),
	)
	if len(bs) != 1 {
		t.Fatalf("got %d batches, want 1", len(bs))
	}
	b := bs[0]
	if !b.Final || b.XID != 7 || b.CommitLSN != 0x100 || b.EndLSN != 0x180 || !b.CommitTime.Equal(testTime) {
		t.Errorf("batch header = %+v", b)
	}
	if got, want := len(b.Changes), 5; got != want {
		t.Fatalf("len(Changes) = %d, want %d", got, want)
	}
	ins := b.Changes[0]
	if ins.Op != OpInsert || ins.Index != 0 || !reflect.DeepEqual(ins.New, map[string]any{"id": int32(1), "name": "ann", "data": map[string]any{"a": float64(1)}}) {
		t.Errorf("insert = %+v", ins)
	}
	up := b.Changes[1]
	if up.Op != OpUpdate || up.Old != nil || up.New["data"] != pgvalue.Unchanged {
		t.Errorf("update = %+v, want no old record and data pgvalue.Unchanged", up)
	}
	upk := b.Changes[2]
	if !reflect.DeepEqual(upk.Old, map[string]any{"id": int32(1)}) || upk.OldKind != 'K' {
		t.Errorf("key update old = %#v, want only the key column", upk.Old)
	}
	del := b.Changes[3]
	if del.Op != OpDelete || !reflect.DeepEqual(del.Old, map[string]any{"id": int32(2)}) {
		t.Errorf("delete = %+v", del)
	}
	tr := b.Changes[4]
	if tr.Op != OpTruncate || !tr.Cascade || tr.RestartIdentity || tr.Index != 4 || tr.Relation.Name != "users" {
		t.Errorf("truncate = %+v", tr)
	}
	if d.InTransaction() {
		t.Errorf("InTransaction() after commit = true")
	}
}

func TestRelationChangeMidStream(t *testing.T) {
	d := New(Options{})
	bs := feed(t, d,
		beginMsg(0x100, 7),
		relationMsg(false, 0, 1, "public", "t", 'd', col{"a", oidInt4, true}),
		insertMsg(false, 0, 1, "1"),
		commitMsg(0x100, 0x180),
		beginMsg(0x200, 8),
		relationMsg(false, 0, 1, "public", "t", 'd', col{"a", oidInt4, true}, col{"b", oidNum, false}),
		insertMsg(false, 0, 1, "2", "3.25"),
		commitMsg(0x200, 0x280),
	)
	if len(bs) != 2 {
		t.Fatalf("got %d batches", len(bs))
	}
	if got := bs[0].Changes[0].New; !reflect.DeepEqual(got, map[string]any{"a": int32(1)}) {
		t.Errorf("first insert = %#v", got)
	}
	got := bs[1].Changes[0].New
	if n, ok := got["b"].(pgtype.Numeric); !ok || n.Int.Int64() != 325 || n.Exp != -2 {
		t.Errorf("second insert = %#v", got)
	}
	if bs[0].Changes[0].Relation == bs[1].Changes[0].Relation {
		t.Errorf("relation not replaced")
	}
}

func TestUnknownRelationIsError(t *testing.T) {
	d := New(Options{})
	feed(t, d, beginMsg(0x100, 7))
	err := d.Decode(context.Background(), insertMsg(false, 0, 99, "1"), func(*Batch) error { return nil })
	if err == nil {
		t.Fatal("insert into unknown relation: no error")
	}
}

func TestChunking(t *testing.T) {
	d := New(Options{MaxBatchEvents: 3})
	msgs := [][]byte{beginMsg(0x100, 7), relationMsg(false, 0, 1, "public", "t", 'd', col{"a", oidInt4, true})}
	for i := range 7 {
		msgs = append(msgs, insertMsg(false, 0, 1, string(rune('0'+i))))
	}
	msgs = append(msgs, commitMsg(0x100, 0x180))
	bs := feed(t, d, msgs...)
	var sizes []int
	idx := 0
	for i, b := range bs {
		sizes = append(sizes, len(b.Changes))
		if b.Seq != i || b.Final != (i == len(bs)-1) || b.CommitLSN != 0x100 {
			t.Errorf("chunk %d: Seq %d Final %t CommitLSN %s", i, b.Seq, b.Final, b.CommitLSN)
		}
		for _, c := range b.Changes {
			if c.Index != idx {
				t.Errorf("chunk %d: Index %d, want %d", i, c.Index, idx)
			}
			idx++
		}
	}
	if !reflect.DeepEqual(sizes, []int{3, 3, 1}) {
		t.Errorf("chunk sizes = %v, want [3 3 1]", sizes)
	}
}

func TestStreamedTransactions(t *testing.T) {
	for _, budget := range []int64{1 << 20, 1} { // in memory, and spilled at once
		d := New(Options{MemoryBudget: budget, SpillDir: t.TempDir()})
		rel := func(xid uint32) []byte {
			return relationMsg(true, xid, 1, "public", "t", 'd', col{"a", oidInt4, true})
		}
		bs := feed(t, d,
			streamStart(10, true), rel(10), insertMsg(true, 10, 1, "1"), insertMsg(true, 11, 1, "2"), streamStop(),
			streamStart(20, true), rel(20), insertMsg(true, 20, 1, "100"), streamStop(),
			streamStart(10, false), insertMsg(true, 12, 1, "3"), insertMsg(true, 10, 1, "4"), streamStop(),
			streamAbort(10, 11), // subtransaction 11 rolled back
			streamAbort(20, 20), // whole transaction 20 aborted
			streamCommit(10, 0x500, 0x580),
		)
		if len(bs) != 1 {
			t.Fatalf("budget %d: got %d batches, want 1", budget, len(bs))
		}
		b := bs[0]
		var got []int32
		for _, c := range b.Changes {
			got = append(got, c.New["a"].(int32))
		}
		if !reflect.DeepEqual(got, []int32{1, 3, 4}) || b.XID != 10 || b.CommitLSN != 0x500 || b.EndLSN != 0x580 || !b.Final || !b.Streamed {
			t.Errorf("budget %d: values %v, batch %+v", budget, got, b)
		}
		if d.InTransaction() || d.memUsed != 0 {
			t.Errorf("budget %d: state left: InTransaction %t memUsed %d", budget, d.InTransaction(), d.memUsed)
		}
	}
}

func TestEmitErrorStops(t *testing.T) {
	d := New(Options{})
	feed(t, d, beginMsg(0x100, 7), relationMsg(false, 0, 1, "public", "t", 'd', col{"a", oidInt4, true}))
	want := errors.New("stop")
	if err := d.Decode(context.Background(), commitMsg(0x100, 0x180), func(*Batch) error { return want }); !errors.Is(err, want) {
		t.Fatalf("Decode = %v, want %v", err, want)
	}
}

// TestTruncatedMessages feeds every prefix of every message kind: each must
// give an error (or parse, for prefixes that are complete), never panic.

// TestStreamCommitKeepsRelations: after a Stream Commit the server counts
// the relations described inside the stream as known and does not send
// their Relation message again; the next (non-streamed) transaction must
// decode with them.
func TestStreamCommitKeepsRelations(t *testing.T) {
	for _, budget := range []int64{1 << 20, 1} {
		d := New(Options{MemoryBudget: budget, SpillDir: t.TempDir()})
		bs := feed(t, d,
			streamStart(10, true),
			relationMsg(true, 10, 1, "public", "t", 'd', col{"a", oidInt4, true}, col{"b", oidText, false}),
			insertMsg(true, 10, 1, "1", "x"),
			streamStop(),
			streamCommit(10, 0x500, 0x580),
			beginMsg(0x600, 11),
			insertMsg(false, 0, 1, "2", "y"), // no Relation message: the server sent it in the stream
			commitMsg(0x600, 0x680),
		)
		if len(bs) != 2 {
			t.Fatalf("budget %d: got %d batches, want 2", budget, len(bs))
		}
		want := map[string]any{"a": int32(2), "b": "y"}
		if got := bs[1].Changes[0].New; !reflect.DeepEqual(got, want) {
			t.Errorf("budget %d: insert after the streamed transaction = %#v, want %#v", budget, got, want)
		}
		if r, ok := d.Relation(1); !ok || r != bs[0].Changes[0].Relation {
			t.Errorf("budget %d: relation of the streamed transaction is not the current one", budget)
		}
	}
}

// TestStreamAbortDropsRelations: the relations of an aborted streamed
// transaction are not kept (the server describes them again).
func TestStreamAbortDropsRelations(t *testing.T) {
	d := New(Options{})
	feed(t, d,
		streamStart(10, true),
		relationMsg(true, 10, 1, "public", "t", 'd', col{"a", oidInt4, true}),
		insertMsg(true, 10, 1, "1"),
		streamStop(),
		streamAbort(10, 10),
	)
	if _, ok := d.Relation(1); ok {
		t.Errorf("relation of an aborted streamed transaction was kept")
	}
}

// TestRelationInAbortedSubtransaction: the server sends a relation's
// Relation message once per streamed top-level transaction, inside the
// subtransaction of the first change; when that subtransaction rolls back,
// later changes of the transaction (and later transactions) still refer to
// it.
func TestRelationInAbortedSubtransaction(t *testing.T) {
	for _, budget := range []int64{1 << 20, 1} {
		d := New(Options{MemoryBudget: budget, SpillDir: t.TempDir()})
		bs := feed(t, d,
			streamStart(10, true),
			relationMsg(true, 11, 1, "public", "t", 'd', col{"a", oidInt4, true}),
			insertMsg(true, 11, 1, "100"),
			insertMsg(true, 11, 1, "101"),
			streamStop(),
			streamAbort(10, 11), // ROLLBACK TO SAVEPOINT
			streamStart(10, false),
			insertMsg(true, 10, 1, "1"),
			insertMsg(true, 12, 1, "2"),
			streamStop(),
			streamCommit(10, 0x500, 0x580),
			beginMsg(0x600, 13),
			insertMsg(false, 0, 1, "3"),
			commitMsg(0x600, 0x680),
		)
		var got []any
		for _, b := range bs {
			for i, c := range b.Changes {
				if c.Index != i {
					t.Errorf("budget %d: Index %d, want %d", budget, c.Index, i)
				}
				got = append(got, c.New["a"])
			}
		}
		if want := []any{int32(1), int32(2), int32(3)}; !reflect.DeepEqual(got, want) || len(bs) != 2 {
			t.Errorf("budget %d: %d batches, values %v, want 2 batches with %v", budget, len(bs), got, want)
		}
	}
}

// TestNonTransactionalMessage: a non-transactional logical message is an
// empty final batch with its prefix and a copy of its content.
func TestNonTransactionalMessage(t *testing.T) {
	m := msg(pgoutput.MsgMessage).U8(0).U64(0x500).Str("walex_snapshot").U32(5).Raw([]byte("ab:12")).Bytes()
	bs := feed(t, New(Options{}), m)
	if len(bs) != 1 {
		t.Fatalf("%d batches, want 1", len(bs))
	}
	b := bs[0]
	if b.Message != "walex_snapshot" || string(b.Content) != "ab:12" || !b.Final || b.EndLSN != 0x500 || len(b.Changes) != 0 {
		t.Fatalf("batch = %+v", b)
	}
	copy(m[len(m)-5:], "xxxxx")
	if string(b.Content) != "ab:12" {
		t.Errorf("Content aliases the message buffer: %q", b.Content)
	}
}

// TestMarksOfSkippedOrigin: a transaction skipped for its origin drops its
// changes and messages but keeps its Relation marks: the server does not
// describe the table again for the next transaction.
func TestMarksOfSkippedOrigin(t *testing.T) {
	d := New(Options{SkipOrigins: true})
	origin := msg(pgoutput.MsgOrigin).U64(0x90).Str("other").Bytes()
	bs := feed(t, d,
		beginMsg(0x100, 7), origin,
		relationMsg(false, 0, 1, "public", "t", 'd', col{"a", oidInt4, true}),
		insertMsg(false, 0, 1, "1"),
		pgoutputtest.Message(false, 0, true, 0x98, "app", []byte("x")),
		commitMsg(0x100, 0x110),
		beginMsg(0x200, 8), insertMsg(false, 0, 1, "2"), commitMsg(0x200, 0x210))
	if len(bs) != 2 || len(bs[0].Changes) != 0 || len(bs[0].Marks) != 1 || bs[0].Marks[0].Op != OpRelation || bs[0].Origin != "other" {
		t.Fatalf("skipped transaction: %+v", bs[0])
	}
	if len(bs[1].Changes) != 1 || bs[1].Changes[0].Relation != bs[0].Marks[0].Relation {
		t.Fatalf("next transaction: %+v", bs[1])
	}
}
