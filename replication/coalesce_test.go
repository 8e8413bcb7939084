package replication

import (
	"errors"
	"net"
	"runtime"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// chunks is an io.Reader that returns its chunks one per Read, at once.
type chunks struct {
	data [][]byte
	err  error
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := copy(p, c.data[0])
	c.data = c.data[1:]
	return n, nil
}

// The coalescing tests that wait run in a synctest bubble: time there is
// the bubble's own, advanced exactly by the reader's sleeps, so the waits
// are checked to the nanosecond whatever the load on the machine.

func TestCoalescingReaderWaitsWhileBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = time.Millisecond
		small, kib := make([]byte, 100), make([]byte, coalesceQuietBytes)
		var data [][]byte
		for range coalesceBusyReads {
			data = append(data, small)
		}
		data = append(data, kib, small, small)
		c := &coalescingReader{r: &chunks{data: data}, delay: delay}
		buf := make([]byte, 4096)
		read := func() time.Duration {
			t.Helper()
			start := time.Now()
			if _, err := c.Read(buf); err != nil {
				t.Fatal(err)
			}
			return time.Since(start)
		}

		// Reads in quick succession: after coalesceBusyReads of them within
		// delay the stream is busy, and a short read schedules a wait.
		for i := range coalesceBusyReads {
			if waited := read(); waited != 0 {
				t.Fatalf("read %d waited %v", i+1, waited)
			}
			if last := i == coalesceBusyReads-1; c.next.IsZero() == last {
				t.Fatalf("read %d: wait scheduled = %v, want %v", i+1, !c.next.IsZero(), last)
			}
		}
		// The next read waits; it brings enough to stay busy.
		if waited := read(); waited != delay {
			t.Errorf("the read after a busy short read waited %v, want %v", waited, delay)
		}
		if !c.busy || c.next.IsZero() {
			t.Fatal("a read of coalesceQuietBytes after a wait left the busy state")
		}
		// This one waits too, but brings little: the stream has slowed down.
		if waited := read(); waited != delay {
			t.Errorf("second wait: %v, want %v", waited, delay)
		}
		if c.busy || !c.next.IsZero() {
			t.Fatal("a small read after a wait kept the busy state: a slow stream would get extra latency")
		}
		if waited := read(); waited != 0 { // nothing was scheduled
			t.Errorf("a read after the stream slowed down waited %v", waited)
		}
	})
}

func TestCoalescingReaderQuietStreamDoesNotWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 5 * time.Millisecond
		small := make([]byte, 100)
		var data [][]byte
		for range 2 * coalesceBusyReads {
			data = append(data, small)
		}
		c := &coalescingReader{r: &chunks{data: data}, delay: delay}
		buf := make([]byte, 4096)
		for range 2 * coalesceBusyReads {
			if _, err := c.Read(buf); err != nil {
				t.Fatal(err)
			}
			if c.busy || !c.next.IsZero() {
				t.Fatal("reads further apart than delay made the stream busy: a quiet stream would get extra latency")
			}
			time.Sleep(delay + delay/5) // the next message comes later than delay
		}
	})
}

func TestCoalescingReaderFullReadDoesNotWait(t *testing.T) {
	small, big := make([]byte, 100), make([]byte, coalesceBusyBytes)
	var data [][]byte
	for range coalesceBusyReads - 1 {
		data = append(data, small)
	}
	data = append(data, big, big, big)
	c := &coalescingReader{r: &chunks{data: data}, delay: time.Hour}
	buf := make([]byte, 4096)
	for i := range len(data) {
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		if i >= coalesceBusyReads-1 && !c.busy {
			t.Fatalf("read %d: the stream is not busy", i+1)
		}
		if !c.next.IsZero() {
			t.Fatalf("read %d, which filled the buffer, scheduled a wait: the reader is behind, not caught up", i+1)
		}
	}
}

func TestCoalescingReaderPassesErrors(t *testing.T) {
	boom := errors.New("boom")
	c := &coalescingReader{r: &chunks{err: boom}, delay: time.Hour}
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the reader's error", err)
	}
	if !c.next.IsZero() {
		t.Error("an error scheduled a wait")
	}
}

// TestCoalescingReaderLowWater checks on a real TCP connection that the
// reader raises the socket's receive low-water mark while it waits and
// lowers it again before it reads, and that no data is lost or held back.
func TestCoalescingReaderLowWater(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_RCVLOWAT is only used on Linux")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	defer server.Close()

	const delay = 200 * time.Millisecond // long enough for the busy reads to fall within it
	c := newCoalescingReader(client, client, delay)
	if c.sock == nil {
		t.Fatal("no socket found for a *net.TCPConn")
	}
	lowWater := func() int {
		var v int
		var gerr error
		if err := c.sock.Control(func(fd uintptr) {
			v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT)
		}); err != nil || gerr != nil {
			t.Fatalf("getsockopt: %v %v", err, gerr)
		}
		return v
	}

	// Small messages in quick succession make the stream busy; one more,
	// sent while the reader waits, must still be read (the low-water mark is
	// lowered before the read) and arrive whole.
	buf := make([]byte, 4096)
	for i := range coalesceBusyReads {
		if _, err := server.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(buf); err != nil || n != 1 || buf[0] != byte(i) {
			t.Fatalf("read %d: %d %v %v", i, n, buf[0], err)
		}
	}
	if c.next.IsZero() {
		t.Fatal("the stream was not judged busy")
	}
	seen := make(chan int, 1)
	go func() {
		time.Sleep(delay / 4)
		seen <- lowWater()
		_, _ = server.Write([]byte{coalesceBusyReads})
	}()
	if n, err := c.Read(buf); err != nil || n != 1 || buf[0] != coalesceBusyReads {
		t.Fatalf("third read: %v %v", buf[0], err)
	}
	if got := <-seen; got != coalesceLowWater {
		t.Errorf("low-water mark while waiting = %d, want %d", got, coalesceLowWater)
	}
	if got := lowWater(); got != 1 {
		t.Errorf("low-water mark after the wait = %d, want 1", got)
	}
}
