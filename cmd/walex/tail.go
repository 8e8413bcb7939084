package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/walex-go/walex"
)

const tailUsage = `
Usage:
  walex tail --publication NAME --tables T1,T2 [flags]

Streams the committed changes of the tables and prints each event: with
--format json one Event JSON object a line (the documented walex JSON),
with --format pretty a readable line (commit time, type, table, event ID,
key and values, or old → new for each changed column), coloured on a
terminal. The default is pretty on a terminal and json otherwise.

The slot is temporary by default: changes made while walex tail is not
running are not shown. --durable keeps a slot (--slot, default
<name>_walex) across runs, so the next run starts where this one stopped;
drop it with walex slots drop when you are done. Ctrl-C (SIGINT) or SIGTERM
stops cleanly.

Examples:
  walex tail --url postgres://app@localhost/app --publication events --tables users,todos
  walex tail --publication events --tables users --format json | jq .new_record
  walex tail --publication events --tables 'app."Order Items"' --snapshot
  walex tail --publication events --tables users --durable --slot audit_tail
`

// tailFlags are the flags of walex tail.
type tailFlags struct {
	conn              connFlags
	publication       string
	tables            string
	durable           bool
	slot              string
	snapshot          bool
	createPublication bool
	format            string
	name              string
	color             colorFlag
	verbose           bool
}

func runTail(ctx context.Context, c *cli, args []string) int {
	f := tailFlags{color: "auto"}
	fs := c.newFlags("tail")
	f.conn.register(fs)
	fs.StringVar(&f.publication, "publication", "", "the publication `NAME` to stream (required)")
	fs.StringVar(&f.tables, "tables", "", "the `TABLES`, comma-separated: users, app.todos, \"Order Items\" (required)")
	fs.BoolVar(&f.durable, "durable", false, "use a durable slot that survives the run (see --slot)")
	fs.StringVar(&f.slot, "slot", "", "the durable slot's `NAME` (default <name>_walex)")
	fs.BoolVar(&f.snapshot, "snapshot", false, "print the rows that exist first (events of type read), then the stream")
	fs.BoolVar(&f.createPublication, "create-publication", false, "create the publication, or add missing tables to it (needs CREATE on the database and ownership of the tables)")
	fs.StringVar(&f.format, "format", "", "`FORMAT`: json or pretty (default pretty on a terminal, json otherwise)")
	fs.StringVar(&f.name, "name", "walex-tail", "the application `NAME`; names the slot")
	fs.Var(&f.color, "color", "`WHEN` to colour: auto (on a terminal, unless NO_COLOR is set), always or never")
	fs.BoolVar(&f.verbose, "v", false, "log connections and acknowledgements to stderr")
	pos, code, done := c.parse(fs, tailUsage, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return c.usageError(fs, "unexpected argument %q", pos[0])
	}
	if f.publication == "" {
		return c.usageError(fs, "--publication is required")
	}
	tables, err := splitTableList(f.tables)
	if err != nil {
		return c.usageError(fs, "--tables: %v", err)
	}
	if len(tables) == 0 {
		return c.usageError(fs, "--tables is required: list the tables to stream, e.g. --tables users,todos")
	}
	if f.slot != "" && !f.durable {
		return c.usageError(fs, "--slot names a durable slot; add --durable (a temporary slot gets a name of its own)")
	}
	format := f.format
	switch format {
	case "":
		format = "json"
		if isTerminal(c.stdout) {
			format = "pretty"
		}
	case "json", "pretty":
	default:
		return c.usageError(fs, "--format is %q; use json or pretty", format)
	}
	tgt, err := f.conn.resolve(c.getenv)
	if err != nil {
		return c.usageError(fs, "%v", err)
	}

	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelInfo
	}
	cfg := walex.Config{
		ConnConfig:        tgt.cfg,
		Name:              f.name,
		Publication:       f.publication,
		Subscriptions:     tables,
		DurableSlot:       f.durable,
		SlotName:          f.slot,
		CreatePublication: f.createPublication,
		Logger:            slog.New(&quietStop{slog.NewTextHandler(&scrubWriter{w: c.stderr, t: tgt}, &slog.HandlerOptions{Level: level})}),
	}
	if f.snapshot {
		cfg.Snapshot = walex.SnapshotInitial
	}
	client, err := walex.New(cfg)
	if err != nil {
		return c.usageError(fs, "%s", tgt.scrub(err.Error()))
	}
	out := &eventWriter{w: bufio.NewWriter(c.stdout)}
	if format == "pretty" {
		out.pretty = &prettyPrinter{p: palette{on: f.color.enabled(c, c.stdout)}, keys: lookupKeys(ctx, tgt, tables)}
	}
	client.OnEvent(walex.AllTables, out.handle)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if isTerminal(c.stderr) {
		slot := "a temporary slot"
		if f.durable {
			slot = "durable slot " + cmp.Or(f.slot, walex.DefaultSlotName(f.name))
		}
		fmt.Fprintf(c.stderr, "walex tail: %s, publication %s, %s; Ctrl-C to stop\n", tgt, f.publication, slot)
	}
	if err := client.Run(ctx); err != nil {
		fmt.Fprintf(c.stderr, "walex tail: %s\n", tgt.scrub(err.Error()))
		return exitFailure
	}
	return exitOK
}

// eventWriter prints the events of each transaction, then flushes.
type eventWriter struct {
	w      *bufio.Writer
	pretty *prettyPrinter // nil: JSON lines
}

func (e *eventWriter) handle(_ context.Context, events []walex.Event) error {
	for _, ev := range events {
		if err := e.write(ev); err != nil {
			return err
		}
	}
	if err := e.w.Flush(); err != nil {
		return &outputError{err}
	}
	return nil
}

func (e *eventWriter) write(ev walex.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return &outputError{fmt.Errorf("encode event %s: %w", ev.ID(), err)}
	}
	if e.pretty != nil {
		line, err := e.pretty.format(ev, b)
		if err != nil {
			return &outputError{err}
		}
		b = []byte(line)
	}
	b = append(b, '\n')
	if _, err := e.w.Write(b); err != nil {
		return &outputError{err}
	}
	return nil
}

// outputError is a failure to write an event out (a closed pipe, a full
// disk): permanent, so that walex does not retry the handler.
type outputError struct{ err error }

func (e *outputError) Error() string   { return "write the events: " + e.err.Error() }
func (e *outputError) Unwrap() error   { return e.err }
func (e *outputError) Permanent() bool { return true }

// quietStop leaves out walex's "stopped" record: Run returns the same
// error, which walex tail prints as its last line.
type quietStop struct{ slog.Handler }

func (q *quietStop) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelError && r.Message == "walex: stopped" {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

func (q *quietStop) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &quietStop{q.Handler.WithAttrs(attrs)}
}

func (q *quietStop) WithGroup(name string) slog.Handler { return &quietStop{q.Handler.WithGroup(name)} }

// scrubWriter takes passwords out of what walex logs (it never logs them
// itself; this covers driver and server messages it passes on).
type scrubWriter struct {
	mu sync.Mutex
	w  io.Writer
	t  *target
}

func (s *scrubWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := io.WriteString(s.w, s.t.scrub(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
