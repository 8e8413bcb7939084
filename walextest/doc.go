// Package walextest is a test kit for the handlers of a walex.Client: it
// lets a test build the transactions PostgreSQL would send, deliver them
// to the Client's registered handlers, and see what each handler was
// given and returned, with no database.
//
// Nothing here imitates walex: a Stream encodes the transactions it
// builds as pgoutput messages, the walex decoder decodes them (values
// typed as pgx types them, Unchanged for unchanged TOASTed values, Changes
// computed by the same rules, REPLICA IDENTITY FULL rows completed), and a
// Harness dispatches the batches with the dispatch code of Client.Run:
// the same subscriptions, filters, order, middleware, functions, retries,
// message and schema change handlers, and transactional handlers (OnTx,
// whose Checkpointer the test provides).
//
//	s := walextest.NewStream()
//	users := s.Table("users", walextest.Key("id", "int4"), walextest.Col("email", "text"))
//	h := walextest.New(client)
//	calls, err := h.Deliver(ctx, s.Begin().Insert(users, walextest.Row{"id": 1, "email": "a@example.com"}).Commit())
//
// A recorded stream replays the same way (Harness.Replay); Record records
// one from a real server. DeliverTwice and DeliverCut are the faults a
// consumer must survive under at-least-once delivery: a transaction
// delivered again after a crash, and a delivery cut short in the middle
// and then made again.
package walextest
