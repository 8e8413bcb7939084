package nats

import (
	"context"
	"errors"
	"regexp"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// errCodeStoreFailed is the JetStream API error "storing the message
// failed", whose description is the store's reason.
const errCodeStoreFailed jetstream.ErrorCode = 10077

// Descriptions of errCodeStoreFailed (the server's store errors).
const (
	descMaxMsgs           = "maximum messages exceeded"
	descMaxBytes          = "maximum bytes exceeded"
	descMaxMsgsPerSubject = "maximum messages per subject exceeded"
	descMsgTooLarge       = "message too large"
)

// publishViolation finds the subject in the client's error for a publish
// the server did not permit: `Permissions Violation for Publish to "x"`.
var publishViolation = regexp.MustCompile(`(?i)permissions violation for publish to "([^"]+)"`)

// publishError turns err, of publishing f or of its acknowledgement, into
// a *PublishError, telling the permanent causes from the transient ones.
func (p *Publisher) publishError(ctx context.Context, f inflight, err error) error {
	e := &PublishError{EventID: f.eventID, Subject: f.subject, Err: err}
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		// Nobody answered: no stream stores the subject, or JetStream is
		// not ready yet (a server starting, a stream leader being
		// elected). Only the first is permanent; ask.
		e.Kind = p.noStream(ctx, f.subject)
	case errors.Is(err, natsgo.ErrMaxPayload):
		e.Kind = ErrTooLarge
	case errors.Is(err, natsgo.ErrConnectionClosed):
		e.Kind = ErrConnClosed
	case errors.As(err, &apiErr):
		if e.Kind = apiKind(apiErr); e.Kind != nil {
			e.Stream = p.streamOf(ctx, f.subject)
		}
	}
	return e
}

// streamOf returns the name of the stream that stores subj, or "" if it
// cannot tell.
func (p *Publisher) streamOf(ctx context.Context, subj string) string {
	ctx, cancel := context.WithTimeout(ctx, min(p.o.AckTimeout, 5*time.Second))
	defer cancel()
	name, _ := p.js.StreamNameBySubject(ctx, subj)
	return name
}

// apiKind returns the permanent cause of a JetStream API error, or nil.
func apiKind(err *jetstream.APIError) error {
	switch err.ErrorCode {
	case jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return ErrTooLarge
	case errCodeStoreFailed:
		switch err.Description {
		case descMaxMsgs, descMaxBytes, descMaxMsgsPerSubject:
			return ErrStreamFull
		case descMsgTooLarge:
			return ErrTooLarge
		}
	}
	return nil
}

// noStream returns ErrNoStream if JetStream says that no stream stores
// subj, else nil.
func (p *Publisher) noStream(ctx context.Context, subj string) error {
	ctx, cancel := context.WithTimeout(ctx, min(p.o.AckTimeout, 5*time.Second))
	defer cancel()
	_, err := p.js.StreamNameBySubject(ctx, subj)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return ErrNoStream
	}
	return nil
}

// EnsureStream creates Options.Stream, or updates the stream to it, now.
// It needs Options.CreateStream; Handle calls it before its first publish.
func (p *Publisher) EnsureStream(ctx context.Context) error {
	if !p.o.CreateStream {
		return errors.New("walex/nats: EnsureStream needs Options.CreateStream")
	}
	p.streamMu.Lock()
	defer p.streamMu.Unlock()
	if err := p.createStream(ctx); err != nil {
		return err
	}
	p.streamReady = true
	return nil
}

// ensureStreamOnce creates the stream if Options.CreateStream asks for it
// and no call has done so yet.
func (p *Publisher) ensureStreamOnce(ctx context.Context) error {
	if !p.o.CreateStream {
		return nil
	}
	p.streamMu.Lock()
	defer p.streamMu.Unlock()
	if p.streamReady {
		return nil
	}
	if err := p.createStream(ctx); err != nil {
		return err
	}
	p.streamReady = true
	return nil
}

func (p *Publisher) createStream(ctx context.Context) error {
	_, err := p.js.CreateOrUpdateStream(ctx, p.o.Stream)
	if err == nil {
		return nil
	}
	e := &PublishError{Stream: p.o.Stream.Name, Err: err}
	var apiErr *jetstream.APIError
	// JetStream answers a configuration it refuses with an API error
	// (code 400 or 500, depending on the check); 503 and 408 say that it
	// is not ready or too busy, which passes.
	if errors.As(err, &apiErr) && apiErr.Code != 503 && apiErr.Code != 408 {
		e.Kind = ErrStreamConfig
	}
	return e
}
