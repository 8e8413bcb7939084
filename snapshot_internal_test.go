package walex

import (
	"math/big"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestParseSnapshot(t *testing.T) {
	s, err := parseSnapshot("100:110:102,105")
	if err != nil {
		t.Fatal(err)
	}
	for xid, want := range map[uint32]bool{99: true, 100: true, 101: true, 102: false, 105: false, 109: true, 110: false, 200: false} {
		if got := s.sees(xid); got != want {
			t.Errorf("sees(%d) = %v, want %v", xid, got, want)
		}
	}
	// The stream's transaction IDs are 32-bit: around a wraparound, 64-bit
	// IDs of the snapshot compare by their low 32 bits.
	w, err := parseSnapshot("4294967290:4294967300:4294967298")
	if err != nil {
		t.Fatal(err)
	}
	for xid, want := range map[uint32]bool{4294967280: true, 4294967295: true, 2: false, 3: true, 4: false, 10: false} {
		if got := w.sees(xid); got != want {
			t.Errorf("after wraparound: sees(%d) = %v, want %v", xid, got, want)
		}
	}
	for _, bad := range []string{"", "1:2", "a:2:", "1:2:x"} {
		if _, err := parseSnapshot(bad); err == nil {
			t.Errorf("parseSnapshot(%q) = nil error", bad)
		}
	}
}

func TestCanonKey(t *testing.T) {
	num := func(i int64, exp int32) pgtype.Numeric {
		return pgtype.Numeric{Int: big.NewInt(i), Exp: exp, Valid: true}
	}
	same := [][2][]any{
		{{num(150, -2)}, {num(15, -1)}}, // 1.50 and 1.5
		{{time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))}, {time.Date(2026, 1, 2, 2, 4, 5, 0, time.UTC)}},
	}
	for _, p := range same {
		if canonKey(p[0]) != canonKey(p[1]) {
			t.Errorf("canonKey(%v) != canonKey(%v)", p[0], p[1])
		}
	}
	differ := [][2][]any{
		{{"a:b", "c"}, {"a", "b:c"}}, // no ambiguity at the separators
		{{int64(1), int64(23)}, {int64(12), int64(3)}},
		{{[]byte{1}}, {[]byte{1, 0}}},
	}
	for _, p := range differ {
		if canonKey(p[0]) == canonKey(p[1]) {
			t.Errorf("canonKey(%v) == canonKey(%v)", p[0], p[1])
		}
	}
}

// TestRewind: a new connection that starts before delivered chunks (the
// server did not keep their acknowledgement, as after a crash of the
// server) forgets them, and the snapshot resumes from the chunk before.
func TestRewind(t *testing.T) {
	ts := &tableSnap{marks: []chunkMark{{LSN: 10, Key: []string{"1"}, Rows: 5}, {LSN: 20, Key: []string{"2"}, Rows: 9}}, rows: 9, done: time.Now()}
	if ts.rewind(25) || len(ts.marks) != 2 || ts.done.IsZero() {
		t.Fatalf("rewind past every chunk changed %+v", ts)
	}
	if !ts.rewind(15) || len(ts.marks) != 1 || ts.rows != 5 || !ts.done.IsZero() || ts.position()[0] != "1" {
		t.Fatalf("rewind(15) = %+v", ts)
	}
	if !ts.rewind(5) || ts.marks != nil || ts.rows != 0 || ts.position() != nil {
		t.Fatalf("rewind(5) = %+v", ts)
	}
}
