package nats

import (
	"fmt"
	"strings"

	"github.com/walex-go/walex"
)

// DefaultPrefix is the first subject token when Options.Prefix is empty.
const DefaultPrefix = "walex"

// Subject returns the default subject of an event:
// <prefix>.<schema>.<table>.<type>, with the schema and the table name
// escaped by [EscapeToken], e.g. "walex.public.users.insert" or, for a
// table named "order items" in schema "shop.v2",
// "walex.shop%2Ev2.order%20items.insert".
func Subject(prefix string, e walex.Event) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(e.Source.Schema) + len(e.Source.Table) + len(e.Type) + 3)
	b.WriteString(prefix)
	b.WriteByte('.')
	writeToken(&b, e.Source.Schema)
	b.WriteByte('.')
	writeToken(&b, e.Source.Table)
	b.WriteByte('.')
	writeToken(&b, string(e.Type))
	return b.String()
}

// EscapeToken makes s usable as one token of a NATS subject. A NATS token
// cannot hold '.', which separates tokens, the wildcards '*' and '>', or
// white space, and an empty token is invalid. EscapeToken writes each of
// these bytes as '%' and two upper-case hex digits (' ' → "%20", '.' →
// "%2E", '*' → "%2A", '>' → "%3E"), and so '%' itself ("%25") and every
// other control byte (below 0x20, and 0x7F); an empty s becomes "%00" (a
// PostgreSQL name never holds a NUL byte). Every other byte, UTF-8
// included, is kept as it is, case included: NATS subjects are
// case-sensitive. The escaping is reversible (percent-decoding gives s
// back) and two different names never give the same token.
//
// Subscribers name a table the same way: "walex." + EscapeToken(schema) +
// "." + EscapeToken(table) + ".>".
func EscapeToken(s string) string {
	if s != "" && !needsEscape(s) {
		return s
	}
	var b strings.Builder
	writeToken(&b, s)
	return b.String()
}

const hexDigits = "0123456789ABCDEF"

func writeToken(b *strings.Builder, s string) {
	if s == "" {
		b.WriteString("%00")
		return
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if escaped(c) {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xF])
			continue
		}
		b.WriteByte(c)
	}
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if escaped(s[i]) {
			return true
		}
	}
	return false
}

// escaped reports whether EscapeToken writes c as %XX.
func escaped(c byte) bool {
	switch c {
	case '.', '*', '>', '%', ' ', 0x7F:
		return true
	}
	return c < 0x20
}

// checkSubject reports why subj is not a subject a message can be
// published to: empty, an empty token, white space, or a wildcard.
func checkSubject(subj string) error {
	if subj == "" {
		return fmt.Errorf("the subject is empty")
	}
	for tok := range strings.SplitSeq(subj, ".") {
		switch {
		case tok == "":
			return fmt.Errorf("subject %q has an empty token (a leading, trailing or doubled '.')", subj)
		case tok == "*" || tok == ">":
			return fmt.Errorf("subject %q has the wildcard token %q; a message is published to a literal subject", subj, tok)
		case strings.ContainsAny(tok, " \t\r\n\f\v"):
			return fmt.Errorf("subject %q contains white space; escape names with EscapeToken", subj)
		}
	}
	return nil
}
