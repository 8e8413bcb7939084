package decoder

import (
	"fmt"
	"testing"
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

// BenchmarkDecodeW1 measures decoding a W1 row into typed values; ns/op and
// allocs/op are per event.
func BenchmarkDecodeW1(b *testing.B) {
	msgs := w1Stream(1000)
	d := New(Options{})
	emit := func(*Batch) error { return nil }
	b.ReportAllocs()
	b.ResetTimer()
	events := 0
	for events < b.N {
		for _, m := range msgs {
			if err := d.Decode(m, emit); err != nil {
				b.Fatal(err)
			}
		}
		events += 1000
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkParseInsert measures parsing alone (no values).
func BenchmarkParseInsert(b *testing.B) {
	m := w1Stream(1)[2]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(m, false); err != nil {
			b.Fatal(err)
		}
	}
}
