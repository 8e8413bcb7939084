// Package replication owns a PostgreSQL logical replication connection:
// connecting with replication=database, checking the server (wal_level,
// the publication), creating or taking over the slot (identifiers always
// quoted), START_REPLICATION with pgoutput, the read loop, keepalive
// replies and standby status updates. It is walex's lowest layer and can
// be used on its own: it knows nothing of tables or handlers, and
// [Conn.Stream] hands each pgoutput payload to a callback.
//
// # Positions
//
// The status update reports write = the highest WAL position received and
// flush = apply = the position passed to [Conn.Ack] — the end of the last
// transaction the application finished — so the server never discards WAL
// that was received but not handled. Right after START_REPLICATION both
// are the slot's confirmed position. A keepalive's WAL end is acknowledged
// only while the application reports that nothing is in flight.
//
// # Timing
//
// A new acknowledgement reaches the server within [AckDelay], also while
// the owner goroutine waits for data (Ack interrupts its read) or is held
// up by a slow consumer (it calls [Conn.KeepAlive] when [Conn.Acks]
// signals); a status update goes out at least every StatusInterval. When
// the server has sent nothing for half of ReceiveTimeout, the connection
// asks it for a reply; with none by the end, Stream fails with
// [ErrReceiveTimeout]. The walsender of a connection given up on is
// terminated by the next Connect if it still holds the slot
// ([Config.Supersede]).
//
// # Errors
//
// Errors that retrying cannot fix say so of themselves (a Permanent method;
// see [IsPermanent]): a refused password, a missing database, publication
// or privilege, TLS that the server refuses or whose certificate fails
// verification, wal_level, an invalidated or mismatched slot.
package replication
