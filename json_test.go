package walex

import (
	"encoding/json"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestEventJSON(t *testing.T) {
	e := Event{
		Name: "users", Type: Update,
		Source: Source{Name: "walex", Version: Version, DB: "app", Schema: "public", Table: "users", Columns: map[string]string{"id": "int8"}},
		NewRecord: map[string]any{
			"id":    int64(7),
			"price": pgtype.Numeric{Int: big.NewInt(1250), Exp: -2, Valid: true},
			"uid":   [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8},
			"blob":  []byte{0, 1, 2},
			"f":     math.Inf(-1),
			"doc":   Unchanged,
			"until": pgtype.Infinity,
			"arr":   []any{math.NaN(), 1.5},
		},
		Changes:   map[string]Change{"price": {OldValue: pgtype.Numeric{NaN: true, Valid: true}, NewValue: pgtype.Numeric{Int: big.NewInt(1250), Exp: -2, Valid: true}}},
		Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		CommitLSN: 0x16B3748,
		Index:     3,
		XID:       9,
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	want := `{"id":"0/16B3748:3","name":"users","type":"update","source":{"name":"walex","version":"` + Version + `","db":"app","schema":"public","table":"users","columns":{"id":"int8"}},` +
		`"new_record":{"arr":["NaN",1.5],"blob":"AAEC","doc":{"$walex":"unchanged-toast"},"f":"-Infinity","id":7,"price":"12.50","uid":"12345678-9abc-def0-0102-030405060708","until":"infinity"},` +
		`"old_record":null,"changes":{"price":{"old_value":"NaN","new_value":"12.50"}},"timestamp":"2026-01-02T03:04:05.000006Z","lsn":"0/16B3748","index":3,"xid":9}`
	if got != want {
		t.Errorf("json.Marshal(event) =\n%s\nwant\n%s", got, want)
	}
}
