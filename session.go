package walex

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walex-go/walex/decoder"
	"github.com/walex-go/walex/decoder/pgvalue"
	"github.com/walex-go/walex/internal/logkey"
	"github.com/walex-go/walex/replication"
)

// session is one connection of Run: the catalog checks, the replication
// connection, the decoder that reads it and the dispatcher goroutine that
// calls the handlers. Run makes a new session for every (re)connect; its
// steps are its methods, in the order run calls them.
//
// Two goroutines do the work. The one that calls run owns the
// replication connection: it reads the stream, decodes it and hands
// batches to the dispatcher over a channel of one (the back-pressure); it
// keeps answering the server while the dispatcher is busy. The dispatcher
// goroutine calls the handlers and, when a transaction is done,
// acknowledges its end LSN to the connection.
type session struct {
	c   *Client
	cfg *validated // the configuration as of the session's start
	// initial is set until a session of this Run has streamed: the checks
	// are strict (a missing or unpublished table is a configuration error).
	initial bool
	// supersede is the walsender PID of the previous session's connection.
	supersede uint32

	ctx    context.Context // ends when the session ends
	cancel context.CancelCauseFunc

	cat  *catalog
	conn *replication.Conn
	dec  *decoder.Decoder

	batches  chan *decoder.Batch
	acked    atomic.Uint64 // end LSN of the last dispatched transaction (dispatcher)
	enqueued LSN           // end LSN of the last enqueued transaction (reader)
	wg       sync.WaitGroup

	dispatchErr error // why the dispatcher stopped, if a handler failed; read after wg.Wait
	snapErr     error // why the initial snapshot failed for good; read after wg.Wait

	live       *liveSnaps // the snapshots running in the session
	storeReady bool       // the snapshot progress table exists (coordinator)
}

func newSession(c *Client, initial bool, supersede uint32) *session {
	return &session{c: c, cfg: c.config(), initial: initial, supersede: supersede, batches: make(chan *decoder.Batch, 1), live: newLiveSnaps()}
}

// streamed reports whether the session's connection worked: replication
// started and the server sent something.
func (s *session) streamed() bool { return s.conn != nil && s.conn.Streamed() }

// run runs the session until an error or until parent ends, and returns
// what ended it.
func (s *session) run(parent context.Context) error {
	s.ctx, s.cancel = context.WithCancelCause(parent)
	defer s.cancel(nil)
	s.c.mu.Lock()
	s.c.reconnect = s.cancel
	s.c.mu.Unlock()
	defer func() {
		s.c.mu.Lock()
		s.c.reconnect = nil
		s.c.mu.Unlock()
	}()

	s.cat = newCatalog(s.cfg)
	defer s.cat.close()
	binary, err := s.prepare()
	if err == nil {
		err = s.connect(binary)
	}
	if err != nil {
		if cause := context.Cause(s.ctx); cause != nil && parent.Err() == nil {
			return cause // Reconnect cut the start short
		}
		return err
	}
	defer s.conn.Close(s.ctx)
	defer s.dec.Close()
	if err := s.startSnapshots(); err != nil {
		return err
	}
	s.c.stats.connected.Store(true)
	defer s.c.stats.connected.Store(false)

	s.c.flow.reconnect(s.conn.StartLSN())
	s.c.flow.db = s.cfg.conn.Database
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.dispatchLoop()
	}()
	if s.cfg.HeartbeatInterval > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.heartbeat()
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.snapshotLoop()
	}()
	streamErr := s.stream()
	s.cancel(streamErr)
	s.wg.Wait()
	s.flushRereads()
	s.finish()
	if s.dispatchErr != nil {
		return s.dispatchErr
	}
	if s.snapErr != nil {
		return s.snapErr
	}
	if cause := context.Cause(s.ctx); errors.Is(cause, errReconnect) || errors.Is(cause, errSnapshotDone) {
		return cause
	}
	return streamErr
}

