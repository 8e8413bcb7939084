package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/walex-go/walex/internal/sqlquote"
)

const slotsUsage = `
Usage:
  walex slots [--format pretty|json]
  walex slots drop NAME [--yes]

Lists the server's logical replication slots: name, output plugin,
database, whether the slot is temporary and active (and the backend that
holds it), restart_lsn, confirmed_flush_lsn, the lag (the current WAL
position less confirmed_flush_lsn: what the consumer has not acknowledged),
the WAL the slot retains on the server (the current position less
restart_lsn), wal_status, and on PostgreSQL 17+ since when the slot is
inactive and whether it fails over.

slots drop drops a slot. On a terminal it asks you to type the slot's name
to confirm; without a terminal it refuses unless --yes is given. A slot
in use (active) is not dropped: stop its consumer first.

Examples:
  walex slots --url postgres://postgres@localhost/app
  walex slots --format json | jq '.[] | select(.active | not) | .name'
  walex slots drop myapp_walex
  walex slots drop myapp_walex --yes
`

// slotInfo is a slot as walex slots reports it.
type slotInfo struct {
	Name               string  `json:"name"`
	Type               string  `json:"type"`
	Plugin             string  `json:"plugin"`
	Database           string  `json:"database"`
	Temporary          bool    `json:"temporary"`
	Active             bool    `json:"active"`
	ActivePID          *int64  `json:"active_pid"`
	RestartLSN         *string `json:"restart_lsn"`
	ConfirmedFlushLSN  *string `json:"confirmed_flush_lsn"`
	LagBytes           *int64  `json:"lag_bytes"`
	RetainedBytes      *int64  `json:"retained_bytes"`
	WALStatus          string  `json:"wal_status,omitempty"`          // PostgreSQL 13+
	InactiveSince      string  `json:"inactive_since,omitempty"`      // PostgreSQL 17+, RFC 3339
	Failover           *bool   `json:"failover,omitempty"`            // PostgreSQL 17+
	InvalidationReason string  `json:"invalidation_reason,omitempty"` // PostgreSQL 17+
	inactiveFor        time.Duration
}

func runSlots(ctx context.Context, c *cli, args []string) int {
	var (
		conn   connFlags
		format string
		yes    bool
	)
	fs := c.newFlags("slots")
	conn.register(fs)
	fs.StringVar(&format, "format", "pretty", "`FORMAT`: pretty (an aligned table) or json")
	fs.BoolVar(&yes, "yes", false, "slots drop: drop without asking")
	pos, code, done := c.parse(fs, slotsUsage, args)
	if done {
		return code
	}
	if format != "pretty" && format != "json" {
		return c.usageError(fs, "--format is %q; use pretty or json", format)
	}
	drop := false
	switch {
	case len(pos) == 0, len(pos) == 1 && pos[0] == "list":
	case pos[0] == "drop" && len(pos) == 2:
		drop = true
	case pos[0] == "drop":
		return c.usageError(fs, "slots drop takes one slot name: walex slots drop NAME")
	default:
		return c.usageError(fs, "unexpected argument %q (walex slots, or walex slots drop NAME)", pos[0])
	}
	tgt, err := conn.resolve(c.getenv)
	if err != nil {
		return c.usageError(fs, "%v", err)
	}
	d, err := tgt.connect(ctx, "catalog queries")
	if err != nil {
		fmt.Fprintf(c.stderr, "walex slots: %v\n", err)
		return exitFailure
	}
	defer d.close()
	if drop {
		return dropSlot(ctx, c, tgt, d, pos[1], yes)
	}
	slots, err := listSlots(ctx, d, "slot_type = 'logical'")
	if err != nil {
		fmt.Fprintf(c.stderr, "walex slots: list the slots: %s\n", tgt.scrub(err.Error()))
		return exitFailure
	}
	if format == "json" {
		if slots == nil {
			slots = []slotInfo{}
		}
		b, _ := json.MarshalIndent(slots, "", "  ")
		fmt.Fprintf(c.stdout, "%s\n", b)
		return exitOK
	}
	if len(slots) == 0 {
		fmt.Fprintf(c.stdout, "no logical replication slots on %s\n", tgt)
		return exitOK
	}
	printSlots(c, d.version, slots)
	return exitOK
}

// listSlots reads the slots that match where (a condition on
// pg_replication_slots), by name, with the columns the server has.
func listSlots(ctx context.Context, d *db, where string, args ...string) ([]slotInfo, error) {
	cols := []string{"s.slot_name", "s.slot_type", "coalesce(s.plugin, '') AS plugin", "coalesce(s.database, '') AS database",
		"s.temporary", "s.active", "s.active_pid", "s.restart_lsn", "s.confirmed_flush_lsn",
		"pg_wal_lsn_diff(w.lsn, s.confirmed_flush_lsn) AS lag", "pg_wal_lsn_diff(w.lsn, s.restart_lsn) AS retained"}
	if d.version >= 13 {
		cols = append(cols, "s.wal_status")
	}
	if d.version >= 17 {
		cols = append(cols, `to_char(s.inactive_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS inactive_since`,
			"extract(epoch FROM now() - s.inactive_since) AS inactive_seconds", "s.failover", "s.invalidation_reason")
	}
	rows, err := d.query(ctx, `SELECT `+strings.Join(cols, ", ")+`
		FROM pg_replication_slots s,
		     (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn) w
		WHERE `+where+` ORDER BY s.slot_name`, args...)
	if err != nil {
		return nil, err
	}
	var out []slotInfo
	for _, r := range rows {
		s := slotInfo{
			Name: r["slot_name"], Type: r["slot_type"], Plugin: r["plugin"], Database: r["database"],
			Temporary: r.bool("temporary"), Active: r.bool("active"),
			ActivePID: optInt(r, "active_pid"), RestartLSN: optString(r, "restart_lsn"), ConfirmedFlushLSN: optString(r, "confirmed_flush_lsn"),
			LagBytes: optInt(r, "lag"), RetainedBytes: optInt(r, "retained"),
			WALStatus: r["wal_status"], InactiveSince: r["inactive_since"], InvalidationReason: r["invalidation_reason"],
			inactiveFor: time.Duration(r.int("inactive_seconds")) * time.Second,
		}
		if r.has("failover") {
			f := r.bool("failover")
			s.Failover = &f
		}
		out = append(out, s)
	}
	return out, nil
}

