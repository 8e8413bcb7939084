package walex

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/walex-go/walex/decoder/pgoutput"
	"github.com/walex-go/walex/decoder/pgvalue"
	"github.com/walex-go/walex/internal/sqlquote"
)

// snapTable is what a snapshot knows of a table: the columns it reads,
// the key it reads them in order of, and the publication's row filter.
type snapTable struct {
	name      tableName
	cols      []snapCol
	keys      []int  // indexes in cols of the key columns, in key order
	keyPos    []int  // per column, its place in keys, or -1
	filter    string // the publication's row filter (PostgreSQL 15+), or ""
	estimated int64
	types     map[string]string // Event.Source.Columns
	// The statements of the chunks.
	selectList, orderBy, keyRow string
	// formats are the result formats of the columns: binary where walex
	// reads the type in binary (faster, and what the stream sends), text
	// for the key columns, whose text is the next chunk's parameter.
	formats []int16
}

// snapCol is a column a snapshot reads.
type snapCol struct {
	name      string
	oid, base uint32
	published bool // in the record; a key column outside a column list is read but not delivered
}

// loadSnapTable reads what a snapshot needs to know about t from the
// catalog.
func loadSnapTable(ctx context.Context, cat *catalog, pub string, t tableName) (*snapTable, error) {
	rows, err := cat.query(ctx, `SELECT c.oid, c.relreplident, greatest(c.reltuples, 0)::bigint
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`, t.Schema, t.Table)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrTableNotFound, t)
	}
	oid, ident := string(rows[0][0]), string(rows[0][1])
	info := &snapTable{name: t, types: map[string]string{}}
	info.estimated, _ = strconv.ParseInt(string(rows[0][2]), 10, 64)

	cols, err := cat.query(ctx, `SELECT attname, atttypid, attgenerated <> '' FROM pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, oid)
	if err != nil {
		return nil, err
	}
	keys, err := cat.query(ctx, `SELECT a.attname FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND CASE WHEN $2 = 'i' THEN i.indisreplident ELSE i.indisprimary END
		ORDER BY k.ord`, oid, ident)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: %s; add one (ALTER TABLE %s ADD PRIMARY KEY (...)), or point the replica identity at a unique index on NOT NULL columns (ALTER TABLE %s REPLICA IDENTITY USING INDEX ...)",
			ErrNoSnapshotKey, t, t.quoted(), t.quoted())
	}
	published := map[string]bool{}
	all := true
	if cat.version >= 15 {
		pubRows, err := cat.query(ctx, `SELECT coalesce(array_to_json(attnames)::text, 'null'), coalesce(rowfilter, '')
			FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3`, pub, t.Schema, t.Table)
		if err != nil {
			return nil, err
		}
		if len(pubRows) > 0 {
			var names []string
			if err := json.Unmarshal(pubRows[0][0], &names); err == nil && names != nil {
				all = false
				for _, n := range names {
					published[n] = true
				}
			}
			info.filter = string(pubRows[0][1])
		}
	}
	isKey := map[string]bool{}
	for _, k := range keys {
		isKey[string(k[0])] = true
	}
	for _, r := range cols {
		name, generated := string(r[0]), string(r[2]) == "t"
		// Before PostgreSQL 18 the stream never carries a generated
		// column, though pg_publication_tables lists it on 15.
		pubd := (published[name] && (!generated || cat.version >= 18)) || (all && !generated)
		if !pubd && !isKey[name] {
			continue
		}
		o, err := strconv.ParseUint(string(r[1]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("walex: %s column %q: bad type OID %q", t, name, r[1])
		}
		ti, ok := pgvalue.TypeInfo{}, false
		if n, builtin := pgvalue.Builtin(uint32(o)); builtin {
			ti, ok = pgvalue.TypeInfo{Name: n, BaseOID: uint32(o)}, true
		}
		if !ok {
			if ti, err = cat.ResolveType(ctx, uint32(o)); err != nil {
				return nil, fmt.Errorf("walex: %s column %q: %w", t, name, err)
			}
		}
		info.cols = append(info.cols, snapCol{name: name, oid: uint32(o), base: ti.BaseOID, published: pubd})
		if pubd {
			info.types[name] = ti.Name
		}
	}
	var sel, order []string
	for _, c := range info.cols {
		sel = append(sel, sqlquote.Ident(c.name))
	}
	for _, k := range keys {
		for i, c := range info.cols {
			if c.name == string(k[0]) {
				info.keys = append(info.keys, i)
				order = append(order, sqlquote.Ident(c.name))
			}
		}
	}
	if len(info.keys) != len(keys) {
		return nil, fmt.Errorf("walex: %s: key columns not found among its columns", t)
	}
	info.formats = make([]int16, len(info.cols))
	info.keyPos = make([]int, len(info.cols))
	for i, c := range info.cols {
		info.keyPos[i] = slices.Index(info.keys, i)
		if pgvalue.BinarySafe(c.base) && info.keyPos[i] < 0 {
			info.formats[i] = 1
		}
	}
	info.selectList = strings.Join(sel, ", ")
	info.orderBy = strings.Join(order, ", ")
	info.keyRow = "(" + info.orderBy + ")"
	return info, nil
}

// newCodecs returns a Values and the codecs of t's columns made by it:
// what one goroutine needs to decode t's rows.
func (t *snapTable) newCodecs() (*pgvalue.Values, []pgvalue.Codec) {
	vals := pgvalue.NewValues(nil)
	codecs := make([]pgvalue.Codec, len(t.cols))
	for i, col := range t.cols {
		codecs[i] = vals.Codec(col.oid, col.base)
	}
	return vals, codecs
}

// rangeSQL is the statement of a chunk: the next rows after the key in
// $1..$n (from the first row when after is false).
func (t *snapTable) rangeSQL(after bool, limit int) string {
	var b strings.Builder
	b.WriteString("SELECT " + t.selectList + " FROM " + t.name.quoted())
	var conds []string
	if after {
		conds = append(conds, t.keyRow+" > "+params(1, len(t.keys)))
	}
	if t.filter != "" {
		conds = append(conds, "("+t.filter+")")
	}
	if len(conds) > 0 {
		b.WriteString(" WHERE " + strings.Join(conds, " AND "))
	}
	b.WriteString(" ORDER BY " + t.orderBy + " LIMIT " + strconv.Itoa(limit))
	return b.String()
}

// rereadSQL is the statement that reads n keys again.
func (t *snapTable) rereadSQL(n int) string {
	rows := make([]string, n)
	for i := range rows {
		rows[i] = params(1+i*len(t.keys), len(t.keys))
	}
	sql := "SELECT " + t.selectList + " FROM " + t.name.quoted() + " WHERE " + t.keyRow + " IN (" + strings.Join(rows, ", ") + ")"
	if t.filter != "" {
		sql += " AND (" + t.filter + ")"
	}
	return sql
}

// params is "($first, ..., $first+n-1)".
func params(first, n int) string {
	p := make([]string, n)
	for i := range p {
		p[i] = "$" + strconv.Itoa(first+i)
	}
	return "(" + strings.Join(p, ", ") + ")"
}

// snapRow is a row read by a chunk.
type snapRow struct {
	key string // canonical form of the key values (see canonKey)
	rec map[string]any
}

// rawRows are the rows of a chunk statement as they came, every value in
// one buffer: reading them keeps up with the server, and decoding them
// (decode) is left to another goroutine.
type rawRows struct {
	buf  []byte
	offs []int32 // per value: its start in buf, -1 for NULL
	ends []int32
	n    int // rows
	cols int
}

func (r *rawRows) value(row, col int) []byte {
	i := row*r.cols + col
	if r.offs[i] < 0 {
		return nil
	}
	return r.buf[r.offs[i]:r.ends[i]]
}

// readRaw runs a chunk statement and keeps its rows.
func (t *snapTable) readRaw(ctx context.Context, conn *pgconn.PgConn, sql string, args [][]byte, expect, bufHint int) (*rawRows, error) {
	rr := conn.ExecParams(ctx, sql, args, nil, nil, t.formats)
	r := &rawRows{cols: len(t.cols), buf: make([]byte, 0, bufHint), offs: make([]int32, 0, expect*len(t.cols)), ends: make([]int32, 0, expect*len(t.cols))}
	for rr.NextRow() {
		for _, v := range rr.Values() {
			if v == nil {
				r.offs, r.ends = append(r.offs, -1), append(r.ends, -1)
				continue
			}
			r.offs = append(r.offs, int32(len(r.buf)))
			r.buf = append(r.buf, v...)
			r.ends = append(r.ends, int32(len(r.buf)))
		}
		r.n++
	}
	if _, err := rr.Close(); err != nil {
		return nil, err
	}
	if len(r.buf) > 1<<31-1 {
		return nil, fmt.Errorf("walex: snapshot of %s: a chunk of %d rows holds more than 2 GiB; lower Config.SnapshotChunkSize", t.name, r.n)
	}
	return r, nil
}

// keyText is the text of the key columns of a row.
func (t *snapTable) keyText(r *rawRows, row int) []string {
	txt := make([]string, len(t.keys))
	for j, i := range t.keys {
		txt[j] = string(r.value(row, i))
	}
	return txt
}

// decode turns the raw rows from..to-1 into records, with their keys.
func (t *snapTable) decode(ctx context.Context, vals *pgvalue.Values, codecs []pgvalue.Codec, r *rawRows, from, to int, out []snapRow) ([]snapRow, error) {
	keyVals := make([]any, len(t.keys))
	for row := from; row < to; row++ {
		rec := make(map[string]any, len(t.cols))
		for i := range t.cols {
			data := r.value(row, i)
			col := pgoutput.Column{Kind: pgoutput.ColText, Data: data}
			if t.formats[i] == 1 {
				col.Kind = pgoutput.ColBinary
			}
			if data == nil {
				col.Kind = pgoutput.ColNull
			}
			v, err := vals.Decode(ctx, &codecs[i], col)
			if err != nil {
				return nil, fmt.Errorf("walex: snapshot of %s: column %q: %w", t.name, t.cols[i].name, err)
			}
			if t.cols[i].published {
				rec[t.cols[i].name] = v
			}
			if j := t.keyPos[i]; j >= 0 {
				keyVals[j] = v
			}
		}
		out = append(out, snapRow{key: canonKey(keyVals), rec: rec})
	}
	return out, nil
}

// snapshotQueryError says what a failed snapshot statement means for the
// user: a missing privilege (permanent, with the GRANT), a statement
// timeout (with the settings to change), anything else as it is.
func snapshotQueryError(t tableName, role string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "42501":
			return permanentf("walex: snapshot of %s: %w; grant the privilege: GRANT SELECT ON %s TO %s;", t, err, t.quoted(), sqlquote.Ident(role))
		case pgErr.Code == "57014":
			return fmt.Errorf("walex: snapshot of %s: a chunk query was cancelled (statement_timeout): %w; walex retries with smaller chunks; lower Config.SnapshotChunkSize or raise statement_timeout for the role", t, err)
		case strings.HasPrefix(pgErr.Code, "42"):
			return permanentf("walex: snapshot of %s: %w", t, err)
		}
	}
	return fmt.Errorf("walex: snapshot of %s: %w", t, err)
}

// The progress store: one row per slot and table in Config.SnapshotTable.

// storeDDL is the statement that creates the progress table.
func storeDDL(t tableName) string {
	return "CREATE TABLE IF NOT EXISTS " + t.quoted() + ` (
	slot_name      text NOT NULL,
	table_schema   text NOT NULL,
	table_name     text NOT NULL,
	initial        boolean NOT NULL DEFAULT false,
	state          text NOT NULL,
	rows_delivered bigint NOT NULL DEFAULT 0,
	rows_estimated bigint NOT NULL DEFAULT 0,
	started_at     timestamptz,
	done_at        timestamptz,
	updated_at     timestamptz NOT NULL DEFAULT now(),
	chunks         jsonb NOT NULL DEFAULT '[]',
	rereads        jsonb NOT NULL DEFAULT '[]',
	PRIMARY KEY (slot_name, table_schema, table_name))`
}

// ensureStore creates the progress table when it does not exist, and
// says what to do when the role may not.
func ensureStore(ctx context.Context, cat *catalog, t tableName, role string) error {
	if exists, err := storeExists(ctx, cat, t); err != nil || exists {
		return err
	}
	if _, err := cat.query(ctx, storeDDL(t)); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return permanentf("walex: cannot create the snapshot progress table %s (Config.SnapshotTable): %w; run GRANT CREATE ON SCHEMA %s TO %s; or create the table as a role that may (%s;) and GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s;",
				t, err, sqlquote.Ident(t.Schema), sqlquote.Ident(role), strings.Join(strings.Fields(storeDDL(t)), " "), t.quoted(), sqlquote.Ident(role))
		}
		return fmt.Errorf("walex: create the snapshot progress table %s: %w", t, err)
	}
	return nil
}

// storeError wraps a failed statement on the progress table t; a missing
// privilege is permanent and names the grants the role needs.
func storeError(cat *catalog, t tableName, what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		role := sqlquote.Ident(cat.cfg.User)
		return permanentf("walex: %s the snapshot progress table %s (Config.SnapshotTable): %w; grant the role what it needs: GRANT USAGE ON SCHEMA %s TO %s; GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s;",
			what, t, err, sqlquote.Ident(t.Schema), role, t.quoted(), role)
	}
	return fmt.Errorf("walex: %s the snapshot progress table %s: %w", what, t, err)
}

// storeExists reports whether the progress table exists.
func storeExists(ctx context.Context, cat *catalog, t tableName) (bool, error) {
	rows, err := cat.query(ctx, `SELECT to_regclass($1) IS NOT NULL`, t.quoted())
	if err != nil {
		return false, storeError(cat, t, "look up", err)
	}
	return len(rows) == 1 && string(rows[0][0]) == "t", nil
}

// storedSnap is a row of the progress table.
type storedSnap struct {
	table     tableName
	initial   bool
	done      bool
	rows      uint64
	estimated int64
	started   time.Time
	doneAt    time.Time
	marks     []chunkMark
	rereads   [][]string
}

// loadStore reads the slot's rows of the progress table.
func loadStore(ctx context.Context, cat *catalog, t tableName, slot string) ([]storedSnap, error) {
	rows, err := cat.query(ctx, `SELECT table_schema, table_name, initial, state = 'done', rows_delivered, rows_estimated,
		coalesce(extract(epoch FROM started_at)::text, ''), coalesce(extract(epoch FROM done_at)::text, ''), chunks::text, rereads::text
		FROM `+t.quoted()+` WHERE slot_name = $1`, slot)
	if err != nil {
		return nil, storeError(cat, t, "read", err)
	}
	var out []storedSnap
	for _, r := range rows {
		s := storedSnap{table: tableName{string(r[0]), string(r[1])}, initial: string(r[2]) == "t", done: string(r[3]) == "t"}
		s.rows, _ = strconv.ParseUint(string(r[4]), 10, 64)
		s.estimated, _ = strconv.ParseInt(string(r[5]), 10, 64)
		s.started, s.doneAt = epochTime(string(r[6])), epochTime(string(r[7]))
		if err := json.Unmarshal(r[8], &s.marks); err != nil {
			return nil, fmt.Errorf("walex: snapshot progress of %s in %s: bad chunks: %w", s.table, t, err)
		}
		if err := json.Unmarshal(r[9], &s.rereads); err != nil {
			return nil, fmt.Errorf("walex: snapshot progress of %s in %s: bad rereads: %w", s.table, t, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func epochTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMicro(int64(f * 1e6))
}

// saveStore writes one table's progress.
func saveStore(ctx context.Context, cat *catalog, t tableName, slot string, s storedSnap) error {
	marks, _ := json.Marshal(s.marks)
	if s.marks == nil {
		marks = []byte("[]")
	}
	rereads, _ := json.Marshal(s.rereads)
	if s.rereads == nil {
		rereads = []byte("[]")
	}
	state := "running"
	if s.done {
		state = "done"
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	_, err := cat.query(ctx, `INSERT INTO `+t.quoted()+` AS p (slot_name, table_schema, table_name, initial, state, rows_delivered, rows_estimated, started_at, done_at, chunks, rereads, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, nullif($8, '')::timestamptz, nullif($9, '')::timestamptz, $10, $11, now())
		ON CONFLICT (slot_name, table_schema, table_name) DO UPDATE SET initial = excluded.initial, state = excluded.state,
			rows_delivered = excluded.rows_delivered, rows_estimated = excluded.rows_estimated, started_at = excluded.started_at,
			done_at = excluded.done_at, chunks = excluded.chunks, rereads = excluded.rereads, updated_at = now()`,
		slot, s.table.Schema, s.table.Table, strconv.FormatBool(s.initial), state, strconv.FormatUint(s.rows, 10), strconv.FormatInt(s.estimated, 10),
		ts(s.started), ts(s.doneAt), string(marks), string(rereads))
	if err != nil {
		return storeError(cat, t, "save the progress of "+s.table.String()+" in", err)
	}
	return nil
}

// resetStore replaces the slot's rows with a pending initial snapshot of
// the tables: done before the slot is created, so that a crash between
// the two still leaves the snapshot to do.
func resetStore(ctx context.Context, cat *catalog, t tableName, slot string, tables []tableName) error {
	if _, err := cat.query(ctx, `DELETE FROM `+t.quoted()+` WHERE slot_name = $1`, slot); err != nil {
		return storeError(cat, t, "reset", err)
	}
	for _, tb := range tables {
		if err := saveStore(ctx, cat, t, slot, storedSnap{table: tb, initial: true}); err != nil {
			return err
		}
	}
	return nil
}
