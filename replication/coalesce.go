package replication

import (
	"io"
	"net"
	"syscall"
	"time"
)

// DefaultReadCoalesce is the default Config.ReadCoalesce.
const DefaultReadCoalesce = time.Millisecond

// coalesceBusyBytes is the size below which a read counts as short: the
// socket held less than this, so the reader has caught up with the server.
const coalesceBusyBytes = 32 << 10

// coalesceLowWater is the receive low-water mark while the reader waits:
// enough to fill a good part of the read buffer.
const coalesceLowWater = 128 << 10

// coalesceBusyReads is how many reads within one delay make the stream
// busy; coalesceQuietBytes is what a read after a wait must at least
// return for it to stay busy.
const (
	coalesceBusyReads  = 8
	coalesceQuietBytes = 1 << 10
)

// coalescingReader lets the stream accumulate in the socket while walex is
// busy reading it. A reader that has caught up with the walsender would
// otherwise block after every message and be woken for the next one: a
// system call, a park and a wake-up per row on the client, and a context
// switch per row for the server, whose CPU is the ceiling of the stream.
//
// The stream becomes busy when coalesceBusyReads reads fall within one
// delay. While it is busy, a read that comes back short (the socket was
// drained: walex has caught up) makes the next read wait until delay after
// it, by which time many messages have arrived and are read with one
// system call. When a read after such a wait brings less than
// coalesceQuietBytes, the stream has slowed down and is read at once
// again. A quiet stream is thus read as soon as data arrives, and a busy
// one gets at most delay of added latency.
//
// Waiting alone is not enough: the socket stays registered with the Go
// runtime's poller, which is woken by every segment that arrives, so while
// it waits the reader raises the socket's receive low-water mark
// (SO_RCVLOWAT, where the platform has it), below which the kernel does not
// report the socket readable, and lowers it again before it reads.
type coalescingReader struct {
	r     io.Reader
	sock  syscall.RawConn // the TCP socket, if known: for the low-water mark
	delay time.Duration

	busy     bool
	winStart time.Time // start of the current window of delay
	winReads int       // reads in it
	next     time.Time // earliest start of the next read; zero: at once
}

// newCoalescingReader returns a coalescingReader that reads r, which reads
// the connection conn (a TCP or TLS connection, or anything else, for which
// the low-water mark is left alone).
func newCoalescingReader(r io.Reader, conn any, delay time.Duration) *coalescingReader {
	c := &coalescingReader{r: r, delay: delay}
	if tc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		conn = tc.NetConn()
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			c.sock = rc
		}
	}
	return c
}

func (c *coalescingReader) Read(p []byte) (int, error) {
	waited := false
	if !c.next.IsZero() {
		if d := time.Until(c.next); d > 0 {
			lowered := c.sock != nil && setLowWater(c.sock, coalesceLowWater)
			time.Sleep(d)
			if lowered {
				setLowWater(c.sock, 1)
			}
		}
		c.next = time.Time{}
		waited = true
	}
	n, err := c.r.Read(p)
	if err != nil {
		return n, err
	}
	now := time.Now()
	if now.Sub(c.winStart) >= c.delay {
		c.winStart, c.winReads = now, 0
	}
	c.winReads++
	switch {
	case waited && n < coalesceQuietBytes:
		c.busy = false
	case c.winReads >= coalesceBusyReads:
		c.busy = true
	}
	if c.busy && n < len(p) && n < coalesceBusyBytes {
		c.next = now.Add(c.delay)
	}
	return n, err
}
