package main

import (
	"errors"
	"strings"

	"github.com/walex-go/walex/internal/sqlquote"
)

// tableRef is a table named on the command line.
type tableRef struct {
	raw    string // as written, for walex.Config.Subscriptions
	schema string
	name   string
}

// String is schema.name, for messages.
func (t tableRef) String() string { return t.schema + "." + t.name }

// quoted is the table as SQL: "schema"."name".
func (t tableRef) quoted() string { return sqlquote.Ident(t.schema) + "." + sqlquote.Ident(t.name) }

// splitTableList splits a comma-separated list of tables, with the rules
// of walex.Config.Subscriptions: "users" is public.users, "app.todos" names
// the schema, a part may be double-quoted ("my.schema"."Order Items", with
// "" for a quote), and an unquoted part is used as written.
func splitTableList(s string) ([]string, error) {
	refs, err := parseTableList(s)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.raw
	}
	return out, nil
}

// parseTableList parses a comma-separated list of tables (see
// splitTableList). An empty list is nil.
func parseTableList(s string) ([]tableRef, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var (
		out    []tableRef
		parts  []string
		part   strings.Builder
		start  int
		quoted bool // inside a quoted part
		seen   bool // the current part has a character or quotes
		wasQ   bool // the current part has a quoted piece
	)
	endPart := func() error {
		if !seen {
			return errors.New("an empty name (write users, app.todos or \"Order Items\")")
		}
		p := part.String()
		if !wasQ {
			p = strings.TrimRight(p, " \t")
		}
		parts = append(parts, p)
		part.Reset()
		seen, wasQ = false, false
		return nil
	}
	endTable := func(end int) error {
		if err := endPart(); err != nil {
			return err
		}
		raw := strings.TrimSpace(s[start:end])
		switch len(parts) {
		case 1:
			out = append(out, tableRef{raw: raw, schema: "public", name: parts[0]})
		case 2:
			out = append(out, tableRef{raw: raw, schema: parts[0], name: parts[1]})
		default:
			return errors.New(raw + ": more than two dot-separated parts; write schema.table")
		}
		parts = nil
		return nil
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quoted && ch == '"' && i+1 < len(s) && s[i+1] == '"':
			part.WriteByte('"')
			i++
		case ch == '"':
			quoted = !quoted
			seen, wasQ = true, true
		case quoted:
			part.WriteByte(ch)
		case ch == '.':
			if err := endPart(); err != nil {
				return nil, err
			}
		case ch == ',':
			if err := endTable(i); err != nil {
				return nil, err
			}
			start = i + 1
		case (ch == ' ' || ch == '\t') && !seen:
			// space before a name
		default:
			part.WriteByte(ch)
			seen = true
		}
	}
	if quoted {
		return nil, errors.New("an unterminated quoted name")
	}
	if err := endTable(len(s)); err != nil {
		return nil, err
	}
	return out, nil
}
