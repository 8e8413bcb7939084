package decoder

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
)

// TestBinaryValueOfUnknownType checks that a binary value of a type the
// decoder cannot read goes through Options.TextOf, and that without it the
// decoder fails with a clear error instead of guessing.
func TestBinaryValueOfUnknownType(t *testing.T) {
	const moodOID = 16500 // an enum: its binary form is its label
	msgs := [][]byte{
		beginMsg(0x100, 7),
		relationMsg(false, 0, 1, "public", "people", 'd', col{"id", oidInt4, true}, col{"mood", moodOID, false}),
		insertMsg(false, 0, 1, []byte{0, 0, 0, 1}, []byte("happy")),
		commitMsg(0x100, 0x180),
	}
	var asked []uint32
	d := New(Options{TextOf: func(_ context.Context, oid uint32, b []byte) ([]byte, error) {
		asked = append(asked, oid)
		return bytes.ToUpper(b), nil // stands for the server's output function
	}})
	bs := feed(t, d, msgs...)
	if got := bs[0].Changes[0].New; !reflect.DeepEqual(got, map[string]any{"id": int32(1), "mood": "HAPPY"}) {
		t.Errorf("record = %#v, want the converted text of mood", got)
	}
	if len(asked) != 1 || asked[0] != moodOID {
		t.Errorf("TextOf asked for %v, want once for type %d", asked, moodOID)
	}

	boom := errors.New("server gone")
	d = New(Options{TextOf: func(context.Context, uint32, []byte) ([]byte, error) { return nil, boom }})
	err := decodeAll(d, msgs)
	if !errors.Is(err, boom) {
		t.Errorf("a failing TextOf gave %v, want it wrapped", err)
	}
	if err := decodeAll(New(Options{}), msgs); err == nil {
		t.Error("a binary value of an unknown type without TextOf decoded without error")
	}
}

func decodeAll(d *Decoder, msgs [][]byte) error {
	for _, m := range msgs {
		if err := d.Decode(context.Background(), m, func(*Batch) error { return nil }); err != nil {
			return err
		}
	}
	return nil
}
