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

// coalescingReader lets the stream accumulate in the socket while walex is
// busy reading it. A reader that has caught up with the walsender would
// otherwise block after every message and be woken for the next one: a
// system call, a park and a wake-up per row on the client, and a context
// switch per row for the server, whose CPU is the ceiling of the stream.
//
// When a read comes back short (the socket was drained) less than delay
// after the previous read (the stream is busy), the next read waits until
// delay after the short one, by which time many messages have arrived and
// are read with one system call. A quiet stream, where reads are further
// apart than delay, is read as soon as data arrives: its latency is
// unchanged. The added latency is at most delay.
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
	last  time.Time // when the previous read returned
	next  time.Time // earliest start of the next read; zero: at once
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
	if !c.next.IsZero() {
		if d := time.Until(c.next); d > 0 {
			lowered := c.sock != nil && setLowWater(c.sock, coalesceLowWater)
			time.Sleep(d)
			if lowered {
				setLowWater(c.sock, 1)
			}
		}
		c.next = time.Time{}
	}
	n, err := c.r.Read(p)
	now := time.Now()
	if err == nil && n < coalesceBusyBytes && n < len(p) && now.Sub(c.last) < c.delay {
		c.next = now.Add(c.delay)
	}
	c.last = now
	return n, err
}
