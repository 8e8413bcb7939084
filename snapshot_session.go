package walex

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walex-go/walex/decoder"
	"github.com/walex-go/walex/decoder/pgoutput"
	"github.com/walex-go/walex/decoder/pgvalue"
	"github.com/walex-go/walex/internal/logkey"
)

// How a snapshot works (the README's Snapshots section has the user's view).
//
// A coordinator goroutine per session reads each table in chunks of
// Config.SnapshotChunkSize rows in key order. A chunk is one REPEATABLE
// READ transaction on a normal connection: it notes its MVCC snapshot
// (pg_current_snapshot), reads the rows, then writes a non-transactional
// logical message, the chunk's watermark, and commits (which flushes the
// message). The watermark comes in the stream after every transaction the
// chunk's snapshot sees, since a transaction's commit record is written
// before it becomes visible. The dispatcher delivers the chunk's rows as
// Read events when it meets the watermark, between the stream events
// before it and those after it.
//
// While a table's snapshot runs, the dispatcher logs the keys of its
// stream events with their transaction IDs. When a chunk is delivered, a
// row whose key a transaction invisible to the chunk's snapshot touched
// is dropped: that transaction's events, delivered before, are newer than
// the row (DBLog's watermark rule, made exact by the transaction IDs, so
// that a transaction that committed before the chunk's snapshot never
// costs a row, and one that committed just before the previous watermark
// but became visible after the snapshot is still caught). Log entries a
// chunk's snapshot sees are pruned at its delivery: later snapshots see
// them too.
//
// An update that leaves a TOASTed column out (Unchanged) may reach a
// consumer that has no full copy of the row, so every such update of a
// table being snapshotted schedules its key to be read again in the next
// chunk (a reread); a reread is done once a chunk delivers the key's row,
// or finds it gone. With a durable slot the rereads are saved with the
// progress, and acknowledgements wait for that save, so that a crash
// cannot lose one.

// snapshotPrefix is the prefix of the watermark messages.
const snapshotPrefix = "walex_snapshot"

// Defaults and limits of snapshots.
const (
	defaultSnapshotChunkSize = 10000
	maxRereadsPerChunk       = 1000
	maxRereadDrops           = 20 // chunks that may drop a reread row before walex gives up on it
	snapshotPipeline         = 2  // chunks read ahead of their delivery
	snapshotDecoders         = 2  // goroutines that decode a chunk's rows
	// snapshotChunkBytes is the most bytes of values a chunk reads (by
	// the width of the rows of the chunk before); snapshotProbeRows the
	// rows of a table's first chunk, which finds that width.
	snapshotChunkBytes = 32 << 20
	snapshotProbeRows  = 16
	snapshotLogEvery   = 5 * time.Second
)

// liveSnaps is a session's state of the snapshots it runs, shared by the
// coordinator and the dispatcher.
type liveSnaps struct {
	active atomic.Int32 // len(tables), read without the lock
	nonce  string       // tells this session's watermarks from older ones

	mu     sync.Mutex
	next   uint64
	tables map[tableName]*liveTable
	chunks map[uint64]*chunk
	types  *pgtype.Map // the dispatcher's, for keyText
	// hold is set while rereads scheduled with a durable slot are not
	// saved yet: acknowledgements wait (held is the latest) until the
	// coordinator saved them.
	hold    bool
	holdSeq uint64
	held    LSN
	holding atomic.Bool // hold, read without the lock
}

func newLiveSnaps() *liveSnaps {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &liveSnaps{nonce: hex.EncodeToString(b[:]), tables: map[tableName]*liveTable{}, chunks: map[uint64]*chunk{}, types: pgtype.NewMap()}
}

// liveTable is a table whose snapshot runs in the session.
type liveTable struct {
	info    *snapTable
	log     map[string][]uint32 // key → IDs of transactions that touched it
	truncs  []uint32            // IDs of transactions that truncated the table
	rereads map[string][]string // canonical key → key text
	bufHint int                 // the coordinator's guess of a chunk's raw size
	ts      *tableSnap
	// scanned is set once the chunk that ended the key range was
	// delivered: from then on every row reached the consumer whole,
	// except the rereads still due, and only an update of one of those
	// needs a reread.
	scanned bool
	// drops counts, per reread key, the chunks that dropped its row (a
	// row updated that often); past maxRereadDrops walex gives up on it.
	drops map[string]int
	// dirty is set when rereads changed since they were last saved.
	dirty bool
}

// chunk is a chunk read and waiting for its watermark.
type chunk struct {
	id        uint64
	table     *liveTable
	snap      mvccSnapshot
	at        time.Time // the chunk transaction's start
	rows      []snapRow
	rereads   []string // the rereads it read
	high      []string // key of the last row of its range (nil: a chunk of rereads only)
	done      chan LSN // the watermark's position once delivered and acknowledged
	count     int      // rows delivered
	full      bool     // the range read was a full chunk
	rawBytes  int      // bytes of values its range read
	rangeRows int      // rows its range read
	lastRange bool     // it read the end of the key range
	// ready is closed when rows (or err) are set: the rows are decoded
	// on a goroutine of their own.
	ready chan struct{}
	err   error
}

