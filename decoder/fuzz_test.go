package decoder

import (
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
		d := New(Options{MemoryBudget: 64, MaxBatchEvents: 2}) // spill files are unlinked at once: nothing to clean up
		defer d.Close()
		for _, m := range splitMessages(data) {
			if err := d.Decode(m, func(*Batch) error { return nil }); err != nil {
				return
			}
		}
	})
}

// FuzzParse parses one message, in and out of a stream block.
func FuzzParse(f *testing.F) {
	f.Add(insertMsg(false, 0, 1, "1", nil, unchangedCol{}), false)
	f.Add(relationMsg(true, 9, 1, "public", "users", 'f', usersCols...), true)
	f.Add(streamAbort(1, 2), false)
	f.Fuzz(func(t *testing.T, data []byte, inStream bool) {
		_, _ = Parse(data, inStream)
	})
}

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
