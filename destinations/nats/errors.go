package nats

import (
	"errors"
	"fmt"
)

// What went wrong, for errors.Is on a *PublishError. Each is permanent:
// retrying the same events cannot succeed until someone changes the NATS
// side (or the Options), so Handle's error says so (its Permanent method
// reports true, and walex.IsPermanent with it), and Run ends with a
// *walex.HandlerError at once, without retries. Nothing of the failed transaction was acknowledged to
// PostgreSQL: once the cause is fixed, the next Run delivers it again (a
// durable slot), and JetStream drops the messages it already stored by
// their Nats-Msg-Id.
var (
	// ErrNoStream: no JetStream stream stores the event's subject. Create
	// one whose subjects include it, or set Options.CreateStream.
	ErrNoStream = errors.New("no JetStream stream stores the subject")
	// ErrPermission: the NATS user may not publish to the event's subject
	// (the server answered with a permissions violation). Allow it in the
	// user's publish permissions, or choose another Options.Prefix.
	ErrPermission = errors.New("the NATS user may not publish to the subject")
	// ErrStreamFull: the stream reached MaxMsgs, MaxBytes or
	// MaxMsgsPerSubject and its discard policy is DiscardNew, so it
	// refuses new messages. Raise the limit, use DiscardOld, or let
	// consumers remove messages (WorkQueue or Interest retention).
	ErrStreamFull = errors.New("the stream is full and refuses new messages (discard policy new)")
	// ErrTooLarge: the event's message is larger than the server's
	// max_payload or the stream's MaxMsgSize. Raise the limit, or leave
	// large columns out of the publication (a column list).
	ErrTooLarge = errors.New("the message is larger than NATS accepts")
	// ErrConnClosed: the NATS connection was closed; a closed connection
	// never reconnects. Make a new Publisher with an open connection.
	ErrConnClosed = errors.New("the NATS connection is closed")
	// ErrInvalidSubject: Options.Subject returned a subject a message
	// cannot be published to. Fix the function.
	ErrInvalidSubject = errors.New("invalid subject")
	// ErrEncode: the event could not be encoded as JSON.
	ErrEncode = errors.New("the event cannot be encoded as JSON")
	// ErrStreamConfig: JetStream refused Options.Stream (Options.CreateStream).
	ErrStreamConfig = errors.New("JetStream refused the stream configuration")
)

// PublishError is the error of a Handle call: which event could not be
// published, where to, and why.
//
// Kind is one of the permanent errors above (ErrNoStream, ErrPermission,
// ...), or nil for an error that retrying can fix: a lost connection, a
// restarting server, an acknowledgement that did not come within
// Options.AckTimeout. walex retries the whole call after a transient
// error (Config.RetryPolicy); JetStream drops the messages of the call
// that it already stored, by Nats-Msg-Id.
type PublishError struct {
	EventID string // walex.Event.ID() of the event; "" for an error of making the stream
	Subject string // the subject it was published to ("" if none could be made)
	Stream  string // the stream concerned, when known
	Kind    error  // a permanent cause, or nil for a transient error
	Err     error  // the error of the NATS client or server, if any
}

// Error says what happened and what to do.
func (e *PublishError) Error() string {
	var msg string
	switch {
	case e.EventID == "": // making the stream
		msg = fmt.Sprintf("walex/nats: creating or updating stream %q", e.Stream)
	case e.Subject == "":
		msg = "walex/nats: publishing event " + e.EventID
	default:
		msg = fmt.Sprintf("walex/nats: publishing event %s to %q", e.EventID, e.Subject)
		if e.Stream != "" {
			msg += fmt.Sprintf(" (stream %q)", e.Stream)
		}
	}
	if e.Kind != nil {
		msg += ": " + e.Kind.Error()
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if h := e.hint(); h != "" {
		msg += "; " + h
	}
	return msg
}

func (e *PublishError) hint() string {
	switch e.Kind {
	case nil:
		return "walex retries the call (JetStream drops what it already stored, by Nats-Msg-Id)"
	case ErrNoStream:
		return fmt.Sprintf("create a stream whose subjects include %q (for example subjects %q), or set Options.CreateStream", e.Subject, firstToken(e.Subject)+".>")
	case ErrPermission:
		return fmt.Sprintf("allow the NATS user to publish to %q (and to subscribe to its reply inbox, _INBOX.> by default), or choose another Options.Prefix", e.Subject)
	case ErrStreamFull:
		return "raise the stream's MaxMsgs, MaxBytes or MaxMsgsPerSubject, set its Discard policy to DiscardOld, or let consumers remove messages; then run again: the transaction was not acknowledged and comes again"
	case ErrTooLarge:
		return "raise the server's max_payload or the stream's MaxMsgSize, or leave large columns out of the publication (CREATE PUBLICATION ... FOR TABLE t (col, ...))"
	case ErrConnClosed:
		return "make a new Publisher with an open connection"
	case ErrInvalidSubject:
		return "fix Options.Subject: a subject is dot-separated non-empty tokens without white space or wildcards (EscapeToken escapes names)"
	case ErrStreamConfig:
		return "fix Options.Stream, or create the stream yourself and leave Options.CreateStream false"
	}
	return ""
}

// Unwrap returns Kind and Err, for errors.Is and errors.As.
func (e *PublishError) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Permanent reports whether retrying cannot fix the error: Kind is set.
func (e *PublishError) Permanent() bool { return e.Kind != nil }

func firstToken(subj string) string {
	for i := 0; i < len(subj); i++ {
		if subj[i] == '.' {
			return subj[:i]
		}
	}
	return subj
}
