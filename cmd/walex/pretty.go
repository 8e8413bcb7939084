package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/walex-go/walex"
)

// maxValueRunes is the most characters of a value the pretty format shows.
const maxValueRunes = 80

// unchangedJSON is how walex's JSON writes walex.Unchanged.
const unchangedJSON = `{"$walex":"unchanged-toast"}`

// prettyPrinter formats events as one readable line each.
type prettyPrinter struct {
	p    palette
	keys map[string][]string // schema.table → key columns, in table order
}

// eventView is what the pretty format reads of an event's JSON: values in
// their documented JSON form.
type eventView struct {
	NewRecord map[string]json.RawMessage `json:"new_record"`
	OldRecord map[string]json.RawMessage `json:"old_record"`
	Changes   map[string]struct {
		Old json.RawMessage `json:"old_value"`
		New json.RawMessage `json:"new_value"`
	} `json:"changes"`
	TruncateFlags *walex.TruncateFlags `json:"truncate_flags"`
}

var typeColors = map[walex.EventType]string{
	walex.Insert: sgrGreen, walex.Update: sgrYellow, walex.Delete: sgrRed, walex.Truncate: sgrMagenta, walex.Read: sgrCyan,
}

// format writes "<commit time> <type> <schema.table> <id>  <values>" for
// the event ev, whose JSON encoding is js:
//
//   - insert and read: the key columns, then the other columns;
//   - update: the key columns, then each changed column as old → new
//     (with REPLICA IDENTITY FULL), or else the new values;
//   - delete: the old key columns (all old values if the key is unknown);
//   - truncate: its options.
func (pp *prettyPrinter) format(ev walex.Event, js []byte) (string, error) {
	var v eventView
	if err := json.Unmarshal(js, &v); err != nil {
		return "", fmt.Errorf("read the JSON of event %s: %w", ev.ID(), err)
	}
	table := ev.Source.Schema + "." + ev.Source.Table
	keys := pp.keys[table]
	var b strings.Builder
	b.WriteString(pp.p.paint(sgrDim, ev.Timestamp.Local().Format("15:04:05.000")))
	b.WriteByte(' ')
	b.WriteString(pp.p.pad(typeColors[ev.Type], string(ev.Type), len("truncate")))
	b.WriteByte(' ')
	b.WriteString(pp.p.paint(sgrBold, table))
	b.WriteByte(' ')
	b.WriteString(pp.p.paint(sgrDim, ev.ID()))
	var fields []string
	switch ev.Type {
	case walex.Insert, walex.Read:
		fields = pp.values(v.NewRecord, keys, true)
	case walex.Update:
		fields = pp.values(v.NewRecord, keys, false)
		if len(v.Changes) > 0 {
			for _, col := range sortedKeys(v.Changes) {
				ch := v.Changes[col]
				fields = append(fields, pp.p.paint(sgrBlue, col)+": "+pp.p.paint(sgrRed, value(ch.Old))+pp.p.paint(sgrDim, " → ")+pp.p.paint(sgrGreen, value(ch.New)))
			}
		} else {
			fields = append(fields, pp.others(v.NewRecord, keys)...)
		}
	case walex.Delete:
		if hasAll(v.OldRecord, keys) {
			fields = pp.values(v.OldRecord, keys, false)
		} else {
			fields = pp.values(v.OldRecord, nil, true)
		}
	case walex.Truncate:
		if f := v.TruncateFlags; f != nil && f.Cascade {
			fields = append(fields, "cascade")
		}
		if f := v.TruncateFlags; f != nil && f.RestartIdentity {
			fields = append(fields, "restart identity")
		}
	}
	if len(fields) > 0 {
		b.WriteString("  ")
		b.WriteString(strings.Join(fields, " "))
	}
	return b.String(), nil
}

// values returns col=value for the key columns of rec, and for the other
// columns too when all is set.
func (pp *prettyPrinter) values(rec map[string]json.RawMessage, keys []string, all bool) []string {
	var out []string
	for _, k := range keys {
		if raw, ok := rec[k]; ok {
			out = append(out, pp.p.paint(sgrBold, k)+"="+value(raw))
		}
	}
	if all {
		out = append(out, pp.others(rec, keys)...)
	}
	return out
}

// others returns col=value for the columns of rec that are not keys, by
// name.
func (pp *prettyPrinter) others(rec map[string]json.RawMessage, keys []string) []string {
	var out []string
	for _, col := range sortedKeys(rec) {
		if !slices.Contains(keys, col) {
			out = append(out, pp.p.paint(sgrBlue, col)+"="+value(rec[col]))
		}
	}
	return out
}

// value is a value's JSON, cut to maxValueRunes.
func value(raw json.RawMessage) string {
	s := string(raw)
	if s == unchangedJSON {
		return "(unchanged)"
	}
	if r := []rune(s); len(r) > maxValueRunes {
		return string(r[:maxValueRunes-1]) + "…"
	}
	return s
}

func hasAll(rec map[string]json.RawMessage, keys []string) bool {
	if len(keys) == 0 {
		return false
	}
	for _, k := range keys {
		if _, ok := rec[k]; !ok {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// lookupKeys reads the key columns of the tables (the replica identity
// index, or the primary key), for the pretty format to show first. A
// table it cannot look up simply shows its columns by name.
func lookupKeys(ctx context.Context, t *target, tables []string) map[string][]string {
	keys := map[string][]string{}
	refs, err := parseTableList(strings.Join(tables, ","))
	if err != nil {
		return keys
	}
	d, err := t.connect(ctx, "looking up the tables' keys")
	if err != nil {
		return keys // walex's own connection reports the problem
	}
	defer d.close()
	for _, r := range refs {
		rows, err := d.query(ctx, `SELECT a.attname FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace
			JOIN pg_index i ON i.indrelid = c.oid AND (i.indisreplident OR (c.relreplident <> 'i' AND i.indisprimary))
			JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
			WHERE n.nspname = $1 AND c.relname = $2 ORDER BY a.attnum`, r.schema, r.name)
		if err != nil {
			continue
		}
		for _, row := range rows {
			keys[r.String()] = append(keys[r.String()], row["attname"])
		}
	}
	return keys
}
