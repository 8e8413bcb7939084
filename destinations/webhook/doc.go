// Package webhook delivers walex events to an HTTP endpoint as signed
// webhooks that follow the Standard Webhooks specification
// (https://www.standardwebhooks.com/), and verifies them on the receiving
// side.
//
// A [Sender] is a walex handler: each handler call's events are posted,
// in order, as JSON batches signed with HMAC-SHA256, so a service in any
// language can consume the change stream with its Standard Webhooks
// library, or with a few lines of standard HMAC code.
//
//	secret := os.Getenv("WEBHOOK_SECRET") // "whsec_...", shared with the receiver
//	s, err := webhook.New(webhook.Options{
//		URL:    "https://orders.internal.example/hooks/walex",
//		Secret: secret,
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	c, err := walex.New(walex.Config{
//		URL: dbURL, Name: "orders-hook", Publication: "events",
//		Subscriptions: []string{"orders"},
//		DurableSlot:   true, // at least once across restarts
//	})
//	...
//	c.OnEvent(walex.AllTables, s.Handler())
//	err = c.Run(ctx)
//
// # Requests
//
// Every request is a POST with Content-Type application/json and the
// headers of the specification:
//
//	webhook-id:        msg_16b3748-0_16b3748-99_9f86d081884c7d65
//	webhook-timestamp: 1714564800
//	webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=
//
// webhook-signature is "v1," and the base64 of HMAC-SHA256 over
// "<webhook-id>.<webhook-timestamp>.<body>", keyed with the base64-decoded
// part of the "whsec_" secret ([Sign]). During a secret rotation
// ([Options.PreviousSecrets]) it holds one signature per secret, separated
// by spaces. The body is a [Payload]:
//
//	{"type":"walex.events","timestamp":"2024-05-01T12:00:00.123456Z","events":[
//	  {"id":"0/16B3748:0","name":"orders","type":"insert","source":{...},"new_record":{...},...},
//	  ...]}
//
// Each element of events is walex's Event JSON, exactly what json.Marshal
// of a walex.Event writes (see the walex README's JSON section).
//
// # Batches
//
// walex calls a handler once per transaction and table (or once per
// transaction for walex.AllTables), or with chunks of a huge transaction.
// The sender posts a call's events in batches of at most
// [Options.MaxEventsPerRequest] (default 100), one request after the
// other, in order; the next batch is sent only after the receiver answered
// 2xx to the previous one, and the next call only after the whole call
// succeeded. So a receiver gets the events in commit order, each batch
// once it has handled the ones before.
//
// # Retries: the sender's and walex's
//
// Delivery failures are of two kinds.
//
// Transient: a 5xx, 429 or 408 answer, a timeout ([Options.Timeout],
// default 30 s) or a connection error. The sender retries the batch
// itself, per [Options.Retry]: up to 5 attempts, exponential backoff from
// 500 ms to 10 s with jitter, or the wait the receiver's Retry-After
// header asks for (seconds or an HTTP date, at most 1 minute). Every
// attempt carries the same webhook-id and body, and a fresh timestamp and
// signature. When the attempts are spent, the handler returns a
// [*DeliveryError] that is not permanent, and walex's Config.RetryPolicy
// takes over: it calls the handler again after its own backoff, and the
// batches of the call that were already delivered are skipped. When
// walex's policy runs out too, Run returns a *walex.HandlerError. Nothing
// is acknowledged to PostgreSQL meanwhile, so no change is lost: with a
// durable slot, the next Run delivers the transaction again.
//
// To wait out a receiver's outage of any length instead, set
// Options.Retry.MaxAttempts to -1: the sender then retries transient
// failures until the handler's context ends, the stream pauses (walex
// keeps the replication connection alive meanwhile), and each retry is
// logged to [Options.Logger]. A permanent failure still ends Run at once
// (walex does not retry permanent errors, whatever its RetryPolicy).
//
// Permanent: any other answer (400, 401, 403, 404, 410, 422, a redirect,
// which is not followed, ...), a certificate the client does not trust,
// or an event that cannot be encoded. Sending the same request again
// cannot help, so the sender does not retry: the handler returns a
// [*DeliveryError] wrapping a [*StatusError] whose Permanent method
// reports true (walex.IsPermanent), with the status, the start of the
// response body, and what to do. Run ends with a *walex.HandlerError that
// wraps it at once (walex does not retry a permanent error), with
// nothing from that transaction on acknowledged: fix
// the receiver and run again, and the transaction is delivered again.
//
// When the handler's context ends (Run stopping), the sender stops at
// once, in a request or in a wait.
//
// # Duplicates
//
// Delivery is at least once: a retry after a timeout, or walex's
// redelivery of unacknowledged transactions after a crash or a reconnect,
// can bring a batch the receiver already handled. Its webhook-id is then
// the same ([BatchID] derives it from the batch's first and last Event.ID
// and a digest of all of them), so a receiver that stores the webhook-id
// values it handled, for example in a unique column written in the same
// transaction as the batch's effects, handles each batch once. The "id"
// of each event (Event.ID, "<commit LSN>:<index>", increasing) serves the
// same purpose per event.
//
// # Receiving
//
// [Verify], or a [Verifier] made with [NewVerifier] (several secrets
// during a rotation), checks a request: the three headers are present,
// webhook-timestamp is within 5 minutes of the receiver's clock (replay
// protection, [Verifier.Tolerance]), and a "v1" signature matches the raw
// body under one of the secrets, compared in constant time. Errors wrap
// [ErrMissingHeaders], [ErrInvalidHeaders], [ErrTimestamp] or
// [ErrSignature]. [Verifier.Middleware] does it in front of an
// http.Handler, answering 400 or 401 to a request that fails. Verify the
// bytes as received: a body decoded and encoded again does not match.
//
// Answer 2xx only once the batch is handled (stored, or its effects
// committed). Answer 503 or 429, with Retry-After if you like, to ask for
// the batch again later, and 4xx only for a request that can never
// succeed: it stops the stream.
package webhook