// decode decodes the chunk's rows (those of its range, then the rereads
// the range did not have) and closes ready.
func (ch *chunk) decode(ctx context.Context, info *snapTable, ranged, reread *rawRows) {
	defer close(ch.ready)
	vals, codecs := info.newCodecs()
	n := 0
	for _, r := range []*rawRows{ranged, reread} {
		if r != nil {
			n += r.n
		}
	}
	rows := make([]snapRow, 0, n)
	var err error
	if ranged != nil {
		if rows, err = decodeParallel(ctx, info, ranged, rows, vals, codecs); err != nil {
			ch.err = err
			return
		}
	}
	if reread != nil {
		more, err := info.decode(ctx, vals, codecs, reread, 0, reread.n, nil)
		if err != nil {
			ch.err = err
			return
		}
		seen := make(map[string]bool, len(rows))
		for _, r := range rows {
			seen[r.key] = true
		}
		for _, r := range more {
			if !seen[r.key] {
				rows = append(rows, r)
			}
		}
	}
	ch.rows = rows
}

// decodeParallel decodes a chunk's rows on up to snapshotDecoders
// goroutines (its own for the first part, with vals), in order into out.
func decodeParallel(ctx context.Context, info *snapTable, r *rawRows, out []snapRow, vals *pgvalue.Values, codecs []pgvalue.Codec) ([]snapRow, error) {
	workers := min(runtime.GOMAXPROCS(0), snapshotDecoders, max(1, r.n/1000))
	if workers <= 1 {
		return info.decode(ctx, vals, codecs, r, 0, r.n, out)
	}
	parts := make([][]snapRow, workers)
	errs := make([]error, workers)
	per := (r.n + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := pgvalue.NewValues(nil)
			cs := make([]pgvalue.Codec, len(codecs))
			for i, c := range codecs {
				cs[i] = v.Rebuild(c)
			}
			from, to := w*per, min((w+1)*per, r.n)
			parts[w], errs[w] = info.decode(ctx, v, cs, r, from, to, make([]snapRow, 0, max(0, to-from)))
		}()
	}
	parts[0], errs[0] = info.decode(ctx, vals, codecs, r, 0, min(per, r.n), out)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out = parts[0]
	for _, p := range parts[1:] {
		out = append(out, p...)
	}
	return out, nil
}

// mvccSnapshot is a pg_snapshot, as 32-bit transaction IDs.
type mvccSnapshot struct {
	xmin, xmax uint32
	xip        []uint32
}

// parseSnapshot parses pg_snapshot's text form "xmin:xmax:xip,...".
func parseSnapshot(s string) (mvccSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return mvccSnapshot{}, fmt.Errorf("walex: bad pg_snapshot %q", s)
	}
	xid := func(p string) (uint32, error) {
		v, err := strconv.ParseUint(p, 10, 64)
		return uint32(v), err // the stream's transaction IDs are the low 32 bits
	}
	var snap mvccSnapshot
	var err error
	if snap.xmin, err = xid(parts[0]); err != nil {
		return mvccSnapshot{}, fmt.Errorf("walex: bad pg_snapshot %q", s)
	}
	if snap.xmax, err = xid(parts[1]); err != nil {
		return mvccSnapshot{}, fmt.Errorf("walex: bad pg_snapshot %q", s)
	}
	if parts[2] != "" {
		for _, p := range strings.Split(parts[2], ",") {
			x, err := xid(p)
			if err != nil {
				return mvccSnapshot{}, fmt.Errorf("walex: bad pg_snapshot %q", s)
			}
			snap.xip = append(snap.xip, x)
		}
	}
	return snap, nil
}

// xidBefore is PostgreSQL's TransactionIdPrecedes for normal IDs.
func xidBefore(a, b uint32) bool { return int32(a-b) < 0 }

// sees reports whether a committed transaction is visible to the snapshot.
func (s mvccSnapshot) sees(xid uint32) bool {
	if xidBefore(xid, s.xmin) {
		return true
	}
	if !xidBefore(xid, s.xmax) {
		return false
	}
	return !slices.Contains(s.xip, xid)
}

// key returns the canonical key of rec, and whether rec has it.
func (lt *liveTable) key(rec map[string]any) (string, []any, bool) {
	if rec == nil {
		return "", nil, false
	}
	vals := make([]any, len(lt.info.keys))
	for j, i := range lt.info.keys {
		v, ok := rec[lt.info.cols[i].name]
		if !ok || v == Unchanged {
			return "", nil, false
		}
		vals[j] = v
	}
	return canonKey(vals), vals, true
}

// touch logs that transaction xid touched key k (when ok: the event had
// the key).
func (lt *liveTable) touch(k string, ok bool, xid uint32) {
	if !ok {
		return
	}
	xs := lt.log[k]
	if n := len(xs); n > 0 && xs[n-1] == xid {
		return
	}
	lt.log[k] = append(xs, xid)
}

