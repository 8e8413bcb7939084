package replication

import (
	"errors"
	"net"
	"runtime"
	"syscall"
	"testing"
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

func TestCoalescingReaderWaitsWhileBusy(t *testing.T) {
	const delay = 30 * time.Millisecond
	small := make([]byte, 100)
	c := &coalescingReader{r: &chunks{data: [][]byte{small, small, small}}, delay: delay}
	buf := make([]byte, 4096)

	// The first read has no predecessor: the stream is not known to be busy.
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if !c.next.IsZero() {
		t.Fatal("the first read scheduled a wait")
	}
	// A short read right after another: busy, so the next read waits.
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if c.next.IsZero() {
		t.Fatal("a short read right after another did not schedule a wait")
	}
	start := time.Now()
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < delay*2/3 {
		t.Errorf("the read after a busy short read came after %v, want about %v", waited, delay)
	}
}

func TestCoalescingReaderQuietStreamDoesNotWait(t *testing.T) {
	const delay = 5 * time.Millisecond
	small := make([]byte, 100)
	c := &coalescingReader{r: &chunks{data: [][]byte{small, small}}, delay: delay}
	buf := make([]byte, 4096)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * delay) // the next message comes later than delay
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if !c.next.IsZero() {
		t.Error("a read long after the previous one scheduled a wait: a quiet stream would get extra latency")
	}
}

func TestCoalescingReaderFullReadDoesNotWait(t *testing.T) {
	big := make([]byte, coalesceBusyBytes)
	c := &coalescingReader{r: &chunks{data: [][]byte{big, big, make([]byte, 10)}}, delay: time.Hour}
	buf := make([]byte, 4096)
	for range 2 {
		if n, err := c.Read(buf); err != nil || n != len(buf) {
			t.Fatalf("read %d, %v", n, err)
		}
	}
	if !c.next.IsZero() {
		t.Error("a read that filled the buffer scheduled a wait: the reader is behind, not caught up")
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

	const delay = 20 * time.Millisecond
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

	// Two small messages in quick succession make the stream busy; a third,
	// sent while the reader waits, must still be read (the low-water mark is
	// lowered before the read) and arrive whole.
	buf := make([]byte, 4096)
	for i := range 2 {
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
		time.Sleep(delay / 3)
		seen <- lowWater()
		_, _ = server.Write([]byte{2})
	}()
	if n, err := c.Read(buf); err != nil || n != 1 || buf[0] != 2 {
		t.Fatalf("third read: %v %v", buf[0], err)
	}
	if got := <-seen; got != coalesceLowWater {
		t.Errorf("low-water mark while waiting = %d, want %d", got, coalesceLowWater)
	}
	if got := lowWater(); got != 1 {
		t.Errorf("low-water mark after the wait = %d, want 1", got)
	}
}