// prepare runs the start-up checks on the catalog connection and picks
// the transfer format; it reports whether to ask for binary values.
func (s *session) prepare() (binary bool, err error) {
	if err := s.checkTables(); err != nil {
		return false, err
	}
	if err := s.prepareInitialSnapshot(); err != nil {
		return false, err
	}
	switch s.cfg.Transfer {
	case TransferBinary:
		return true, nil
	case TransferAuto:
		ready, others, err := s.cat.binaryReady(s.ctx, s.c.subscribed())
		if err != nil {
			return false, err
		}
		if !ready {
			s.c.logger().Debug("walex: values come in text: walex does not read these subscribed column types in binary", logkey.Types, others)
		}
		return ready, nil
	}
	return false, nil
}

// connect opens the replication connection and the decoder that reads it.
func (s *session) connect(binary bool) error {
	cfg := s.cfg
	conn, err := replication.Connect(s.ctx, replication.Config{
		Binary:         binary,
		Conn:           cfg.conn,
		Slot:           cfg.SlotName,
		Temporary:      !cfg.DurableSlot,
		Failover:       cfg.FailoverSlot,
		Password:       cfg.PasswordFunc,
		Publication:    cfg.Publication,
		StatusInterval: cfg.StatusInterval,
		ReceiveTimeout: cfg.ReceiveTimeout,
		Supersede:      s.supersede,
		ReadCoalesce:   cfg.ReadCoalesce,
		OriginNone:     cfg.SkipOriginChanges,
		Logger:         cfg.Logger,
	})
	if err != nil {
		return err
	}
	s.conn = conn
	s.c.conn.Store(conn)
	s.c.logger().Info("walex: connected", logkey.Slot, conn.Slot(), logkey.ServerVersion, conn.ServerVersion(), logkey.Publication, cfg.Publication)
	s.dec = decoder.New(decoder.Options{
		MaxBatchEvents: cfg.MaxBatchEvents,
		MemoryBudget:   cfg.MemoryBudget,
		SpillDir:       cfg.SpillDir,
		SkipOrigins:    cfg.SkipOriginChanges,
		Types:          s.cat,
		TextOf:         s.textOf(),
		Logger:         cfg.Logger,
		Skip: func(r *decoder.Relation) bool {
			return !s.c.isSubscribed(r.Schema, r.Name)
		},
	})
	return nil
}

// dispatchLoop is the dispatcher goroutine: it calls the handlers for each
// batch and acknowledges each finished transaction, until the session
// ends or a handler fails for good.
func (s *session) dispatchLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case b := <-s.batches:
			s.observe(b)
			err := s.c.dispatch(s.ctx, s.cfg, s.c.flow, b)
			var ch *chunk
			if err == nil && b.Message == snapshotPrefix {
				ch, err = s.deliverChunk(b)
			}
			if err != nil {
				// A handler cut short by the end of the session has no
				// error of its own: the session's cause stands.
				var he *HandlerError
				if s.ctx.Err() == nil || errors.As(err, &he) {
					s.dispatchErr = err
					s.cancel(err)
				}
				return
			}
			if b.Final {
				if b.Message == "" {
					s.c.stats.transactions.Add(1)
				}
				s.c.flow.acked(b.EndLSN)
				s.ack(b.EndLSN)
				s.acked.Store(uint64(b.EndLSN))
			}
			if ch != nil {
				ch.done <- b.EndLSN
			}
		}
	}
}

// stream reads the replication stream until it fails or the session ends,
// decoding each message and handing the batches to the dispatcher.
func (s *session) stream() error {
	return s.conn.Stream(s.ctx, replication.Handler{
		Data: func(walStart replication.LSN, data []byte) error {
			err := s.dec.Decode(s.ctx, data, s.handOver)
			var ee *emitError
			if err == nil || errors.As(err, &ee) {
				return err
			}
			// The same bytes would come again after a reconnect: stop.
			return permanentf("walex: cannot decode the change stream at WAL position %s: %w (nothing from this transaction on was acknowledged)", walStart, err)
		},
		Idle: func() bool {
			// Not while acknowledgements wait for a snapshot's progress
			// to be saved: the keepalive position would pass them.
			return !s.dec.InTransaction() && LSN(s.acked.Load()) == s.enqueued && !s.live.holding.Load()
		},
	})
}

