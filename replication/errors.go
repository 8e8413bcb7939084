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
	// ErrSlotPlugin: a slot of that name exists with another output plugin or in another database.
	ErrSlotMismatch = errors.New("replication slot exists but cannot be used")
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

func permanent(format string, args ...any) error {
	return &PermanentError{Err: fmt.Errorf(format, args...)}
}

// IsPermanent reports whether err (or an error it wraps) is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}
