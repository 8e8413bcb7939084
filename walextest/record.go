package walextest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/walex-go/walex/decoder/pgoutput"
	"github.com/walex-go/walex/replication"
)

// A recorded stream is what PostgreSQL sent walex, message by message: a
// sequence of frames, each a uint32 big-endian length N followed by N
// bytes, one pgoutput message (the payload of an XLogData message, from
// its type byte on). This is the format of the repository's
// decoder/testdata/*/stream.bin.

// Replay reads a recorded stream from r and delivers it through the
// decoder to the handlers, as Deliver does.
func (h *Harness) Replay(ctx context.Context, r io.Reader) ([]Call, error) {
	n := len(h.Calls())
	br := bufio.NewReader(r)
	for i := 0; ; i++ {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return h.since(n), nil
			}
			return h.since(n), fmt.Errorf("walextest: recorded stream: frame %d: %w", i, err)
		}
		size := binary.BigEndian.Uint32(hdr[:])
		if size > 1<<30 {
			return h.since(n), fmt.Errorf("walextest: recorded stream: frame %d claims %d bytes", i, size)
		}
		msg := make([]byte, size)
		if _, err := io.ReadFull(br, msg); err != nil {
			return h.since(n), fmt.Errorf("walextest: recorded stream: frame %d: %w", i, err)
		}
		if err := h.feed(ctx, [][]byte{msg}); err != nil {
			return h.since(n), err
		}
	}
}

// Record records a stream to replay: it creates a temporary replication
// slot on the database at url (a role with REPLICATION, and a
// publication), runs steps (which make the changes, on connections of
// their own), and writes to w every message the server sends for
// publication until it has sent everything steps wrote. Values are
// recorded in text, with the newest protocol version the server speaks
// and with logical decoding messages.
func Record(ctx context.Context, url, publication string, w io.Writer, steps func(ctx context.Context) error) error {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("walextest: Record: %w", err)
	}
	conn, err := replication.Connect(ctx, replication.Config{Conn: cfg, Slot: "walextest_record", Temporary: true, Publication: publication})
	if err != nil {
		return fmt.Errorf("walextest: Record: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	mark := "walextest_record_" + hex.EncodeToString(nonce[:])
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		err := steps(ctx)
		if err == nil {
			err = emit(ctx, url, mark)
		}
		if err != nil {
			cancel(fmt.Errorf("walextest: Record: steps: %w", err))
		}
	}()
	bw := bufio.NewWriter(w)
	errDone := errors.New("done")
	err = conn.Stream(ctx, replication.Handler{
		Data: func(_ replication.LSN, data []byte) error {
			if isMark(data, mark) {
				return errDone
			}
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], uint32(len(data)))
			if _, err := bw.Write(hdr[:]); err != nil {
				return err
			}
			_, err := bw.Write(data)
			return err
		},
		Idle: func() bool { return true },
	})
	if !errors.Is(err, errDone) {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		return err
	}
	return bw.Flush()
}

// emit writes the non-transactional message that ends a recording.
func emit(ctx context.Context, url, prefix string) error {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	_, err = c.Exec(ctx, `SELECT pg_logical_emit_message(false, $1, '')`, prefix)
	return err
}

// isMark reports whether data is the non-transactional message prefix.
func isMark(data []byte, prefix string) bool {
	if len(data) == 0 || pgoutput.MessageType(data[0]) != pgoutput.MsgMessage {
		return false
	}
	var p pgoutput.Parser
	m, err := p.Parse(data, false)
	if err != nil {
		return false
	}
	lm, ok := m.(*pgoutput.LogicalMessage)
	return ok && !lm.Transactional && lm.Prefix == prefix
}
