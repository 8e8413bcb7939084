package replication

import (
	"errors"
	"fmt"
)

// Errors a caller can test with errors.Is. Each is wrapped with details.
var (
	// ErrWALLevel: the server's wal_level is not logical.
	ErrWALLevel = errors.New("wal_level is not logical: set wal_level = logical in postgresql.conf (on RDS/Aurora: rds.logical_replication = 1 in the parameter group) and restart the server")
	// ErrPublicationNotFound: the configured publication does not exist.
	ErrPublicationNotFound = errors.New("publication does not exist: create it (CREATE PUBLICATION name FOR TABLE ...) or let walex create it")
	// ErrSlotInUse: another process streams from the durable slot.
	ErrSlotInUse = errors.New("replication slot is in use by another process")
	// ErrSlotInvalidated: the durable slot lost WAL it needed (wal_status lost) and cannot be used again.
	ErrSlotInvalidated = errors.New("replication slot is invalidated: the server removed WAL it needed (raise max_slot_wal_keep_size); drop the slot and start again, accepting the gap")
	// ErrSlotMismatch: a slot of that name exists with another output plugin or in another database.
	ErrSlotMismatch = errors.New("replication slot exists but cannot be used")
	// ErrReceiveTimeout: the server sent nothing for Config.ReceiveTimeout,
	// not even a reply it was asked for: the connection is treated as
	// broken (a network path that drops packets without closing the
	// connection). Transient: connect again.
	ErrReceiveTimeout = errors.New("the connection is considered broken")
)

// PermanentError marks an error that retrying cannot fix (bad
// configuration, missing objects, refused authentication). Reconnect loops
// stop on it.
type PermanentError struct {
	Err error
}

// Error implements the error interface.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent reports true: retrying cannot fix the error.
func (e *PermanentError) Permanent() bool { return true }

func permanent(format string, args ...any) error {
	return &PermanentError{Err: fmt.Errorf(format, args...)}
}

// IsPermanent reports whether err, or an error it wraps, says of itself
// that retrying cannot fix it (a Permanent method that returns true, as
// PermanentError and the connection errors of Connect have).
func IsPermanent(err error) bool {
	for err != nil {
		if p, ok := err.(interface{ Permanent() bool }); ok && p.Permanent() {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if IsPermanent(e) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