// touchedUnseen reports whether a transaction the snapshot does not see
// touched the key (or truncated the table).
func (lt *liveTable) touchedUnseen(key string, snap mvccSnapshot) bool {
	for _, x := range lt.log[key] {
		if !snap.sees(x) {
			return true
		}
	}
	return false
}

// prune forgets what the snapshot sees: every later snapshot sees it too.
func (lt *liveTable) prune(snap mvccSnapshot) {
	for k, xs := range lt.log {
		xs = slices.DeleteFunc(xs, snap.sees)
		if len(xs) == 0 {
			delete(lt.log, k)
		} else {
			lt.log[k] = xs
		}
	}
	lt.truncs = slices.DeleteFunc(lt.truncs, snap.sees)
}

func hasUnchanged(rec map[string]any) bool {
	for _, v := range rec {
		if v == Unchanged {
			return true
		}
	}
	return false
}

// observe logs the keys of a batch's changes to tables being snapshotted,
// and schedules rereads. The dispatcher calls it for every batch, before
// handing it to the handlers.
func (s *session) observe(b *decoder.Batch) {
	l := s.live
	if l.active.Load() == 0 || len(b.Changes) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range b.Changes {
		ch := &b.Changes[i]
		lt := l.tables[tableName{ch.Relation.Schema, ch.Relation.Name}]
		if lt == nil {
			continue
		}
		switch ch.Op {
		case decoder.OpTruncate:
			lt.truncs = append(lt.truncs, b.XID)
		case decoder.OpInsert:
			k, _, ok := lt.key(ch.New)
			lt.touch(k, ok, b.XID)
		case decoder.OpDelete:
			k, _, ok := lt.key(ch.Old)
			lt.touch(k, ok, b.XID)
		case decoder.OpUpdate:
			k, vals, ok := lt.key(ch.New)
			old, _, oldOK := lt.key(ch.Old)
			lt.touch(k, ok, b.XID)
			lt.touch(old, oldOK, b.XID)
			if ok && hasUnchanged(ch.New) && (!lt.scanned || lt.due(k, true) || lt.due(old, oldOK)) {
				s.scheduleReread(lt, k, vals)
			}
		}
	}
}

// due reports whether key is to be read again.
func (lt *liveTable) due(key string, ok bool) bool {
	if !ok {
		return false
	}
	_, due := lt.rereads[key]
	return due
}

// scheduleReread adds key k, of values vals, to the rereads (l.mu held).
func (s *session) scheduleReread(lt *liveTable, k string, vals []any) {
	if _, dup := lt.rereads[k]; dup {
		return
	}
	txt := make([]string, len(vals))
	for j, i := range lt.info.keys {
		t, err := keyText(s.live.types, lt.info.cols[i].base, vals[j])
		if err != nil {
			s.c.logger().Warn("walex: cannot read a row again after an update without its TOASTed values; the consumer may lack them", logkey.Table, lt.info.name.String(), logkey.Err, err)
			return
		}
		txt[j] = t
	}
	lt.rereads[k] = txt
	lt.dirty = true
	if s.cfg.DurableSlot {
		s.live.hold = true
		s.live.holding.Store(true)
		s.live.holdSeq++
	}
}

