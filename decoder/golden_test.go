package decoder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql/driver"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walex-go/walex/decoder/pgoutput"
	"github.com/walex-go/walex/decoder/pgvalue"
)

// The recorded streams in testdata/<scenario>/stream.bin come from a real
// PostgreSQL server (see testdata/README.md and internal/cmd/recordstream).
// The golden tests replay them through a Decoder, without a server.

var updateGolden = flag.Bool("update", false, "rewrite testdata/*/golden.txt and the recorded fuzz seeds in testdata/fuzz/FuzzDecode")

// fuzzSeedScenarios are the recorded streams copied, in FuzzDecode's
// joined format, to testdata/fuzz/FuzzDecode/recorded-<scenario>. The
// streams with streamed data are left out: at 30 to 100 KB they make the
// fuzzer spend its time minimizing (FuzzDecode's own seeds have streamed
// transactions).
var fuzzSeedScenarios = []string{
	"identity_default", "identity_full", "identity_index", "identity_nothing", "truncate", "alter_table",
	"toast_unchanged", "v1_savepoints", "logical_messages", "many_small", "stream_abort_lagging",
	"pg17/stream_abort_lagging", // a protocol 4 Stream Abort with the abort LSN and time
}

// fuzzSeedPath is where the fuzz seed of a recorded stream goes.
func fuzzSeedPath(name string) string {
	return filepath.Join("testdata", "fuzz", "FuzzDecode", "recorded-"+strings.ReplaceAll(name, "/", "-"))
}

// recorded is one recorded stream: testdata/<scenario> (PostgreSQL 15) or
// testdata/pg<major>/<scenario> (other versions, e.g. pg17).
type recorded struct {
	name string // the directory under testdata: "stream_abort", "pg17/stream_abort"
	dir  string
	msgs [][]byte
	meta struct {
		Description      string   `json:"description"`
		ServerVersionNum int      `json:"server_version_num"`
		Proto            int      `json:"proto_version"`
		Options          []string `json:"plugin_options"`
	}
}

// readStreamFile splits a stream.bin: per message a uint32 big-endian
// length, then the message.
func readStreamFile(data []byte) ([][]byte, error) {
	var msgs [][]byte
	for len(data) > 0 {
		if len(data) < 4 {
			return nil, fmt.Errorf("%d trailing bytes after message %d", len(data), len(msgs))
		}
		n := binary.BigEndian.Uint32(data)
		data = data[4:]
		if uint64(n) > uint64(len(data)) {
			return nil, fmt.Errorf("message %d: length %d, %d bytes left", len(msgs), n, len(data))
		}
		msgs = append(msgs, data[:n:n])
		data = data[n:]
	}
	return msgs, nil
}

