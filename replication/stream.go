package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Handler receives the stream.
type Handler struct {
	// Data is called for each XLogData with the WAL position of its start
	// and its pgoutput payload, which is valid only during the call. It may
	// block (to hold the stream back while the application is busy); it
	// should then call Conn.KeepAlive, so that status updates keep going.
	Data func(walStart LSN, data []byte) error
	// Idle reports that no transaction is open and everything received so
	// far is acknowledged; a keepalive's WAL end is then acknowledged too,
	// so that the slot advances while the published tables are quiet.
	Idle func() bool
}

// Stream reads the replication stream until ctx ends (then it returns
// ctx's error; call Finish for a last status update) or an error occurs.
// It answers keepalives, reports new acknowledgements within AckDelay
// (also while it waits for data), sends a status update at least every
// StatusInterval, and fails with ErrReceiveTimeout when the server has
// been silent for ReceiveTimeout.
func (c *Conn) Stream(ctx context.Context, h Handler) error {
	stop := context.AfterFunc(ctx, c.wake.wake)
	defer stop()

	c.lastStatus = time.Time{} // the first status update goes out at once
	c.live.start(c.cfg.ReceiveTimeout, time.Now())
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := time.Now()
		if c.statusDue(now) {
			if err := c.sendStatus(false); err != nil {
				return err
			}
		}
		switch c.live.check(now) {
		case askReply:
			if err := c.sendStatus(true); err != nil {
				return err
			}
		case dead:
			return fmt.Errorf("replication: nothing received from the server for %v (ReceiveTimeout), not even after asking it for a reply: %w", c.cfg.ReceiveTimeout, ErrReceiveTimeout)
		}
		if !c.wake.beginRead(c.nextDeadline()) {
			continue // woken before the read: look again
		}
		msg, err := c.conn.ReceiveMessage(context.Background())
		c.wake.endRead()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("replication: receive: %w", err)
		}
		c.live.received()
		if err := c.handle(msg, h); err != nil {
			return err
		}
	}
}

// handle processes one message of the stream.
func (c *Conn) handle(msg pgproto3.BackendMessage, h Handler) error {
	switch msg := msg.(type) {
	case *pgproto3.CopyData:
		if len(msg.Data) == 0 {
			return errors.New("replication: empty CopyData message")
		}
		switch msg.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
			if err != nil {
				return fmt.Errorf("replication: %w", err)
			}
			c.streamed.Store(true)
			c.serverEnd.Store(uint64(ka.ServerWALEnd))
			if h.Idle != nil && h.Idle() && ka.ServerWALEnd > c.Received() {
				// Everything sent before this keepalive was handled.
				c.setReceived(ka.ServerWALEnd)
				c.Ack(ka.ServerWALEnd)
			}
			if ka.ReplyRequested {
				return c.sendStatus(false)
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
			if err != nil {
				return fmt.Errorf("replication: %w", err)
			}
			c.streamed.Store(true)
			c.serverEnd.Store(uint64(xld.ServerWALEnd))
			c.setReceived(xld.WALStart + LSN(len(xld.WALData)))
			return h.Data(xld.WALStart, xld.WALData)
		default:
			return fmt.Errorf("replication: unknown CopyData message 0x%02x", msg.Data[0])
		}
	case *pgproto3.ErrorResponse:
		return fmt.Errorf("replication: server error: %w", pgconn.ErrorResponseToPgError(msg))
	case *pgproto3.CopyDone:
		return errors.New("replication: server ended the stream (CopyDone)")
	case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
	default:
		return fmt.Errorf("replication: unexpected message %T", msg)
	}
	return nil
}

// nextDeadline is when the read must give up waiting for data: the next
// status update due, or the next liveness check.
func (c *Conn) nextDeadline() time.Time {
	d := c.lastStatus.Add(c.cfg.StatusInterval)
	if c.Acked() > c.sentFlush {
		d = c.lastStatus.Add(AckDelay)
	}
	if c.live.enabled() && c.live.checkAt.Before(d) {
		d = c.live.checkAt
	}
	return d
}

// waker lets other goroutines interrupt the owner's blocking read (for a
// new acknowledgement, or the end of the context). A wake-up that comes
// while the owner is not reading is kept for its next read, which then
// does not start: the owner looks at its state first.
type waker struct {
	nc net.Conn

	mu       sync.Mutex
	reading  bool
	pending  bool
	deadline time.Time // the read deadline set on nc
}

// wake interrupts the current read, or the next one.
func (w *waker) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = true
	if w.reading {
		w.setDeadline(time.Unix(1, 0))
	}
}

// beginRead prepares a read that gives up at deadline. It reports false,
// and consumes the wake-up, if one came since the last read.
func (w *waker) beginRead(deadline time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending {
		w.pending = false
		return false
	}
	w.setDeadline(deadline)
	w.reading = true
	return true
}

func (w *waker) endRead() {
	w.mu.Lock()
	w.reading = false
	w.mu.Unlock()
}

// setDeadline sets the read deadline unless it is set already (a system
// call saved on almost every message). Called with mu held.
func (w *waker) setDeadline(t time.Time) {
	if t.Equal(w.deadline) {
		return
	}
	w.deadline = t
	// An error means the connection is closed; the read reports it.
	_ = w.nc.SetReadDeadline(t)
}

// clear removes the read deadline.
func (w *waker) clear() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.setDeadline(time.Time{})
}

// liveness tells a connection that went silent from one that is quiet. It
// looks at the stream every half of the receive timeout: if nothing has
// arrived since the last look, it asks the server for a reply; if nothing
// has arrived by the next look either, the connection is dead. The time
// the owner spends outside the read (a slow handler holding the stream
// back) is not silence: a look after it sees the message the owner was
// busy with.
type liveness struct {
	half    time.Duration // 0: off
	checkAt time.Time
	msgs    uint64 // messages received
	seen    uint64 // msgs at the last look
	asked   bool   // a reply was requested at the last look
}

type verdict int

const (
	alive verdict = iota
	askReply
	dead
)

func (l *liveness) start(timeout time.Duration, now time.Time) {
	*l = liveness{}
	if timeout > 0 {
		l.half = timeout / 2
		l.checkAt = now.Add(l.half)
	}
}

func (l *liveness) enabled() bool { return l.half > 0 }

func (l *liveness) received() { l.msgs++ }

func (l *liveness) check(now time.Time) verdict {
	if !l.enabled() || now.Before(l.checkAt) {
		return alive
	}
	l.checkAt = now.Add(l.half)
	switch {
	case l.msgs != l.seen:
		l.seen, l.asked = l.msgs, false
		return alive
	case !l.asked:
		l.asked = true
		return askReply
	}
	return dead
}
