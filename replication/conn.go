package replication

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/walex-go/walex/internal/logkey"
	"github.com/walex-go/walex/internal/pgconnect"
	"github.com/walex-go/walex/internal/sqlquote"
)

// LSN is a WAL position.
type LSN = pglogrepl.LSN

// Defaults of Config.
const (
	// DefaultStatusInterval is the longest gap between two status updates.
	DefaultStatusInterval = 10 * time.Second
	// DefaultReceiveTimeout is how long the connection may stay silent
	// before it is treated as broken, as PostgreSQL's own
	// wal_receiver_timeout.
	DefaultReceiveTimeout = 60 * time.Second
	// AckDelay is the shortest gap between two status updates sent for new
	// acknowledgements: an acknowledgement reaches the server at most this
	// long after Ack, and a flood of small transactions costs the server at
	// most one status update per AckDelay.
	AckDelay = 5 * time.Millisecond
)

// Config configures one replication session.
type Config struct {
	// Conn is the connection configuration; it must come from
	// pgconn.ParseConfig. Connect copies it and sets the
	// replication=database runtime parameter.
	Conn *pgconn.Config
	// Slot is the replication slot name. For a temporary slot Connect adds a
	// random suffix so that several processes with the same name coexist.
	Slot string
	// Temporary creates a temporary slot (dropped by the server when the
	// session ends). Otherwise a durable slot is reused or created.
	Temporary bool
	// Failover makes the durable slot a failover slot (PostgreSQL 17+):
	// it is created with the FAILOVER option, and an existing slot without
	// it is altered (ALTER_REPLICATION_SLOT ... (FAILOVER true)). An older
	// server, or a temporary slot, is a permanent error.
	Failover bool
	// Password, when set, is called right before the connection is opened;
	// its result replaces Conn's password. An error from it is transient.
	Password func(ctx context.Context) (string, error)
	// Publication is the publication to stream.
	Publication string
	// ProtoVersion forces a pgoutput protocol version; 0 picks the highest
	// the server supports.
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
	// socket before it is read again, once the reader has caught up with
	// the server (see coalescingReader): fewer system calls and wake-ups on
	// both sides, at the cost of at most this much latency while the
	// stream is busy. 0 means DefaultReadCoalesce; negative turns it off.
	ReadCoalesce time.Duration
	// StatusInterval is the longest gap between two status updates.
	// Default DefaultStatusInterval; cut to a third of the server's
	// wal_sender_timeout when it is longer than half of it.
	StatusInterval time.Duration
	// ReceiveTimeout: when nothing has arrived from the server for this
	// long while the connection waits for it, Stream asks the server for a
	// reply halfway through and, if none comes, fails with
	// ErrReceiveTimeout. 0 means DefaultReceiveTimeout; negative turns the
	// check off.
	ReceiveTimeout time.Duration
	// Supersede is the walsender PID of a connection that the caller gave
	// up on. If that walsender still holds the durable slot (the server
	// has not noticed that its client is gone), Connect terminates it
	// instead of waiting for the server's wal_sender_timeout. A role may
	// terminate the backends of its own connections.
	Supersede uint32
	// Logger receives connection events. Default: discard.
	Logger *slog.Logger
}

