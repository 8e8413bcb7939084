package replication

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/walex-go/walex/internal/logkey"
	"github.com/walex-go/walex/internal/sqlquote"
)

// createSlot creates the temporary slot, or looks up the durable one and
// creates it if it does not exist; it sets c.slot and c.start.
func (c *Conn) createSlot(ctx context.Context) error {
	if c.cfg.Temporary {
		if c.cfg.Failover {
			return permanent("replication: a temporary slot cannot be a failover slot: use a durable slot (Config.DurableSlot) with Config.FailoverSlot")
		}
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.slot = c.cfg.Slot + "_" + hex.EncodeToString(b[:])
		if err := c.newSlot(ctx, "TEMPORARY "); err != nil {
			return fmt.Errorf("replication: create temporary slot %q: %w", c.slot, err)
		}
		c.cfg.Logger.Info("walex: created temporary replication slot", logkey.Slot, c.slot)
		return nil
	}
	c.slot = c.cfg.Slot
	if c.cfg.Failover && c.serverVersion > 0 && c.serverVersion < 17 {
		return permanent("replication: slot %q: failover slots need PostgreSQL 17 or later; the server is %d: turn Config.FailoverSlot off or upgrade", c.slot, c.serverVersion)
	}
	for attempt := 0; ; attempt++ {
		s, found, err := c.lookupSlot(ctx)
		if err != nil {
			return fmt.Errorf("replication: look up slot %q: %w", c.slot, err)
		}
		if !found {
			if err := c.newSlot(ctx, ""); err != nil {
				return fmt.Errorf("replication: create slot %q: %w", c.slot, err)
			}
			c.cfg.Logger.Info("walex: created durable replication slot", logkey.Slot, c.slot, "failover", c.cfg.Failover)
			return nil
		}
		if s.walStatus == "lost" {
			return &PermanentError{Err: fmt.Errorf("replication: slot %q: %w", c.slot, ErrSlotInvalidated)}
		}
		if s.plugin != "pgoutput" {
			return &PermanentError{Err: fmt.Errorf("replication: slot %q uses output plugin %q, not pgoutput: %w; choose another SlotName", c.slot, s.plugin, ErrSlotMismatch)}
		}
		if s.database != c.cfg.Conn.Database {
			return &PermanentError{Err: fmt.Errorf("replication: slot %q belongs to database %q, not %q: %w; choose another SlotName", c.slot, s.database, c.cfg.Conn.Database, ErrSlotMismatch)}
		}
		if !s.active {
			if c.cfg.Failover && !s.failover {
				if err := c.enableFailover(ctx); err != nil {
					return err
				}
			}
			c.start = s.confirmed
			return nil
		}
		if attempt > 0 || s.pid == 0 || s.pid != c.cfg.Supersede || !c.terminate(ctx, s.pid) {
			return &SlotInUseError{Slot: c.slot, PID: strconv.FormatUint(uint64(s.pid), 10)}
		}
	}
}

// slotInfo is a row of pg_replication_slots.
type slotInfo struct {
	plugin, database, walStatus string
	active                      bool
	failover                    bool // PostgreSQL 17+
	pid                         uint32
	confirmed                   LSN
}

func (c *Conn) lookupSlot(ctx context.Context) (slotInfo, bool, error) {
	walStatus := "''"
	if c.serverVersion >= 13 {
		walStatus = "coalesce(wal_status, '')"
	}
	failover := "false"
	if c.serverVersion >= 17 {
		failover = "failover"
	}
	rows, err := c.query(ctx, "SELECT plugin, coalesce(database, ''), active, coalesce(active_pid, 0), "+walStatus+", coalesce(confirmed_flush_lsn, '0/0'), "+failover+" FROM pg_replication_slots WHERE slot_name = "+sqlquote.Literal(c.slot))
	if err != nil || len(rows) == 0 {
		return slotInfo{}, false, err
	}
	r := rows[0]
	s := slotInfo{plugin: r[0], database: r[1], active: r[2] == "t", walStatus: r[4], failover: r[6] == "t"}
	pid, err := strconv.ParseUint(r[3], 10, 32)
	if err != nil {
		return slotInfo{}, false, fmt.Errorf("active_pid %q: %w", r[3], err)
	}
	s.pid = uint32(pid)
	if s.confirmed, err = pglogrepl.ParseLSN(r[5]); err != nil {
		return slotInfo{}, false, fmt.Errorf("confirmed_flush_lsn %q: %w", r[5], err)
	}
	return s, true, nil
}

// newSlot creates c.slot ("TEMPORARY " or "" for kind) and sets c.start
// to its consistent point. A failover slot is created with the option list
// of PostgreSQL 15+ (FAILOVER is 17+); any other with the older syntax,
// which every supported server accepts.
func (c *Conn) newSlot(ctx context.Context, kind string) error {
	sql := fmt.Sprintf("CREATE_REPLICATION_SLOT %s %sLOGICAL pgoutput NOEXPORT_SNAPSHOT", sqlquote.Ident(c.slot), kind)
	if c.cfg.Failover && kind == "" {
		sql = fmt.Sprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT 'nothing', FAILOVER true)", sqlquote.Ident(c.slot))
	}
	rows, err := c.query(ctx, sql)
	if err != nil {
		return err
	}
	if len(rows) != 1 || len(rows[0]) < 2 {
		return fmt.Errorf("%s returned %d rows", sql, len(rows))
	}
	if c.start, err = pglogrepl.ParseLSN(rows[0][1]); err != nil {
		return fmt.Errorf("consistent point %q: %w", rows[0][1], err)
	}
	return nil
}

// enableFailover turns the FAILOVER option on for the existing durable
// slot c.slot (PostgreSQL 17+), which was created without it.
func (c *Conn) enableFailover(ctx context.Context) error {
	if _, err := c.query(ctx, "ALTER_REPLICATION_SLOT "+sqlquote.Ident(c.slot)+" (FAILOVER true)"); err != nil {
		return fmt.Errorf("replication: turn failover on for slot %q: %w", c.slot, err)
	}
	c.cfg.Logger.Info("walex: the durable replication slot was not a failover slot; turned failover on", logkey.Slot, c.slot)
	return nil
}

// terminate ends the walsender pid, which holds the slot for a connection
// of this client that the client gave up on (Config.Supersede), and waits
// until the slot is free. It reports whether it could.
func (c *Conn) terminate(ctx context.Context, pid uint32) bool {
	c.cfg.Logger.Warn("walex: the slot is still held by this client's previous connection, which stopped answering; terminating its walsender",
		logkey.Slot, c.slot, logkey.PID, pid)
	if _, err := c.query(ctx, "SELECT pg_terminate_backend("+strconv.FormatUint(uint64(pid), 10)+")"); err != nil {
		c.cfg.Logger.Warn("walex: could not terminate the previous walsender; waiting for the server to time it out (wal_sender_timeout)",
			logkey.Slot, c.slot, logkey.PID, pid, logkey.Err, err)
		return false
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s, found, err := c.lookupSlot(ctx)
		if err != nil || !found {
			return false
		}
		if !s.active || s.pid != pid {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

// SlotInUseError reports the backend that holds a durable slot. It
// matches ErrSlotInUse with errors.Is.
type SlotInUseError struct {
	Slot string
	PID  string
}

// Error implements the error interface.
func (e *SlotInUseError) Error() string {
	return fmt.Sprintf("replication: slot %q is in use by backend pid %s", e.Slot, e.PID)
}

// Is makes errors.Is(err, ErrSlotInUse) true.
func (e *SlotInUseError) Is(target error) bool { return target == ErrSlotInUse }
