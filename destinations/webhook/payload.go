package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/walex-go/walex"
)

// PayloadType is the "type" of every request body the sender posts.
const PayloadType = "walex.events"

// Payload is the JSON body of every request:
//
//	{"type":"walex.events","timestamp":"2024-05-01T12:00:00.123456Z","events":[{...},{...}]}
//
// Type is PayloadType. Timestamp is the commit time of the first event's
// transaction (RFC 3339; absent when the events have none). Events are the
// batch's events in order, each in walex's documented Event JSON (what
// json.Marshal of a walex.Event writes: "id", "name", "type", "source",
// "new_record", "old_record", "changes", "timestamp", "lsn", "index",
// "xid", ...). A receiver decodes the body with encoding/json into a
// Payload, after Verify has checked the raw bytes.
type Payload struct {
	Type      string            `json:"type"`
	Timestamp time.Time         `json:"timestamp,omitzero"`
	Events    []json.RawMessage `json:"events"`
}

// encode returns the request body of a batch.
func encode(events []walex.Event) ([]byte, error) {
	p := Payload{Type: PayloadType, Timestamp: events[0].Timestamp, Events: make([]json.RawMessage, len(events))}
	for i, e := range events {
		b, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("cannot encode event %s as JSON: %w", e.ID(), err)
		}
		p.Events[i] = b
	}
	return json.Marshal(p)
}

// BatchID returns the webhook-id of a batch of events: "msg_", the first
// event's commit LSN (lower-case hexadecimal) and index, the last event's, and a
// digest of every event's ID, e.g.
//
//	msg_16b3748-0_16b3748-99_9f86d081884c7d65
//
// It depends on the events only, so every attempt and every redelivery of
// the same batch (after a crash, walex delivers unacknowledged
// transactions again, and the sender splits them the same way) carries the
// same ID: a receiver that remembers the IDs it handled can drop
// duplicates. The digest tells apart batches with the same first and last
// event but different events in between, such as the calls of two
// handlers with different filters. It never contains a full stop, which
// the specification forbids. It returns "" for no events.
func BatchID(events []walex.Event) string {
	if len(events) == 0 {
		return ""
	}
	first, last := events[0], events[len(events)-1]
	h := sha256.New()
	for _, e := range events {
		h.Write([]byte(e.ID()))
		h.Write([]byte{','})
	}
	b := make([]byte, 0, 64)
	b = append(b, "msg_"...)
	b = appendPosition(b, first)
	b = append(b, '_')
	b = appendPosition(b, last)
	b = append(b, '_')
	b = hex.AppendEncode(b, h.Sum(nil)[:8])
	return string(b)
}

// appendPosition appends "<commit LSN in hex>-<index>".
func appendPosition(b []byte, e walex.Event) []byte {
	b = strconv.AppendUint(b, uint64(e.CommitLSN), 16)
	b = append(b, '-')
	return strconv.AppendInt(b, int64(e.Index), 10)
}