// handOver gives a decoded batch to the dispatcher. While the dispatcher
// is busy it waits, and keeps the status updates going: the
// acknowledgements the dispatcher makes meanwhile, and the periodic ones
// that keep the server from timing the connection out.
func (s *session) handOver(b *decoder.Batch) error {
	select {
	case s.batches <- b:
	default:
		if err := s.waitHandOver(b); err != nil {
			return err
		}
	}
	if b.Final {
		s.enqueued = b.EndLSN
	}
	return nil
}

func (s *session) waitHandOver(b *decoder.Batch) error {
	next, err := s.conn.KeepAlive()
	if err != nil {
		return &emitError{err}
	}
	t := time.NewTimer(next)
	defer t.Stop()
	for {
		select {
		case s.batches <- b:
			return nil
		case <-s.conn.Acks():
		case <-t.C:
		case <-s.ctx.Done():
			return &emitError{context.Cause(s.ctx)}
		}
		if next, err = s.conn.KeepAlive(); err != nil {
			return &emitError{err}
		}
		t.Reset(next)
	}
}

// finish sends the last acknowledgement after the stream and the
// dispatcher stopped.
func (s *session) finish() {
	if err := s.conn.Finish(); err != nil {
		// Expected after the connection broke; the slot keeps the last
		// acknowledged position the server received.
		s.c.logger().Debug("walex: could not send the final acknowledgement", logkey.Slot, s.conn.Slot(), logkey.Err, err)
		return
	}
	s.c.logger().Info("walex: acknowledged", logkey.Slot, s.conn.Slot(), logkey.FlushLSN, s.conn.Acked().String())
}

// textOf returns the decoder's TextOf for the session: the catalog's, with
// a warning the first time each type needs it under TransferAuto (a table
// or column of that type came after the connection started in binary).
func (s *session) textOf() pgvalue.TextOf {
	warned := map[uint32]bool{}
	return func(ctx context.Context, oid uint32, b []byte) ([]byte, error) {
		if !warned[oid] && s.cfg.Transfer == TransferAuto {
			warned[oid] = true
			name := strconv.FormatUint(uint64(oid), 10)
			if info, err := s.cat.ResolveType(ctx, oid); err == nil {
				name = info.Name
			}
			s.c.logger().Warn("walex: values of a type walex does not read in binary arrive in binary (a table or column added after the connection started); the server converts each one, with a query, until the next connection, which uses text",
				logkey.Type, name)
		}
		return s.cat.TextOf(ctx, oid, b)
	}
}

// heartbeat writes a non-transactional logical message every
// HeartbeatInterval until the session ends; the decoder turns it into an
// empty batch that is acknowledged in order. Errors are logged and retried
// on the next tick.
func (s *session) heartbeat() {
	cat := newCatalog(s.cfg)
	defer cat.close()
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(s.ctx, s.cfg.HeartbeatInterval+5*time.Second)
		_, err := cat.query(qctx, `SELECT pg_logical_emit_message(false, 'walex_heartbeat', '')`)
		cancel()
		if err != nil && s.ctx.Err() == nil {
			s.c.logger().Warn("walex: heartbeat failed", logkey.Err, err)
			cat.close()
		}
	}
}

// emitError wraps what stopped the hand-over of a batch to the dispatcher
// (as opposed to a decoding error).
type emitError struct{ err error }

// Error implements the error interface.
func (e *emitError) Error() string { return e.err.Error() }

// Unwrap returns the underlying error.
func (e *emitError) Unwrap() error { return e.err }
