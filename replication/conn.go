package replication

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/walex-go/walex/internal/sqlquote"
)

// LSN is a WAL position.
type LSN = pglogrepl.LSN

// Config configures one replication session.
type Config struct {
	// Conn is the connection configuration. Connect copies it and sets the
	// replication=database runtime parameter.
	Conn *pgconn.Config
	// Slot is the replication slot name. For a temporary slot Connect adds a
	// random suffix so that several processes with the same name coexist.
	Slot string
	// Temporary creates a temporary slot (dropped by the server when the
	// session ends). Otherwise a durable slot is reused or created.
	Temporary bool
	// Publication is the publication to stream.
	Publication string
	// ProtoVersion forces a pgoutput protocol version; 0 picks the highest
	// the server supports (see DefaultProtoVersion).
	ProtoVersion int
	// OriginNone asks the server (PostgreSQL 16+) to send only changes
	// that did not come from another replication origin.
	OriginNone bool
	// Binary asks for values in their binary form (pgoutput's binary
	// option, PostgreSQL 14+; ignored before). The server then sends binary
	// for every type that has a send function.
	Binary bool
	// NoStreaming turns off streaming of in-progress transactions (protocol
	// version 2+).
	NoStreaming bool
	// ReadCoalesce is how long a busy stream is left to accumulate in the
	// socket before it is read again, once walex has caught up with the
	// server (see coalescingReader): fewer system calls and wake-ups on
	// both sides, at the cost of at most this much latency while the
	// stream is busy. 0 means DefaultReadCoalesce; negative turns it off.
	ReadCoalesce time.Duration
	// StatusInterval is how often a standby status update is sent. Default 10 s.
	StatusInterval time.Duration
	// Logger receives connection events. Default: discard.
	Logger *slog.Logger
}

// OutputSettings are the session settings the text form of values depends
// on, pinned on the replication connection (and on any connection whose
// output must match it).
var OutputSettings = map[string]string{"DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "extra_float_digits": "3", "bytea_output": "hex"}

// readBufferSize is the size of the socket read buffer.
const readBufferSize = 256 << 10

// Conn is one replication connection. One goroutine owns it: it calls
// Stream, and from within Stream's callbacks may call SendStatus. Ack may
// be called from any goroutine.
type Conn struct {
	cfg           Config
	conn          *pgconn.PgConn
	serverVersion int
	slot          string
	protoVersion  int
	streaming     bool

	received   atomic.Uint64 // highest WAL position received (write)
	serverEnd  atomic.Uint64 // server's WAL end as last reported
	acked      atomic.Uint64 // flush/apply: end LSN of the last fully handled transaction
	ackNow     chan struct{}
	lastStatus time.Time
	sentFlush  LSN
}

// Connect opens a replication connection, checks the server (wal_level,
// publication), creates or takes over the slot and starts streaming.
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadCoalesce == 0 {
		cfg.ReadCoalesce = DefaultReadCoalesce
	}
	cc := cfg.Conn.Copy()
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["replication"] = "database"
	// pgoutput sends values in their text form, which depends on these
	// settings; a database or role default (ALTER DATABASE ... SET
	// DateStyle = 'SQL, DMY') would otherwise make values undecodable.
	// Startup parameters take precedence over such defaults. TimeZone is
	// left alone: timestamptz text carries its offset.
	maps.Copy(cc.RuntimeParams, OutputSettings)
	// Read the stream in large chunks: pgproto3 alone reads at most 8 KiB
	// per system call, which wakes this process (and costs the walsender a
	// context switch) for every few rows.
	cc.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		if cfg.ReadCoalesce > 0 {
			r = newCoalescingReader(r, w, cfg.ReadCoalesce)
		}
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, readBufferSize), w)
	}
	conn, err := pgconn.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, ClassifyConnectError(err)
	}
	c := &Conn{cfg: cfg, conn: conn, ackNow: make(chan struct{}, 1)}
	if err := c.setup(ctx); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return c, nil
}