func optInt(r row, col string) *int64 {
	if !r.has(col) {
		return nil
	}
	n := r.int(col)
	return &n
}

func optString(r row, col string) *string {
	if !r.has(col) {
		return nil
	}
	s := r[col]
	return &s
}

// printSlots writes the slots as an aligned table.
func printSlots(c *cli, version int, slots []slotInfo) {
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	head := "NAME\tPLUGIN\tDATABASE\tTEMPORARY\tACTIVE\tRESTART_LSN\tCONFIRMED_FLUSH\tLAG\tRETAINED_WAL"
	if version >= 13 {
		head += "\tWAL_STATUS"
	}
	if version >= 17 {
		head += "\tINACTIVE_SINCE\tFAILOVER"
	}
	fmt.Fprintln(w, head)
	for _, s := range slots {
		active := "no"
		if s.Active {
			active = "yes"
			if s.ActivePID != nil {
				active += " (pid " + strconv.FormatInt(*s.ActivePID, 10) + ")"
			}
		}
		line := strings.Join([]string{s.Name, s.Plugin, s.Database, yesNo(s.Temporary), active,
			deref(s.RestartLSN), deref(s.ConfirmedFlushLSN), bytesOrDash(s.LagBytes), bytesOrDash(s.RetainedBytes)}, "\t")
		if version >= 13 {
			line += "\t" + orDash(s.WALStatus)
		}
		if version >= 17 {
			since := "-"
			if s.InactiveSince != "" {
				since = s.InactiveSince + " (" + s.inactiveFor.String() + " ago)"
			}
			failover := "-"
			if s.Failover != nil {
				failover = yesNo(*s.Failover)
			}
			line += "\t" + since + "\t" + failover
		}
		fmt.Fprintln(w, line)
	}
	_ = w.Flush()
}

// dropSlot drops the slot name after checking that it exists and is not
// in use, and after confirmation.
func dropSlot(ctx context.Context, c *cli, tgt *target, d *db, name string, yes bool) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(c.stderr, "walex slots drop: %s\n", tgt.scrub(fmt.Sprintf(format, args...)))
		return exitFailure
	}
	slots, err := listSlots(ctx, d, "s.slot_name = $1", name)
	if err != nil {
		return fail("look up slot %q: %v", name, err)
	}
	if len(slots) == 0 {
		return fail("there is no replication slot named %q on %s (walex slots lists them)", name, tgt)
	}
	s := slots[0]
	if s.Active {
		return fail("%s", activeSlotMessage(s))
	}
	if !yes {
		if !isTerminal(c.stdin) {
			fmt.Fprintf(c.stderr, "walex slots drop: refusing to drop slot %q without confirmation: stdin is not a terminal; add --yes to drop it\n", name)
			return exitUsage
		}
		fmt.Fprintf(c.stderr, "Slot %q (%s, database %s) retains %s of WAL; its consumer loses its position and the changes since.\nType the slot name to drop it: ",
			name, s.Type, orDash(s.Database), bytesOrDash(s.RetainedBytes))
		line, _ := bufio.NewReader(c.stdin).ReadString('\n')
		if strings.TrimSpace(line) != name {
			fmt.Fprintf(c.stderr, "walex slots drop: not dropped (the name typed was not %q)\n", name)
			return exitFailure
		}
	}
	if _, err := d.query(ctx, "SELECT pg_drop_replication_slot($1)", name); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" { // object_in_use: it became active meanwhile
			if again, lerr := listSlots(ctx, d, "s.slot_name = $1", name); lerr == nil && len(again) == 1 && again[0].Active {
				return fail("%s", activeSlotMessage(again[0]))
			}
		}
		return fail("drop slot %q: %v", name, err)
	}
	fmt.Fprintf(c.stdout, "dropped replication slot %q\n", name)
	return exitOK
}

// activeSlotMessage says that a slot is in use, by whom, and what to do.
func activeSlotMessage(s slotInfo) string {
	pid := "?"
	if s.ActivePID != nil {
		pid = strconv.FormatInt(*s.ActivePID, 10)
	}
	msg := fmt.Sprintf("slot %q is active: backend pid %s is using it, so it cannot be dropped. Stop that consumer first", s.Name, pid)
	if s.Temporary {
		msg += " (a temporary slot goes away by itself when its session ends)"
	}
	return msg + fmt.Sprintf(", or end its connection with SELECT pg_terminate_backend(%s); and drop the slot right after (SELECT pg_drop_replication_slot(%s);) before the consumer reconnects", pid, sqlquote.Literal(s.Name))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bytesOrDash(n *int64) string {
	if n == nil {
		return "-"
	}
	return formatBytes(*n)
}

// formatBytes writes a size in bytes with binary units: 512 B, 1.5 KiB,
// 16.0 MiB.
func formatBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		if f < 1024 && f > -1024 || unit == "TiB" {
			return strconv.FormatFloat(f, 'f', 1, 64) + " " + unit
		}
	}
	return strconv.FormatInt(n, 10) + " B"
}
