package decoder

import (
	"context"
	"fmt"
	"testing"
)

// FuzzDecode feeds a sequence of messages (split on a length prefix) to a
// decoder: it must never panic, whatever the bytes.
func FuzzDecode(f *testing.F) {
	seed := [][]byte{
		beginMsg(0x100, 7),
		relationMsg(false, 0, 1, "public", "users", 'f', usersCols...),
		insertMsg(false, 0, 1, "1", "ann", `{"a":1}`),
		updateMsg(false, 0, 1, 'O', []any{"1", "ann", nil}, "1", "bob", unchangedCol{}),
		deleteMsg(false, 0, 1, 'K', "1", nil, nil),
		truncateMsg(false, 0, 3, 1),
		commitMsg(0x100, 0x180),
		streamStart(10, true),
		relationMsg(true, 10, 2, "s", "t", 'd', col{"a", oidNum, true}),
		insertMsg(true, 11, 2, "1.5"),
		streamStop(),
		streamAbort(10, 11),
		streamCommit(10, 0x500, 0x580),
	}
	f.Add(joinMessages(seed...))
	f.Add(joinMessages(seed[7:]...))
	f.Add(joinMessages(seed[:3]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs := splitMessages(data)
		// Once on one goroutine, once with a parallel replay of every
		// streamed transaction (jobs of 2 changes): the same batches, or an
		// error from both.
		run := func(workers int) ([]changeView, error) {
			d := New(Options{MemoryBudget: 64, MaxBatchEvents: 2, ReplayWorkers: workers}) // spill files are unlinked at once: nothing to clean up
			d.replayMin, d.replayJob = 1, 2
			defer d.Close()
			var bs []*Batch
			for _, m := range msgs {
				if err := d.Decode(context.Background(), m, func(b *Batch) error { bs = append(bs, b); return nil }); err != nil {
					return nil, err
				}
			}
			return views(bs), nil
		}
		serial, serr := run(1)
		parallel, perr := run(3)
		if (serr == nil) != (perr == nil) {
			t.Fatalf("serial replay error %v, parallel %v", serr, perr)
		}
		// Compared in print (maps print sorted): NaN values are not equal
		// to themselves for reflect.DeepEqual.
		if s, p := fmt.Sprintf("%+v", serial), fmt.Sprintf("%+v", parallel); serr == nil && s != p {
			t.Fatalf("serial and parallel replays differ:\n%s\n%s", s, p)
		}
	})
}

// FuzzParse parses one message, in and out of a stream block.

func joinMessages(msgs ...[]byte) []byte {
	var out []byte
	for _, m := range msgs {
		out = append(out, byte(len(m)>>8), byte(len(m)))
		out = append(out, m...)
	}
	return out
}

func splitMessages(data []byte) [][]byte {
	var out [][]byte
	for len(data) >= 2 {
		n := int(data[0])<<8 | int(data[1])
		data = data[2:]
		if n > len(data) {
			n = len(data)
		}
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}
