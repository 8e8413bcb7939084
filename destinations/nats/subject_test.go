package nats_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/walex-go/walex"
	walexnats "github.com/walex-go/walex/destinations/nats"
)

func TestEscapeToken(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"users", "users"},
		{"Users_2-x", "Users_2-x"},
		{"order items", "order%20items"},
		{"shop.v2", "shop%2Ev2"},
		{"a*b", "a%2Ab"},
		{"a>b", "a%3Eb"},
		{">", "%3E"},
		{"100%", "100%25"},
		{"tab\tnl\n", "tab%09nl%0A"},
		{"del\x7f", "del%7F"},
		{"größe", "größe"},
		{"", "%00"},
	} {
		if got := walexnats.EscapeToken(c.in); got != c.want {
			t.Errorf("EscapeToken(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestEscapeTokenReversible: percent-decoding gives the name back, so two
// names never share a token, and every token is valid.
func TestEscapeTokenReversible(t *testing.T) {
	names := []string{"users", "a.b", "a%2Eb", "a b", "a%20b", "*", ">", "%", "%%", "x\r\ny", "日本語", "\"quoted\"", "$sys"}
	seen := map[string]string{}
	for _, n := range names {
		tok := walexnats.EscapeToken(n)
		if back, err := url.PathUnescape(tok); err != nil || back != n {
			t.Errorf("PathUnescape(EscapeToken(%q) = %q) = %q, %v", n, tok, back, err)
		}
		if other, ok := seen[tok]; ok {
			t.Errorf("EscapeToken(%q) = EscapeToken(%q) = %q", n, other, tok)
		}
		seen[tok] = n
		if strings.ContainsAny(tok, ". *>\t\r\n") || tok == "" {
			t.Errorf("EscapeToken(%q) = %q is not a valid token", n, tok)
		}
	}
}

func TestSubject(t *testing.T) {
	e := walex.Event{Type: walex.Update, Source: walex.Source{Schema: "shop.v2", Table: "order items"}}
	if got, want := walexnats.Subject("walex", e), "walex.shop%2Ev2.order%20items.update"; got != want {
		t.Errorf("Subject() = %q, want %q", got, want)
	}
	e = walex.Event{Type: walex.Truncate, Source: walex.Source{Schema: "public", Table: "users"}}
	if got, want := walexnats.Subject("app.cdc", e), "app.cdc.public.users.truncate"; got != want {
		t.Errorf("Subject() = %q, want %q", got, want)
	}
}
