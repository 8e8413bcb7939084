package main

import (
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// isTerminal reports whether a stream is a terminal: it has a Stat method
// (an *os.File does) reporting a character device.
func isTerminal(stream any) bool {
	f, ok := stream.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// colorFlag is --color: auto (on a terminal, unless NO_COLOR is set),
// always or never.
type colorFlag string

func (f *colorFlag) String() string { return string(*f) }

func (f *colorFlag) Set(s string) error {
	switch s {
	case "auto", "always", "never":
		*f = colorFlag(s)
		return nil
	}
	return fmt.Errorf("is %q; use auto, always or never", s)
}

// enabled decides whether to write ANSI colours to out.
func (f colorFlag) enabled(c *cli, out any) bool {
	switch f {
	case "always":
		return true
	case "never":
		return false
	}
	return c.getenv("NO_COLOR") == "" && c.getenv("TERM") != "dumb" && isTerminal(out)
}

// palette writes ANSI SGR sequences, or nothing when colours are off.
type palette struct{ on bool }

const (
	sgrBold    = "1"
	sgrDim     = "2"
	sgrRed     = "31"
	sgrGreen   = "32"
	sgrYellow  = "33"
	sgrBlue    = "34"
	sgrMagenta = "35"
	sgrCyan    = "36"
)

func (p palette) paint(code, s string) string {
	if !p.on || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// pad paints s and pads it with spaces to width characters, so that
// colours do not disturb alignment.
func (p palette) pad(code, s string, width int) string {
	return p.paint(code, s) + strings.Repeat(" ", max(0, width-utf8.RuneCountInString(s)))
}
