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
	// ErrNotSubscribed: a handler is registered for a table that is not in
	// Config.Subscriptions.
	ErrNotSubscribed = errors.New("walex: handler registered for a table that is not subscribed")
	// ErrTableNotFound: a subscribed table does not exist in the database.
	ErrTableNotFound = errors.New("walex: subscribed table does not exist")
	// ErrAlreadyRunning: Run was called while the Client is running.
	ErrAlreadyRunning = errors.New("walex: Run called while the client is already running")
)

// HandlerError is returned by Run when a handler (or one of its
// functions) kept failing after every retry. Nothing from its
// transaction on was acknowledged.
type HandlerError struct {
	Table    string // schema.table, or "*" for an AllTables handler
	Handler  string // which registration: e.g. `OnInsert("public.users") #2 (main.saveUser)`
	EventID  string // ID of the first event of the failed call
	Attempts int
	Err      error
}

// Error implements the error interface.
func (e *HandlerError) Error() string {
	return fmt.Sprintf("walex: handler %s for table %s failed on event %s after %d attempts: %v", e.Handler, e.Table, e.EventID, e.Attempts, e.Err)
}

// Unwrap returns the underlying error.
func (e *HandlerError) Unwrap() error { return e.Err }

// PanicError is a recovered panic of a handler or function.
type PanicError struct {
	Value any
	Stack []byte
}

// Error implements the error interface.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// IsPermanent reports whether err is one that retrying cannot fix: Run
// returns such errors at once instead of reconnecting.
func IsPermanent(err error) bool {
	var he *HandlerError
	return replication.IsPermanent(err) || errors.Is(err, ErrInvalidConfig) || errors.Is(err, ErrNotSubscribed) || errors.Is(err, ErrTableNotFound) || errors.As(err, &he)
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
