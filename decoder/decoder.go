package decoder

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/walex-go/walex/decoder/pgoutput"
	"github.com/walex-go/walex/decoder/pgvalue"
	"github.com/walex-go/walex/internal/logkey"
)

// LSN is a PostgreSQL WAL position.
type LSN = pglogrepl.LSN

// Op is the kind of a row change.
type Op uint8

// Row change kinds.
const (
	OpInsert Op = iota + 1
	OpUpdate
	OpDelete
	OpTruncate
	// OpMessage is a Mark for a logical decoding message written inside
	// the transaction (pg_logical_emit_message(true, ...)).
	OpMessage
	// OpRelation is a Mark for a Relation message received inside the
	// transaction: the server describes a table before the first change
	// that uses a new description of it (after a connect, or after its
	// definition changed). Compare it with the previous description to
	// see a schema change.
	OpRelation
)

// String returns "insert", "update", "delete", "truncate", "message" or
// "relation".
func (o Op) String() string {
	switch o {
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpTruncate:
		return "truncate"
	case OpMessage:
		return "message"
	case OpRelation:
		return "relation"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Change is one decoded row change.
type Change struct {
	Op       Op
	Relation *Relation
	// New is the new row of an insert or update.
	New map[string]any
	// Old is the old row of an update or delete when Postgres sent one:
	// the replica identity key columns (OldKind 'K', other columns absent)
	// or the whole row (OldKind 'O').
	Old     map[string]any
	OldKind byte
	// Index is the position of the change in its transaction, in WAL order.
	Index int
	// Truncate flags.
	Cascade, RestartIdentity bool
}

// Mark is something a transaction carries besides row changes, at its
// place among them: a logical decoding message written in the transaction
// (Op OpMessage) or a Relation message (Op OpRelation).
type Mark struct {
	// At is the position of the mark in the batch: it comes after
	// Changes[:At] and before Changes[At:].
	At int
	// Index is the Index of the row change that follows the mark in the
	// transaction (also when that change is skipped, or in the next chunk).
	Index int
	Op    Op
	// Relation is the new description of a table (OpRelation).
	Relation *Relation
	// Of an OpMessage: the message's prefix, content (a copy) and WAL
	// position, and whether it was written as transactional (a
	// non-transactional one has a place in a transaction only when it
	// came in the transaction's stream block).
	Prefix        string
	Content       []byte
	LSN           LSN
	Transactional bool
}

// Batch is a committed transaction, or one chunk of a large one. Chunks of
// one transaction are emitted in order with increasing Seq; the last one
// has Final set and is the only one after which the transaction may be
// acknowledged (up to EndLSN).
type Batch struct {
	XID        uint32
	CommitLSN  LSN
	EndLSN     LSN // set on the Final chunk
	CommitTime time.Time
	Origin     string
	Changes    []Change
	// Marks are the transaction's messages and Relation messages, in
	// order, each placed among Changes by its At.
	Marks []Mark
	Seq   int
	Final bool
	// Streamed tells that the transaction came in stream blocks (protocol
	// version 2 and later) and was assembled at its Stream Commit.
	Streamed bool
	// Message is the prefix of a non-transactional logical decoding
	// message (pg_logical_emit_message(false, ...)); such a batch has no
	// changes and is Final, with EndLSN the message's LSN.
	Message string
	// Content is the content of that message (a copy).
	Content []byte
}

// Options configure a Decoder. The zero value is usable.
type Options struct {
	// MaxBatchEvents caps the changes in one emitted Batch; a larger
	// transaction is emitted in several chunks. Default 10,000.
	MaxBatchEvents int
	// MemoryBudget caps the bytes of streamed in-progress transactions held
	// in memory; past it they spill to a temp file in SpillDir. Default 16 MiB.
	MemoryBudget int64
	// SpillDir is where spill files go. Default os.TempDir().
	SpillDir string
	// SkipOrigins drops the changes of transactions that carry a
	// replication origin (changes applied by another replication system),
	// to avoid loops in bidirectional set-ups.
	SkipOrigins bool
	// Types resolves type OIDs the decoder cannot name by itself. Optional.
	Types pgvalue.TypeResolver
	// TextOf converts the binary form of a value of the given type OID to
	// its text form. It is needed when the stream carries binary values
	// (pgoutput's binary option) of types pgvalue.BinarySafe rejects; it is
	// called once per such value, by the goroutine that calls Decode or by
	// a worker of a parallel replay, never by two at once. walex asks the
	// server over a normal connection.
	TextOf pgvalue.TextOf
	// ReplayWorkers is the number of goroutines that decode the row changes
	// of a large streamed transaction at its commit. Default: GOMAXPROCS,
	// at most 4; 1 decodes on the calling goroutine only.
	ReplayWorkers int
	// Skip, when set, is asked once per change whether the change's
	// relation is of no interest; such changes are not decoded into values
	// nor emitted (their Index is still used).
	Skip func(*Relation) bool
	// Logger receives warnings. Default: discard.
	Logger *slog.Logger
}

// Decoder turns pgoutput messages into committed transactions. It is not
// safe for concurrent use: one goroutine feeds it messages in stream order.
type Decoder struct {
	rows      rows // the decoding goroutine's value decoding state
	opts      Options
	rels      map[uint32]*Relation
	typeNames map[uint32]string
	typeInfos map[uint32]pgvalue.TypeInfo

	tx       *txState // open non-streamed transaction
	inStream bool
	cur      *spool // spool of the current stream block
	streams  map[uint32]*spool
	memUsed  int64
	parser   pgoutput.Parser // reused by the hot path's parsing
	// catalogMu serializes the calls of Options.Types and Options.TextOf,
	// which the workers of a parallel replay may make at the same time.
	catalogMu sync.Mutex
	// replayMin and replayJob are replayMinEntries and replayJobChanges;
	// tests lower them to reach the parallel replay with small streams.
	replayMin, replayJob int
	parallelReplays      int // parallel replays started (for tests)
}

type txState struct {
	par    *replayer // set during a parallel replay
	batch  *Batch
	index  int
	skip   bool // origin skipped
	rels   map[uint32]*Relation
	replay bool
	msgs   int // message marks in batch: they count towards MaxBatchEvents
}

// New returns a Decoder.
func New(opts Options) *Decoder {
	if opts.MaxBatchEvents <= 0 {
		opts.MaxBatchEvents = 10000
	}
	if opts.MemoryBudget <= 0 {
		opts.MemoryBudget = 16 << 20
	}
	if opts.SpillDir == "" {
		opts.SpillDir = os.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Decoder{
		opts:      opts,
		rels:      make(map[uint32]*Relation),
		typeNames: make(map[uint32]string),
		typeInfos: make(map[uint32]pgvalue.TypeInfo),
		streams:   make(map[uint32]*spool),
		replayMin: replayMinEntries,
		replayJob: replayJobChanges,
	}
	d.rows = rows{vals: pgvalue.NewValues(d.textOf())}
	return d
}

// textOf returns Options.TextOf serialized with the decoder's other
// catalog calls, or nil.
func (d *Decoder) textOf() pgvalue.TextOf {
	if d.opts.TextOf == nil {
		return nil
	}
	return func(ctx context.Context, oid uint32, b []byte) ([]byte, error) {
		d.catalogMu.Lock()
		defer d.catalogMu.Unlock()
		return d.opts.TextOf(ctx, oid, b)
	}
}

// Emit receives decoded batches. An error stops decoding and is returned
// by Decode.
type Emit func(*Batch) error

// InTransaction reports whether a transaction or a streamed transaction is
// open: some of its messages were decoded, but not its commit or abort.
func (d *Decoder) InTransaction() bool { return d.tx != nil || d.inStream || len(d.streams) > 0 }

// Relation returns the cached relation with the given ID, if any.
func (d *Decoder) Relation(id uint32) (*Relation, bool) {
	r, ok := d.rels[id]
	return r, ok
}

// Reset forgets open transactions and spooled streams, as after a
// reconnect, when the server sends everything unacknowledged again, and
// Relation messages with it.
func (d *Decoder) Reset() {
	d.tx = nil
	d.inStream = false
	d.cur = nil
	for _, s := range d.streams {
		s.close()
	}
	clear(d.streams)
	d.memUsed = 0
	clear(d.rels)
}

// Close releases spill files.
func (d *Decoder) Close() { d.Reset() }

// Decode decodes one pgoutput message (the payload of an XLogData). It
// calls emit for every batch that becomes ready, in commit order; emit may
// block, which holds the caller back (back-pressure). data may be reused
// by the caller once Decode returns. ctx is passed to the catalog calls
// (Options.Types, Options.TextOf) that the message needs.
func (d *Decoder) Decode(ctx context.Context, data []byte, emit Emit) error {
	if d.inStream && len(data) > 0 && pgoutput.MessageType(data[0]).StreamedData() {
		return d.spoolMessage(data)
	}
	m, err := d.parser.Parse(data, d.inStream)
	if err != nil {
		return err
	}
	return d.apply(ctx, m, emit)
}

func (d *Decoder) apply(ctx context.Context, m pgoutput.Message, emit Emit) error {
	switch m := m.(type) {
	case *pgoutput.BeginMessage:
		if d.tx != nil {
			return fmt.Errorf("decoder: Begin of transaction %d while transaction %d is open", m.XID, d.tx.batch.XID)
		}
		d.tx = &txState{batch: &Batch{XID: m.XID, CommitLSN: m.FinalLSN, CommitTime: m.CommitTime}}
		return nil
	case *pgoutput.CommitMessage:
		if d.tx == nil {
			return fmt.Errorf("decoder: Commit at %s without Begin", m.CommitLSN)
		}
		b := d.tx.batch
		b.EndLSN, b.Final = m.EndLSN, true
		if m.CommitLSN != 0 {
			b.CommitLSN = m.CommitLSN
		}
		d.tx = nil
		return emit(b)
	case *pgoutput.OriginMessage:
		if d.tx != nil {
			d.tx.batch.Origin = m.Name
			d.tx.skip = d.opts.SkipOrigins
		}
		return nil
	case *pgoutput.RelationMessage:
		rel, err := d.buildRelation(ctx, m)
		if err != nil {
			return err
		}
		if d.tx != nil && d.tx.replay {
			// A streamed transaction's own Relation messages describe the
			// table as that transaction saw it.
			d.tx.rels[rel.ID] = rel
		} else {
			d.rels[rel.ID] = rel
		}
		if d.tx == nil {
			return nil
		}
		// Also in a transaction whose changes are skipped (by origin):
		// the server does not describe the table again for the next one.
		return d.mark(emit, Mark{Op: OpRelation, Relation: rel})
	case *pgoutput.TypeMessage:
		name := m.Name
		if m.Namespace != "pg_catalog" && m.Namespace != "" {
			name = m.Namespace + "." + m.Name
		}
		d.typeNames[m.TypeOID] = name
		return nil
	case *pgoutput.InsertMessage:
		return d.change(emit, m.RelationID, func(rel *Relation, c *Change) error { return d.rows.fill(ctx, m, rel, c) })
	case *pgoutput.UpdateMessage:
		return d.change(emit, m.RelationID, func(rel *Relation, c *Change) error { return d.rows.fill(ctx, m, rel, c) })
	case *pgoutput.DeleteMessage:
		return d.change(emit, m.RelationID, func(rel *Relation, c *Change) error { return d.rows.fill(ctx, m, rel, c) })
	case *pgoutput.TruncateMessage:
		for _, id := range m.RelationIDs {
			err := d.change(emit, id, func(rel *Relation, c *Change) error {
				c.Op = OpTruncate
				c.Cascade = m.Options&pgoutput.TruncateCascade != 0
				c.RestartIdentity = m.Options&pgoutput.TruncateRestartIdentity != 0
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	case *pgoutput.LogicalMessage:
		if d.tx != nil {
			// In the transaction's order (also a non-transactional
			// message that came in a stream block, where it has a place
			// in the transaction's stream).
			if d.tx.skip {
				return nil
			}
			return d.mark(emit, Mark{Op: OpMessage, Prefix: m.Prefix, Content: bytes.Clone(m.Content), LSN: m.LSN, Transactional: m.Transactional})
		}
		if m.Transactional || d.inStream {
			return nil // not possible outside a transaction
		}
		// A non-transactional message (such as walex's heartbeat) is a
		// point in the stream that can be acknowledged once everything
		// before it was handled: emit it as an empty, final batch.
		return emit(&Batch{CommitLSN: m.LSN, EndLSN: m.LSN, Final: true, Message: m.Prefix, Content: bytes.Clone(m.Content)})
	case *pgoutput.StreamStartMessage:
		if d.inStream {
			return fmt.Errorf("decoder: Stream Start of transaction %d inside the stream block of transaction %d", m.XID, d.cur.xid)
		}
		d.inStream = true
		s := d.streams[m.XID]
		if s == nil {
			s = &spool{xid: m.XID}
			d.streams[m.XID] = s
		}
		d.cur = s
		return nil
	case *pgoutput.StreamStopMessage:
		d.inStream, d.cur = false, nil
		return nil
	case *pgoutput.StreamAbortMessage:
		s := d.streams[m.XID]
		if s == nil {
			return nil // nothing of it was received (e.g. before a reconnect)
		}
		if m.SubXID == m.XID || m.SubXID == 0 {
			d.dropStream(s)
			return nil
		}
		if s.aborted == nil {
			s.aborted = make(map[uint32]bool)
		}
		s.aborted[m.SubXID] = true
		return nil
	case *pgoutput.StreamCommitMessage:
		return d.commitStream(ctx, m, emit)
	case *pgoutput.TwoPhaseMessage:
		return fmt.Errorf("decoder: unexpected two-phase message %s for transaction %d (gid %q): walex does not enable two_phase on its slots", m.Kind, m.XID, m.GID)
	}
	return fmt.Errorf("decoder: unhandled message %T", m)
}

// claim gives the next row change of the open transaction, on relation
// relID, its relation and index, and reports whether it is wanted (not
// skipped by origin or by Options.Skip).
func (d *Decoder) claim(relID uint32) (rel *Relation, idx int, wanted bool, err error) {
	tx := d.tx
	if tx == nil {
		return nil, 0, false, fmt.Errorf("decoder: row change for relation %d outside a transaction", relID)
	}
	rel = d.rels[relID]
	if tx.replay {
		if r, ok := tx.rels[relID]; ok {
			rel = r
		}
	}
	if rel == nil {
		return nil, 0, false, fmt.Errorf("decoder: row change for relation %d that no Relation message described", relID)
	}
	idx = tx.index
	tx.index++
	return rel, idx, !tx.skip && (d.opts.Skip == nil || !d.opts.Skip(rel)), nil
}

func (d *Decoder) change(emit Emit, relID uint32, fill func(*Relation, *Change) error) error {
	rel, idx, wanted, err := d.claim(relID)
	if err != nil || !wanted {
		return err
	}
	tx := d.tx
	if tx.par != nil {
		// A change that needs no decoding (a truncate) during a parallel
		// replay: queued in order with the others.
		c := Change{Relation: rel, Index: idx}
		if err := fill(rel, &c); err != nil {
			return err
		}
		return tx.par.addDecoded(c)
	}
	b := tx.batch
	b.Changes = append(b.Changes, Change{Relation: rel, Index: idx})
	if err := fill(rel, &b.Changes[len(b.Changes)-1]); err != nil {
		return err
	}
	return d.batchDone(emit)
}

// mark adds a message or relation mark to the open transaction, at its
// place among the row changes.
func (d *Decoder) mark(emit Emit, m Mark) error {
	m.Index = d.tx.index
	if d.tx.par != nil {
		return d.tx.par.addMark(m)
	}
	return d.appendMark(emit, m)
}

func (d *Decoder) appendMark(emit Emit, m Mark) error {
	b := d.tx.batch
	m.At = len(b.Changes)
	b.Marks = append(b.Marks, m)
	if m.Op != OpMessage {
		return nil // at most one per table and connection, or per change of its definition
	}
	d.tx.msgs++
	return d.batchDone(emit)
}

// appendChange adds a decoded change to the open transaction's batch.
func (d *Decoder) appendChange(emit Emit, c Change) error {
	d.tx.batch.Changes = append(d.tx.batch.Changes, c)
	return d.batchDone(emit)
}

// batchDone emits the open transaction's batch when it is full, and starts
// the next chunk.
func (d *Decoder) batchDone(emit Emit) error {
	tx := d.tx
	b := tx.batch
	if len(b.Changes)+tx.msgs >= d.opts.MaxBatchEvents {
		// A transaction that filled a chunk is likely to fill the next.
		next := &Batch{XID: b.XID, CommitLSN: b.CommitLSN, CommitTime: b.CommitTime, Origin: b.Origin, Seq: b.Seq + 1, Streamed: b.Streamed,
			Changes: make([]Change, 0, d.opts.MaxBatchEvents)}
		tx.batch, tx.msgs = next, 0
		// The commit LSN of a streamed transaction is known only at its
		// commit; v1 transactions know it from Begin. Either way it is set
		// here.
		return emit(b)
	}
	return nil
}

func (d *Decoder) spoolMessage(data []byte) error {
	// The xid of a data message in a stream block is the (sub)transaction's.
	if len(data) < 5 {
		return &pgoutput.ParseError{Type: pgoutput.MessageType(data[0]), Offset: 1, Field: "xid", Reason: "message too short for a streamed message"}
	}
	subxid := uint32(data[1])<<24 | uint32(data[2])<<16 | uint32(data[3])<<8 | uint32(data[4])
	// The message is parsed only at the Stream Commit, when it is decoded
	// (a malformed one is reported then, and never if its transaction
	// aborts): parsing it here too would cost a parse per row of every
	// streamed transaction for nothing.
	s := d.cur
	if s.w == nil && int64(len(data))+4 > d.opts.MemoryBudget {
		// A message larger than the whole budget (a row with huge values)
		// goes straight to disk: copied into memory first, it would be
		// held twice until the spill.
		freed, err := s.spill(d.opts.SpillDir)
		if err != nil {
			return err
		}
		d.memUsed -= freed
	}
	if _, err := s.append(subxid, data); err != nil {
		return err
	}
	if s.w == nil {
		d.memUsed += int64(len(data)) + 4
	}
	for d.memUsed > d.opts.MemoryBudget {
		// Spill the largest in-memory spool.
		var big *spool
		for _, t := range d.streams {
			if t.w == nil && (big == nil || t.memSize > big.memSize) {
				big = t
			}
		}
		if big == nil {
			break
		}
		freed, err := big.spill(d.opts.SpillDir)
		if err != nil {
			return err
		}
		d.memUsed -= freed
		d.opts.Logger.Debug("walex: spilled a streamed transaction to disk", logkey.XID, big.xid, logkey.Bytes, freed)
	}
	return nil
}

func (d *Decoder) dropStream(s *spool) {
	d.memUsed -= s.memSize
	s.close()
	delete(d.streams, s.xid)
}

func (d *Decoder) commitStream(ctx context.Context, m *pgoutput.StreamCommitMessage, emit Emit) error {
	if d.tx != nil {
		return fmt.Errorf("decoder: Stream Commit of transaction %d while transaction %d is open", m.XID, d.tx.batch.XID)
	}
	s := d.streams[m.XID]
	d.tx = &txState{
		batch:  &Batch{XID: m.XID, CommitLSN: m.CommitLSN, CommitTime: m.CommitTime, Streamed: true},
		replay: true,
		rels:   make(map[uint32]*Relation),
	}
	if s != nil {
		if w := d.replayWorkers(); w > 1 && s.entries >= d.replayMin {
			d.tx.par = d.startReplay(ctx, emit, w)
		}
		err := s.each(func(msg []byte, aborted bool) error {
			// The server tracks the Relation (and Type) messages it sent
			// per top-level transaction, whatever subtransaction carried
			// them: one sent inside a subtransaction that later rolled
			// back is not repeated for the rest of the transaction. So
			// those are applied even from aborted subtransactions; their
			// row changes are not.
			kind := pgoutput.MessageType(msg[0])
			if aborted && kind != pgoutput.MsgRelation && kind != pgoutput.MsgType {
				return nil
			}
			if par := d.tx.par; par != nil {
				switch kind {
				case pgoutput.MsgInsert, pgoutput.MsgUpdate, pgoutput.MsgDelete:
					return d.replayChange(par, msg)
				}
			}
			pm, err := d.parser.Parse(msg, true)
			if err != nil {
				return err
			}
			if om, ok := pm.(*pgoutput.OriginMessage); ok {
				d.tx.batch.Origin = om.Name
				d.tx.skip = d.opts.SkipOrigins
				return nil
			}
			return d.apply(ctx, pm, emit)
		})
		if par := d.tx.par; par != nil {
			if err == nil {
				err = par.finish()
			}
			par.stop()
			d.tx.par = nil
		}
		d.dropStream(s)
		if err != nil {
			d.tx = nil
			return err
		}
	}
	// After a Stream Commit the server counts the relations described in
	// the stream as known to the client and does not describe them again
	// for later transactions (until their definition changes): they
	// become the current relations.
	for id, rel := range d.tx.rels {
		d.rels[id] = rel
	}
	b := d.tx.batch
	d.tx = nil
	b.EndLSN, b.Final = m.EndLSN, true
	return emit(b)
}
