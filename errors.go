package walex

import (
	"errors"
	"fmt"

	"github.com/walex-go/walex/replication"
)

// Errors Run and New return, for errors.Is. Each comes wrapped with details.
var (
	// ErrInvalidConfig: a Config field is invalid (see *ConfigError).
	ErrInvalidConfig = errors.New("walex: invalid configuration")
	// ErrWALLevel: the server's wal_level is not logical.
	ErrWALLevel = replication.ErrWALLevel
	// ErrPublicationNotFound: the publication does not exist.
	ErrPublicationNotFound = replication.ErrPublicationNotFound
	// ErrSlotInUse: another process holds the durable slot.
	ErrSlotInUse = replication.ErrSlotInUse
	// ErrSlotInvalidated: the durable slot can no longer be used.
	ErrSlotInvalidated = replication.ErrSlotInvalidated
	// ErrSlotMismatch: a slot with the configured name exists but belongs
	// to another database or output plugin; choose another SlotName.
	ErrSlotMismatch = replication.ErrSlotMismatch
	// ErrReceiveTimeout: the server sent nothing for Config.ReceiveTimeout;
	// Run treats the connection as broken and reconnects (it is logged and
	// kept in Stats.LastError, never returned by Run).
	ErrReceiveTimeout = replication.ErrReceiveTimeout
	// ErrNotSubscribed: a handler is registered for a table that is not in
	// Config.Subscriptions.
	ErrNotSubscribed error = &permanentSentinel{"walex: handler registered for a table that is not subscribed"}
	// ErrTableNotFound: a subscribed table does not exist in the database.
	ErrTableNotFound error = &permanentSentinel{"walex: subscribed table does not exist"}
	// ErrNotPublished: a subscribed table is not in the publication, so the
	// server would send none of its changes.
	ErrNotPublished error = &permanentSentinel{"walex: subscribed table is not in the publication"}
	// ErrAlreadyRunning: Run was called while the Client is running.
	ErrAlreadyRunning = errors.New("walex: Run called while the client is already running")
)

// permanentSentinel is a sentinel error that retrying cannot fix: an error
// that wraps it is permanent.
type permanentSentinel struct{ msg string }

// Error implements the error interface.
func (e *permanentSentinel) Error() string { return e.msg }

// Permanent reports true.
func (e *permanentSentinel) Permanent() bool { return true }

// permanentError marks an error of walex's own as permanent.
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

func permanentf(format string, args ...any) error {
	return &permanentError{fmt.Errorf(format, args...)}
}

// HandlerError is returned by Run when a handler (or one of its
// functions) kept failing after every retry. Nothing from its
// transaction on was acknowledged.
type HandlerError struct {
	Table    string // schema.table, or "*" for an AllTables handler; "" for a message handler
	Handler  string // which registration: e.g. `OnInsert("public.users") #2 (main.saveUser)`
	EventID  string // ID of the first event of the failed call (of a message or schema change handler: its String)
	Attempts int
	Err      error
}

// Error implements the error interface.
func (e *HandlerError) Error() string {
	if e.Table == "" { // a message handler
		return fmt.Sprintf("walex: handler %s failed on %s after %d attempts: %v", e.Handler, e.EventID, e.Attempts, e.Err)
	}
	return fmt.Sprintf("walex: handler %s for table %s failed on event %s after %d attempts: %v", e.Handler, e.Table, e.EventID, e.Attempts, e.Err)
}

// Unwrap returns the underlying error.
func (e *HandlerError) Unwrap() error { return e.Err }

// Permanent reports true: Run stops on a handler that kept failing.
func (e *HandlerError) Permanent() bool { return true }

// PanicError is a recovered panic of a handler or function.
type PanicError struct {
	Value any
	Stack []byte
}

// Error implements the error interface.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// IsPermanent reports whether err is one that retrying cannot fix: Run
// returns such errors at once instead of reconnecting. An error is
// permanent when it, or an error it wraps, has a Permanent method that
// reports true: *ConfigError, *HandlerError, ErrNotSubscribed,
// ErrTableNotFound and ErrNotPublished at start-up, authentication and TLS
// failures, ErrWALLevel, ErrPublicationNotFound, ErrSlotInvalidated,
// ErrSlotMismatch.
func IsPermanent(err error) bool { return replication.IsPermanent(err) }

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

// Permanent reports true: a configuration does not fix itself.
func (e *ConfigError) Permanent() bool { return true }