// ack acknowledges lsn, unless acknowledgements wait for rereads to be
// saved.
func (s *session) ack(lsn LSN) {
	l := s.live
	if l.holding.Load() {
		l.mu.Lock()
		if l.hold {
			l.held = lsn
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
	}
	s.conn.Ack(lsn)
}

// deliverChunk delivers the rows of the chunk whose watermark b is, if it
// is one of this session's, and returns the chunk.
func (s *session) deliverChunk(b *decoder.Batch) (*chunk, error) {
	l := s.live
	nonce, idText, ok := strings.Cut(string(b.Content), ":")
	if !ok || nonce != l.nonce {
		return nil, nil // a watermark of an earlier session
	}
	id, _ := strconv.ParseUint(idText, 10, 64)
	l.mu.Lock()
	ch := l.chunks[id]
	delete(l.chunks, id)
	l.mu.Unlock()
	if ch == nil {
		return nil, nil
	}
	select {
	case <-ch.ready:
	case <-s.ctx.Done():
		return nil, context.Cause(s.ctx)
	}
	if ch.err != nil {
		return nil, permanentf("%w (nothing from the chunk on was acknowledged)", ch.err)
	}
	l.mu.Lock()
	lt := ch.table
	truncated := slices.ContainsFunc(lt.truncs, func(x uint32) bool { return !ch.snap.sees(x) })
	keep := ch.rows[:0]
	for _, r := range ch.rows {
		if truncated || lt.touchedUnseen(r.key, ch.snap) {
			continue // the stream delivered something newer
		}
		keep = append(keep, r)
		delete(lt.rereads, r.key)
	}
	for _, k := range ch.rereads {
		if !lt.touchedUnseen(k, ch.snap) {
			delete(lt.rereads, k) // read again, or gone
			delete(lt.drops, k)
			lt.dirty = true
			continue
		}
		if lt.drops[k]++; lt.drops[k] > maxRereadDrops {
			delete(lt.rereads, k)
			delete(lt.drops, k)
			lt.dirty = true
			s.c.logger().Warn("walex: a row is updated too often to be read whole: the consumer may lack its TOASTed values until an update sets them",
				logkey.Table, lt.info.name.String(), logkey.Key, k)
		}
	}
	if ch.lastRange {
		lt.scanned = true
	}
	for _, t := range l.tables {
		t.prune(ch.snap) // every later snapshot sees what this one saw
	}
	l.mu.Unlock()

	ch.count = len(keep)
	if len(keep) == 0 {
		return ch, nil
	}
	info := lt.info
	events := make([]Event, len(keep))
	for i, r := range keep {
		events[i] = Event{
			Name: info.name.Table, Type: Read,
			Source:    Source{Name: SourceName, Version: Version, DB: s.cfg.conn.Database, Schema: info.name.Schema, Table: info.name.Table, Columns: info.types},
			NewRecord: r.rec, Timestamp: ch.at, CommitLSN: b.EndLSN, Index: i,
		}
	}
	if err := s.c.dispatchReads(s.ctx, s.cfg, s.c.flow, events); err != nil {
		return nil, err
	}
	return ch, nil
}

// dispatchReads calls the handlers for a chunk's Read events, in calls of
// at most MaxBatchEvents.
func (c *Client) dispatchReads(ctx context.Context, cfg *validated, f *flow, events []Event) error {
	full := make([]bool, min(len(events), cfg.MaxBatchEvents))
	for i := 0; i < len(events); i += cfg.MaxBatchEvents {
		part := events[i:min(i+cfg.MaxBatchEvents, len(events))]
		if err := c.dispatchEvents(ctx, cfg, f, part, full[:len(part)]); err != nil {
			return err
		}
	}
	return nil
}

// register makes the dispatcher log the table's stream events.
func (l *liveSnaps) register(ts *tableSnap, info *snapTable, rereads map[string][]string) *liveTable {
	lt := &liveTable{ts: ts, info: info, log: map[string][]uint32{}, rereads: maps.Clone(rereads), drops: map[string]int{}}
	if lt.rereads == nil {
		lt.rereads = map[string][]string{}
	}
	l.mu.Lock()
	l.tables[info.name] = lt
	l.active.Store(int32(len(l.tables)))
	l.mu.Unlock()
	return lt
}

// unregister stops the logging of lt and forgets its chunks; it returns
// its rereads.
func (l *liveSnaps) unregister(lt *liveTable) map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tables[lt.info.name] == lt {
		delete(l.tables, lt.info.name)
	}
	l.forgetChunks(lt)
	l.active.Store(int32(len(l.tables)))
	return maps.Clone(lt.rereads)
}

// dropChunks forgets lt's chunks that wait for their watermark.
func (l *liveSnaps) dropChunks(lt *liveTable) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgetChunks(lt)
}

// forgetChunks forgets lt's chunks (l.mu held).
func (l *liveSnaps) forgetChunks(lt *liveTable) {
	maps.DeleteFunc(l.chunks, func(_ uint64, ch *chunk) bool { return ch.table == lt })
}

// snapshotLoop is the coordinator goroutine: it runs the snapshots asked
// for, one table at a time, until the session ends.
func (s *session) snapshotLoop() {
	cat := newCatalog(s.cfg)
	defer cat.close()
	c := s.c
	failures := 0
	for {
		if s.cfg.Snapshot == SnapshotInitialOnly {
			pending, err := c.snaps.initialPending()
			if err == nil && !pending {
				c.logger().Info("walex: initial snapshot done; Run returns (SnapshotInitialOnly)")
				s.cancel(errSnapshotDone)
				return
			}
		}
		ts := c.snaps.next()
		if ts == nil {
			select {
			case <-s.ctx.Done():
				return
			case <-c.snaps.wake:
				continue
			}
		}
		err := s.snapshotTable(cat, ts)
		if s.ctx.Err() != nil {
			return
		}
		if err == nil {
			failures = 0
			continue
		}
		if errors.Is(err, errSnapshotRestart) {
			s.releaseHold()
			continue
		}
		if IsPermanent(err) {
			s.releaseHold()
			c.snaps.mu.Lock()
			ts.finish(err)
			initial := ts.initial
			c.snaps.mu.Unlock()
			c.logger().Error("walex: snapshot failed", logkey.Table, ts.table.String(), logkey.Err, err)
			if initial {
				s.snapErr = err
				s.cancel(err)
				return
			}
			continue
		}
		failures++
		d := min(time.Duration(failures)*time.Second, 30*time.Second)
		c.logger().Warn("walex: snapshot chunk failed; retrying (the stream goes on)", logkey.Table, ts.table.String(), logkey.Attempt, failures, logkey.Delay, d, logkey.Err, err)
		cat.close()
		if !sleepCtx(s.ctx, d) {
			return
		}
	}
}

