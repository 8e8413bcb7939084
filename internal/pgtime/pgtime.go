// Package pgtime converts between Go times and PostgreSQL's timestamps on
// the wire: microseconds since 2000-01-01 00:00:00 UTC, which the
// replication protocol's messages, pgoutput's commit times and the binary
// form of timestamp and timestamptz all use.
package pgtime

import "time"

// EpochUnixMicro is PostgreSQL's epoch in microseconds since the Unix
// epoch.
const EpochUnixMicro = 946_684_800 * 1_000_000

// Time returns the time us microseconds after PostgreSQL's epoch.
func Time(us int64) time.Time {
	return time.UnixMicro(EpochUnixMicro + us).UTC()
}

// Micros returns t in microseconds after PostgreSQL's epoch.
func Micros(t time.Time) int64 {
	return t.UnixMicro() - EpochUnixMicro
}
