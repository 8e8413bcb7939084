package walex_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/equal"
)

// typeCase is one row of the type matrix: a column type and sample values.
// Each case gets its own table
//
//	t<nn>_<name> (id int4 PRIMARY KEY, v <typ>, a <typ>[]) REPLICA IDENTITY FULL
//
// whose rows hold every sample in v (and one NULL), and in a: an array of all
// samples with a NULL element, an empty array, a NULL array and a
// one-element array. The rows are inserted, then updated: some to other
// rows' values, some to their own (see TestTypeMatrix).
type typeCase struct {
	name    string   // subtest name
	typ     string   // SQL column type
	samples []string // SQL expressions of non-NULL values of typ
	// since adds samples on servers of at least the given major version.
	since map[int][]string
	// minVersion is the server major version the type needs (0: any).
	minVersion int
	// ext is the extension that provides the type; the case is skipped
	// when the server does not have it.
	ext string
	// noArray: typ is itself an array type (multi-dimensional cases);
	// the table has no a column.
	noArray bool
}

// typeCases is the type matrix: every built-in type family,
// user-defined enum, domain and composite types, extension types, and
// arrays of each.
var typeCases = []typeCase{
	{name: "int2", typ: "int2", samples: []string{"0", "-32768", "32767"}},
	{name: "int4", typ: "int4", samples: []string{"0", "-2147483648", "2147483647"}},
	{name: "int8", typ: "int8", samples: []string{"0", "-9223372036854775808", "9223372036854775807"}},
	{name: "float4", typ: "float4", samples: []string{"0", "1.5", "'1.1'", "'-3.4e38'", "'1e-45'", "'-0'", "'NaN'", "'Infinity'", "'-Infinity'"}},
	{name: "float8", typ: "float8", samples: []string{"0", "'3.141592653589793'", "'0.1'", "'1e308'", "'5e-324'", "'NaN'", "'Infinity'", "'-Infinity'"}},
	{name: "numeric", typ: "numeric", samples: []string{
		"0", "12.50", "-0.001", "1000000", "10000", "'123456789012345678901234567890.123456789'",
		"'1e100'", "'-1e-100'", "0.000000001", "0.00", "'NaN'",
	}, since: map[int][]string{14: {"'Infinity'", "'-Infinity'"}}},
	{name: "numeric(12,4)", typ: "numeric(12,4)", samples: []string{"1.5", "-99999999.9999", "0", "10000"}},
	{name: "money", typ: "money", samples: []string{"12.34", "-1", "0", "'92233720368547758.07'"}},
	{name: "bool", typ: "bool", samples: []string{"true", "false"}},
	{name: "char(5)", typ: "char(5)", samples: []string{"'ab'", "''", "'abcde'"}},
	{name: "varchar(10)", typ: "varchar(10)", samples: []string{"'hello'", "''", "'ünï'"}},
	{name: "varchar", typ: "varchar", samples: []string{"'x'", `'a "quoted" {x,y}'`}},
	{name: "text", typ: "text", samples: []string{
		"'hello'", "''", `E'multi\nline\ttab "quoted" \\ backslash'`, "'{braces},commas'", "'NULL'", "'😀'",
	}},
	{name: "name", typ: "name", samples: []string{"'pg_class'", "'a name with spaces'"}},
	// A non-ASCII "char" (the first byte of 'é') prints as \303 from
	// PostgreSQL 15 on; before, it prints as the raw byte, which is not
	// UTF-8 on its own and which pgx's array text parser turns into U+FFFD,
	// so a "char"[] holding one cannot be decoded there (walex stops with a
	// decoding error rather than deliver a wrong value).
	{name: `"char"`, typ: `"char"`, samples: []string{"'a'", "''", `'"'`, "'\\'"}, since: map[int][]string{15: {"'é'"}}},
	{name: "bytea", typ: "bytea", samples: []string{`'\x00ff00'`, "''", `'\x0000'`, `'\x5c22'`}},
	{name: "date", typ: "date", samples: []string{"'2024-02-29'", "'infinity'", "'-infinity'", "'0044-03-15 BC'", "'1999-12-31'"}},
	{name: "time", typ: "time", samples: []string{"'00:00'", "'23:59:59.999999'", "'24:00:00'", "'12:34:56.5'"}},
	{name: "timestamp", typ: "timestamp", samples: []string{
		"'2024-01-02 03:04:05.123456'", "'infinity'", "'-infinity'", "'1999-12-31 23:59:59'", "'0044-03-15 12:00 BC'",
	}},
	{name: "timestamptz", typ: "timestamptz", samples: []string{
		"'2024-01-02 03:04:05.123456+02'", "'infinity'", "'-infinity'", "'1900-01-01 00:00:00+00'",
		"'2024-07-01 12:00:00Z'", "'0044-03-15 12:00+00 BC'",
	}},
	{name: "timetz", typ: "timetz", samples: []string{"'12:34:56+05:30'", "'00:00:00-12'", "'23:59:59.999999+14'"}},
	{name: "interval", typ: "interval", samples: []string{
		"'1 year 2 mons 3 days 04:05:06.789'", "'-1 day'", "'0'", "'-178000000 years'", "'P1Y2M3DT4H5M6S'", "'1 day -00:00:01'",
	}, since: map[int][]string{17: {"'infinity'", "'-infinity'"}}},
	{name: "uuid", typ: "uuid", samples: []string{"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'"}},
	{name: "json", typ: "json", samples: []string{
		`'{"a": 1, "b": [true, null, "x"], "a": 2}'`, "'[]'", `'"str"'`, "'null'", "'1.5e300'", `'{"big": 12345678901234567890}'`,
	}},
	{name: "jsonb", typ: "jsonb", samples: []string{
		`'{"a": 1, "b": [true, null, "x"], "c": {"d": 1.25}}'`, "'[]'", `'"str"'`, "'null'", "'1.5e300'", `'{"big": 12345678901234567890}'`,
	}},
	{name: "inet", typ: "inet", samples: []string{"'192.168.1.5'", "'10.1.2.3/8'", "'::1'", "'2001:db8::1/64'", "'::ffff:1.2.3.4'"}},
	{name: "cidr", typ: "cidr", samples: []string{"'10.0.0.0/8'", "'2001:db8::/32'", "'192.168.1.0/24'", "'0.0.0.0/0'"}},
	{name: "macaddr", typ: "macaddr", samples: []string{"'08:00:2b:01:02:03'", "'ff:ff:ff:ff:ff:ff'"}},
	{name: "macaddr8", typ: "macaddr8", samples: []string{"'08:00:2b:01:02:03:04:05'", "'08:00:2b:01:02:03'"}},
	{name: "bit(4)", typ: "bit(4)", samples: []string{"B'1010'", "B'0000'"}},
	{name: "varbit", typ: "varbit", samples: []string{"B''", "B'1'", "B'101010101'"}},
	{name: "point", typ: "point", samples: []string{"'(1.5,-2)'", "'(0.1,1e300)'", "'(NaN,Infinity)'"}},
	{name: "line", typ: "line", samples: []string{"'{1,-1,0}'", "'{0.5,2,-3.25}'"}},
	{name: "lseg", typ: "lseg", samples: []string{"'[(0,0),(1,1)]'", "'[(0.1,-2),(3,4.5)]'"}},
	{name: "box", typ: "box", samples: []string{"'(1,1),(0,0)'", "'(2.5,3),(-1,-1)'"}},
	{name: "path", typ: "path", samples: []string{"'[(0,0),(1,1),(2,0)]'", "'((0,0),(1,1),(2,0))'"}},
	{name: "polygon", typ: "polygon", samples: []string{"'((0,0),(1,1),(1,0))'", "'((0.5,0.5))'"}},
	{name: "circle", typ: "circle", samples: []string{"'<(1,2),3>'", "'<(0.1,-0.2),0>'"}},
	{name: "xml", typ: "xml", samples: []string{`'<a b="1">text &amp; more</a>'`, "'plain text content'", `'<?xml version="1.0"?><r/>'`}},
	{name: "tsvector", typ: "tsvector", samples: []string{"'a fat cat:1A,2B sat:3 on:4 a:5 mat'", "''", `$$'it''s' 'a b':2C$$`}},
	{name: "tsquery", typ: "tsquery", samples: []string{"'fat & (rat | cat)'", "'!a <-> b:*'"}},
	{name: "int4range", typ: "int4range", samples: []string{"'[1,5)'", "'empty'", "'(,10]'", "'[3,)'", "'(,)'"}},
	{name: "int8range", typ: "int8range", samples: []string{"'[1,9223372036854775806]'", "'empty'"}},
	{name: "numrange", typ: "numrange", samples: []string{"'[1.5,2.50]'", "'(,1000000)'", "'empty'"}},
	{name: "tsrange", typ: "tsrange", samples: []string{"'[2024-01-01,2024-02-01)'", "'[2024-01-01 00:00:00.5,infinity)'"}},
	{name: "tstzrange", typ: "tstzrange", samples: []string{"'[2024-01-01 00:00+00,2024-06-01 12:00+02)'", "'(-infinity,infinity)'"}},
	{name: "daterange", typ: "daterange", samples: []string{"'[2024-01-01,2024-01-31]'", "'empty'", "'(,2024-01-01)'"}},
	{name: "int4multirange", typ: "int4multirange", minVersion: 14, samples: []string{"'{[1,3),[5,7)}'", "'{}'"}},
	{name: "int8multirange", typ: "int8multirange", minVersion: 14, samples: []string{"'{[1,2]}'", "'{(,0)}'"}},
	{name: "nummultirange", typ: "nummultirange", minVersion: 14, samples: []string{"'{[1.5,2.5],(3,)}'", "'{[10000,100000)}'"}},
	{name: "tsmultirange", typ: "tsmultirange", minVersion: 14, samples: []string{"'{[2024-01-01,2024-01-02)}'"}},
	{name: "tstzmultirange", typ: "tstzmultirange", minVersion: 14, samples: []string{"'{[2024-01-01 00:00+00,2024-01-02 00:00+05)}'"}},
	{name: "datemultirange", typ: "datemultirange", minVersion: 14, samples: []string{"'{[2024-01-01,2024-01-05)}'"}},
	{name: "oid", typ: "oid", samples: []string{"0", "4294967295", "12345"}},
	{name: "regclass", typ: "regclass", samples: []string{"'pg_class'", "'pg_catalog.pg_type'"}},
	{name: "regtype", typ: "regtype", samples: []string{"'integer'", "'character varying'"}},
	{name: "xid", typ: "xid", samples: []string{"'12345'", "'4294967295'"}},
	{name: "xid8", typ: "xid8", samples: []string{"'12345678901'", "'0'"}},
	{name: "cid", typ: "cid", samples: []string{"'7'", "'4294967295'"}},
	{name: "tid", typ: "tid", samples: []string{"'(0,1)'", "'(4294967295,65535)'"}},
	{name: "pg_lsn", typ: "pg_lsn", samples: []string{"'16/B374D848'", "'0/0'"}},
	{name: "enum", typ: "mood", samples: []string{"'sad'", `'it''s "complicated"'`}},
	{name: "domain over int4", typ: "posint", samples: []string{"1", "2147483647"}},
	{name: "domain over domain", typ: "smallposint", samples: []string{"999", "1"}},
	{name: "domain over text", typ: "email", samples: []string{"'a@b.c'", "'x@y'"}},
	{name: "composite", typ: "pair", samples: []string{"ROW(1,'a')", `ROW(NULL,'with, comma "q"')`, "ROW(NULL,NULL)"}},
	{name: "citext", typ: "citext", ext: "citext", samples: []string{"'Hello'", "'ÄÖ'"}},
	{name: "hstore", typ: "hstore", ext: "hstore", samples: []string{"'a=>1, b=>NULL'", "''"}},
	{name: "int4 multi-dimensional array", typ: "int4[]", noArray: true, samples: []string{
		"'{{1,2},{3,4}}'", "'{{{1,NULL}},{{3,4}}}'", "'[0:1]={7,8}'", "'{}'", "'{NULL}'",
	}},
	{name: "int8 multi-dimensional array", typ: "int8[]", noArray: true, samples: []string{"'{{1},{2}}'"}},
	{name: "text multi-dimensional array", typ: "text[]", noArray: true, samples: []string{`'{{a,b},{NULL,""}}'`}},
}

