// Package replication owns a PostgreSQL logical replication connection:
// connecting with replication=database, checking the server (wal_level,
// the publication), creating or taking over the slot (identifiers always
// quoted), START_REPLICATION with pgoutput, the read loop, keepalive
// replies and standby status updates.
//
// The status update reports write = the highest WAL position received and
// flush = apply = the position passed to [Conn.Ack] — the end of the last
// transaction the application finished — so the server never discards WAL
// that was received but not handled. A keepalive's WAL end is acknowledged
// only while the application reports that nothing is in flight.
//
// It knows nothing of tables or handlers: [Conn.Stream] hands each pgoutput
// payload to a callback.
package replication