func loadRecorded(t *testing.T) []*recorded {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*", "stream.bin"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := filepath.Glob(filepath.Join("testdata", "pg[0-9]*", "*", "stream.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 || len(other) == 0 {
		t.Fatalf("%d recorded streams in testdata/*/stream.bin, %d in testdata/pg*/*/stream.bin: want both", len(files), len(other))
	}
	var out []*recorded
	for _, f := range append(files, other...) {
		dir := filepath.Dir(f)
		name, err := filepath.Rel("testdata", dir)
		if err != nil {
			t.Fatal(err)
		}
		r := &recorded{dir: dir, name: filepath.ToSlash(name)}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if r.msgs, err = readStreamFile(data); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		mj, err := os.ReadFile(filepath.Join(r.dir, "meta.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(mj, &r.meta); err != nil {
			t.Fatalf("%s/meta.json: %v", r.dir, err)
		}
		want := 15
		if set, _, ok := strings.Cut(r.name, "/"); ok {
			if want, err = strconv.Atoi(strings.TrimPrefix(set, "pg")); err != nil {
				t.Fatalf("%s: not a testdata/pg<major> directory", r.dir)
			}
		}
		if got := r.meta.ServerVersionNum / 10000; got != want {
			t.Fatalf("%s was recorded from PostgreSQL %d, want %d (server_version_num %d in meta.json)", r.dir, got, want, r.meta.ServerVersionNum)
		}
		out = append(out, r)
	}
	return out
}

// replay decodes msgs with a fresh decoder and returns the emitted batches
// and, per failed message, its error. It keeps going after an error.
func replay(t *testing.T, msgs [][]byte, opts Options) ([]*Batch, map[int]error) {
	t.Helper()
	if opts.SpillDir == "" {
		opts.SpillDir = t.TempDir()
	}
	d := New(opts)
	defer d.Close()
	var bs []*Batch
	errs := map[int]error{}
	for i, m := range msgs {
		if err := d.Decode(context.Background(), m, func(b *Batch) error { bs = append(bs, b); return nil }); err != nil {
			errs[i] = err
		}
	}
	if d.InTransaction() {
		errs[len(msgs)] = errors.New("decoder still in a transaction at the end of the stream")
	}
	return bs, errs
}

func TestGoldenRecordedStreams(t *testing.T) {
	for _, r := range loadRecorded(t) {
		t.Run(r.name, func(t *testing.T) {
			bs, errs := replay(t, r.msgs, Options{})
			checkBatchInvariants(t, bs)
			got := renderGolden(r, bs, errs)
			path := filepath.Join(r.dir, "golden.txt")
			if *updateGolden {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./decoder -run Golden -update)", err)
			}
			if got != string(want) {
				t.Errorf("decoded output differs from %s (go test ./decoder -run Golden -update rewrites it):\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

// TestGoldenChunkedAndSpilled replays every stream with tiny batches and a
// memory budget that spills every streamed transaction to disk: once the
// chunks are joined, the result must be what the default options give.
func TestGoldenChunkedAndSpilled(t *testing.T) {
	for _, r := range loadRecorded(t) {
		t.Run(r.name, func(t *testing.T) {
			bs, errs := replay(t, r.msgs, Options{})
			want := renderGolden(r, joinChunks(t, bs), errs)
			cbs, cerrs := replay(t, r.msgs, Options{MaxBatchEvents: 7, MemoryBudget: 1})
			checkBatchInvariants(t, cbs)
			if got := renderGolden(r, joinChunks(t, cbs), cerrs); got != want {
				t.Errorf("chunked and spilled replay differs:\n%s", lineDiff(want, got))
			}
		})
	}
}

// TestRecordedStreamsResetReplay cuts every stream at message boundaries
// (all boundaries next to a message that is not a row change and, in
// streams of up to 500 messages, the first and last ones and a sample of
// the others), feeds the part before the cut and half of the
// next message, then resets the decoder, as after a reconnect, and replays
// the whole stream: the result must be the clean one.
func TestRecordedStreamsResetReplay(t *testing.T) {
	for _, r := range loadRecorded(t) {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			bs, errs := replay(t, r.msgs, Options{})
			want := renderGolden(r, joinChunks(t, bs), errs)
			n := len(r.msgs)
			for k := 0; k <= n; k++ {
				control := (k > 0 && !isRowMessage(r.msgs[k-1])) || (k < n && !isRowMessage(r.msgs[k]))
				if !control && (n > 500 || (k > 8 && k < n-8 && k%61 != 0)) {
					continue
				}
				d := New(Options{MaxBatchEvents: 5, MemoryBudget: 512, SpillDir: t.TempDir()})
				noPanic(t, fmt.Sprintf("cut at message %d", k), func() {
					for _, m := range r.msgs[:k] {
						_ = d.Decode(context.Background(), m, func(*Batch) error { return nil })
					}
					if k < n {
						_ = d.Decode(context.Background(), r.msgs[k][:len(r.msgs[k])/2], func(*Batch) error { return nil })
					}
				})
				d.Reset()
				var got []*Batch
				gerrs := map[int]error{}
				noPanic(t, fmt.Sprintf("replay after a cut at message %d", k), func() {
					for i, m := range r.msgs {
						if err := d.Decode(context.Background(), m, func(b *Batch) error { got = append(got, b); return nil }); err != nil {
							gerrs[i] = err
						}
					}
				})
				if d.InTransaction() {
					gerrs[n] = errors.New("decoder still in a transaction at the end of the stream")
				}
				d.Close()
				if s := renderGolden(r, joinChunks(t, got), gerrs); s != want {
					t.Fatalf("replay after Reset (cut at message %d of %d) differs:\n%s", k, n, lineDiff(want, s))
				}
			}
		})
	}
}

// TestRecordedStreamsCorrupted feeds every stream with random damage in a
// few messages (flipped bytes, cut or extended messages): errors are fine,
// panics are not.
func TestRecordedStreamsCorrupted(t *testing.T) {
	for si, r := range loadRecorded(t) {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(si), 0x5eed))
			trials := 30
			if len(r.msgs) > 500 {
				trials = 8 // long streams: fewer trials of more messages
			}
			if testing.Short() {
				trials = 3
			}
			for trial := range trials {
				msgs := slices.Clone(r.msgs)
				var what []string
				for range 1 + rng.IntN(3) {
					i := rng.IntN(len(msgs))
					m := slices.Clone(msgs[i])
					switch op := rng.IntN(4); {
					case op == 0 && len(m) > 1:
						m = m[:rng.IntN(len(m))]
						what = append(what, fmt.Sprintf("message %d cut to %d bytes", i, len(m)))
					case op == 1:
						m = append(m, byte(rng.IntN(256)), byte(rng.IntN(256)))
						what = append(what, fmt.Sprintf("message %d extended", i))
					case len(m) == 0:
						m = append(m, byte(rng.IntN(256)))
						what = append(what, fmt.Sprintf("message %d replaced by one byte", i))
					default:
						for range 1 + rng.IntN(3) {
							j := rng.IntN(len(m))
							m[j] ^= byte(1 + rng.IntN(255))
							what = append(what, fmt.Sprintf("message %d byte %d flipped", i, j))
						}
					}
					msgs[i] = m
				}
				opts := Options{SpillDir: t.TempDir()}
				if trial%2 == 1 {
					opts.MaxBatchEvents, opts.MemoryBudget = 3, 128
				}
				d := New(opts)
				noPanic(t, fmt.Sprintf("trial %d: %s", trial, strings.Join(what, ", ")), func() {
					var bs []*Batch
					errs := map[int]error{}
					for i, m := range msgs {
						if err := d.Decode(context.Background(), m, func(b *Batch) error { bs = append(bs, b); return nil }); err != nil {
							errs[i] = err
						}
					}
					_ = renderGolden(r, bs, errs)
				})
				d.Close()
			}
		})
	}
}

