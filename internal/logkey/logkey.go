// Package logkey names the keys of walex's structured logs, so that the
// root package and the replication layer use one name per concept and a
// user's log queries keep working across releases.
//
// Every message walex logs starts with "walex: ". Durations are logged
// under [Delay] (a wait before the next attempt) or [Waited] (time spent so
// far), positions as text ("0/16B3748").
package logkey

// Keys of walex's log records.
const (
	Err           = "err"            // the error that caused the record
	Attempt       = "attempt"        // 1 for the first retry of something
	Delay         = "delay"          // how long walex waits before the next attempt
	Waited        = "waited"         // how long walex has waited so far
	Slot          = "slot"           // replication slot name
	PID           = "pid"            // a server backend's process ID
	Publication   = "publication"    // publication name
	Table         = "table"          // schema.table
	Tables        = "tables"         // several schema.table names
	Key           = "key"            // a row's key (a snapshot's canonical form)
	Rows          = "rows"           // rows a snapshot delivered (or a table's estimated rows at its start)
	Estimated     = "estimated"      // the planner's estimate of a table's rows
	Took          = "took"           // how long something took
	Handler       = "handler"        // a registration, as HandlerError.Handler names it
	EventID       = "event_id"       // Event.ID()
	FlushLSN      = "flush_lsn"      // the acknowledged position sent to the server
	WriteLSN      = "write_lsn"      // the received position sent to the server
	StartLSN      = "start_lsn"      // where a replication connection starts streaming
	ServerVersion = "server_version" // major version, e.g. 17
	Fix           = "fix"            // what the user can do about it
	Type          = "type"           // a PostgreSQL type name
	Types         = "types"          // several type names
	Operation     = "operation"      // insert, update, delete or truncate
	Blockers      = "blockers"       // backends holding a lock walex waits for
	Timeout       = "timeout"        // a configured or server timeout
	Bytes         = "bytes"          // a size in bytes
	XID           = "xid"            // transaction ID
)
