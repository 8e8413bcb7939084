package decoder

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// w1Stream is a transaction of n rows shaped like the W1 benchmark row:
// (id bigserial, t text, n numeric, ts timestamptz, j jsonb).
func w1Stream(n int) [][]byte {
	msgs := [][]byte{
		beginMsg(0x100, 7),
		relationMsg(false, 0, 1, "public", "w1", 'd',
			col{"id", 20, true}, col{"t", oidText, false}, col{"n", oidNum, false}, col{"ts", 1184, false}, col{"j", oidJSONB, false}),
	}
	for i := range n {
		msgs = append(msgs, insertMsg(false, 0, 1,
			fmt.Sprint(i+1), "c4ca4238a0b923820dcc509a6f75849b", fmt.Sprintf("%d.%02d", i%1000, i%100),
			"2026-11-24 01:02:03.456789+00", fmt.Sprintf(`{"k": %d, "tag": "x"}`, i)))
	}
	return append(msgs, commitMsg(0x100, 0x180))
}

// w1BinaryStream is w1Stream with the values in binary, as pgoutput sends
// them with its binary option.
func w1BinaryStream(n int) [][]byte {
	m := pgtype.NewMap()
	enc := func(oid uint32, v any) []byte {
		b, err := m.Encode(oid, pgtype.BinaryFormatCode, v, nil)
		if err != nil {
			panic(err)
		}
		return b
	}
	ts := enc(1184, time.Date(2026, 11, 24, 1, 2, 3, 456789000, time.UTC))
	text := enc(oidText, "c4ca4238a0b923820dcc509a6f75849b")
	msgs := [][]byte{
		beginMsg(0x100, 7),
		relationMsg(false, 0, 1, "public", "w1", 'd',
			col{"id", 20, true}, col{"t", oidText, false}, col{"n", oidNum, false}, col{"ts", 1184, false}, col{"j", oidJSONB, false}),
	}
	for i := range n {
		var n pgtype.Numeric
		if err := n.Scan(fmt.Sprintf("%d.%02d", i%1000, i%100)); err != nil {
			panic(err)
		}
		num := enc(oidNum, n)
		j := append([]byte{1}, fmt.Sprintf(`{"k": %d, "tag": "x"}`, i)...)
		msgs = append(msgs, insertMsg(false, 0, 1, enc(20, int64(i+1)), text, num, ts, j))
	}
	return append(msgs, commitMsg(0x100, 0x180))
}

// BenchmarkDecodeW1 measures decoding a W1 row (values in text) into typed
// values; ns/op and allocs/op are per event.
func BenchmarkDecodeW1(b *testing.B) { benchmarkDecode(b, w1Stream(1000)) }

// BenchmarkDecodeW1Binary is BenchmarkDecodeW1 with the values in binary.
func BenchmarkDecodeW1Binary(b *testing.B) { benchmarkDecode(b, w1BinaryStream(1000)) }

func benchmarkDecode(b *testing.B, msgs [][]byte) {
	d := New(Options{})
	emit := func(*Batch) error { return nil }
	b.ReportAllocs()
	b.ResetTimer()
	events := 0
	for events < b.N {
		for _, m := range msgs {
			if err := d.Decode(context.Background(), m, emit); err != nil {
				b.Fatal(err)
			}
		}
		events += len(msgs) - 3
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkParseInsert measures parsing alone (no values).

// TestDecodeAllocations guards the hot path: decoding an insert of the W1
// row (five columns: int8, text, numeric, timestamptz, jsonb) allocates the
// record map, the values that need the heap and nothing else.
func TestDecodeAllocations(t *testing.T) {
	msgs := w1Stream(3)
	d := New(Options{})
	emit := func(*Batch) error { return nil }
	ctx := context.Background()
	for _, m := range msgs[:2] {
		if err := d.Decode(ctx, m, emit); err != nil {
			t.Fatal(err)
		}
	}
	n := testing.AllocsPerRun(1000, func() {
		if err := d.Decode(ctx, msgs[2], emit); err != nil {
			t.Fatal(err)
		}
	})
	if n > 10 {
		t.Errorf("decoding a W1 insert allocates %v times, want at most 10", n)
	}
}
