// Package nats publishes walex events into NATS JetStream.
//
// A [Publisher] turns each event into a JetStream message: its body is the
// event's JSON (walex.Event.MarshalJSON, the documented Event JSON), its
// subject <prefix>.<schema>.<table>.<type>, and its Nats-Msg-Id header the
// event's ID. [Publisher.Handle] is a walex.Handler:
//
//	nc, err := nats.Connect(natsURL) // github.com/nats-io/nats.go
//	...
//	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
//	...
//	p, err := walexnats.New(js, walexnats.Options{CreateStream: true})
//	...
//	c, err := walex.New(walex.Config{..., DurableSlot: true})
//	...
//	c.OnEvent(walex.AllTables, p.Handle)
//	err = c.Run(ctx)
//
// (The package is named nats, like the NATS client's; import it under
// another name, as walexnats here.)
//
// # Subjects
//
// The default subject is Options.Prefix ("walex"), the schema, the table
// and the event type: walex.public.users.insert, walex.billing.invoices.update,
// walex.public.users.truncate; a snapshot's rows are "read". Consumers pick
// with wildcards: walex.public.users.> (one table), walex.*.*.delete
// (every delete). A schema or table name that holds a byte NATS does not
// allow in a token ('.', '*', '>', white space, control bytes) is
// percent-escaped, and '%' with it: see [EscapeToken]. Options.Subject
// replaces the whole scheme.
//
// # Delivery
//
// Handle publishes asynchronously, at most Options.MaxInFlight messages
// waiting for their acknowledgement at a time, and returns nil only after
// JetStream acknowledged every message of the call, that is, stored it.
// walex acknowledges a transaction to PostgreSQL only when its handlers
// returned nil, so with a durable slot (walex.Config.DurableSlot) every
// committed row reaches the stream: at least once from walex, and exactly
// once in the stream as long as a message published again comes within the
// stream's duplicate window (StreamConfig.Duplicates, 2 minutes by
// default), because JetStream drops a message whose Nats-Msg-Id it has
// stored within the window. That covers a walex crash or restart in the
// middle of a transaction (the whole transaction comes again; the part
// already stored is dropped), a failed call that walex retries, and a NATS
// server restart. Make the window longer than the longest outage you want
// to ride out without duplicates (it costs server memory in proportion to
// the event rate, see Options.Stream); consumers can still deduplicate by
// the event's "id" beyond it. With more than one walex client publishing
// into one stream, give each its own Options.MsgIDPrefix.
//
// The stream holds the messages in walex's order (transactions in commit
// order, events in WAL order), except around a failure: a message lost
// when a call failed is stored when walex retries the call, after those of
// the call that did arrive. A consumer that needs the order of a row's
// changes compares the events' "lsn" and "index" (Event.CommitLSN and
// Index), not the stream sequence.
//
// # Errors
//
// Every error of Handle is a *[PublishError], naming the event and the
// subject. A transient one (the connection lost, a server restarting, no
// acknowledgement within Options.AckTimeout) makes walex retry the call by
// its Config.RetryPolicy; to ride out NATS outages of any length, set
// RetryPolicy.MaxAttempts to -1 (no limit). Errors that retrying cannot fix
// are permanent (PublishError.Permanent, walex.IsPermanent) and say what
// to do: [ErrNoStream] (no stream for the subject: create one or set
// Options.CreateStream), [ErrPermission] (the user may not publish to the
// subject), [ErrStreamFull] (MaxMsgs, MaxBytes or MaxMsgsPerSubject reached
// with DiscardNew), [ErrTooLarge] (max_payload or MaxMsgSize), and a few
// more. Walex does not retry those: Run stops at once with a
// *walex.HandlerError that wraps the PublishError (as it does for a
// transient one when the retries run out), and the transaction stays
// unacknowledged: fix the cause and run again.
//
// # Fan-out
//
// One walex client per database publishes; any number of consumers read
// the stream. Consumers that share one durable JetStream consumer split
// the events between them, each event to one of them (the queue-group
// pattern); consumers with their own durable consumer each see every
// event. See examples/fanout in the repository.
package nats