// ClassifyConnectError marks connection errors that retrying cannot fix
// (authentication, missing database, missing privilege) as permanent.
func ClassifyConnectError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return &PermanentError{Err: fmt.Errorf("replication: authentication failed: check the user, password and pg_hba.conf (a replication connection needs a 'replication' line, or 'all' in PostgreSQL 16+): %w", err)}
		case "3D000": // invalid_catalog_name
			return &PermanentError{Err: fmt.Errorf("replication: database does not exist: check the database name: %w", err)}
		case "42501": // insufficient_privilege
			return &PermanentError{Err: fmt.Errorf("replication: the user may not open a replication connection: grant it the REPLICATION attribute (ALTER ROLE ... REPLICATION; on RDS: GRANT rds_replication): %w", err)}
		}
	}
	return fmt.Errorf("replication: connect: %w", err)
}

// DefaultProtoVersion is the highest pgoutput protocol version a server
// of the given major version supports: 1 before PostgreSQL 14, 2 (streaming
// of in-progress transactions) on 14, 3 (two-phase, unused) on 15, 4
// (parallel streaming; used here with streaming 'on') on 16 and later.
func DefaultProtoVersion(serverMajor int) int {
	switch {
	case serverMajor >= 16:
		return 4
	case serverMajor == 15:
		return 3
	case serverMajor == 14:
		return 2
	}
	return 1
}

// ServerVersion is the server's major version, e.g. 15.
func (c *Conn) ServerVersion() int { return c.serverVersion }

// Slot is the name of the slot in use.
func (c *Conn) Slot() string { return c.slot }

// ProtoVersion is the pgoutput protocol version in use.
func (c *Conn) ProtoVersion() int { return c.protoVersion }

// Binary reports whether values come in their binary form.
func (c *Conn) Binary() bool { return c.cfg.Binary && c.serverVersion >= 14 }

// PID is the walsender's backend process ID.
func (c *Conn) PID() uint32 { return c.conn.PID() }

