package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/walex-go/walex/internal/logkey"
	"github.com/walex-go/walex/internal/pgtime"
)

// Ack records that everything up to lsn (a transaction's end LSN) was
// handled; the server learns it within AckDelay. Safe from any goroutine.
// Ack never moves the position backwards.
func (c *Conn) Ack(lsn LSN) {
	for {
		old := c.acked.Load()
		if uint64(lsn) <= old {
			return
		}
		if c.acked.CompareAndSwap(old, uint64(lsn)) {
			break
		}
	}
	if c.ackArmed.CompareAndSwap(true, false) {
		c.wake.wake()
		select {
		case c.acks <- struct{}{}:
		default:
		}
	}
}

// Acks signals the first Ack after each status update. The owner selects
// on it while it is held up outside Stream (see KeepAlive).
func (c *Conn) Acks() <-chan struct{} { return c.acks }

// Acked is the last acknowledged position.
func (c *Conn) Acked() LSN { return LSN(c.acked.Load()) }

// Received is the highest WAL position received. Safe from any goroutine.
func (c *Conn) Received() LSN { return LSN(c.received.Load()) }

// ServerWALEnd is the server's WAL end as of its last message. Safe from
// any goroutine.
func (c *Conn) ServerWALEnd() LSN { return LSN(c.serverEnd.Load()) }

func (c *Conn) setReceived(lsn LSN) {
	if uint64(lsn) > c.received.Load() {
		c.received.Store(uint64(lsn))
	}
}

// KeepAlive sends a status update if one is due: a new acknowledgement
// (at most one update per AckDelay) or StatusInterval since the last. The
// owner calls it while it is held up in a Handler callback (waiting for a
// slow consumer), when Acks signals or when the returned wait has passed,
// so that acknowledgements reach the server promptly and the server does
// not time the connection out.
func (c *Conn) KeepAlive() (next time.Duration, err error) {
	now := time.Now()
	if c.statusDue(now) {
		if err := c.sendStatus(false); err != nil {
			return 0, err
		}
		now = time.Now()
	}
	return c.nextDeadline().Sub(now), nil
}

// statusDue reports whether a status update is due: StatusInterval since
// the last, or AckDelay since the last with a new acknowledgement.
func (c *Conn) statusDue(now time.Time) bool {
	since := now.Sub(c.lastStatus)
	return since >= c.cfg.StatusInterval || since >= AckDelay && c.Acked() > c.sentFlush
}

// sendStatus sends a standby status update: write = received, flush =
// apply = acknowledged.
func (c *Conn) sendStatus(replyRequested bool) error {
	c.ackArmed.Store(true) // an Ack from now on wakes the owner
	flush := c.Acked()
	write := max(c.Received(), flush)
	buf := make([]byte, 0, 40)
	buf = append(buf, 'd', 0, 0, 0, 0, 'r')
	buf = binary.BigEndian.AppendUint64(buf, uint64(write))
	buf = binary.BigEndian.AppendUint64(buf, uint64(flush))
	buf = binary.BigEndian.AppendUint64(buf, uint64(flush))
	buf = binary.BigEndian.AppendUint64(buf, uint64(pgtime.Micros(time.Now())))
	if replyRequested {
		buf = append(buf, 1)
	} else {
		buf = append(buf, 0)
	}
	binary.BigEndian.PutUint32(buf[1:], uint32(len(buf)-1))
	if err := c.conn.Frontend().SendUnbufferedEncodedCopyData(buf); err != nil {
		return fmt.Errorf("replication: send standby status: %w", err)
	}
	c.lastStatus = time.Now()
	if flush != c.sentFlush {
		c.cfg.Logger.Debug("walex: acknowledged", logkey.Slot, c.slot, logkey.FlushLSN, flush.String(), logkey.WriteLSN, write.String())
		c.sentFlush = flush
	}
	return nil
}

// Finish sends a last status update after Stream returned, so that the
// server learns the final acknowledged position. It gives up after 5 s.
func (c *Conn) Finish() error {
	if c.conn.IsClosed() {
		return errors.New("replication: connection is closed")
	}
	c.wake.clear()
	_ = c.conn.Conn().SetWriteDeadline(time.Now().Add(5 * time.Second))
	defer c.conn.Conn().SetWriteDeadline(time.Time{})
	return c.sendStatus(false)
}
