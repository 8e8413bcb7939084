package decoder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/walex-go/walex/decoder/pgoutput"
)

// parallelStream is a streamed transaction (xid 50) large enough for a
// parallel replay, with everything that must stay in order: a relation
// redefined midway (a column added), truncates, updates and deletes with
// old tuples, a rolled-back subtransaction, a skipped table, binary values
// (one of a type only the server can print), and another streamed
// transaction interleaved with it.
func parallelStream(n int) [][]byte {
	const xid, other, sub = 50, 60, 51
	msgs := [][]byte{
		streamStart(xid, true),
		relationMsg(true, xid, 1, "public", "items", 'f', col{"id", oidInt4, true}, col{"name", oidText, false}, col{"doc", oidJSONB, false}),
		relationMsg(true, xid, 2, "public", "skipped", 'd', col{"id", oidInt4, true}),
		relationMsg(true, xid, 3, "public", "moods", 'd', col{"id", oidInt4, true}, col{"mood", 16500, false}),
	}
	for i := range n {
		id := fmt.Sprint(i)
		switch {
		case i == n/2:
			// The table gets a column; the rows after use it.
			msgs = append(msgs, relationMsg(true, xid, 1, "public", "items", 'f',
				col{"id", oidInt4, true}, col{"name", oidText, false}, col{"doc", oidJSONB, false}, col{"n", oidNum, false}))
		case i%1000 == 999:
			msgs = append(msgs, truncateMsg(true, xid, pgoutput.TruncateCascade, 1, 2))
		case i%997 == 0:
			msgs = append(msgs, streamStop(), streamStart(other, i == 0))
			if i == 0 {
				msgs = append(msgs, relationMsg(true, other, 2, "public", "skipped", 'd', col{"id", oidInt4, true}))
			}
			msgs = append(msgs, insertMsg(true, other, 2, id), streamStop(), streamStart(xid, false))
		case i%501 == 0:
			msgs = append(msgs, insertMsg(true, sub, 1, id, "rolled back", "{}"), // in the aborted subtransaction
				msg(pgoutput.MsgMessage).XID(true, sub).U8(1).U64(uint64(i)).Str("app").U32(2).Raw([]byte("rb")).Bytes())
		case i%301 == 0:
			// A transactional message, among the rows.
			msgs = append(msgs, msg(pgoutput.MsgMessage).XID(true, xid).U8(1).U64(uint64(i)).Str("app").U32(uint32(len(id))).Raw([]byte(id)).Bytes())
		case i%7 == 0:
			msgs = append(msgs, insertMsg(true, xid, 2, id))
		case i%11 == 0:
			msgs = append(msgs, insertMsg(true, xid, 3, []byte{0, 0, 0, byte(i)}, []byte("happy")))
		}
		var row []any
		if i > n/2 {
			row = []any{id, "name " + id, fmt.Sprintf(`{"i": %d, "tags": ["a", "b"]}`, i), fmt.Sprintf("%d.5", i)}
		} else {
			row = []any{id, "name " + id, fmt.Sprintf(`{"i": %d, "tags": ["a", "b"]}`, i)}
		}
		switch i % 3 {
		case 0:
			msgs = append(msgs, insertMsg(true, xid, 1, row...))
		case 1:
			msgs = append(msgs, updateMsg(true, xid, 1, 'O', row, row...))
		case 2:
			msgs = append(msgs, deleteMsg(true, xid, 1, 'O', row...))
		}
	}
	return append(msgs, streamStop(), streamAbort(xid, sub), streamCommit(other, 0x200, 0x280), streamCommit(xid, 0x300, 0x380))
}

// changeView is what a test compares of a Change (a Relation holds
// functions, which reflect.DeepEqual cannot compare).
type changeView struct {
	Op              Op
	Table           string
	Columns         int
	Index           int
	New, Old        map[string]any
	OldKind         byte
	Cascade         bool
	Seq             int
	Final, Streamed bool
	XID             uint32
}

func views(bs []*Batch) []changeView {
	var out []changeView
	for _, b := range bs {
		for _, c := range b.Changes {
			out = append(out, changeView{c.Op, c.Relation.Name, len(c.Relation.Columns), c.Index, c.New, c.Old, c.OldKind, c.Cascade, b.Seq, b.Final, b.Streamed, b.XID})
		}
		if len(b.Changes) == 0 {
			out = append(out, changeView{Seq: b.Seq, Final: b.Final, XID: b.XID})
		}
	}
	return out
}