// typeSetup creates the user-defined types the matrix uses.
const typeSetup = `
	CREATE TYPE mood AS ENUM ('sad', 'ok', 'it''s "complicated"');
	CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
	CREATE DOMAIN smallposint AS posint CHECK (VALUE < 1000);
	CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
	CREATE TYPE pair AS (x int4, label text);
`

// tableName is the table of case i.
func (tc typeCase) tableName(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "t%02d_", i)
	for _, r := range strings.ToLower(tc.name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// rows returns the SQL expressions of the values the case's v and a
// columns cycle through on a server of the given major version: every
// sample and NULL for v; for a, an array of all samples with a NULL
// element, an empty array, NULL and a one-element array (nil if noArray).
func (tc typeCase) rows(major int) (v, a []string) {
	samples := append([]string(nil), tc.samples...)
	for _, ver := range slices.Sorted(maps.Keys(tc.since)) {
		if major >= ver {
			samples = append(samples, tc.since[ver]...)
		}
	}
	v = append(samples, "NULL")
	if tc.noArray {
		return v, nil
	}
	elems := make([]string, 0, len(samples)+1)
	for i, s := range samples {
		elems = append(elems, fmt.Sprintf("(%s)::%s", s, tc.typ))
		if i == 0 {
			elems = append(elems, "NULL")
		}
	}
	a = []string{
		fmt.Sprintf("ARRAY[%s]::%s[]", strings.Join(elems, ", "), tc.typ),
		fmt.Sprintf("'{}'::%s[]", tc.typ),
		"NULL",
		fmt.Sprintf("ARRAY[(%s)::%s]::%s[]", samples[len(samples)-1], tc.typ, tc.typ),
	}
	return v, a
}

// queryRows returns the rows of a query as pgx's rows.Values() gives them
// with its default type map, keyed by column name, like queryRow: the
// oracle for decoded values.
func queryRows(ctx context.Context, conn *pgx.Conn, sql string) ([]map[string]any, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		rec := map[string]any{}
		for i, fd := range rows.FieldDescriptions() {
			rec[fd.Name] = vals[i]
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

// compareRecord reports every column of want whose value in got differs
// (sameValue) or is missing, and every column in got that want lacks.
func compareRecord(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	if got == nil {
		t.Errorf("%s is nil, want %v", what, want)
		return
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s[%s] is missing, want %#v (%T)", what, k, w, w)
			continue
		}
		if !equal.Strict(g, w) {
			t.Errorf("%s[%s] = %#v (%T), want %#v (%T)", what, k, g, g, w, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s[%s] = %#v, but pgx returns no such column", what, k, g)
		}
	}
}

// checkChanges reports a column of an update whose listing in changes does
// not match the rows pgx read before and after the update: a column is a
// change if and only if its values differ (sameValue), and then the Change
// holds them.
func checkChanges(t *testing.T, what string, changes map[string]walex.Change, before, after map[string]any) {
	t.Helper()
	for k, nv := range after {
		ov := before[k]
		ch, listed := changes[k]
		switch differs := !equal.Strict(ov, nv); {
		case differs && !listed:
			t.Errorf("%s lacks %s: %#v → %#v", what, k, ov, nv)
		case !differs && listed:
			t.Errorf("%s[%s] = %#v → %#v, but the value did not change", what, k, ch.OldValue, ch.NewValue)
		case listed && (!equal.Strict(ch.OldValue, ov) || !equal.Strict(ch.NewValue, nv)):
			t.Errorf("%s[%s] = %#v → %#v, want %#v → %#v", what, k, ch.OldValue, ch.NewValue, ov, nv)
		}
	}
	for k := range changes {
		if _, ok := after[k]; !ok {
			t.Errorf("%s lists %s, which pgx returns no column for", what, k)
		}
	}
}

// collector gathers the events a Client hands to an OnEvent(AllTables)
// handler.
type collector struct {
	ch   chan []walex.Event
	errc chan error
}

// take receives events until n have arrived.
func (c *collector) take(t *testing.T, n int) []walex.Event {
	t.Helper()
	var evs []walex.Event
	for len(evs) < n {
		evs = append(evs, receive(t, c.ch, c.errc)...)
	}
	if len(evs) != n {
		t.Fatalf("got %d events, want %d", len(evs), n)
	}
	return evs
}

// startClient runs a Client subscribed to tables of the database at url,
// with one OnEvent(AllTables) handler, and waits until it streams.
func startClient(t *testing.T, url, name, publication string, tables []string, transfer walex.TransferFormat) *collector {
	t.Helper()
	c, err := walex.New(walex.Config{URL: url, Name: name, Publication: publication, Subscriptions: tables, StatusInterval: 200 * time.Millisecond, Transfer: transfer})
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{ch: make(chan []walex.Event, 100), errc: make(chan error, 1)}
	c.OnEvent(walex.AllTables, func(ctx context.Context, events []walex.Event) error {
		col.ch <- events
		return nil
	})
	stop := running(t, c)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run() = %v, want nil after cancel", err)
		}
	})
	waitStreaming(t, url, name+"_walex")
	return col
}

