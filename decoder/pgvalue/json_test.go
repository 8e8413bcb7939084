package pgvalue

import (
	"encoding/json"
	"reflect"
	"testing"
)

var jsonSeeds = []string{
	`{"a": 1, "b": [true, false, null, "x"], "c": {"d": -1.5e3}}`,
	`[]`, `{}`, `"plain"`, `0`, `-0`, `1e400`, `12345678901234567890`,
	`"esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00 \ud800 \udc00x"`,
	`{"k": 1, "k": 2}`, ` [ 1 , 2 ] `, `{"a":}`, `[1,]`, `01`, `1.`, `.5`, `"\x"`, "\"\xff\"", `tru`, `nul`,
	`{"nested": [[[[[]]]]], "ü": "ü"}`,
}

func TestParseJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range jsonSeeds {
		checkJSON(t, []byte(s))
	}
}

// checkJSON: when parseJSON accepts a document, encoding/json must accept
// it with the same value; when encoding/json rejects it, parseJSON must too.
func checkJSON(t *testing.T, src []byte) {
	got, ok := parseJSON(src, nil)
	interned, iok := parseJSON(src, map[string]string{"a": "a", "k": "k"})
	if iok != ok || !reflect.DeepEqual(interned, got) {
		t.Fatalf("%q: with interning %#v, %t; without %#v, %t", src, interned, iok, got, ok)
	}
	var want any
	err := json.Unmarshal(src, &want)
	if ok && err != nil {
		t.Fatalf("%q: parseJSON accepted what encoding/json rejects (%v): %#v", src, err, got)
	}
	if ok && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: parseJSON = %#v, encoding/json = %#v", src, got, want)
	}
}

func FuzzParseJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) { checkJSON(t, src) })
}