// errSnapshotRestart: the table's snapshot was asked for again while it ran.
var errSnapshotRestart = errors.New("walex: snapshot restarted")

// snapshotTable runs (or resumes) the snapshot of one table until its last
// row is delivered.
//
// The table stays registered with the dispatcher after a transient error,
// for the retry: stream events of the table must not go unobserved
// between two attempts.
func (s *session) snapshotTable(cat *catalog, ts *tableSnap) (err error) {
	c, cfg := s.c, s.cfg
	c.snaps.mu.Lock()
	gen := ts.gen
	c.snaps.mu.Unlock()
	lt, err := s.watch(cat, ts)
	if err != nil {
		return err
	}
	info := lt.info
	c.snaps.mu.Lock()
	pos := ts.position()
	if ts.started.IsZero() {
		ts.started = time.Now()
		ts.estimated = info.estimated
	}
	resumedAt, estimated := ts.rows, ts.estimated
	c.snaps.mu.Unlock()
	if s.conn.ServerVersion() < 14 {
		return permanentf("walex: snapshot of %s: snapshots need PostgreSQL 14 or later (pgoutput sends logical decoding messages, the chunks' watermarks, from 14 on); this server is %d", ts.table, s.conn.ServerVersion())
	}
	defer func() {
		if err == nil {
			return // finish unregistered it
		}
		if !IsPermanent(err) && !errors.Is(err, errSnapshotRestart) && s.ctx.Err() == nil {
			s.live.dropChunks(lt) // to be retried: the chunks in flight are read again
			return
		}
		rr := s.live.unregister(lt)
		c.snaps.mu.Lock()
		if ts.gen == gen {
			ts.rereads = rr
		}
		c.snaps.mu.Unlock()
	}()
	if pos == nil {
		c.logger().Info("walex: snapshot started", logkey.Table, ts.table.String(), logkey.Rows, info.estimated)
	} else {
		c.logger().Info("walex: snapshot resumed", logkey.Table, ts.table.String(), logkey.Rows, resumedAt)
	}

	if err := s.saveProgress(cat, ts, false); err != nil {
		return err
	}
	size := cfg.SnapshotChunkSize
	c.snaps.mu.Lock()
	if ts.chunkSize > 0 {
		size = min(size, ts.chunkSize)
	}
	c.snaps.mu.Unlock()
	exhausted := false
	var inflight []*chunk
	var rowBytes int64 // bytes per row of the last chunk
	lastLog := time.Now()
	for {
		if !c.isSubscribed(ts.table.Schema, ts.table.Table) {
			return permanentf("%w: %s was removed from the subscriptions while its snapshot ran", ErrNotSubscribed, ts.table)
		}
		for len(inflight) < snapshotPipeline {
			l := s.live
			l.mu.Lock()
			pendingRereads := len(lt.rereads) > 0
			l.mu.Unlock()
			if exhausted && (!pendingRereads || len(inflight) > 0) {
				break
			}
			// The first chunk is small: it tells how wide the rows are,
			// and the others read as many as fit in snapshotChunkBytes.
			n := min(size, snapshotProbeRows)
			if rowBytes > 0 {
				n = int(min(int64(size), max(1, snapshotChunkBytes/rowBytes)))
			}
			ch, err := s.readChunk(cat, lt, pos, !exhausted, n)
			if err != nil {
				var pgErr interface{ SQLState() string }
				if errors.As(err, &pgErr) && pgErr.SQLState() == "57014" && n > 100 {
					c.snaps.mu.Lock()
					ts.chunkSize = n / 2
					c.snaps.mu.Unlock()
				}
				return snapshotQueryError(ts.table, cfg.conn.User, err)
			}
			if !exhausted {
				exhausted = !ch.full
				if ch.high != nil {
					pos = ch.high
				}
			}
			if ch.rangeRows > 0 {
				rowBytes = max(1, int64(ch.rawBytes)/int64(ch.rangeRows))
			}
			inflight = append(inflight, ch)
		}
		if len(inflight) == 0 {
			if s.live.finish(lt) {
				c.snaps.mu.Lock()
				if ts.gen != gen {
					c.snaps.mu.Unlock()
					return errSnapshotRestart
				}
				ts.rereads = nil
				ts.finish(nil)
				rows, took := ts.rows, time.Since(ts.started).Round(time.Millisecond)
				c.snaps.mu.Unlock()
				if err := s.saveProgress(cat, ts, true); err != nil {
					return err
				}
				c.logger().Info("walex: snapshot done", logkey.Table, ts.table.String(), logkey.Rows, rows, logkey.Took, took)
				return nil
			}
			continue
		}
		ch := inflight[0]
		var lsn LSN
		select {
		case lsn = <-ch.done:
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
		inflight[0] = nil // its rows may go
		inflight = inflight[1:]
		c.snaps.mu.Lock()
		if ts.gen != gen {
			c.snaps.mu.Unlock()
			return errSnapshotRestart
		}
		ts.rows += uint64(ch.count)
		key := ch.high
		if key == nil {
			key = ts.position()
		}
		ts.marks = append(ts.marks, chunkMark{LSN: lsn, Key: key, Rows: ts.rows})
		if len(ts.marks) > maxMarks {
			ts.marks = slices.Delete(ts.marks, 0, len(ts.marks)-maxMarks)
		}
		rows := ts.rows
		c.snaps.mu.Unlock()
		if err := s.saveProgress(cat, ts, false); err != nil {
			return err
		}
		if time.Since(lastLog) >= snapshotLogEvery {
			lastLog = time.Now()
			c.logger().Info("walex: snapshot progress", logkey.Table, ts.table.String(), logkey.Rows, rows, logkey.Estimated, estimated)
		}
	}
}

// finish ends lt's snapshot if no reread is left.
func (l *liveSnaps) finish(lt *liveTable) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(lt.rereads) > 0 {
		return false
	}
	delete(l.tables, lt.info.name)
	l.active.Store(int32(len(l.tables)))
	return true
}