// TestTypeMatrix checks, for every type of the matrix and arrays of it,
// that an inserted and then updated row arrives with the values pgx returns
// for the same row: NewRecord of the insert equals the row after the
// insert; NewRecord of the update equals the row after the update and, as
// the tables have REPLICA IDENTITY FULL, OldRecord equals the row before.
// Each type's "changes" subtest checks that Changes lists exactly the
// columns whose values differ: some rows are updated to other rows'
// values, others to their own.
//
// All inserts are one transaction, all updates another, so the test takes
// a few seconds. The database's TimeZone is one with a non-whole-hour
// offset (and historical offsets in seconds), so that timestamptz text
// output is unusual.
//
// The matrix runs twice: with values in text, and in binary, where walex
// reads the built-in types pgx knows itself and has the server convert the
// others (enums, composites, extension types, money, ...) to text.
func TestTypeMatrix(t *testing.T) {
	for _, transfer := range []walex.TransferFormat{walex.TransferText, walex.TransferBinary} {
		t.Run(transfer.String(), func(t *testing.T) { testTypeMatrix(t, transfer) })
	}
}

func testTypeMatrix(t *testing.T, transfer walex.TransferFormat) {
	url := testDB(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { conn.Close(context.Background()) }()

	var versionNum int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&versionNum); err != nil {
		t.Fatal(err)
	}
	major := versionNum / 10000

	// Why each case that cannot run is skipped.
	skip := map[string]string{}
	for _, ext := range []string{"citext", "hstore"} {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = $1)", ext).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		if !ok {
			skip[ext] = fmt.Sprintf("extension %s is not available on this PostgreSQL %d server", ext, major)
			continue
		}
		if _, err := conn.Exec(ctx, "CREATE EXTENSION "+ext); err != nil {
			t.Fatalf("create extension %s: %v", ext, err)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT '<a/>'::xml"); err != nil {
		skip["xml"] = fmt.Sprintf("this PostgreSQL %d server has no xml support: %v", major, err)
	}
	if _, err := conn.Exec(ctx, typeSetup+`
		DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'America/St_Johns'); END $$;`); err != nil {
		t.Fatalf("setup: %v", err)
	}

	type table struct {
		tc      typeCase
		name    string
		nrows   int
		skipped string
	}
	var tables []*table
	var ddl, inserts, updates strings.Builder
	var names []string
	nevents := 0
	for i, tc := range typeCases {
		tb := &table{tc: tc, name: tc.tableName(i)}
		tables = append(tables, tb)
		switch {
		case tc.minVersion > major:
			tb.skipped = fmt.Sprintf("%s needs PostgreSQL %d, server is %d", tc.typ, tc.minVersion, major)
		case tc.ext != "" && skip[tc.ext] != "":
			tb.skipped = skip[tc.ext]
		case skip[tc.typ] != "":
			tb.skipped = skip[tc.typ]
		}
		if tb.skipped != "" {
			continue
		}
		names = append(names, tb.name)
		v, a := tc.rows(major)
		// Rows 1..n take each other's values in the update (row i those
		// of row i%n+1); rows n+1..n+len(v) are updated with their own
		// values, so that every value is seen once unchanged too.
		n := max(len(v), len(a))
		tb.nrows = n + len(v)
		nevents += tb.nrows
		set := "v = s.v, a = s.a"
		if tc.noArray {
			fmt.Fprintf(&ddl, "CREATE TABLE %s (id int4 PRIMARY KEY, v %s);\n", tb.name, tc.typ)
			set = "v = s.v"
		} else {
			fmt.Fprintf(&ddl, "CREATE TABLE %s (id int4 PRIMARY KEY, v %s, a %s[]);\n", tb.name, tc.typ, tc.typ)
		}
		fmt.Fprintf(&ddl, "ALTER TABLE %s REPLICA IDENTITY FULL;\n", tb.name)
		fmt.Fprintf(&updates, "UPDATE %[1]s d SET %[2]s FROM %[1]s s WHERE s.id = CASE WHEN d.id > %[3]d THEN d.id ELSE d.id %% %[3]d + 1 END;\n", tb.name, set, n)
		fmt.Fprintf(&inserts, "INSERT INTO %s VALUES ", tb.name)
		for r := range tb.nrows {
			if r > 0 {
				inserts.WriteString(", ")
			}
			i := r
			if r >= n {
				i = r - n
			}
			if tc.noArray {
				fmt.Fprintf(&inserts, "(%d, %s)", r+1, v[i%len(v)])
			} else {
				fmt.Fprintf(&inserts, "(%d, %s, %s)", r+1, v[i%len(v)], a[i%len(a)])
			}
		}
		inserts.WriteString(";\n")
	}
	fmt.Fprintf(&ddl, "CREATE PUBLICATION types FOR TABLE %s;\n", strings.Join(names, ", "))
	if _, err := conn.Exec(ctx, ddl.String()); err != nil {
		t.Fatalf("create tables: %v", err)
	}

	// The oracle's connection must be opened after the database settings
	// changed, as the walsender's is: values of types pgx does not know
	// are text, and their text form depends on settings such as TimeZone.
	conn.Close(ctx)
	if conn, err = pgx.Connect(ctx, url); err != nil {
		t.Fatal(err)
	}

	col := startClient(t, url, "types", "types", names, transfer)

	// snapshot reads every table with pgx: table name → id → row.
	snapshot := func() map[string]map[int32]map[string]any {
		t.Helper()
		out := map[string]map[int32]map[string]any{}
		for _, tb := range tables {
			if tb.skipped != "" {
				continue
			}
			rows, err := queryRows(ctx, conn, "SELECT * FROM "+tb.name+" ORDER BY id")
			if err != nil {
				t.Fatalf("query %s: %v", tb.name, err)
			}
			out[tb.name] = map[int32]map[string]any{}
			for _, r := range rows {
				out[tb.name][r["id"].(int32)] = r
			}
		}
		return out
	}
	// byRow indexes events: table name → id → event.
	byRow := func(evs []walex.Event, typ walex.EventType) map[string]map[int32]walex.Event {
		t.Helper()
		out := map[string]map[int32]walex.Event{}
		for _, e := range evs {
			if e.Type != typ {
				t.Fatalf("event %v: type %s, want %s", e, e.Type, typ)
			}
			id, ok := e.NewRecord["id"].(int32)
			if !ok {
				t.Fatalf("event %v: NewRecord[id] = %#v", e, e.NewRecord["id"])
			}
			if out[e.Name] == nil {
				out[e.Name] = map[int32]walex.Event{}
			}
			out[e.Name][id] = e
		}
		return out
	}

	if _, err := conn.Exec(ctx, "BEGIN;\n"+inserts.String()+"COMMIT;"); err != nil {
		t.Fatalf("insert: %v", err)
	}
	inserted := byRow(col.take(t, nevents), walex.Insert)
	before := snapshot()
	if _, err := conn.Exec(ctx, "BEGIN;\n"+updates.String()+"COMMIT;"); err != nil {
		t.Fatalf("update: %v", err)
	}
	updated := byRow(col.take(t, nevents), walex.Update)
	after := snapshot()

	for _, tb := range tables {
		t.Run(tb.tc.name, func(t *testing.T) {
			if tb.skipped != "" {
				t.Skip(tb.skipped)
			}
			for id := int32(1); id <= int32(tb.nrows); id++ {
				ins, ok := inserted[tb.name][id]
				if !ok {
					t.Errorf("no insert event for id %d", id)
				} else {
					compareRecord(t, fmt.Sprintf("insert id %d: NewRecord", id), ins.NewRecord, before[tb.name][id])
				}
				upd, ok := updated[tb.name][id]
				if !ok {
					t.Errorf("no update event for id %d", id)
					continue
				}
				compareRecord(t, fmt.Sprintf("update id %d: NewRecord", id), upd.NewRecord, after[tb.name][id])
				compareRecord(t, fmt.Sprintf("update id %d: OldRecord", id), upd.OldRecord, before[tb.name][id])
				if got := upd.Source.Columns["v"]; got == "" || strings.HasPrefix(got, "oid:") {
					t.Errorf("Source.Columns[v] = %q, want a type name", got)
				}
			}
			t.Run("changes", func(t *testing.T) {
				for id := int32(1); id <= int32(tb.nrows); id++ {
					if upd, ok := updated[tb.name][id]; ok {
						checkChanges(t, fmt.Sprintf("update id %d: Changes", id), upd.Changes, before[tb.name][id], after[tb.name][id])
					}
				}
			})
		})
	}
}

