package walex

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// validated is a Config after defaults and validation.
type validated struct {
	Config        // with defaults
	user   Config // as given, for UpdateConfig: a default follows what it depends on
	conn   *pgconn.Config
	subs   []tableName
	// snapTable is SnapshotTable, parsed.
	snapTable tableName
}

func (c Config) validate() (*validated, error) {
	v := &validated{Config: c, user: c}
	if strings.TrimSpace(c.Name) == "" {
		return nil, &ConfigError{Field: "Name", Reason: "is empty; set it to your application's name (it names the replication slot)"}
	}
	if c.Publication == "" {
		return nil, &ConfigError{Field: "Publication", Reason: "is empty; name the publication to stream (CREATE PUBLICATION events FOR TABLE users)"}
	}
	if len(c.Subscriptions) == 0 {
		return nil, &ConfigError{Field: "Subscriptions", Reason: "is empty; list the tables to receive events for, e.g. []string{\"users\"}"}
	}
	for _, s := range c.Subscriptions {
		t, err := parseTableName(s)
		if err != nil {
			return nil, &ConfigError{Field: "Subscriptions", Reason: fmt.Sprintf("entry %q: %v", s, err)}
		}
		v.subs = append(v.subs, t)
	}
	if v.SlotName == "" {
		v.SlotName = DefaultSlotName(c.Name)
	}
	if got := sanitizeSlotName(v.SlotName); got != v.SlotName {
		return nil, &ConfigError{Field: "SlotName", Reason: fmt.Sprintf("%q may contain only lower-case letters, digits and _; use %q", v.SlotName, got)}
	}
	if len(v.SlotName) > maxSlotName {
		return nil, &ConfigError{Field: "SlotName", Reason: fmt.Sprintf("%q is %d characters; a slot name may have at most %d here (set a shorter Name or SlotName)", v.SlotName, len(v.SlotName), maxSlotName)}
	}
	if v.Logger == nil {
		v.Logger = slog.Default()
	}
	if v.StatusInterval == 0 {
		v.StatusInterval = 10 * time.Second
	}
	if v.ReceiveTimeout == 0 {
		v.ReceiveTimeout = 60 * time.Second
	}
	if v.ReceiveTimeout > 0 && v.ReceiveTimeout < 100*time.Millisecond {
		return nil, &ConfigError{Field: "ReceiveTimeout", Reason: fmt.Sprintf("is %v; a connection that quiet is normal (use seconds, or a negative value to turn the check off)", v.ReceiveTimeout)}
	}
	if v.StatusInterval < 0 {
		return nil, &ConfigError{Field: "StatusInterval", Reason: "is negative"}
	}
	if v.MaxBatchEvents == 0 {
		v.MaxBatchEvents = 10000
	}
	if v.ReadCoalesce >= time.Second {
		return nil, &ConfigError{Field: "ReadCoalesce", Reason: fmt.Sprintf("is %v; a busy stream would pause that long between reads (use up to a few milliseconds, or a negative value to turn coalescing off)", v.ReadCoalesce)}
	}
	if v.Transfer < TransferAuto || v.Transfer > TransferBinary {
		return nil, &ConfigError{Field: "Transfer", Reason: fmt.Sprintf("is %d, not one of TransferAuto, TransferText, TransferBinary", int(v.Transfer))}
	}
	if v.MaxBatchEvents < 0 {
		return nil, &ConfigError{Field: "MaxBatchEvents", Reason: "is negative"}
	}
	if v.FailoverSlot && !v.DurableSlot {
		return nil, &ConfigError{Field: "FailoverSlot", Reason: "is set without DurableSlot; only a durable slot can be a failover slot (set DurableSlot too)"}
	}
	if v.SlotWaitTimeout < 0 {
		return nil, &ConfigError{Field: "SlotWaitTimeout", Reason: "is negative; use 0 to wait until the context ends"}
	}
	if v.HeartbeatInterval < 0 {
		return nil, &ConfigError{Field: "HeartbeatInterval", Reason: "is negative; use 0 to turn heartbeats off"}
	}
	if v.MemoryBudget < 0 {
		return nil, &ConfigError{Field: "MemoryBudget", Reason: "is negative"}
	}
	switch v.Snapshot {
	case "":
		v.Snapshot = SnapshotNever
	case SnapshotNever, SnapshotInitial, SnapshotInitialOnly:
	default:
		return nil, &ConfigError{Field: "Snapshot", Reason: fmt.Sprintf("is %q, not one of SnapshotNever, SnapshotInitial, SnapshotInitialOnly", string(v.Snapshot))}
	}
	if v.SnapshotChunkSize == 0 {
		v.SnapshotChunkSize = defaultSnapshotChunkSize
	}
	if v.SnapshotChunkSize < 0 {
		return nil, &ConfigError{Field: "SnapshotChunkSize", Reason: "is negative"}
	}
	if v.SnapshotTable == "" {
		v.SnapshotTable = "public.walex_snapshots"
	}
	st, err := parseTableName(v.SnapshotTable)
	if err != nil {
		return nil, &ConfigError{Field: "SnapshotTable", Reason: fmt.Sprintf("%q: %v", v.SnapshotTable, err)}
	}
	v.snapTable = st
	v.RetryPolicy = v.RetryPolicy.withDefaults(5, 100*time.Millisecond, 5*time.Second)
	v.ReconnectPolicy = v.ReconnectPolicy.withDefaults(-1, 100*time.Millisecond, 30*time.Second)

	cc, err := c.connConfig()
	if err != nil {
		return nil, err
	}
	v.conn = cc
	return v, nil
}
