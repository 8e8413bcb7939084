package walex

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/walex-go/walex/internal/logkey"
	"github.com/walex-go/walex/replication"
)

// Run connects, streams and calls handlers until ctx ends, then sends a
// last acknowledgement and returns nil. It returns an error at once for a
// permanent problem (see IsPermanent: bad configuration, authentication,
// missing publication, wal_level, a handler that kept failing), and
// reconnects with backoff after transient ones (a dropped connection, a
// server restart).
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer c.running.Store(false)
	c.warned = make(map[string]bool)
	c.missing = make(map[tableName]bool)
	c.snapLoaded = false
	c.snaps.start()
	defer c.snaps.stopped()
	if err := c.checkRegistrations(); err != nil {
		return err
	}
	var (
		failures  int       // connection attempts that failed since the last one that streamed
		slotWait  time.Time // when Run started waiting for a busy durable slot
		slotWaits int
		started   bool   // a session of this Run has streamed
		lastPID   uint32 // walsender of the previous session
	)
	for {
		s := newSession(c, !started, lastPID)
		err := s.run(ctx)
		if s.conn != nil {
			lastPID = s.conn.PID()
		}
		if s.streamed() {
			started = true
			failures = 0 // the backoff starts again after a connection that worked
		}
		if errors.Is(err, errSnapshotDone) {
			if c.config().DurableSlot {
				c.logger().Warn("walex: the durable slot stays, at the position after the snapshot, and holds WAL until a Run streams from it or it is dropped", logkey.Slot, c.config().SlotName)
			}
			return nil
		}
		if ctx.Err() != nil {
			var he *HandlerError
			if errors.As(err, &he) {
				return err
			}
			return nil
		}
		c.stats.setErr(err)
		if IsPermanent(err) {
			c.logger().Error("walex: stopped", logkey.Err, err)
			return err
		}
		var inUse *replication.SlotInUseError
		if errors.As(err, &inUse) {
			if slotWait.IsZero() {
				slotWait = time.Now()
			}
			timeout := c.config().SlotWaitTimeout
			if timeout > 0 && time.Since(slotWait) >= timeout {
				return fmt.Errorf("walex: gave up waiting %v for the slot: %w", timeout, err)
			}
			slotWaits++
			d := min(time.Duration(slotWaits)*200*time.Millisecond, 5*time.Second)
			c.logger().Info("walex: waiting for the replication slot held by another process",
				logkey.Slot, inUse.Slot, logkey.PID, inUse.PID, logkey.Waited, time.Since(slotWait).Round(time.Millisecond), logkey.Delay, d)
			if !sleepCtx(ctx, d) {
				return nil
			}
			continue
		}
		slotWait, slotWaits = time.Time{}, 0
		c.stats.reconnects.Add(1)
		if errors.Is(err, errReconnect) {
			// Asked for: not a failure, and no wait.
			c.logger().Info("walex: reconnecting, as Reconnect asked")
			continue
		}
		failures++
		policy := c.config().ReconnectPolicy
		if policy.MaxAttempts > 0 && failures >= policy.MaxAttempts {
			return fmt.Errorf("walex: giving up after %d failed connection attempts: %w", failures, err)
		}
		d := policy.delay(failures)
		d = d/2 + rand.N(d/2+1) // jitter
		c.logger().Warn("walex: connection failed; reconnecting", logkey.Attempt, failures, logkey.Delay, d, logkey.Err, err)
		if !sleepCtx(ctx, d) {
			return nil
		}
	}
}

// sleepCtx waits d; it returns false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// checkRegistrations reports handlers for tables outside the subscriptions.
func (c *Client) checkRegistrations() error {
	regs, _ := c.reg.snapshot()
	subs := *c.subs.Load()
	for _, r := range regs {
		if !r.all && !subs[r.table] {
			return fmt.Errorf("%w: %s is registered for %s; add %q to Config.Subscriptions (and to the publication)", ErrNotSubscribed, r, r.table, r.table.String())
		}
	}
	return nil
}
