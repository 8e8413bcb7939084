package walex

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"

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
	// Database to stream from.
	Database string

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
	// StatusInterval is how often the client reports its acknowledged
	// position to the server. Default 10 s; keep it well under the server's
	// wal_sender_timeout (default 60 s).
	StatusInterval time.Duration
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

// ConfigError reports an invalid Config field.
type ConfigError struct {
	Field  string
	Reason string
	Err    error
}

// Error implements the error interface.
func (e *ConfigError) Error() string {
	msg := "walex: invalid Config." + e.Field + ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// String describes the configuration with the password masked.
func (c Config) String() string {
	return fmt.Sprintf("walex.Config{URL:%q Host:%q Port:%d User:%q Password:%s Database:%q Name:%q Publication:%q Subscriptions:%q DurableSlot:%t SlotName:%q}",
		redactURL(c.URL), c.Host, c.Port, c.User, mask(c.Password), c.Database, c.Name, c.Publication, c.Subscriptions, c.DurableSlot, c.SlotName)
}

// GoString is String, so that %#v does not print the password either.
func (c Config) GoString() string { return c.String() }

// Format makes every fmt verb (%v, %+v, %s, ...) use String.
func (c Config) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue logs the configuration with the password masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", redactURL(c.URL)),
		slog.String("host", c.Host),
		slog.Int("port", int(c.Port)),
		slog.String("user", c.User),
		slog.String("database", c.Database),
		slog.String("name", c.Name),
		slog.String("publication", c.Publication),
		slog.Any("subscriptions", c.Subscriptions),
		slog.Bool("durable_slot", c.DurableSlot),
		slog.String("slot_name", c.SlotName),
	)
}

func mask(pw string) string {
	if pw == "" {
		return `""`
	}
	return "xxxxx"
}

// redactURL hides the password of a URL or DSN.
func redactURL(u string) string {
	if u == "" {
		return ""
	}
	if strings.Contains(u, "://") {
		scheme, rest, _ := strings.Cut(u, "://")
		at := strings.LastIndex(rest, "@")
		slash := strings.IndexAny(rest, "/?")
		if at >= 0 && (slash < 0 || at < slash) {
			userinfo := rest[:at]
			if user, _, ok := strings.Cut(userinfo, ":"); ok {
				rest = user + ":xxxxx" + rest[at:]
			}
		}
		// password=... in the query string
		return scheme + "://" + redactKV(rest, "&")
	}
	return redactKV(u, " ")
}

func redactKV(s, sep string) string {
	parts := strings.Split(s, sep)
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if ok && strings.HasSuffix(strings.ToLower(strings.TrimLeft(k, "?")), "password") {
			parts[i] = k + "=xxxxx"
		}
	}
	return strings.Join(parts, sep)
}

// DefaultSlotName returns the default slot name for an application name:
// lower-cased, every character other than a-z, 0-9 and _ replaced by _,
// plus "_walex" (as WalEx does).
func DefaultSlotName(name string) string {
	return sanitizeSlotName(name) + "_walex"
}

func sanitizeSlotName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// maxSlotName is NAMEDATALEN-1, less room for a temporary slot's suffix.
const maxSlotName = 63 - 9

// validated is a Config after defaults and validation.
type validated struct {
	Config
	conn *pgconn.Config
	subs []tableName
}