// saveProgress saves ts in the progress table (with a durable slot), with
// the rereads scheduled so far, then lets the acknowledgements held for
// them go.
func (s *session) saveProgress(cat *catalog, ts *tableSnap, done bool) error {
	s.flushRereads()
	if !s.cfg.DurableSlot {
		return nil
	}
	l := s.live
	l.mu.Lock()
	seq, held := l.holdSeq, l.held
	// ts, and every other table whose rereads changed since their save.
	saving := []*tableSnap{ts}
	var dirty []*liveTable
	for _, lt := range l.tables {
		if lt.dirty {
			lt.dirty = false
			dirty = append(dirty, lt)
			if lt.ts != ts {
				saving = append(saving, lt.ts)
			}
		}
	}
	l.mu.Unlock()
	err := s.saveTables(cat, saving, ts, done)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		for _, lt := range dirty {
			lt.dirty = true
		}
		return err
	}
	ackTo := held
	if l.hold && l.holdSeq == seq {
		l.hold = false
		l.holding.Store(false)
		ackTo = l.held
	}
	if ackTo > 0 {
		s.conn.Ack(ackTo)
	}
	return nil
}

// saveTables writes the progress rows of the tables; done marks doneTS
// done.
func (s *session) saveTables(cat *catalog, tables []*tableSnap, doneTS *tableSnap, done bool) error {
	if !s.storeReady {
		if err := ensureStore(s.ctx, cat, s.cfg.snapTable, s.cfg.conn.User); err != nil {
			return err
		}
		s.storeReady = true
	}
	for _, ts := range tables {
		s.c.snaps.mu.Lock()
		st := storedSnap{table: ts.table, initial: ts.initial, done: done && ts == doneTS, rows: ts.rows, estimated: ts.estimated,
			started: ts.started, doneAt: ts.done, marks: slices.Clone(ts.marks)}
		for _, k := range slices.Sorted(maps.Keys(ts.rereads)) {
			st.rereads = append(st.rereads, ts.rereads[k])
		}
		s.c.snaps.mu.Unlock()
		if err := saveStore(s.ctx, cat, s.cfg.snapTable, s.conn.Slot(), st); err != nil {
			return err
		}
	}
	return nil
}

// flushRereads copies the rereads of the session's tables to the
// client's state, which outlives the session.
func (s *session) flushRereads() {
	l := s.live
	l.mu.Lock()
	copies := make(map[*tableSnap]map[string][]string, len(l.tables))
	for _, lt := range l.tables {
		copies[lt.ts] = maps.Clone(lt.rereads)
	}
	l.mu.Unlock()
	s.c.snaps.mu.Lock()
	for ts, rr := range copies {
		ts.rereads = rr
	}
	s.c.snaps.mu.Unlock()
}

// releaseHold lets the held acknowledgements go when no table's rereads
// wait to be saved (after a table left the session).
func (s *session) releaseHold() {
	l := s.live
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, lt := range l.tables {
		if lt.dirty {
			return
		}
	}
	if l.hold {
		l.hold = false
		l.holding.Store(false)
		if l.held > 0 {
			s.conn.Ack(l.held)
		}
	}
}