// outputSettings are the session settings the text form of values depends
// on, pinned on the replication connection.
var outputSettings = map[string]string{"DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "extra_float_digits": "3", "bytea_output": "hex"}

// OutputSettings returns the session settings that the text form of values
// depends on, as Connect pins them on the replication connection: a
// connection whose output must match the stream's (one that converts
// values to text) sets the same. The map is the caller's.
func OutputSettings() map[string]string { return maps.Clone(outputSettings) }

// readBufferSize is the size of the socket read buffer.
const readBufferSize = 256 << 10

// Conn is one replication connection. One goroutine owns it: it calls
// Stream (or KeepAlive while it is held up outside Stream), Finish and
// Close. Ack and the position getters may be called from any goroutine.
type Conn struct {
	cfg           Config
	conn          *pgconn.PgConn
	serverVersion int
	slot          string
	protoVersion  int
	streaming     bool
	start         LSN // where streaming starts: the slot's confirmed position

	received  atomic.Uint64 // highest WAL position received (write)
	serverEnd atomic.Uint64 // server's WAL end as last reported
	acked     atomic.Uint64 // flush/apply: end LSN of the last fully handled transaction
	streamed  atomic.Bool   // something arrived after START_REPLICATION

	// ackArmed is set when a status update went out: the next Ack wakes
	// the owner (through wake and acks) so that it reports the new
	// position. Further Acks before that update need no wake-up.
	ackArmed atomic.Bool
	acks     chan struct{}
	wake     waker

	// Owner goroutine only.
	lastStatus time.Time
	sentFlush  LSN
	live       liveness
}

// Connect opens a replication connection, checks the server (wal_level,
// the publication), creates or takes over the slot and starts streaming.
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	if cfg.ReceiveTimeout == 0 {
		cfg.ReceiveTimeout = DefaultReceiveTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadCoalesce == 0 {
		cfg.ReadCoalesce = DefaultReadCoalesce
	}
	cc := cfg.Conn.Copy()
	cc.RuntimeParams = maps.Clone(cc.RuntimeParams)
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["replication"] = "database"
	// pgoutput sends values in their text form, which depends on these
	// settings; a database or role default (ALTER DATABASE ... SET
	// DateStyle = 'SQL, DMY') would otherwise make values undecodable.
	// Startup parameters take precedence over such defaults. TimeZone is
	// left alone: timestamptz text carries its offset.
	maps.Copy(cc.RuntimeParams, outputSettings)
	// The SQL sent on this connection quotes names as string literals for
	// standard_conforming_strings = on; where a database or role turns it
	// off, a backslash in a name would escape the closing quote and let
	// the rest of the name run as SQL.
	cc.RuntimeParams["standard_conforming_strings"] = "on"
	// Read the stream in large chunks: pgproto3 alone reads at most 8 KiB
	// per system call, which wakes this process (and costs the walsender a
	// context switch) for every few rows.
	cc.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		if cfg.ReadCoalesce > 0 {
			r = newCoalescingReader(r, w, cfg.ReadCoalesce)
		}
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, readBufferSize), w)
	}
	conn, err := pgconnect.ConnectWithPassword(ctx, cc, "replication", cfg.Password)
	if err != nil {
		return nil, fmt.Errorf("replication: %w", err)
	}
	c := &Conn{cfg: cfg, conn: conn, acks: make(chan struct{}, 1)}
	c.wake.nc = conn.Conn()
	if err := c.setup(ctx); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return c, nil
}

// maxProtoVersion is the highest pgoutput protocol version a server of
// the given major version supports: 1 before PostgreSQL 14, 2 (streaming
// of in-progress transactions) on 14, 3 (two-phase, unused) on 15, 4
// (parallel streaming; used here with streaming 'on') on 16 and later.
func maxProtoVersion(serverMajor int) int {
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

// Binary reports whether values come in their binary form.
func (c *Conn) Binary() bool { return c.cfg.Binary && c.serverVersion >= 14 }

// PID is the process ID of the connection's walsender (pass it as
// Config.Supersede to the next Connect after giving up on this one).
func (c *Conn) PID() uint32 { return c.conn.PID() }

// StartLSN is where the stream started: the slot's confirmed position,
// which the first status update reports back at once.
func (c *Conn) StartLSN() LSN { return c.start }

// Streamed reports whether anything (data or a keepalive) arrived from the
// server after replication started: the connection worked. Safe from any
// goroutine.
func (c *Conn) Streamed() bool { return c.streamed.Load() }

func (c *Conn) setup(ctx context.Context) error {
	v := c.conn.ParameterStatus("server_version_num")
	if n, err := strconv.Atoi(v); err == nil {
		c.serverVersion = n / 10000
	} else {
		// server_version_num is not reported on connect before
		// PostgreSQL 16; parse server_version.
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
			c.cfg.Logger.Warn("walex: the status interval is too close to the server's wal_sender_timeout; using a third of the timeout",
				"status_interval", c.cfg.StatusInterval, logkey.Timeout, timeout)
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
		c.protoVersion = maxProtoVersion(c.serverVersion)
	}
	if max := maxProtoVersion(c.serverVersion); c.serverVersion > 0 && c.protoVersion > max {
		return permanent("replication: pgoutput protocol version %d needs a newer server than PostgreSQL %d (at most %d)", c.protoVersion, c.serverVersion, max)
	}
	c.streaming = c.protoVersion >= 2 && !c.cfg.NoStreaming

	if err := c.createSlot(ctx); err != nil {
		return err
	}
	return c.startReplication(ctx)
}

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
	sql := fmt.Sprintf("START_REPLICATION SLOT %s LOGICAL %s (%s)", sqlquote.Ident(c.slot), c.start, strings.Join(opts, ", "))
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
			// The slot's confirmed position is handled by definition: it is
			// where the first status update starts, so that the server knows
			// at once how far this client is (a walsender that believes its
			// client is behind pings it before every wait for WAL).
			c.received.Store(uint64(c.start))
			c.acked.Store(uint64(c.start))
			c.cfg.Logger.Info("walex: replication started", logkey.Slot, c.slot, logkey.StartLSN, c.start.String(),
				"proto_version", c.protoVersion, "streaming", c.streaming, "binary", c.Binary(), logkey.ServerVersion, c.serverVersion)
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
