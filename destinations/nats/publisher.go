package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/walex-go/walex"
)

// Publisher publishes walex events into JetStream. Its Handle method is a
// walex.Handler. A Publisher is safe for concurrent use; each Handle call
// has its own window of Options.MaxInFlight messages.
type Publisher struct {
	js jetstream.JetStream
	o  Options

	streamMu    sync.Mutex
	streamReady bool
}

// New returns a Publisher that publishes through js with the options o.
// It checks o and does no I/O; with Options.CreateStream the stream is
// made on the first Handle call or by EnsureStream.
//
// Create js with jetstream.WithPublishAsyncTimeout (e.g. Options.AckTimeout)
// so that the NATS client forgets a message the server never answers (one
// it dropped for a permissions violation): Handle stops waiting for it
// after AckTimeout either way, but the client keeps counting it against
// jetstream.WithPublishAsyncMaxPending until then.
func New(js jetstream.JetStream, o Options) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("walex/nats: New: the JetStream is nil; make one with jetstream.New(nc)")
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Publisher{js: js, o: o}, nil
}

// Options returns the Publisher's options with their defaults filled in
// (the stream configuration EnsureStream applies, for one).
func (p *Publisher) Options() Options { return p.o }

// Handle publishes each event as its JSON (walex.Event.MarshalJSON) to its
// subject, with the header Nats-Msg-Id = Options.MsgIDPrefix + e.ID(),
// keeping up to Options.MaxInFlight messages in flight, and returns nil
// once JetStream has acknowledged every one of them. Register it for the
// events to publish:
//
//	c.OnEvent(walex.AllTables, p.Handle)
//
// On any failure it returns a *PublishError at once (walex then retries
// the whole call, and JetStream drops by Nats-Msg-Id the messages of it
// that it already stored): nothing of the transaction is acknowledged to
// PostgreSQL before every message is in the stream.
func (p *Publisher) Handle(ctx context.Context, events []walex.Event) error {
	if err := p.ensureStreamOnce(ctx); err != nil {
		return err
	}
	c := call{p: p, ctx: ctx, ring: make([]inflight, min(len(events), p.o.MaxInFlight))}
	for i := range events {
		if c.n == len(c.ring) {
			if err := c.waitOldest(); err != nil {
				return err
			}
		}
		f, err := p.publish(ctx, &events[i])
		if err != nil {
			return err
		}
		c.ring[(c.head+c.n)%len(c.ring)] = f
		c.n++
	}
	for c.n > 0 {
		if err := c.waitOldest(); err != nil {
			return err
		}
	}
	return nil
}

// inflight is a message published and not yet acknowledged.
type inflight struct {
	paf     jetstream.PubAckFuture
	eventID string
	subject string
	sent    time.Time
}

// call is the state of one Handle call: a ring of messages in flight.
type call struct {
	p       *Publisher
	ctx     context.Context
	ring    []inflight
	head, n int
}

// waitOldest waits for the acknowledgement of the oldest message in flight.
func (c *call) waitOldest() error {
	f := &c.ring[c.head]
	err := c.p.wait(c.ctx, f)
	c.ring[c.head] = inflight{}
	c.head = (c.head + 1) % len(c.ring)
	c.n--
	return err
}

// message makes e's message.
func (p *Publisher) message(e *walex.Event) (*natsgo.Msg, error) {
	id := e.ID()
	subj := ""
	if p.o.Subject != nil {
		subj = p.o.Subject(*e)
		if err := checkSubject(subj); err != nil {
			return nil, &PublishError{EventID: id, Subject: subj, Kind: ErrInvalidSubject, Err: err}
		}
	} else {
		subj = Subject(p.o.Prefix, *e)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return nil, &PublishError{EventID: id, Subject: subj, Kind: ErrEncode, Err: err}
	}
	m := natsgo.NewMsg(subj)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, p.o.MsgIDPrefix+id)
	return m, nil
}

// publish publishes e without waiting for its acknowledgement.
func (p *Publisher) publish(ctx context.Context, e *walex.Event) (inflight, error) {
	m, err := p.message(e)
	if err != nil {
		return inflight{}, err
	}
	f := inflight{eventID: e.ID(), subject: m.Subject, sent: time.Now()}
	// The stall wait only matters when the client's own limit of pending
	// acknowledgements (WithPublishAsyncMaxPending) is lower than ours.
	f.paf, err = p.js.PublishMsgAsync(m, jetstream.WithStallWait(p.o.AckTimeout))
	if err != nil {
		return inflight{}, p.publishError(ctx, f, err)
	}
	return f, nil
}

// probeInterval is how long wait waits for an acknowledgement before it
// asks the connection whether the server refused the message, and then
// again at this interval.
const probeInterval = 250 * time.Millisecond

// wait waits for f's acknowledgement, for at most Options.AckTimeout from
// its publish.
func (p *Publisher) wait(ctx context.Context, f *inflight) error {
	select {
	case <-f.paf.Ok():
		return nil
	case err := <-f.paf.Err():
		return p.publishError(ctx, *f, err)
	default:
	}
	deadline := time.NewTimer(time.Until(f.sent.Add(p.o.AckTimeout)))
	defer deadline.Stop()
	probe := time.NewTicker(probeInterval)
	defer probe.Stop()
	for {
		select {
		case <-f.paf.Ok():
			return nil
		case err := <-f.paf.Err():
			return p.publishError(ctx, *f, err)
		case <-ctx.Done():
			return &PublishError{EventID: f.eventID, Subject: f.subject, Err: fmt.Errorf("waiting for the acknowledgement: %w", context.Cause(ctx))}
		case <-deadline.C:
			err := fmt.Errorf("no acknowledgement from JetStream within %s (Options.AckTimeout)", p.o.AckTimeout)
			if last := p.js.Conn().LastError(); last != nil {
				err = fmt.Errorf("%w; the connection's last error: %w", err, last)
			}
			return &PublishError{EventID: f.eventID, Subject: f.subject, Err: err}
		case <-probe.C:
			if err := p.refused(ctx, f.subject); err != nil {
				return &PublishError{EventID: f.eventID, Subject: f.subject, Kind: ErrPermission, Err: err}
			}
		}
	}
}

// refused reports the permissions violation of the server for a publish
// to subj, if there was one. The server answers a publish it does not
// permit with an asynchronous -ERR and never with an acknowledgement; the
// client keeps it as the connection's last error. A flush (a PING whose
// PONG comes after every earlier reply of the server) makes sure an -ERR
// for the message has arrived.
func (p *Publisher) refused(ctx context.Context, subj string) error {
	nc := p.js.Conn()
	fctx, cancel := context.WithTimeout(ctx, p.o.AckTimeout)
	_ = nc.FlushWithContext(fctx) // a failed flush leaves the last error as it is
	cancel()
	err := nc.LastError()
	if !errors.Is(err, natsgo.ErrPermissionViolation) {
		return nil
	}
	// The client gives the subject only in the text of the error.
	if m := publishViolation.FindStringSubmatch(err.Error()); m != nil && m[1] == subj {
		return err
	}
	return nil
}
