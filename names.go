package walex

import (
	"errors"
	"slices"
	"strings"
	"unicode"

	"github.com/walex-go/walex/internal/sqlquote"
)

// DefaultSlotName returns the default slot name for an application name:
// lower-cased, every character other than a-z, 0-9 and _ replaced by _,
// plus "_walex" (as WalEx does).
func DefaultSlotName(name string) string {
	return sanitizeSlotName(name) + "_walex"
}

func sanitizeSlotName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// maxSlotName is NAMEDATALEN-1, less room for a temporary slot's suffix.
const maxSlotName = 63 - 9

// tableName is a schema-qualified table name.
type tableName struct{ Schema, Table string }

// String describes the value for logs.
func (t tableName) String() string { return t.Schema + "." + t.Table }

// parseTableName parses "table", "schema.table", or quoted parts
// (`"My Schema"."Order Items"`). An unquoted name is used as written (no
// lower-casing), so "Order Items" names the table created as "Order Items".
func parseTableName(s string) (tableName, error) {
	if strings.TrimSpace(s) == "" {
		return tableName{}, errors.New("empty table name")
	}
	var parts []string
	for rest := s; ; {
		var part string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(rest); i++ {
				if rest[i] == '"' {
					if i+1 < len(rest) && rest[i+1] == '"' {
						b.WriteByte('"')
						i++
						continue
					}
					break
				}
				b.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return tableName{}, errors.New("unterminated quoted identifier")
			}
			part, rest = b.String(), rest[i+1:]
		} else {
			end := strings.IndexByte(rest, '.')
			if end < 0 {
				end = len(rest)
			}
			part, rest = rest[:end], rest[end:]
		}
		if part == "" {
			return tableName{}, errors.New("empty part in table name")
		}
		parts = append(parts, part)
		if rest == "" {
			break
		}
		if rest[0] != '.' {
			return tableName{}, errors.New("expected . after a quoted identifier")
		}
		rest = rest[1:]
	}
	for _, p := range parts {
		if strings.ContainsFunc(p, func(r rune) bool { return r == 0 || !unicode.IsPrint(r) && r != ' ' }) {
			return tableName{}, errors.New("table name contains a control character")
		}
	}
	switch len(parts) {
	case 1:
		if parts[0] == AllTables {
			return tableName{}, errors.New(`"*" (AllTables) is for OnEvent, not a subscription`)
		}
		return tableName{Schema: "public", Table: parts[0]}, nil
	case 2:
		return tableName{Schema: parts[0], Table: parts[1]}, nil
	}
	return tableName{}, errors.New("more than two dot-separated parts; write schema.table")
}

// quoted returns the table name as a SQL identifier: "schema"."table".
func (t tableName) quoted() string { return sqlquote.Ident(t.Schema) + "." + sqlquote.Ident(t.Table) }

func containsTable(list []tableName, t tableName) bool {
	return slices.Contains(list, t)
}

func joinTables(ts []tableName) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.String())
	}
	return strings.Join(s, ", ")
}