// TestTypeUnchangedToast checks that an update that does not touch a large
// out-of-line (TOASTed) column reports that column as walex.Unchanged in
// NewRecord and never as a change: under REPLICA IDENTITY DEFAULT, where
// Postgres sends no old row, and under FULL, where it sends the whole old
// row (with the old value detoasted) but still not the new one.
func TestTypeUnchangedToast(t *testing.T) {
	url := testDB(t, `
		CREATE TABLE toast_default (id int4 PRIMARY KEY, n int4, big text);
		ALTER TABLE toast_default ALTER COLUMN big SET STORAGE EXTERNAL;
		CREATE TABLE toast_full (id int4 PRIMARY KEY, n int4, big text);
		ALTER TABLE toast_full ALTER COLUMN big SET STORAGE EXTERNAL;
		ALTER TABLE toast_full REPLICA IDENTITY FULL;
		CREATE PUBLICATION toast FOR TABLE toast_default, toast_full;`)
	col := startClient(t, url, "toast", "toast", []string{"toast_default", "toast_full"}, walex.TransferAuto)

	// 100 kB of random base64: with STORAGE EXTERNAL it is stored out of
	// line uncompressed, and it would not compress much anyway.
	raw := make([]byte, 75*1024)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	big := base64.StdEncoding.EncodeToString(raw)

	exec(t, url, `INSERT INTO toast_default VALUES (1, 1, $1)`, big)
	exec(t, url, `INSERT INTO toast_full VALUES (1, 1, $1)`, big)
	for _, e := range col.take(t, 2) {
		if e.Type != walex.Insert || e.NewRecord["big"] != big || e.NewRecord["n"] != int32(1) {
			t.Fatalf("insert event %v: n = %#v, big of %T, want 1 and the inserted text", e, e.NewRecord["n"], e.NewRecord["big"])
		}
	}
	exec(t, url, `BEGIN; UPDATE toast_default SET n = 2; UPDATE toast_full SET n = 2; COMMIT;`)
	evs := col.take(t, 2)
	byName := map[string]walex.Event{}
	for _, e := range evs {
		if e.Type != walex.Update {
			t.Fatalf("event %v: want an update", e)
		}
		byName[e.Name] = e
	}
	for _, name := range []string{"toast_default", "toast_full"} {
		t.Run(name, func(t *testing.T) {
			e, ok := byName[name]
			if !ok {
				t.Fatalf("no update event for %s", name)
			}
			// Under FULL the new row is completed from the old one.
			if got := e.NewRecord["big"]; name == "toast_default" && got != walex.Unchanged || name == "toast_full" && got != big {
				t.Errorf("NewRecord[big] = %.40q (%T), want walex.Unchanged under DEFAULT, the value under FULL", got, got)
			}
			if got := e.NewRecord["n"]; got != int32(2) {
				t.Errorf("NewRecord[n] = %#v, want int32(2)", got)
			}
			if ch, ok := e.Changes["big"]; ok {
				t.Errorf("Changes[big] = {%.40v, %.40v}, want no change", ch.OldValue, ch.NewValue)
			}
			switch name {
			case "toast_default":
				if e.OldRecord != nil {
					t.Errorf("OldRecord = %.80v, want nil (REPLICA IDENTITY DEFAULT, key unchanged)", e.OldRecord)
				}
			case "toast_full":
				if got := e.OldRecord["big"]; got != big {
					t.Errorf("OldRecord[big] = %.40q (%T), want the whole old text", got, got)
				}
				if got, want := e.Changes["n"], (walex.Change{OldValue: int32(1), NewValue: int32(2)}); got != want {
					t.Errorf("Changes[n] = %v, want %v", got, want)
				}
				if len(e.Changes) != 1 {
					t.Errorf("Changes = %v, want only n", e.Changes)
				}
			}
		})
	}
}