// readChunk reads a chunk: the next rows after pos (when rangeRead), and
// keys to read again; it registers the chunk and writes its watermark.
func (s *session) readChunk(cat *catalog, lt *liveTable, pos []string, rangeRead bool, size int) (*chunk, error) {
	ctx := s.ctx
	if err := cat.connect(ctx); err != nil {
		return nil, err
	}
	conn := cat.conn
	info := lt.info
	l := s.live
	l.mu.Lock()
	l.next++
	ch := &chunk{id: l.next, table: lt, done: make(chan LSN, 1), ready: make(chan struct{})}
	var rereadTxt [][]string
	for _, k := range slices.Sorted(maps.Keys(lt.rereads)) {
		if len(ch.rereads) == maxRereadsPerChunk {
			break
		}
		ch.rereads = append(ch.rereads, k)
		rereadTxt = append(rereadTxt, lt.rereads[k])
	}
	l.mu.Unlock()

	exec := func(sql string) error {
		_, err := conn.Exec(ctx, sql).ReadAll()
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = exec("ROLLBACK")
			l.mu.Lock()
			delete(l.chunks, ch.id)
			l.mu.Unlock()
		}
	}()
	// The snapshot must not miss a transaction that wrote its commit
	// record before the previous watermark but is not visible yet (one
	// waiting for a synchronous standby): its events came before, and
	// could not be told from older ones. Such a transaction is committed
	// in pg_xact while still in the snapshot's running list; wait until
	// there is none.
	for attempt := 0; ; attempt++ {
		if err := exec("BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL synchronous_commit TO local"); err != nil {
			return nil, err
		}
		res := conn.ExecParams(ctx, `SELECT pg_current_snapshot()::text,
			EXISTS (SELECT FROM pg_snapshot_xip(pg_current_snapshot()) x WHERE pg_xact_status(x) = 'committed'),
			extract(epoch FROM now())::text`, nil, nil, nil, nil).Read()
		if res.Err != nil {
			return nil, res.Err
		}
		snap, err := parseSnapshot(string(res.Rows[0][0]))
		if err != nil {
			return nil, err
		}
		ch.snap, ch.at = snap, epochTime(string(res.Rows[0][2]))
		if string(res.Rows[0][1]) != "t" {
			break
		}
		if err := exec("ROLLBACK"); err != nil {
			return nil, err
		}
		if !sleepCtx(ctx, time.Duration(min(attempt+1, 50))*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	var ranged, reread *rawRows
	if rangeRead {
		var args [][]byte
		for _, p := range pos {
			args = append(args, []byte(p))
		}
		var err error
		if ranged, err = info.readRaw(ctx, conn, info.rangeSQL(pos != nil, size), args, size, lt.bufHint); err != nil {
			return nil, err
		}
		lt.bufHint = min(max(lt.bufHint, cap(ranged.buf)), snapshotChunkBytes) // the next chunk's rows are much the same
		ch.rawBytes, ch.rangeRows = len(ranged.buf), ranged.n
		ch.full = ranged.n == size
		ch.lastRange = !ch.full
		if ranged.n > 0 {
			ch.high = info.keyText(ranged, ranged.n-1)
		}
	}
	if len(rereadTxt) > 0 {
		var args [][]byte
		for _, k := range rereadTxt {
			for _, p := range k {
				args = append(args, []byte(p))
			}
		}
		var err error
		if reread, err = info.readRaw(ctx, conn, info.rereadSQL(len(rereadTxt)), args, len(rereadTxt), 0); err != nil {
			return nil, err
		}
	}
	// The rows are decoded while the chunk's watermark goes out and the
	// next chunk is read; the dispatcher waits for them at the watermark.
	go ch.decode(ctx, info, ranged, reread)
	l.mu.Lock()
	l.chunks[ch.id] = ch
	l.mu.Unlock()
	// The non-transactional message is the watermark; the transactional
	// one gives the transaction a commit record, whose flush flushes the
	// watermark too.
	res := conn.ExecParams(ctx, `SELECT pg_logical_emit_message(false, $1, $2), pg_logical_emit_message(true, $1 || '_flush', '')`,
		[][]byte{[]byte(snapshotPrefix), []byte(l.nonce + ":" + strconv.FormatUint(ch.id, 10))}, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	if err := exec("COMMIT"); err != nil {
		return nil, err
	}
	ok = true
	return ch, nil
}

// startSnapshots sets up the session's snapshots once it streams: the
// initial snapshot with a new slot, and, with a durable slot, the
// progress saved by earlier runs. Called by run before the coordinator
// starts.
func (s *session) startSnapshots() error {
	c, cfg := s.c, s.cfg
	initial := cfg.Snapshot == SnapshotInitial || cfg.Snapshot == SnapshotInitialOnly
	if !cfg.DurableSlot {
		if initial {
			c.snaps.request(c.subscribed(), true, true)
		}
		c.snaps.rewind(s.conn.StartLSN())
		s.watchPending()
		return nil
	}
	if !c.snapLoaded {
		cat := s.cat
		if initial {
			if err := ensureStore(s.ctx, cat, cfg.snapTable, cfg.conn.User); err != nil {
				return err
			}
			s.storeReady = true
		} else if exists, err := storeExists(s.ctx, cat, cfg.snapTable); err != nil || !exists {
			return err // no snapshot was ever saved: nothing to resume
		}
		stored, err := loadStore(s.ctx, cat, cfg.snapTable, s.conn.Slot())
		if err != nil {
			return err
		}
		c.snaps.load(stored, c.isSubscribed)
		c.snapLoaded = true
		if initial && len(stored) == 0 {
			c.logger().Warn("walex: no initial snapshot: the durable slot existed before walex was asked for one (SnapshotInitial snapshots when it creates the slot); call Client.Snapshot, or drop the slot to start afresh",
				logkey.Slot, s.conn.Slot())
		}
	}
	if n := c.snaps.rewind(s.conn.StartLSN()); n > 0 {
		c.logger().Info("walex: snapshot resumes before chunks whose acknowledgement the server did not keep", logkey.Tables, n)
	}
	s.watchPending()
	return nil
}

// rewind rewinds every table to start; it returns how many changed.
func (s *snapshots) rewind(start LSN) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ts := range s.tables {
		if ts.err == nil && ts.rewind(start) {
			n++
		}
	}
	return n
}

// load takes the progress rows of the progress table.
func (s *snapshots) load(stored []storedSnap, subscribed func(schema, table string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	for _, st := range stored {
		if !subscribed(st.table.Schema, st.table.Table) {
			continue
		}
		ts, _ := s.table(st.table)
		if len(ts.waiters) > 0 {
			continue // asked for in this Run: that request stands
		}
		ts.initial = st.initial
		ts.rows, ts.estimated, ts.started, ts.marks = st.rows, st.estimated, st.started, st.marks
		ts.done = time.Time{}
		if st.done {
			ts.done = st.doneAt
			if ts.done.IsZero() {
				ts.done = time.Now()
			}
		}
		ts.rereads = map[string][]string{}
		for _, k := range st.rereads {
			ts.rereads[strings.Join(k, "\x00")] = k // keyed again by rekey
		}
	}
	s.signal()
}

// rekey keys rereads by the canonical form of their values (canonKey),
// decoding their text as a chunk's rows are: those loaded from the
// progress table have only their text.
func rekey(ctx context.Context, info *snapTable, vals *pgvalue.Values, codecs []pgvalue.Codec, rereads map[string][]string) map[string][]string {
	out := make(map[string][]string, len(rereads))
	for _, txt := range rereads {
		if len(txt) != len(info.keys) {
			continue // the key changed shape
		}
		kv := make([]any, len(txt))
		ok := true
		for j, i := range info.keys {
			v, err := vals.Decode(ctx, &codecs[i], pgoutput.Column{Kind: pgoutput.ColText, Data: []byte(txt[j])})
			if err != nil {
				ok = false
				break
			}
			kv[j] = v
		}
		if ok {
			out[canonKey(kv)] = txt
		}
	}
	return out
}

// prepareInitialSnapshot writes, with a durable slot that does not exist
// yet and an initial snapshot to take, the pending progress of every
// subscribed table before the slot is created: a crash between the two
// then still finds the snapshot to do.
func (s *session) prepareInitialSnapshot() error {
	cfg := s.cfg
	if !cfg.DurableSlot || cfg.Snapshot == SnapshotNever {
		return nil
	}
	rows, err := s.cat.query(s.ctx, `SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, cfg.SlotName)
	if err != nil {
		return err
	}
	if len(rows) > 0 {
		return nil
	}
	if err := ensureStore(s.ctx, s.cat, cfg.snapTable, cfg.conn.User); err != nil {
		return err
	}
	if err := resetStore(s.ctx, s.cat, cfg.snapTable, cfg.SlotName, s.c.subscribed()); err != nil {
		return err
	}
	s.c.snapLoaded = false
	s.c.snaps.forget()
	return nil
}

// forget drops the progress of every table (a new slot starts afresh);
// waiters keep waiting for the new snapshots.
func (s *snapshots) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ts := range s.tables {
		ts.reset()
	}
}

// watch returns the table's registration with the dispatcher, made now
// if there is none: from then on the dispatcher logs the table's stream
// events.
func (s *session) watch(cat *catalog, ts *tableSnap) (*liveTable, error) {
	l := s.live
	l.mu.Lock()
	lt := l.tables[ts.table]
	l.mu.Unlock()
	if lt != nil {
		return lt, nil
	}
	info, err := loadSnapTable(s.ctx, cat, s.cfg.Publication, ts.table)
	if err != nil {
		return nil, err
	}
	vals, codecs := info.newCodecs()
	s.c.snaps.mu.Lock()
	rereads := maps.Clone(ts.rereads)
	s.c.snaps.mu.Unlock()
	return l.register(ts, info, rekey(s.ctx, info, vals, codecs, rereads)), nil
}

// watchPending registers every table with a snapshot to do before the
// stream starts, so that the events the server sends again after a
// reconnect are observed too. A table that cannot be registered now is
// left to the coordinator, which reports why.
func (s *session) watchPending() {
	s.c.snaps.mu.Lock()
	var todo []*tableSnap
	for _, t := range s.c.snaps.order {
		if ts := s.c.snaps.tables[t]; ts.err == nil && ts.done.IsZero() {
			todo = append(todo, ts)
		}
	}
	s.c.snaps.mu.Unlock()
	for _, ts := range todo {
		if _, err := s.watch(s.cat, ts); err != nil {
			s.c.logger().Debug("walex: snapshot table not registered before streaming", logkey.Table, ts.table.String(), logkey.Err, err)
		}
	}
}
