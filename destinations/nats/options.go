package nats

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/walex-go/walex"
)

// Defaults of Options.
const (
	DefaultMaxInFlight = 256
	DefaultAckTimeout  = 10 * time.Second
	// DefaultDuplicates is the duplicate window of a stream made with
	// Options.CreateStream when Options.Stream.Duplicates is zero:
	// JetStream's own default.
	DefaultDuplicates = 2 * time.Minute
)

// Options configure a Publisher. The zero value is valid: subjects
// walex.<schema>.<table>.<type>, 256 messages in flight, a stream that
// must already exist.
type Options struct {
	// Prefix is the first token (or tokens, "app.cdc") of every subject.
	// It must be a literal subject: no wildcards, no white space, no empty
	// tokens. Default "walex".
	Prefix string

	// Subject, if set, returns an event's subject instead of
	// Subject(Prefix, e). The subject must be literal; a bad one fails
	// the call with the permanent ErrInvalidSubject. Build tokens from
	// names with EscapeToken.
	Subject func(e walex.Event) string

	// MsgIDPrefix is put before walex.Event.ID() to make a message's
	// Nats-Msg-Id header, by which JetStream drops a message it already
	// stored within the stream's duplicate window. Event.ID() (commit LSN
	// and position in the transaction) is unique within one PostgreSQL
	// server (cluster) and publication, so the default "" suits one
	// walex client per stream. When several clients publish into one
	// stream — databases on different servers, or clients with different
	// publications on one database, whose positions count only their own
	// tables' events — give each its own prefix (e.g. Config.Name + ":"),
	// or two different events would share an ID and JetStream would drop
	// the second. Keep it stable across restarts: a redelivered event
	// must get the same ID.
	MsgIDPrefix string

	// MaxInFlight is the most messages of one Handle call published and
	// not yet acknowledged by JetStream. Default 256.
	MaxInFlight int

	// AckTimeout is how long Handle waits for the acknowledgement of one
	// message before it gives up (a transient error: walex retries the
	// call). Default 10 s. Handle also ends when its context does.
	AckTimeout time.Duration

	// CreateStream makes the Publisher create the stream Stream, or
	// update it to Stream, before its first publish (or on EnsureStream).
	// Default false: the stream must exist, else Handle fails with
	// ErrNoStream.
	CreateStream bool

	// Stream is the stream made with CreateStream; its zero fields take
	// these defaults: Name, Prefix upper-cased with every character other
	// than a letter, digit, '-' or '_' as '_' ("WALEX"); Subjects,
	// Prefix + ".>"; Storage, jetstream.FileStorage (the zero value);
	// Duplicates, DefaultDuplicates (2 minutes).
	//
	// The duplicate window must be longer than the longest stretch you
	// want to survive without duplicates: from the first publish of an
	// event to its publish again after walex restarts (the outage of the
	// walex process or of NATS, plus the backlog before it). A message
	// published again after the window is stored a second time. JetStream
	// keeps every message ID of the window in memory: about the event rate
	// times the window, so a day at 10,000 events/s is a billion IDs; pick
	// the window for your rate, and deduplicate downstream by the event's
	// "id" when it cannot cover your outages.
	Stream jetstream.StreamConfig
}

// withDefaults fills in the defaults of o and checks it.
func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if err := checkSubject(o.Prefix); err != nil {
		return o, fmt.Errorf("walex/nats: invalid Options.Prefix: %w", err)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxInFlight < 0 {
		return o, fmt.Errorf("walex/nats: invalid Options.MaxInFlight %d: it must be positive (0 for the default, %d)", o.MaxInFlight, DefaultMaxInFlight)
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.AckTimeout < 0 {
		return o, fmt.Errorf("walex/nats: invalid Options.AckTimeout %s: it must be positive (0 for the default, %s)", o.AckTimeout, DefaultAckTimeout)
	}
	if !o.CreateStream {
		if o.Stream.Name != "" || len(o.Stream.Subjects) > 0 {
			return o, fmt.Errorf("walex/nats: Options.Stream is set but Options.CreateStream is false: set CreateStream to have the Publisher create the stream, or leave Stream empty")
		}
		return o, nil
	}
	if o.Stream.Name == "" {
		o.Stream.Name = streamName(o.Prefix)
	}
	if len(o.Stream.Subjects) == 0 {
		o.Stream.Subjects = []string{o.Prefix + ".>"}
	}
	if o.Stream.Duplicates == 0 {
		o.Stream.Duplicates = DefaultDuplicates
	}
	if o.Stream.Duplicates < 0 {
		return o, fmt.Errorf("walex/nats: invalid Options.Stream.Duplicates %s: it must be positive", o.Stream.Duplicates)
	}
	return o, nil
}

// streamName makes a stream name of a subject prefix.
func streamName(prefix string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, prefix)
}
