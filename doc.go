// Package walex streams committed changes from PostgreSQL to Go handler
// functions: change data capture (CDC) over logical replication, in the
// spirit of the Elixir library WalEx.
//
// PostgreSQL sends the changes of the tables in a publication over a
// replication slot with the pgoutput plugin; walex decodes them into typed
// [Event] values, applies filters, and calls the handlers registered per
// table, once per transaction per table, in commit order.
//
// # Getting started
//
//	c, err := walex.New(walex.Config{
//		URL:           "postgres://app:secret@localhost:5432/app",
//		Name:          "myapp",
//		Publication:   "events",
//		Subscriptions: []string{"users"},
//	})
//	if err != nil { ... }
//	c.OnInsert("users", func(ctx context.Context, events []walex.Event) error {
//		for _, e := range events {
//			log.Printf("new user %v", e.NewRecord["name"])
//		}
//		return nil
//	})
//	err = c.Run(ctx) // until ctx ends
//
// The server needs wal_level = logical and a publication for the tables
// (CREATE PUBLICATION events FOR TABLE users); the role needs the
// REPLICATION attribute. For updates and deletes to carry the whole old
// row, set REPLICA IDENTITY FULL on the table.
//
// # Events and values
//
// An [Event] carries the table, the [EventType], the new and old records,
// the [Change]s of an update, the commit time and LSN, and its position in
// the transaction; [Event.ID] is unique and increasing. Values are the Go
// values pgx returns for the same column (see [Event]); [Unchanged] stands
// for an unchanged TOASTed value that Postgres did not send. The server
// sends values in binary where walex can read them all ([Config.Transfer]);
// the events are the same either way.
//
// # Delivery
//
// A transaction is acknowledged to the server only after every handler
// called for it returned nil, and then within a few milliseconds, so that a
// fault delivers again only what was in flight. With a temporary slot (the default),
// changes made while the client is disconnected are lost. With
// [Config.DurableSlot], delivery is at-least-once across restarts: use
// [Event.ID] to drop duplicates. A failing handler is retried
// ([Config.RetryPolicy]); if it keeps failing, [Client.Run] returns a
// [*HandlerError] and nothing from that transaction on is acknowledged.
//
// # Snapshots
//
// [Config.Snapshot] and [Client.Snapshot] read the rows that already exist
// and deliver them as [Read] events ([Client.OnRead]), in order with the
// stream: a consumer that applies the events in delivery order ends with
// the table's rows. Snapshots read in key order, in chunks of
// [Config.SnapshotChunkSize], without blocking writers or the stream; with
// a durable slot an interrupted snapshot resumes from its last chunk
// ([Config.SnapshotTable]). [Stats.Snapshots] shows the progress.
//
// # Messages and schema changes
//
// [Client.OnMessage] receives logical decoding messages
// (pg_logical_emit_message): a transactional one in its transaction's
// dispatch, at its place among the events — the outbox pattern without an
// outbox table — and a non-transactional one at once.
// [Client.OnSchemaChange] hears, in stream order, that a subscribed table
// changed shape ([SchemaChange]), from the stream itself.
//
// # Exactly once into your database
//
// [Client.OnTx] runs a handler inside a transaction of the application's
// own database and commits the handler's [Position] with its changes
// through a [Checkpointer] ([NewPostgresCheckpointer] on a pgxpool.Pool):
// with a durable slot, every event is applied exactly once, across crashes
// and reconnects.
//
// # Testing handlers
//
// Package walextest builds transactions, decodes them with the real
// decoder and delivers them to a Client's handlers through Run's dispatch
// code, with no database; it replays recorded streams and injects the
// faults of at-least-once delivery.
//
// # Errors
//
// Configuration errors are [*ConfigError] (errors.Is [ErrInvalidConfig]).
// Run returns permanent errors at once ([IsPermanent]): [ErrWALLevel],
// [ErrPublicationNotFound], [ErrSlotInvalidated], [ErrSlotMismatch],
// authentication and TLS failures, [ErrNotSubscribed], and at its first
// start [ErrTableNotFound] and [ErrNotPublished]; [ErrNoSnapshotKey] for
// an initial snapshot of a table without a key. It reconnects with
// backoff after transient ones, among them a connection that went silent
// for [Config.ReceiveTimeout] ([ErrReceiveTimeout]).
package walex
