package walex

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Config configures a Client. Every field has a documented default; New
// validates it and reports each problem with the field's name and the fix.
type Config struct {
	// URL is a libpq connection URL or key/value DSN
	// ("postgres://user:pass@host:5432/db?sslmode=require" or
	// "host=... user=..."). Every libpq option pgx understands is honoured,
	// sslmode included. When URL is empty, Host, Port, User, Password and
	// Database are used, with libpq's environment variables (PGHOST, ...)
	// and defaults for what they leave empty.
	URL string
	// Host is the server host name or address. Default: libpq's default
	// (PGHOST, else a local socket or localhost).
	Host string
	// Port is the server port. Default 5432 (or PGPORT).
	Port uint16
	// User is the role to connect as; it needs the REPLICATION attribute.
	User string
	// Password of User. Never logged or shown in errors.
	Password string
	// PasswordFunc, when set, returns the password for each connection
	// walex opens, right before it opens it: the replication connection on
	// every (re)connect, the connections for catalog queries, heartbeats
	// and snapshots. Use it for rotating credentials and for cloud IAM
	// authentication tokens (AWS RDS IAM, Google Cloud SQL IAM, Azure
	// Entra ID), which expire after minutes: fetch or sign a fresh token
	// in it, or return a cached one that is still valid. The password it
	// returns is never logged or shown in errors. An error from it is
	// treated like a connection failure: Run logs it and retries with
	// ReconnectPolicy (unless the error reports itself permanent, see
	// IsPermanent). It may be called from several goroutines at once.
	// Set the password either here or in Password, the URL or
	// ConnConfig, not in both. Default nil.
	PasswordFunc func(ctx context.Context) (string, error)
	// Database to stream from.
	Database string
	// ConnConfig is the connection configuration for what a URL cannot
	// say: a custom tls.Config (client certificates held in memory, a
	// certificate pool of your own), a DialFunc (a cloud SQL connector, an
	// SSH tunnel), a LookupFunc. It must come from pgconn.ParseConfig;
	// change the result as you need. walex copies it for every connection
	// it opens (replication, catalog queries, heartbeats) and sets its own
	// runtime parameters on the copy. Use it instead of URL and the
	// discrete fields, not together with them. Default nil.
	ConnConfig *pgconn.Config

	// Name is the application name; it names the default slot. Required.
	Name string
	// Publication is the publication to stream. Required.
	Publication string
	// Subscriptions are the tables to deliver events for: "users" (schema
	// public) or "schema.table"; a name that needs quoting in SQL is written
	// as it is ("Order Items"), or quoted when it contains a dot
	// (`"my.schema"."t"`). At least one is required.
	Subscriptions []string
	// DurableSlot keeps the replication slot across restarts, so changes
	// made while the client is down are delivered when it comes back
	// (at-least-once). Default false: a temporary slot that the server drops
	// when the connection ends; changes made while disconnected are lost.
	DurableSlot bool
	// FailoverSlot makes the durable slot a failover slot (PostgreSQL 17
	// or later): walex creates it with the FAILOVER option, and turns the
	// option on (ALTER_REPLICATION_SLOT, logged) for an existing slot
	// created without it; it never turns it off. The server copies a
	// failover slot to physical standbys, so that after a failover to a
	// standby walex resumes from the slot there, without losing or
	// replaying changes. For that, the primary must list the standby's
	// physical slot in synchronized_standby_slots, so that walex never
	// receives a change the standby has not yet received; the standby
	// needs sync_replication_slots = on, hot_standby_feedback = on,
	// primary_slot_name, and a primary_conninfo that names a database.
	// Requires DurableSlot; a server before 17 is a permanent error at
	// connect. Default false.
	FailoverSlot bool
	// SlotName is the replication slot's name. Default: Name lower-cased,
	// every character other than a-z, 0-9 and _ replaced by _, plus
	// "_walex". A temporary slot gets a random suffix on top.
	SlotName string

	// SlotWaitTimeout bounds how long Run waits for a durable slot that
	// another process is using (a second replica of the application
	// standing by): Run polls with backoff, logging which backend holds the
	// slot, and takes over as soon as it is free. 0 waits until the context
	// ends; past a positive timeout Run returns ErrSlotInUse.
	SlotWaitTimeout time.Duration
	// HeartbeatInterval, when positive, makes the client write a small
	// non-transactional logical message (pg_logical_emit_message) on this
	// interval and acknowledge it, so that the slot's confirmed_flush_lsn
	// advances and the server can recycle WAL even while the subscribed
	// tables are idle and other tables or databases write. Default 0 (off).
	HeartbeatInterval time.Duration

	// SkipOriginChanges drops changes that another replication system
	// applied (transactions with a replication origin), e.g. to avoid
	// loops in bidirectional replication. On PostgreSQL 16+ the server
	// filters them (origin 'none'). Default false: every change.
	SkipOriginChanges bool

	// CreatePublication makes the client create the publication FOR TABLE
	// the subscriptions when it does not exist, and add subscribed tables
	// it lacks (also those added with AddSubscriptions). Tables already in
	// it are never removed. The role then needs the CREATE privilege on the
	// database and ownership of the tables. Default false: a missing
	// publication is an error (ErrPublicationNotFound).
	CreatePublication bool

	// Logger receives structured logs. Default: slog.Default().
	Logger *slog.Logger
	// StatusInterval is the longest gap between two reports of the
	// acknowledged position to the server; a new acknowledgement is
	// reported within a few milliseconds anyway. Default 10 s; cut to a
	// third of the server's wal_sender_timeout when it is longer than half
	// of it.
	StatusInterval time.Duration
	// ReceiveTimeout is how long the connection may stay silent while walex
	// waits for the server: halfway through, walex asks the server for a
	// reply, and when nothing has come by the end, it treats the
	// connection as broken and reconnects (a network path that drops
	// packets without closing the connection, a server frozen in
	// mid-transfer), as PostgreSQL's own wal_receiver_timeout does. Time
	// spent in handlers does not count. Default 60 s; negative turns the
	// check off.
	ReceiveTimeout time.Duration
	// ReadCoalesce is how long walex leaves a busy stream to accumulate in
	// the socket once it has caught up with the server, so that it reads
	// many messages per system call instead of being woken for each: less
	// CPU for walex, and fewer context switches for the walsender, whose
	// speed is the stream's ceiling. It adds at most this much latency, and
	// only while changes arrive faster than one per ReadCoalesce; a quiet
	// stream is read as soon as data arrives. Default 1 ms; negative turns
	// it off; 1 s or more is an error.
	ReadCoalesce time.Duration
	// Transfer is the form in which the server sends column values.
	// Default TransferAuto: binary where walex reads every subscribed
	// column's type in binary itself, text otherwise.
	Transfer TransferFormat
	// MaxBatchEvents is the most events passed to one handler call: a larger
	// transaction is delivered in several calls, in order, and acknowledged
	// after the last. Default 10,000.
	MaxBatchEvents int
	// MemoryBudget caps the bytes held for streamed in-progress
	// transactions; past it they spill to a temp file in SpillDir. Default
	// 16 MiB, which with the batches in flight keeps a client streaming a
	// transaction of any size well under 100 MB.
	MemoryBudget int64
	// SpillDir is the directory for spill files. Default os.TempDir().
	SpillDir string
	// Snapshot says when to read the rows that already exist in the
	// subscribed tables and deliver them as Read events, consistent with
	// the stream: SnapshotNever (the default; Client.Snapshot still
	// works), SnapshotInitial, SnapshotInitialOnly. See the README's
	// Snapshots section.
	Snapshot SnapshotMode
	// SnapshotChunkSize is the most rows a snapshot reads per chunk (one
	// short query, in key order); fewer when the rows are wide (a chunk
	// reads about 32 MiB of values at most), and the rows of two chunks
	// are held in memory at most. Default 10,000.
	SnapshotChunkSize int
	// SnapshotTable is the table ("schema.table") where snapshots with a
	// durable slot keep their progress, one row per slot and table, so
	// that an interrupted snapshot resumes where it was. walex creates it
	// when it does not exist (the role then needs CREATE on the schema);
	// otherwise create it yourself, as the README shows, and grant SELECT,
	// INSERT, UPDATE and DELETE on it. Not used with a temporary slot.
	// Default "public.walex_snapshots".
	SnapshotTable string

	// RetryPolicy governs how a failing handler is retried. Default: 5
	// attempts, 100 ms doubling to at most 5 s.
	RetryPolicy RetryPolicy
	// ReconnectPolicy governs reconnecting after a transient error.
	// Default: unlimited attempts, 100 ms doubling to at most 30 s, with jitter.
	ReconnectPolicy RetryPolicy
}

// RetryPolicy is a capped exponential backoff.
type RetryPolicy struct {
	// MaxAttempts is the number of attempts in all (the first call
	// included). 0 means the default; a negative value means no limit.
	MaxAttempts int
	// InitialDelay is the wait after the first failure; it doubles after
	// each further failure.
	InitialDelay time.Duration
	// MaxDelay caps the wait.
	MaxDelay time.Duration
}

func (p RetryPolicy) withDefaults(attempts int, initial, max time.Duration) RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = attempts
	}
	if p.InitialDelay <= 0 {
		p.InitialDelay = initial
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = max
	}
	if p.MaxDelay < p.InitialDelay {
		p.MaxDelay = p.InitialDelay
	}
	return p
}

// delay returns the wait before attempt n+1 after n failures (n >= 1).
func (p RetryPolicy) delay(n int) time.Duration {
	d := p.InitialDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	return min(d, p.MaxDelay)
}
