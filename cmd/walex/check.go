package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

const checkUsage = `
Usage:
  walex check [--publication NAME] [--tables T1,T2] [--create-publication] [--format pretty|json]

Checks whether the server, the role, the publication and the tables are
ready for walex, and prints each check as OK, WARNING or PROBLEM; for
each problem, what is wrong and the SQL that fixes it:

  - wal_level (must be logical);
  - max_replication_slots and max_wal_senders, and how many are free;
  - max_slot_wal_keep_size (unlimited is a warning: an abandoned slot can
    fill the disk);
  - the role: REPLICATION (or superuser), LOGIN, and that a replication
    connection is allowed (pg_hba.conf); with --create-publication, CREATE
    on the database;
  - the publication: that it exists, its tables and its operations;
  - each table (--tables, else every table of the publication): that it
    exists and is published, its primary key and replica identity (a
    table without a primary key under REPLICA IDENTITY DEFAULT cannot be
    updated or deleted from once published), SELECT (for snapshots), not
    UNLOGGED;
  - inactive replication slots and the WAL they retain.

The exit status is 0 when there is no PROBLEM (warnings are allowed), 1
when there are problems, 2 on a usage error or when it cannot connect.

Examples:
  walex check --url postgres://app@db.internal/app --publication events --tables users,todos
  walex check --publication events            # every table of the publication
  walex check --format json | jq '.findings[] | select(.status == "problem")'
`

// status is the outcome of one check.
type status string

const (
	statusOK      status = "ok"
	statusWarning status = "warning"
	statusProblem status = "problem"
)

// finding is one check's outcome: what was found and, for a warning or a
// problem, the SQL (and comments) that fix it.
type finding struct {
	Check   string   `json:"check"`
	Status  status   `json:"status"`
	Message string   `json:"message"`
	Fix     []string `json:"fix,omitempty"`
}

// report is what walex check --format json writes.
type report struct {
	Target   string    `json:"target"`
	Server   string    `json:"server_version"`
	Findings []finding `json:"findings"`
	Problems int       `json:"problems"`
	Warnings int       `json:"warnings"`
}

func runCheck(ctx context.Context, c *cli, args []string) int {
	var (
		conn      connFlags
		pub       string
		tables    string
		createPub bool
		format    string
		color     colorFlag = "auto"
	)
	fs := c.newFlags("check")
	conn.register(fs)
	fs.StringVar(&pub, "publication", "", "the publication `NAME` to check")
	fs.StringVar(&tables, "tables", "", "the `TABLES` to check, comma-separated: users, app.todos, \"Order Items\" (default: the publication's)")
	fs.BoolVar(&createPub, "create-publication", false, "walex is to create the publication or add tables to it (Config.CreatePublication): check that the role may")
	fs.StringVar(&format, "format", "pretty", "`FORMAT`: pretty or json")
	fs.Var(&color, "color", "`WHEN` to colour: auto (on a terminal, unless NO_COLOR is set), always or never")
	pos, code, done := c.parse(fs, checkUsage, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return c.usageError(fs, "unexpected argument %q", pos[0])
	}
	if format != "pretty" && format != "json" {
		return c.usageError(fs, "--format is %q; use pretty or json", format)
	}
	refs, err := parseTableList(tables)
	if err != nil {
		return c.usageError(fs, "--tables: %v", err)
	}
	tgt, err := conn.resolve(c.getenv)
	if err != nil {
		return c.usageError(fs, "%v", err)
	}
	d, err := tgt.connect(ctx, "catalog queries")
	if err != nil {
		fmt.Fprintf(c.stderr, "walex check: %v\n", err)
		return exitUsage
	}
	defer d.close()

	k := &checker{ctx: ctx, d: d, tgt: tgt, pub: pub, tables: refs, createPub: createPub}
	k.run()
	r := report{Target: tgt.String(), Server: d.release, Findings: k.findings}
	for _, f := range k.findings {
		switch f.Status {
		case statusProblem:
			r.Problems++
		case statusWarning:
			r.Warnings++
		}
	}
	if format == "json" {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintf(c.stdout, "%s\n", b)
	} else {
		printReport(c.stdout, palette{on: color.enabled(c, c.stdout)}, r)
	}
	if r.Problems > 0 {
		return exitFailure
	}
	return exitOK
}

var statusColors = map[status]string{statusOK: sgrGreen, statusWarning: sgrYellow, statusProblem: sgrRed}

// printReport writes the findings, aligned: status, check, message, and
// the fix below the message.
func printReport(w io.Writer, p palette, r report) {
	fmt.Fprintf(w, "walex check: %s, PostgreSQL %s\n\n", r.Target, r.Server)
	width := 0
	for _, f := range r.Findings {
		width = max(width, utf8.RuneCountInString(f.Check))
	}
	indent := strings.Repeat(" ", len("WARNING")+2+width+2)
	for _, f := range r.Findings {
		fmt.Fprintf(w, "%s  %s  %s\n", p.pad(statusColors[f.Status], strings.ToUpper(string(f.Status)), len("WARNING")),
			p.pad(sgrBold, f.Check, width), f.Message)
		for i, line := range f.Fix {
			label := "     "
			if i == 0 {
				label = "fix: "
			}
			fmt.Fprintf(w, "%s%s%s\n", indent, p.paint(sgrDim, label), line)
		}
	}
	fmt.Fprintln(w)
	switch {
	case r.Problems > 0:
		fmt.Fprintf(w, "%s, %s: walex cannot work until the problems are fixed.\n", plural(r.Problems, "problem"), plural(r.Warnings, "warning"))
	case r.Warnings > 0:
		fmt.Fprintf(w, "Ready for walex, with %s.\n", plural(r.Warnings, "warning"))
	default:
		fmt.Fprintln(w, "Ready for walex.")
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