// TestGoldenFuzzSeeds keeps testdata/fuzz/FuzzDecode/recorded-* in step
// with the recorded streams (-update rewrites them).
func TestGoldenFuzzSeeds(t *testing.T) {
	for _, name := range fuzzSeedScenarios {
		data, err := os.ReadFile(filepath.Join("testdata", name, "stream.bin"))
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := readStreamFile(data)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			if len(m) > 0xffff {
				t.Fatalf("%s: message %d is %d bytes, too long for joinMessages", name, i, len(m))
			}
		}
		want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(joinMessages(msgs...))) + ")\n"
		path := fuzzSeedPath(name)
		if *updateGolden {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./decoder -run Golden -update writes it)", err)
		}
		if string(got) != want {
			t.Errorf("%s is not %s's stream.bin in FuzzDecode's format (go test ./decoder -run Golden -update rewrites it)", path, name)
		}
	}
}

func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("panic (%s): %v\n%s", what, p, debug.Stack())
		}
	}()
	f()
}

func isRowMessage(m []byte) bool {
	return len(m) > 0 && (m[0] == byte(pgoutput.MsgInsert) || m[0] == byte(pgoutput.MsgUpdate) || m[0] == byte(pgoutput.MsgDelete))
}

// checkBatchInvariants checks what the golden output leaves out: chunks of
// a transaction in order with one Final last, commit LSNs increasing,
// change indexes increasing, LSNs and times set.
func checkBatchInvariants(t *testing.T, bs []*Batch) {
	t.Helper()
	var lastCommit LSN
	var open *Batch
	lastIndex := -1
	for i, b := range bs {
		if open != nil {
			if b.XID != open.XID || b.Seq != open.Seq+1 || b.CommitLSN != open.CommitLSN || b.Streamed != open.Streamed {
				t.Errorf("batch %d (xid %d seq %d) does not continue the open transaction %d seq %d", i, b.XID, b.Seq, open.XID, open.Seq)
			}
		} else {
			if b.Seq != 0 {
				t.Errorf("batch %d starts a transaction with Seq %d", i, b.Seq)
			}
			lastIndex = -1
		}
		for _, c := range b.Changes {
			if c.Index <= lastIndex {
				t.Errorf("batch %d: change index %d after %d", i, c.Index, lastIndex)
			}
			lastIndex = c.Index
			if c.Relation == nil {
				t.Errorf("batch %d: change %d without relation", i, c.Index)
			}
		}
		if b.Message != "" {
			// A non-transactional logical message: no transaction.
			if b.XID != 0 || !b.Final || len(b.Changes) != 0 || b.Seq != 0 || b.EndLSN != b.CommitLSN || b.CommitLSN == 0 || open != nil {
				t.Errorf("batch %d: message batch %+v", i, b)
			}
		} else if b.CommitTime.IsZero() || b.CommitLSN == 0 {
			t.Errorf("batch %d: commit time %v, commit LSN %s", i, b.CommitTime, b.CommitLSN)
		}
		if !b.Final {
			open = b
			if len(b.Changes) == 0 {
				t.Errorf("batch %d: empty non-final chunk", i)
			}
			continue
		}
		open = nil
		if b.EndLSN < b.CommitLSN {
			t.Errorf("batch %d: end LSN %s before commit LSN %s", i, b.EndLSN, b.CommitLSN)
		}
		if b.CommitLSN <= lastCommit {
			t.Errorf("batch %d: commit LSN %s not after the previous %s", i, b.CommitLSN, lastCommit)
		}
		lastCommit = b.CommitLSN
	}
	if open != nil {
		t.Errorf("the last transaction (xid %d) has no Final chunk", open.XID)
	}
}

