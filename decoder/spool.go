package decoder

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// spool holds the raw pgoutput messages of one streamed (in-progress)
// transaction until its Stream Commit or Stream Abort. Messages are kept in
// memory while the decoder's memory budget allows and appended to a temp
// file past it, so a transaction of any size takes bounded memory.
type spool struct {
	xid     uint32
	mem     [][]byte // each entry: 4-byte subxid, then the message
	memSize int64
	file    *os.File
	w       *bufio.Writer
	entries int
	aborted map[uint32]bool // aborted subtransactions
}

func (s *spool) append(subxid uint32, msg []byte) ([]byte, error) {
	s.entries++
	if s.w != nil {
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[0:], subxid)
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(msg)))
		if _, err := s.w.Write(hdr[:]); err != nil {
			return nil, s.ioErr("write", err)
		}
		if _, err := s.w.Write(msg); err != nil {
			return nil, s.ioErr("write", err)
		}
		return nil, nil
	}
	e := make([]byte, 4+len(msg))
	binary.BigEndian.PutUint32(e, subxid)
	copy(e[4:], msg)
	s.mem = append(s.mem, e)
	s.memSize += int64(len(e))
	return e, nil
}

// spill moves the in-memory messages to a temp file in dir and sends every
// later message there. It returns the number of bytes freed.
func (s *spool) spill(dir string) (int64, error) {
	if s.w != nil {
		return 0, nil
	}
	f, err := os.CreateTemp(dir, fmt.Sprintf("walex-xid%d-*.spill", s.xid))
	if err != nil {
		return 0, fmt.Errorf("decoder: cannot create spill file for streamed transaction %d in %q (set Options.SpillDir to a writable directory): %w", s.xid, dir, err)
	}
	// The file is only ever read through this handle: unlink it now so that
	// nothing is left behind if the process dies.
	_ = os.Remove(f.Name())
	s.file = f
	s.w = bufio.NewWriterSize(f, 256<<10)
	mem := s.mem
	s.mem = nil
	s.entries -= len(mem)
	for _, e := range mem {
		if _, err := s.append(binary.BigEndian.Uint32(e), e[4:]); err != nil {
			return 0, err
		}
	}
	freed := s.memSize
	s.memSize = 0
	return freed, nil
}

func (s *spool) ioErr(op string, err error) error {
	return fmt.Errorf("decoder: spill file of streamed transaction %d: %s: %w", s.xid, op, err)
}

// each calls fn with every message in arrival order, telling whether it
// belongs to an aborted subtransaction. msg is only valid during the call.
func (s *spool) each(fn func(msg []byte, aborted bool) error) error {
	if s.w == nil {
		for _, e := range s.mem {
			if err := fn(e[4:], s.aborted[binary.BigEndian.Uint32(e)]); err != nil {
				return err
			}
		}
		return nil
	}
	if err := s.w.Flush(); err != nil {
		return s.ioErr("flush", err)
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return s.ioErr("seek", err)
	}
	r := bufio.NewReaderSize(s.file, 256<<10)
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return s.ioErr("read", err)
		}
		n := binary.BigEndian.Uint32(hdr[4:])
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return s.ioErr("read", err)
		}
		if err := fn(buf, s.aborted[binary.BigEndian.Uint32(hdr[:])]); err != nil {
			return err
		}
	}
}

func (s *spool) close() {
	if s.file != nil {
		_ = s.file.Close()
		s.file, s.w = nil, nil
	}
	s.mem = nil
}