// TestParallelReplay checks that a parallel replay emits exactly what a
// replay on one goroutine emits, in the same batches.
func TestParallelReplay(t *testing.T) {
	msgs := parallelStream(20000)
	textOf := func(_ context.Context, oid uint32, b []byte) ([]byte, error) { return bytes.ToUpper(b), nil }
	skip := func(r *Relation) bool { return r.Name == "skipped" }
	decode := func(workers int) ([]*Batch, int) {
		d := New(Options{ReplayWorkers: workers, MaxBatchEvents: 3000, MemoryBudget: 1 << 20, SpillDir: t.TempDir(), TextOf: textOf, Skip: skip})
		defer d.Close()
		return feed(t, d, msgs...), d.parallelReplays
	}
	serial, n := decode(1)
	if n != 0 {
		t.Fatal("ReplayWorkers 1 replayed in parallel")
	}
	parallel, n := decode(3)
	if n != 1 {
		t.Fatalf("ReplayWorkers 3 replayed %d times in parallel, want once", n)
	}
	if len(serial) < 5 {
		t.Fatalf("the serial replay emitted %d batches; the test needs several chunks", len(serial))
	}
	sv, pv := views(serial), views(parallel)
	if len(sv) != len(pv) {
		t.Fatalf("serial replay: %d changes, parallel: %d", len(sv), len(pv))
	}
	for i := range sv {
		if !reflect.DeepEqual(sv[i], pv[i]) {
			t.Fatalf("change %d:\nserial   %+v\nparallel %+v", i, sv[i], pv[i])
		}
	}
	marks := 0
	for i := range serial {
		if len(serial[i].Changes) != len(parallel[i].Changes) || serial[i].Final != parallel[i].Final || serial[i].EndLSN != parallel[i].EndLSN {
			t.Fatalf("batch %d differs: serial %d changes final %v, parallel %d changes final %v", i, len(serial[i].Changes), serial[i].Final, len(parallel[i].Changes), parallel[i].Final)
		}
		sm, pm := serial[i].Marks, parallel[i].Marks
		if len(sm) != len(pm) {
			t.Fatalf("batch %d: serial %d marks, parallel %d", i, len(sm), len(pm))
		}
		for k := range sm {
			if sm[k].At != pm[k].At || sm[k].Op != pm[k].Op || sm[k].Prefix != pm[k].Prefix || !bytes.Equal(sm[k].Content, pm[k].Content) {
				t.Fatalf("batch %d mark %d: serial %+v, parallel %+v", i, k, sm[k], pm[k])
			}
			if sm[k].Op == OpMessage {
				marks++
				if string(sm[k].Content) == "rb" {
					t.Fatalf("the message of a rolled-back subtransaction was emitted")
				}
				// A message's place: just before the row written after it.
				if at := sm[k].At; at < len(serial[i].Changes) {
					next := serial[i].Changes[at]
					row := next.New
					if row == nil {
						row = next.Old
					}
					if got := fmt.Sprint(row["id"]); got != string(sm[k].Content) {
						t.Fatalf("batch %d: message %q is followed by row %s", i, sm[k].Content, got)
					}
				}
			}
		}
	}
	if marks < 20 {
		t.Fatalf("%d transactional messages emitted, want at least 20", marks)
	}
	// The stream exercised what it means to: the new column, truncates,
	// converted values, skipped and rolled-back rows.
	var added, truncates, moods int
	for _, v := range sv {
		if v.Table == "items" && v.Columns == 4 {
			added++
		}
		if v.Op == OpTruncate {
			truncates++
		}
		if v.Table == "moods" && v.New["mood"] == "HAPPY" {
			moods++
		}
		if v.Table == "skipped" || (v.New != nil && v.New["name"] == "rolled back") {
			t.Fatalf("emitted %+v, which should have been left out", v)
		}
	}
	if added == 0 || truncates == 0 || moods == 0 {
		t.Errorf("the stream lacks cases: %d rows with the added column, %d truncates, %d converted values", added, truncates, moods)
	}
}

// TestParallelReplayError checks that an error in a worker stops the
// replay with that error, and that the decoder can be used again.
func TestParallelReplayError(t *testing.T) {
	msgs := parallelStream(20000)
	boom := errors.New("boom")
	d := New(Options{ReplayWorkers: 3, TextOf: func(context.Context, uint32, []byte) ([]byte, error) { return nil, boom }})
	defer d.Close()
	err := decodeAll(d, msgs)
	if !errors.Is(err, boom) {
		t.Fatalf("replay error = %v, want the worker's", err)
	}
	if d.InTransaction() {
		t.Error("the decoder still has a transaction open after the failed replay")
	}

	// An emit error (the consumer is gone) stops the replay too.
	stop := errors.New("consumer stopped")
	d = New(Options{ReplayWorkers: 3, MaxBatchEvents: 500, TextOf: func(_ context.Context, _ uint32, b []byte) ([]byte, error) { return b, nil }})
	defer d.Close()
	var emitted int
	for _, m := range msgs {
		err = d.Decode(context.Background(), m, func(*Batch) error {
			if emitted++; emitted == 3 {
				return stop
			}
			return nil
		})
		if err != nil {
			break
		}
	}
	if !errors.Is(err, stop) {
		t.Fatalf("replay with a failing emit = %v, want its error", err)
	}
}