func (c Config) validate() (*validated, error) {
	v := &validated{Config: c}
	if strings.TrimSpace(c.Name) == "" {
		return nil, &ConfigError{Field: "Name", Reason: "is empty; set it to your application's name (it names the replication slot)"}
	}
	if c.Publication == "" {
		return nil, &ConfigError{Field: "Publication", Reason: "is empty; name the publication to stream (CREATE PUBLICATION events FOR TABLE users)"}
	}
	if len(c.Subscriptions) == 0 {
		return nil, &ConfigError{Field: "Subscriptions", Reason: "is empty; list the tables to receive events for, e.g. []string{\"users\"}"}
	}
	for _, s := range c.Subscriptions {
		t, err := parseTableName(s)
		if err != nil {
			return nil, &ConfigError{Field: "Subscriptions", Reason: fmt.Sprintf("entry %q: %v", s, err)}
		}
		v.subs = append(v.subs, t)
	}
	if v.SlotName == "" {
		v.SlotName = DefaultSlotName(c.Name)
	}
	if got := sanitizeSlotName(v.SlotName); got != v.SlotName {
		return nil, &ConfigError{Field: "SlotName", Reason: fmt.Sprintf("%q may contain only lower-case letters, digits and _; use %q", v.SlotName, got)}
	}
	if len(v.SlotName) > maxSlotName {
		return nil, &ConfigError{Field: "SlotName", Reason: fmt.Sprintf("%q is %d characters; a slot name may have at most %d here (set a shorter Name or SlotName)", v.SlotName, len(v.SlotName), maxSlotName)}
	}
	if v.Logger == nil {
		v.Logger = slog.Default()
	}
	if v.StatusInterval == 0 {
		v.StatusInterval = 10 * time.Second
	}
	if v.StatusInterval < 0 {
		return nil, &ConfigError{Field: "StatusInterval", Reason: "is negative"}
	}
	if v.MaxBatchEvents == 0 {
		v.MaxBatchEvents = 10000
	}
	if v.ReadCoalesce >= time.Second {
		return nil, &ConfigError{Field: "ReadCoalesce", Reason: fmt.Sprintf("is %v; a busy stream would pause that long between reads (use up to a few milliseconds, or a negative value to turn coalescing off)", v.ReadCoalesce)}
	}
	if v.Transfer < TransferAuto || v.Transfer > TransferBinary {
		return nil, &ConfigError{Field: "Transfer", Reason: fmt.Sprintf("is %d, not one of TransferAuto, TransferText, TransferBinary", int(v.Transfer))}
	}
	if v.MaxBatchEvents < 0 {
		return nil, &ConfigError{Field: "MaxBatchEvents", Reason: "is negative"}
	}
	if v.SlotWaitTimeout < 0 {
		return nil, &ConfigError{Field: "SlotWaitTimeout", Reason: "is negative; use 0 to wait until the context ends"}
	}
	if v.HeartbeatInterval < 0 {
		return nil, &ConfigError{Field: "HeartbeatInterval", Reason: "is negative; use 0 to turn heartbeats off"}
	}
	if v.MemoryBudget < 0 {
		return nil, &ConfigError{Field: "MemoryBudget", Reason: "is negative"}
	}
	v.RetryPolicy = v.RetryPolicy.withDefaults(5, 100*time.Millisecond, 5*time.Second)
	v.ReconnectPolicy = v.ReconnectPolicy.withDefaults(-1, 100*time.Millisecond, 30*time.Second)

	cc, err := c.connConfig()
	if err != nil {
		return nil, err
	}
	v.conn = cc
	return v, nil
}

// connConfig builds the pgconn configuration from URL or the discrete fields.
func (c Config) connConfig() (*pgconn.Config, error) {
	if c.URL != "" {
		if c.Host != "" || c.Port != 0 || c.User != "" || c.Password != "" || c.Database != "" {
			return nil, &ConfigError{Field: "URL", Reason: "is set together with Host/Port/User/Password/Database; use one or the other"}
		}
		cc, err := pgconn.ParseConfig(c.URL)
		if err != nil {
			// pgconn's parse errors can contain the connection string; do not
			// wrap them, so the password cannot leak.
			return nil, &ConfigError{Field: "URL", Reason: "cannot be parsed: " + redactURL(parseErrorReason(err)) + " (expected postgres://user:password@host:port/database?sslmode=disable or a key=value DSN)"}
		}
		if cc.Database == "" {
			return nil, &ConfigError{Field: "URL", Reason: "names no database; add /dbname to the URL"}
		}
		return cc, nil
	}
	cc, err := pgconn.ParseConfig("")
	if err != nil {
		return nil, &ConfigError{Field: "Host", Reason: "default connection settings (PG* environment variables) cannot be parsed: " + parseErrorReason(err)}
	}
	if c.Host != "" {
		cc.Host = c.Host
		cc.Fallbacks = nil
		if cc.TLSConfig != nil {
			cc.TLSConfig.ServerName = c.Host
		}
	}
	if c.Port != 0 {
		cc.Port = c.Port
		for _, f := range cc.Fallbacks {
			f.Port = c.Port
		}
	}
	if c.User != "" {
		cc.User = c.User
	}
	if c.Password != "" {
		cc.Password = c.Password
	}
	if c.Database != "" {
		cc.Database = c.Database
	}
	if cc.Database == "" {
		return nil, &ConfigError{Field: "Database", Reason: "is empty; name the database to stream from"}
	}
	return cc, nil
}

