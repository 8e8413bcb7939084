package walex

import (
	"context"

	"github.com/walex-go/walex/decoder"
	"github.com/walex-go/walex/internal/kit"
)

// The test kit (package walextest) drives a Client's handlers through
// the dispatch code that Run uses; package kit carries it across.
func init() {
	kit.NewFlow = func(client any, db string, observe func(kit.Call)) kit.Flow {
		c := client.(*Client)
		f := newFlow(c)
		f.db, f.observe = db, observe
		return kitFlow{f}
	}
}

// kitFlow is a flow for the test kit.
type kitFlow struct{ f *flow }

// Dispatch implements kit.Flow.
func (k kitFlow) Dispatch(ctx context.Context, b *decoder.Batch) error {
	if err := k.f.c.dispatch(ctx, k.f.c.config(), k.f, b); err != nil {
		return err
	}
	if b.Final {
		k.f.acked(b.EndLSN)
	}
	return nil
}

// DispatchReads implements kit.Flow.
func (k kitFlow) DispatchReads(ctx context.Context, events any) error {
	return k.f.c.dispatchReads(ctx, k.f.c.config(), k.f, events.([]Event))
}

// Reconnect implements kit.Flow.
func (k kitFlow) Reconnect(start decoder.LSN) { k.f.reconnect(start) }

// MaxBatchEvents implements kit.Flow.
func (k kitFlow) MaxBatchEvents() int { return k.f.c.config().MaxBatchEvents }

// Events implements kit.Flow.
func (k kitFlow) Events(b *decoder.Batch) any {
	var events []Event
	for i := range b.Changes {
		events = append(events, newEvent(b, &b.Changes[i], k.f.db))
	}
	return events
}
