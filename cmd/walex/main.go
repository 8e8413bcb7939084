package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit statuses.
const (
	exitOK      = 0 // done; check: no problems
	exitFailure = 1 // the command failed; check: problems found
	exitUsage   = 2 // bad arguments; check: also when it cannot connect
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

// cli is one invocation: its environment and its standard streams. A
// stream is a terminal when it has a Stat method (an *os.File) that
// reports a character device.
type cli struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// command is a subcommand.
type command struct {
	name    string
	summary string
	usage   string // the synopsis and description printed by --help
	run     func(ctx context.Context, c *cli, args []string) int
}

func commands() []command {
	return []command{
		{name: "tail", summary: "print the changes of tables as they are committed", usage: tailUsage, run: runTail},
		{name: "check", summary: "check that the server, the role, the publication and the tables are ready for walex", usage: checkUsage, run: runCheck},
		{name: "slots", summary: "list logical replication slots, or drop one (slots drop NAME)", usage: slotsUsage, run: runSlots},
	}
}

// run runs the command line args (without the program name) and returns
// the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		c.mainUsage(stderr)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) == 0 {
			c.mainUsage(stdout)
			return exitOK
		}
		cmd, ok := lookup(rest[0])
		if !ok {
			fmt.Fprintf(stderr, "walex help: no command %q\n\n", rest[0])
			c.mainUsage(stderr)
			return exitUsage
		}
		return cmd.run(ctx, c, []string{"--help"})
	}
	cmd, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "walex: no command %q\n\n", name)
		c.mainUsage(stderr)
		return exitUsage
	}
	return cmd.run(ctx, c, rest)
}

func lookup(name string) (command, bool) {
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd, true
		}
	}
	return command{}, false
}

func (c *cli) mainUsage(w io.Writer) {
	fmt.Fprint(w, `walex: look at PostgreSQL change data capture from the command line.

Usage:
  walex <command> [flags]

Commands:
`)
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-6s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprint(w, `  help   help about a command (walex help tail, or walex tail --help)

Connection: every command takes --url (a postgres:// URL or a key=value
DSN). Without it, $DATABASE_URL; without that, libpq's variables (PGHOST,
PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, ...) and ~/.pgpass.
Passwords are never printed.

Exit status: 0 on success; 1 when the command failed (check: when it found
problems); 2 on a usage error (check: also when it cannot connect).
`)
}

// newFlags returns a flag set for a command that prints the command's
// usage and its flags on --help (to stdout) and on a bad flag (to stderr).
func (c *cli) newFlags(cmd string) *flag.FlagSet {
	fs := flag.NewFlagSet("walex "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses args into fs, flags and positional arguments in any order
// (walex slots drop NAME --yes). It prints the usage and returns a
// status to exit with when parsing ends the command (--help, a bad flag).
func (c *cli) parse(fs *flag.FlagSet, usage string, args []string) (positional []string, exit int, done bool) {
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			printUsage(c.stdout, fs, usage)
			return nil, exitOK, true
		}
		if err != nil {
			fmt.Fprintf(c.stderr, "%s: %v\n\n", fs.Name(), err)
			printUsage(c.stderr, fs, usage)
			return nil, exitUsage, true
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, 0, false
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), 0, false
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// usageError prints a usage error of a command and returns exitUsage.
func (c *cli) usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "%s: %s\n(see %s --help)\n", fs.Name(), fmt.Sprintf(format, args...), fs.Name())
	return exitUsage
}

func printUsage(w io.Writer, fs *flag.FlagSet, usage string) {
	fmt.Fprint(w, strings.TrimLeft(usage, "\n"))
	fmt.Fprint(w, "\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		name, help := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if len(f.Name) == 1 {
			line = "  -" + f.Name
		}
		if name != "" {
			line += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" {
			help += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, help)
	})
}