// parseErrorReason extracts pgconn's reason without the connection string.
func parseErrorReason(err error) string {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		// The text is "cannot parse `<redacted string>`: <reason>"; keep the reason.
		s := pe.Error()
		if i := strings.LastIndex(s, "`: "); i >= 0 {
			return s[i+3:]
		}
	}
	return "invalid connection string"
}

// tableName is a schema-qualified table name.
type tableName struct{ Schema, Table string }

// String describes the value for logs.
func (t tableName) String() string { return t.Schema + "." + t.Table }

// parseTableName parses "table", "schema.table", or quoted parts
// (`"My Schema"."Order Items"`). An unquoted name is used as written (no
// lower-casing), so "Order Items" names the table created as "Order Items".
func parseTableName(s string) (tableName, error) {
	if strings.TrimSpace(s) == "" {
		return tableName{}, errors.New("empty table name")
	}
	var parts []string
	for rest := s; ; {
		var part string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(rest); i++ {
				if rest[i] == '"' {
					if i+1 < len(rest) && rest[i+1] == '"' {
						b.WriteByte('"')
						i++
						continue
					}
					break
				}
				b.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return tableName{}, errors.New("unterminated quoted identifier")
			}
			part, rest = b.String(), rest[i+1:]
		} else {
			end := strings.IndexByte(rest, '.')
			if end < 0 {
				end = len(rest)
			}
			part, rest = rest[:end], rest[end:]
		}
		if part == "" {
			return tableName{}, errors.New("empty part in table name")
		}
		parts = append(parts, part)
		if rest == "" {
			break
		}
		if rest[0] != '.' {
			return tableName{}, errors.New("expected . after a quoted identifier")
		}
		rest = rest[1:]
	}
	for _, p := range parts {
		if strings.ContainsFunc(p, func(r rune) bool { return r == 0 || !unicode.IsPrint(r) && r != ' ' }) {
			return tableName{}, errors.New("table name contains a control character")
		}
	}
	switch len(parts) {
	case 1:
		if parts[0] == AllTables {
			return tableName{}, errors.New(`"*" (AllTables) is for OnEvent, not a subscription`)
		}
		return tableName{Schema: "public", Table: parts[0]}, nil
	case 2:
		return tableName{Schema: parts[0], Table: parts[1]}, nil
	}
	return tableName{}, errors.New("more than two dot-separated parts; write schema.table")
}

// TransferFormat is the form in which the server sends column values over
// the replication connection (pgoutput's binary option, PostgreSQL 14+).
// Events are the same in every form; the difference is speed. The binary
// form is cheaper for the server to produce for numbers, floats and times
// (about 30% less walsender CPU on a row of floats, numerics and
// timestamps; no difference on a row of text and jsonb) and cheaper for
// walex to decode.
type TransferFormat int

const (
	// TransferAuto asks for binary when the server is PostgreSQL 14 or
	// later and every column of every subscribed table, as of the
	// connection's start, has a type walex reads in binary itself (the
	// built-in types pgx knows, and domains over them); text otherwise. A
	// table subscribed later, or a column added later, with another type
	// (an enum, a composite, an extension type such as hstore) still
	// works: the server converts each such value to text, one query per
	// value on walex's catalog connection, until the next connection,
	// which picks text.
	TransferAuto TransferFormat = iota
	// TransferText always asks for text.
	TransferText
	// TransferBinary always asks for binary (PostgreSQL 14+; text before).
	// Values of types walex does not read in binary itself are converted
	// by the server, one query per value: only for tables of such types
	// that change rarely.
	TransferBinary
)

// String returns "auto", "text" or "binary".
func (f TransferFormat) String() string {
	switch f {
	case TransferAuto:
		return "auto"
	case TransferText:
		return "text"
	case TransferBinary:
		return "binary"
	}
	return fmt.Sprintf("TransferFormat(%d)", int(f))
}