func (c *Conn) setup(ctx context.Context) error {
	v := c.conn.ParameterStatus("server_version_num")
	if n, err := strconv.Atoi(v); err == nil {
		c.serverVersion = n / 10000
	} else {
		// server_version_num is not reported on connect; parse server_version.
		sv := c.conn.ParameterStatus("server_version")
		major, _, _ := strings.Cut(sv, ".")
		c.serverVersion, _ = strconv.Atoi(strings.TrimFunc(major, func(r rune) bool { return r < '0' || r > '9' }))
	}
	if c.serverVersion != 0 && c.serverVersion < 10 {
		return permanent("replication: PostgreSQL %d is not supported: logical replication with pgoutput needs PostgreSQL 10 or later", c.serverVersion)
	}

	walLevel, err := c.queryValue(ctx, "SHOW wal_level")
	if err != nil {
		return fmt.Errorf("replication: read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return &PermanentError{Err: fmt.Errorf("replication: %w (it is %q)", ErrWALLevel, walLevel)}
	}
	if v, err := c.queryValue(ctx, "SHOW wal_sender_timeout"); err == nil {
		if timeout, ok := parsePGDuration(v); ok && timeout > 0 && c.cfg.StatusInterval > timeout/2 {
			c.cfg.Logger.Warn("walex status interval is too close to the server's wal_sender_timeout; using a third of the timeout",
				"status_interval", c.cfg.StatusInterval, "wal_sender_timeout", timeout)
			c.cfg.StatusInterval = timeout / 3
		}
	}
	n, err := c.queryValue(ctx, "SELECT count(*) FROM pg_publication WHERE pubname = "+sqlquote.Literal(c.cfg.Publication))
	if err != nil {
		return fmt.Errorf("replication: check publication: %w", err)
	}
	if n == "0" {
		return &PermanentError{Err: fmt.Errorf("replication: %q: %w", c.cfg.Publication, ErrPublicationNotFound)}
	}

	c.protoVersion = c.cfg.ProtoVersion
	if c.protoVersion == 0 {
		c.protoVersion = DefaultProtoVersion(c.serverVersion)
	}
	if max := DefaultProtoVersion(c.serverVersion); c.serverVersion > 0 && c.protoVersion > max {
		return permanent("replication: pgoutput protocol version %d needs a newer server than PostgreSQL %d (at most %d)", c.protoVersion, c.serverVersion, max)
	}
	c.streaming = c.protoVersion >= 2 && !c.cfg.NoStreaming

	if err := c.createSlot(ctx); err != nil {
		return err
	}
	return c.startReplication(ctx)
}

func (c *Conn) createSlot(ctx context.Context) error {
	if c.cfg.Temporary {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.slot = c.cfg.Slot + "_" + hex.EncodeToString(b[:])
		sql := fmt.Sprintf("CREATE_REPLICATION_SLOT %s TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT", sqlquote.Ident(c.slot))
		if _, err := c.conn.Exec(ctx, sql).ReadAll(); err != nil {
			return fmt.Errorf("replication: create temporary slot %q: %w", c.slot, err)
		}
		c.cfg.Logger.Info("walex created temporary replication slot", "slot", c.slot)
		return nil
	}
	c.slot = c.cfg.Slot
	walStatus := "''"
	if c.serverVersion >= 13 {
		walStatus = "coalesce(wal_status, '')"
	}
	rows, err := c.query(ctx, "SELECT plugin, coalesce(database, ''), active, coalesce(active_pid, 0), "+walStatus+" FROM pg_replication_slots WHERE slot_name = "+sqlquote.Literal(c.slot))
	if err != nil {
		return fmt.Errorf("replication: look up slot %q: %w", c.slot, err)
	}
	if len(rows) == 0 {
		sql := fmt.Sprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput NOEXPORT_SNAPSHOT", sqlquote.Ident(c.slot))
		if _, err := c.conn.Exec(ctx, sql).ReadAll(); err != nil {
			return fmt.Errorf("replication: create slot %q: %w", c.slot, err)
		}
		c.cfg.Logger.Info("walex created durable replication slot", "slot", c.slot)
		return nil
	}
	plugin, db, active, pid, status := rows[0][0], rows[0][1], rows[0][2], rows[0][3], rows[0][4]
	if status == "lost" {
		return &PermanentError{Err: fmt.Errorf("replication: slot %q: %w", c.slot, ErrSlotInvalidated)}
	}
	if plugin != "pgoutput" {
		return &PermanentError{Err: fmt.Errorf("replication: slot %q uses output plugin %q, not pgoutput: %w; choose another SlotName", c.slot, plugin, ErrSlotMismatch)}
	}
	if db != c.cfg.Conn.Database {
		return &PermanentError{Err: fmt.Errorf("replication: slot %q belongs to database %q, not %q: %w; choose another SlotName", c.slot, db, c.cfg.Conn.Database, ErrSlotMismatch)}
	}
	if active == "t" {
		return &SlotInUseError{Slot: c.slot, PID: pid}
	}
	return nil
}

// SlotInUseError reports the backend that holds a durable slot. It
// matches ErrSlotInUse with errors.Is.
type SlotInUseError struct {
	Slot string
	PID  string
}

// Error implements the error interface.
func (e *SlotInUseError) Error() string {
	return fmt.Sprintf("replication: slot %q is in use by backend pid %s", e.Slot, e.PID)
}

// Is makes errors.Is(err, ErrSlotInUse) true.
func (e *SlotInUseError) Is(target error) bool { return target == ErrSlotInUse }

func (c *Conn) startReplication(ctx context.Context) error {
	opts := []string{
		fmt.Sprintf("proto_version '%d'", c.protoVersion),
		"publication_names " + sqlquote.Literal(sqlquote.Ident(c.cfg.Publication)),
	}
	if c.serverVersion >= 14 {
		opts = append(opts, "messages 'true'")
	}
	if c.streaming {
		opts = append(opts, "streaming 'on'")
	}
	if c.Binary() {
		opts = append(opts, "binary 'true'")
	}
	if c.cfg.OriginNone && c.serverVersion >= 16 {
		opts = append(opts, "origin 'none'")
	}
	sql := fmt.Sprintf("START_REPLICATION SLOT %s LOGICAL 0/0 (%s)", sqlquote.Ident(c.slot), strings.Join(opts, ", "))
	c.conn.Frontend().Send(&pgproto3.Query{String: sql})
	if err := c.conn.Frontend().Flush(); err != nil {
		return fmt.Errorf("replication: send START_REPLICATION: %w", err)
	}
	for {
		msg, err := c.conn.ReceiveMessage(ctx)
		if err != nil {
			return fmt.Errorf("replication: START_REPLICATION: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyBothResponse:
			c.cfg.Logger.Info("walex replication started", "slot", c.slot, "proto_version", c.protoVersion, "streaming", c.streaming, "binary", c.Binary(), "server_version", c.serverVersion)
			return nil
		case *pgproto3.ErrorResponse:
			err := pgconn.ErrorResponseToPgError(msg)
			if err.Code == "55006" { // object_in_use
				return &SlotInUseError{Slot: c.slot, PID: "?"}
			}
			if err.Code == "42704" { // undefined_object: publication dropped
				return &PermanentError{Err: fmt.Errorf("replication: %w: %w", ErrPublicationNotFound, err)}
			}
			return fmt.Errorf("replication: START_REPLICATION: %w", err)
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			return fmt.Errorf("replication: unexpected %T in reply to START_REPLICATION", msg)
		}
	}
}

// Ack records that everything up to lsn (a transaction's end LSN) was
// handled; the next status update reports it as flushed. Safe from any
// goroutine. Ack never moves the position backwards.
func (c *Conn) Ack(lsn LSN) {
	for {
		old := c.acked.Load()
		if uint64(lsn) <= old || c.acked.CompareAndSwap(old, uint64(lsn)) {
			break
		}
	}
}

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

// RequestStatus asks the owner goroutine to send a status update soon.
// Safe from any goroutine.
func (c *Conn) RequestStatus() {
	select {
	case c.ackNow <- struct{}{}:
	default:
	}
}

// SendStatus sends a standby status update: write = received, flush =
// apply = acknowledged. Only the goroutine that runs Stream may call it.
func (c *Conn) SendStatus(replyRequested bool) error {
	flush := c.Acked()
	write := c.Received()
	if write < flush {
		write = flush
	}
	buf := make([]byte, 0, 40)
	buf = append(buf, 'd', 0, 0, 0, 0, 'r')
	buf = binary.BigEndian.AppendUint64(buf, uint64(write))
	buf = binary.BigEndian.AppendUint64(buf, uint64(flush))
	buf = binary.BigEndian.AppendUint64(buf, uint64(flush))
	buf = binary.BigEndian.AppendUint64(buf, uint64(time.Since(pgEpoch).Microseconds()))
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
		c.cfg.Logger.Debug("walex acknowledged", "slot", c.slot, "flush_lsn", flush.String(), "write_lsn", write.String())
		c.sentFlush = flush
	}
	return nil
}

var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// KeepAlive sends a status update if one is due. The owner goroutine calls
// it while it is blocked in a Handler callback (for example waiting for a
// slow consumer), so that the server does not time the connection out.
func (c *Conn) KeepAlive() error {
	if c.statusDue() {
		return c.SendStatus(false)
	}
	return nil
}

func (c *Conn) statusDue() bool {
	return time.Since(c.lastStatus) >= c.cfg.StatusInterval
}

// Handler receives the stream.
type Handler struct {
	// Data is called for each XLogData with the WAL position of its start
	// and its pgoutput payload, which is valid only during the call.
	Data func(walStart LSN, data []byte) error
	// Idle reports that no transaction is open and everything received so
	// far is acknowledged; a keepalive's WAL end is then acknowledged too,
	// so that the slot advances while the published tables are quiet.
	Idle func() bool
}

// Stream reads the replication stream until ctx ends (then it returns
// ctx's error; call Finish for a last status update) or an error occurs. It
// answers keepalives and sends status updates on the interval.
func (c *Conn) Stream(ctx context.Context, h Handler) error {
	nc := c.conn.Conn()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			_ = nc.SetReadDeadline(time.Now())
		case <-stop:
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	c.lastStatus = time.Time{}
	var deadline time.Time
	for {
		select {
		case <-c.ackNow:
			if err := c.SendStatus(false); err != nil {
				return err
			}
		default:
		}
		if c.statusDue() {
			if err := c.SendStatus(false); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d := c.lastStatus.Add(c.cfg.StatusInterval); !d.Equal(deadline) {
			deadline = d
			if err := nc.SetReadDeadline(d); err != nil {
				return fmt.Errorf("replication: set read deadline: %w", err)
			}
		}
		msg, err := c.conn.ReceiveMessage(context.Background())
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				deadline = time.Time{}
				continue
			}
			return fmt.Errorf("replication: receive: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				return fmt.Errorf("replication: empty CopyData message")
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("replication: %w", err)
				}
				c.serverEnd.Store(uint64(ka.ServerWALEnd))
				if h.Idle != nil && h.Idle() && ka.ServerWALEnd > c.Received() {
					// Everything sent before this keepalive was handled.
					c.setReceived(ka.ServerWALEnd)
					c.Ack(ka.ServerWALEnd)
				}
				if ka.ReplyRequested {
					if err := c.SendStatus(false); err != nil {
						return err
					}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("replication: %w", err)
				}
				c.serverEnd.Store(uint64(xld.ServerWALEnd))
				c.setReceived(xld.WALStart + LSN(len(xld.WALData)))
				if err := h.Data(xld.WALStart, xld.WALData); err != nil {
					return err
				}
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
	}
}

// Finish sends a last status update after Stream returned, so that the
// server learns the final acknowledged position. It gives up after 5 s.
func (c *Conn) Finish() error {
	if c.conn.IsClosed() {
		return errors.New("replication: connection is closed")
	}
	_ = c.conn.Conn().SetReadDeadline(time.Time{})
	_ = c.conn.Conn().SetWriteDeadline(time.Now().Add(5 * time.Second))
	defer c.conn.Conn().SetWriteDeadline(time.Time{})
	return c.SendStatus(false)
}

// Close closes the connection. A temporary slot is dropped by the server.
func (c *Conn) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return c.conn.Close(ctx)
}

func (c *Conn) query(ctx context.Context, sql string) ([][]string, error) {
	results, err := c.conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	var rows [][]string
	for _, r := range results {
		for _, row := range r.Rows {
			s := make([]string, len(row))
			for i, v := range row {
				s[i] = string(v)
			}
			rows = append(rows, s)
		}
	}
	return rows, nil
}

func (c *Conn) queryValue(ctx context.Context, sql string) (string, error) {
	rows, err := c.query(ctx, sql)
	if err != nil {
		return "", err
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return "", fmt.Errorf("query %q returned %d rows", sql, len(rows))
	}
	return rows[0][0], nil
}

// parsePGDuration parses a time setting as SHOW prints it: "60s", "1min",
// "500ms", "0".
func parsePGDuration(s string) (time.Duration, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, false
	}
	unit := map[string]time.Duration{"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	u, ok := unit[strings.TrimSpace(s[i:])]
	if !ok {
		return 0, false
	}
	return time.Duration(n) * u, true
}