// joinChunks merges the chunks of each transaction into one Final batch.
func joinChunks(t *testing.T, bs []*Batch) []*Batch {
	t.Helper()
	var out []*Batch
	var cur *Batch
	for _, b := range bs {
		if cur == nil {
			c := *b
			c.Changes = slices.Clone(b.Changes)
			c.Marks = slices.Clone(b.Marks)
			c.Seq = 0
			cur = &c
		} else {
			for _, m := range b.Marks {
				m.At += len(cur.Changes)
				cur.Marks = append(cur.Marks, m)
			}
			cur.Changes = append(cur.Changes, b.Changes...)
			cur.EndLSN, cur.Final = b.EndLSN, b.Final
		}
		if b.Final {
			out = append(out, cur)
			cur = nil
		}
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out
}

// renderGolden renders a replay in a stable text form: no LSNs, times or
// real XIDs and relation IDs (they change with every recording), but
// everything else the decoder emits.
func renderGolden(r *recorded, bs []*Batch, errs map[int]error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: %s\n", r.name, r.meta.Description)
	fmt.Fprintf(&b, "# options: %s\n", strings.Join(r.meta.Options, ", "))
	fmt.Fprintf(&b, "# %d messages:\n", len(r.msgs))
	writeWrapped(&b, "#   ", messageRuns(r.msgs), 96)
	if len(errs) > 0 {
		b.WriteString("\n")
		for _, i := range slices.Sorted(maps.Keys(errs)) {
			kind := "end"
			if i < len(r.msgs) && len(r.msgs[i]) > 0 {
				kind = pgoutput.MessageType(r.msgs[i][0]).String()
			}
			fmt.Fprintf(&b, "DECODE ERROR at message %d (%s): %v\n", i, kind, errs[i])
		}
	}
	xids := map[uint32]int{}
	rels := map[uint32]int{}
	shown := map[*Relation]bool{}
	for i, bt := range bs {
		if bt.Message != "" && bt.XID == 0 {
			fmt.Fprintf(&b, "\nbatch %d: non-transactional message prefix=%q seq=%d final=%t changes=%d\n", i+1, bt.Message, bt.Seq, bt.Final, len(bt.Changes))
			continue
		}
		x, ok := xids[bt.XID]
		if !ok {
			x = len(xids) + 1
			xids[bt.XID] = x
		}
		fmt.Fprintf(&b, "\nbatch %d: tx#%d seq=%d final=%t streamed=%t", i+1, x, bt.Seq, bt.Final, bt.Streamed)
		if bt.Origin != "" {
			fmt.Fprintf(&b, " origin=%q", bt.Origin)
		}
		fmt.Fprintf(&b, " changes=%d", len(bt.Changes))
		if len(bt.Marks) > 0 {
			fmt.Fprintf(&b, " marks=%d", len(bt.Marks))
		}
		b.WriteString("\n")
		marks := bt.Marks
		renderMarks := func(cb *strings.Builder, upTo int) {
			for len(marks) > 0 && marks[0].At <= upTo {
				m := &marks[0]
				marks = marks[1:]
				if m.Op == OpMessage {
					fmt.Fprintf(cb, "  [@%d] message prefix=%q transactional=%t content=%q\n", m.At, m.Prefix, m.Transactional, m.Content)
					continue
				}
				if !shown[m.Relation] {
					shown[m.Relation] = true
					id, ok := rels[m.Relation.ID]
					if !ok {
						id = len(rels) + 1
						rels[m.Relation.ID] = id
					}
					renderRelation(cb, m.Relation, id)
				}
			}
		}
		changes := bt.Changes
		const head, tail = 10, 10
		elide := len(changes) > 3*(head+tail)/2
		if elide {
			for _, line := range changeSummary(changes) {
				fmt.Fprintf(&b, "  summary: %s\n", line)
			}
		}
		var hidden strings.Builder
		hiddenN := 0
		for ci := range changes {
			c := &changes[ci]
			var cb strings.Builder
			renderMarks(&cb, ci)
			if c.Relation != nil && !shown[c.Relation] {
				shown[c.Relation] = true
				id, ok := rels[c.Relation.ID]
				if !ok {
					id = len(rels) + 1
					rels[c.Relation.ID] = id
				}
				renderRelation(&cb, c.Relation, id)
			}
			renderChange(&cb, c)
			switch {
			case !elide || ci < head || ci >= len(changes)-tail:
				if hiddenN > 0 {
					sum := sha256.Sum256([]byte(hidden.String()))
					fmt.Fprintf(&b, "  ... %d changes not shown (sha256 of their rendering %x)\n", hiddenN, sum[:8])
					hidden.Reset()
					hiddenN = 0
				}
				b.WriteString(cb.String())
			default:
				hidden.WriteString(cb.String())
				hiddenN++
			}
		}
		renderMarks(&b, len(changes))
	}
	return b.String()
}

// messageRuns lists the message types of a stream in order, runs of the
// same type as "Insert×456".
func messageRuns(msgs [][]byte) []string {
	var out []string
	var prev string
	n := 0
	flush := func() {
		if n == 1 {
			out = append(out, prev)
		} else if n > 1 {
			out = append(out, fmt.Sprintf("%s×%d", prev, n))
		}
	}
	for _, m := range msgs {
		name := "(empty)"
		if len(m) > 0 {
			name = strings.ReplaceAll(pgoutput.MessageType(m[0]).String(), " ", "")
		}
		if name != prev {
			flush()
			prev, n = name, 0
		}
		n++
	}
	flush()
	return out
}

func writeWrapped(b *strings.Builder, prefix string, words []string, width int) {
	line := prefix
	for _, w := range words {
		if len(line) > len(prefix) && len(line)+1+len(w) > width {
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			line = prefix
		}
		line += w + " "
	}
	if len(line) > len(prefix) {
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
}

func renderRelation(b *strings.Builder, r *Relation, id int) {
	cols := make([]string, len(r.Columns))
	for i, c := range r.Columns {
		cols[i] = c.Name + " " + r.ColumnTypes[c.Name]
		if c.TypeMod != -1 {
			cols[i] += fmt.Sprintf("(typmod %d)", c.TypeMod)
		}
		if c.Flags&1 != 0 {
			cols[i] += " [key]"
		}
	}
	fmt.Fprintf(b, "  relation rel#%d %s.%s identity=%c columns: %s\n", id, r.Schema, r.Name, r.ReplicaIdentity, strings.Join(cols, ", "))
}

func renderChange(b *strings.Builder, c *Change) {
	name := "?"
	if c.Relation != nil {
		name = c.Relation.Schema + "." + c.Relation.Name
	}
	fmt.Fprintf(b, "  [%d] %s %s", c.Index, c.Op, name)
	if c.Op == OpTruncate {
		fmt.Fprintf(b, " cascade=%t restart_identity=%t", c.Cascade, c.RestartIdentity)
	}
	b.WriteString("\n")
	if c.Old != nil || c.OldKind != 0 {
		kind := "-"
		if c.OldKind != 0 {
			kind = string(rune(c.OldKind))
		}
		fmt.Fprintf(b, "      old(%s): %s\n", kind, renderRecord(c.Relation, c.Old))
	}
	if c.New != nil {
		fmt.Fprintf(b, "      new: %s\n", renderRecord(c.Relation, c.New))
	}
}

// renderRecord renders a record in the relation's column order, then any
// key the relation does not name.
func renderRecord(r *Relation, rec map[string]any) string {
	var parts []string
	done := map[string]bool{}
	if r != nil {
		for _, c := range r.Columns {
			if v, ok := rec[c.Name]; ok && !done[c.Name] {
				done[c.Name] = true
				parts = append(parts, c.Name+" "+renderValue(v))
			}
		}
	}
	var extra []string
	for k := range rec {
		if !done[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		parts = append(parts, k+"(not a column) "+renderValue(rec[k]))
	}
	if len(parts) == 0 {
		return "{}"
	}
	return strings.Join(parts, ", ")
}

// renderValue shows a value as %T=%v, with strings quoted, times in UTC,
// JSON values as JSON and long strings shortened with their length and
// hash.
func renderValue(v any) string {
	long := func(s string, quote bool) string {
		if len(s) <= 80 {
			if quote {
				return strconv.Quote(s)
			}
			return s
		}
		sum := sha256.Sum256([]byte(s))
		head := s[:40]
		if quote {
			head = strconv.Quote(head)
		}
		return fmt.Sprintf("%s… (len %d, sha256 %x)", head, len(s), sum[:6])
	}
	switch x := v.(type) {
	case nil:
		return "nil"
	case pgvalue.UnchangedValue:
		// The golden files were recorded when the marker's type was
		// exported by this package; its name there is part of the format.
		return "decoder.UnchangedValue=" + x.String()
	case string:
		return "string=" + long(x, true)
	case []byte:
		return fmt.Sprintf("%T=", x) + long(fmt.Sprintf("%x", x), false)
	case time.Time:
		return "time.Time=" + x.UTC().Format(time.RFC3339Nano)
	case map[string]any, []any:
		j, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprintf("%T=%v", x, x)
		}
		return fmt.Sprintf("%T=", x) + long(string(j), false)
	case [16]byte:
		return fmt.Sprintf("%T=%x", x, x)
	case driver.Valuer:
		dv, err := x.Value()
		if err != nil {
			return fmt.Sprintf("%T=<%v>", x, err)
		}
		return fmt.Sprintf("%T=%v", x, dv)
	}
	return fmt.Sprintf("%T=", v) + long(fmt.Sprintf("%v", v), false)
}

// changeSummary counts the changes of a batch per operation and table,
// with the ranges of an integer id column.
func changeSummary(cs []Change) []string {
	type key struct{ op, table string }
	var order []key
	count := map[key]int{}
	ids := map[key][]int64{}
	for i := range cs {
		c := &cs[i]
		k := key{c.Op.String(), "?"}
		if c.Relation != nil {
			k.table = c.Relation.Schema + "." + c.Relation.Name
		}
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
		rec := c.New
		if c.Op == OpDelete {
			rec = c.Old
		}
		switch id := rec["id"].(type) {
		case int16:
			ids[k] = append(ids[k], int64(id))
		case int32:
			ids[k] = append(ids[k], int64(id))
		case int64:
			ids[k] = append(ids[k], id)
		}
	}
	var out []string
	for _, k := range order {
		s := fmt.Sprintf("%s %s ×%d", k.op, k.table, count[k])
		if v := ids[k]; len(v) > 0 {
			s += " id " + ranges(v)
		}
		out = append(out, s)
	}
	return out
}

// ranges renders integers in their order as runs: "1-3, 7, 9-10".
func ranges(v []int64) string {
	var parts []string
	for i := 0; i < len(v); {
		j := i
		for j+1 < len(v) && v[j+1] == v[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", v[i], v[j]))
		} else {
			parts = append(parts, strconv.FormatInt(v[i], 10))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

// lineDiff shows the first differing lines of two renderings.
func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b bytes.Buffer
	shown := 0
	for i := 0; i < max(len(wl), len(gl)) && shown < 20; i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			fmt.Fprintf(&b, "line %d:\n  want: %s\n  got:  %s\n", i+1, w, g)
			shown++
		}
	}
	return b.String()
}

// TestRecordedStreamAbortFields checks the Stream Abort messages of the
// recorded streams, real bytes from the server: with streaming 'parallel'
// (protocol 4, testdata/pg17) each carries the abort LSN and time, which
// must fall between the LSNs and times of the commits sent around it (the
// recorder runs the steps one after the other); with streaming 'on' they
// have neither. A parser that ignored or misread the fields fails here.
func TestRecordedStreamAbortFields(t *testing.T) {
	type event struct {
		what string
		lsn  LSN
		at   time.Time // zero for non-transactional messages
	}
	var topAborts, subAborts, plainAborts int
	for _, r := range loadRecorded(t) {
		parallel := slices.Contains(r.meta.Options, "streaming 'parallel'")
		var events []event
		var aborts []int // indexes in events
		streamed := map[uint32]bool{}
		inStream := false
		for i, raw := range r.msgs {
			m, err := pgoutput.Parse(raw, inStream)
			if err != nil {
				t.Fatalf("%s: message %d: %v", r.name, i, err)
			}
			switch m := m.(type) {
			case *pgoutput.StreamStartMessage:
				inStream, streamed[m.XID] = true, true
			case *pgoutput.StreamStopMessage:
				inStream = false
			case *pgoutput.CommitMessage:
				events = append(events, event{fmt.Sprintf("Commit (message %d)", i), m.CommitLSN, m.CommitTime})
			case *pgoutput.StreamCommitMessage:
				events = append(events, event{fmt.Sprintf("Stream Commit (message %d)", i), m.CommitLSN, m.CommitTime})
			case *pgoutput.LogicalMessage:
				if !m.Transactional {
					events = append(events, event{fmt.Sprintf("non-transactional message (message %d)", i), m.LSN, time.Time{}})
				}
			case *pgoutput.StreamAbortMessage:
				if !streamed[m.XID] {
					t.Errorf("%s: message %d: Stream Abort of transaction %d, never streamed before", r.name, i, m.XID)
				}
				if m.SubXID == m.XID {
					topAborts += b2i(parallel)
				} else {
					subAborts += b2i(parallel)
				}
				if !parallel {
					plainAborts++
					if len(raw) != 9 || m.AbortLSN != 0 || !m.AbortTime.IsZero() {
						t.Errorf("%s: message %d: Stream Abort of %d bytes, abort LSN %s, time %v; want 9 bytes and neither without streaming 'parallel'", r.name, i, len(raw), m.AbortLSN, m.AbortTime)
					}
					continue
				}
				if len(raw) != 25 {
					t.Errorf("%s: message %d: Stream Abort of %d bytes, want 25 (xid, subxid, abort LSN, abort time)", r.name, i, len(raw))
				}
				if m.AbortLSN == 0 || m.AbortTime.Year() < 2020 || m.AbortTime.After(time.Now().Add(time.Hour)) {
					t.Errorf("%s: message %d: abort LSN %s, abort time %v: want an LSN and a time when the stream was recorded", r.name, i, m.AbortLSN, m.AbortTime)
				}
				aborts = append(aborts, len(events))
				events = append(events, event{fmt.Sprintf("Stream Abort (message %d)", i), m.AbortLSN, m.AbortTime})
			}
		}
		// Commits, aborts and non-transactional messages are sent in the
		// order of their WAL records; each abort must fit in that order.
		for _, k := range aborts {
			a := events[k]
			if k > 0 {
				if p := events[k-1]; p.lsn >= a.lsn || (!p.at.IsZero() && p.at.After(a.at)) {
					t.Errorf("%s: %s at %s, %v is not after the preceding %s at %s, %v", r.name, a.what, a.lsn, a.at.UTC(), p.what, p.lsn, p.at.UTC())
				}
			}
			if k+1 < len(events) {
				if n := events[k+1]; n.lsn <= a.lsn || (!n.at.IsZero() && n.at.Before(a.at)) {
					t.Errorf("%s: %s at %s, %v is not before the following %s at %s, %v", r.name, a.what, a.lsn, a.at.UTC(), n.what, n.lsn, n.at.UTC())
				}
			}
		}
	}
	// The recordings must hold what this test is about.
	if topAborts < 2 || subAborts < 1 || plainAborts < 3 {
		t.Errorf("recorded Stream Aborts: %d of transactions and %d of subtransactions with streaming 'parallel', %d without; want at least 2, 1 and 3", topAborts, subAborts, plainAborts)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRecordedStreamsSameAcrossVersions: the scenarios recorded from
// PostgreSQL 15 (protocols 1 and 2, streaming 'on') and from other
// versions (testdata/pg17: protocol 4, streaming 'parallel') send the same
// messages, so the decoder must make the same batches of them: the
// renderings may differ in their first two lines only (description and
// options).
func TestRecordedStreamsSameAcrossVersions(t *testing.T) {
	all := loadRecorded(t)
	base := map[string]*recorded{}
	for _, r := range all {
		if !strings.Contains(r.name, "/") {
			base[r.name] = r
		}
	}
	compared := 0
	for _, r := range all {
		_, name, ok := strings.Cut(r.name, "/")
		if !ok {
			continue
		}
		b := base[name]
		if b == nil {
			continue // a scenario that PostgreSQL 15 does not have
		}
		compared++
		body := func(r *recorded) string {
			bs, errs := replay(t, r.msgs, Options{})
			s := renderGolden(r, bs, errs)
			for range 2 {
				_, s, _ = strings.Cut(s, "\n")
			}
			return s
		}
		if want, got := body(b), body(r); got != want {
			t.Errorf("%s decodes differently from %s, recorded from PostgreSQL 15 (if the server's stream really differs, compare the scenario in its own test instead):\n%s", r.name, b.name, lineDiff(want, got))
		}
	}
	if compared == 0 {
		t.Error("no scenario recorded from both PostgreSQL 15 and another version")
	}
}
