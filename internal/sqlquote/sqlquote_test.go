package sqlquote

import "testing"

func TestQuote(t *testing.T) {
	if got, want := Ident(`a"b`), `"a""b"`; got != want {
		t.Errorf("Ident = %s, want %s", got, want)
	}
	if got, want := Literal(`it's`), `'it''s'`; got != want {
		t.Errorf("Literal = %s, want %s", got, want)
	}
}
