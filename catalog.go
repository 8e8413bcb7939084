package walex

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walex-go/walex/decoder"
	"github.com/walex-go/walex/internal/sqlquote"
	"github.com/walex-go/walex/replication"
)

// prepareTables runs the start-up checks on the subscribed tables: they
// exist (ErrTableNotFound otherwise), the publication exists or is created
// (Config.CreatePublication), and each is published (a warning otherwise);
// it also warns about UnwatchedFields filters that cannot judge a table.
func (c *Client) prepareTables(ctx context.Context, cfg *validated, cat *catalog) error {
	subs := c.subscribed()
	if err := cat.connect(ctx); err != nil {
		return err
	}
	missing, err := cat.missingTables(ctx, subs)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s in database %q; create it or remove it from Config.Subscriptions", ErrTableNotFound, joinTables(missing), cfg.conn.Database)
	}
	if cfg.CreatePublication {
		if err := cat.ensurePublication(ctx, cfg.Publication, subs, c.logger()); err != nil {
			return err
		}
	}
	unpublished, err := cat.unpublished(ctx, cfg.Publication, subs)
	if err != nil {
		return err
	}
	for _, t := range unpublished {
		c.logger().Warn("walex: subscribed table is not in the publication, so no events will come for it",
			"table", t.String(), "publication", cfg.Publication,
			"fix", "ALTER PUBLICATION "+sqlquote.Ident(cfg.Publication)+" ADD TABLE "+t.quoted()+" (or set Config.CreatePublication)")
	}
	c.warnUnjudgedFilters(ctx, cat)
	return nil
}

// catalog runs catalog queries (type lookups, table checks, publication
// management) on a normal connection, opened on first use. It is used by
// one goroutine at a time.
type catalog struct {
	cfg  *pgconn.Config
	conn *pgconn.PgConn
}

func (t *catalog) connect(ctx context.Context) error {
	if t.conn != nil && !t.conn.IsClosed() {
		return nil
	}
	cc := t.cfg.Copy()
	// Values converted by TextOf must print as on the replication
	// connection.
	cc.RuntimeParams = maps.Clone(cc.RuntimeParams)
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	maps.Copy(cc.RuntimeParams, replication.OutputSettings)
	conn, err := pgconn.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("walex: connect for catalog queries: %w", classifyConnErr(err))
	}
	t.conn = conn
	return nil
}

// classifyConnErr marks authentication and missing-database errors permanent.
func classifyConnErr(err error) error {
	return replication.ClassifyConnectError(err)
}

func (t *catalog) query(ctx context.Context, sql string, args ...string) ([][][]byte, error) {
	if err := t.connect(ctx); err != nil {
		return nil, err
	}
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	res := t.conn.ExecParams(ctx, sql, params, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	return res.Rows, nil
}

// missingTables returns the tables that do not exist.
func (t *catalog) missingTables(ctx context.Context, tables []tableName) ([]tableName, error) {
	var missing []tableName
	for _, tbl := range tables {
		rows, err := t.query(ctx, `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, tbl.Schema, tbl.Table)
		if err != nil {
			return nil, fmt.Errorf("walex: check table %s: %w", tbl, err)
		}
		if len(rows) == 0 {
			missing = append(missing, tbl)
		}
	}
	return missing, nil
}

// unpublished returns the tables the publication does not publish. It
// returns nothing when the publication does not exist (the replication
// connection reports that).
func (t *catalog) unpublished(ctx context.Context, pub string, tables []tableName) ([]tableName, error) {
	rows, err := t.query(ctx, `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1`, pub)
	if err != nil {
		return nil, fmt.Errorf("walex: read publication %q: %w", pub, err)
	}
	have := make(map[tableName]bool, len(rows))
	for _, r := range rows {
		have[tableName{Schema: string(r[0]), Table: string(r[1])}] = true
	}
	exists, err := t.query(ctx, `SELECT 1 FROM pg_publication WHERE pubname = $1`, pub)
	if err != nil || len(exists) == 0 {
		return nil, err
	}
	var out []tableName
	for _, tbl := range tables {
		if !have[tbl] {
			out = append(out, tbl)
		}
	}
	return out, nil
}

// ensurePublication creates the publication for the tables, or adds the
// tables it lacks. Identifiers are quoted.
func (t *catalog) ensurePublication(ctx context.Context, pub string, tables []tableName, log *slog.Logger) error {
	exists, err := t.query(ctx, `SELECT puballtables FROM pg_publication WHERE pubname = $1`, pub)
	if err != nil {
		return fmt.Errorf("walex: look up publication %q: %w", pub, err)
	}
	if len(exists) == 0 {
		var names []string
		for _, tbl := range tables {
			names = append(names, tbl.quoted())
		}
		sql := "CREATE PUBLICATION " + sqlquote.Ident(pub) + " FOR TABLE " + strings.Join(names, ", ")
		if _, err := t.conn.Exec(ctx, sql).ReadAll(); err != nil {
			return permanentf("walex: create publication %q (Config.CreatePublication): %w", pub, err)
		}
		log.Info("walex created publication", "publication", pub, "tables", joinTables(tables))
		return nil
	}
	if string(exists[0][0]) == "t" {
		return nil // FOR ALL TABLES
	}
	missing, err := t.unpublished(ctx, pub, tables)
	if err != nil {
		return err
	}
	for _, tbl := range missing {
		sql := "ALTER PUBLICATION " + sqlquote.Ident(pub) + " ADD TABLE " + tbl.quoted()
		if _, err := t.conn.Exec(ctx, sql).ReadAll(); err != nil {
			return permanentf("walex: add table %s to publication %q (Config.CreatePublication): %w", tbl, pub, err)
		}
		log.Info("walex added table to publication", "publication", pub, "table", tbl.String())
	}
	return nil
}

func permanentf(format string, args ...any) error {
	return &replication.PermanentError{Err: fmt.Errorf(format, args...)}
}

func (t *catalog) close() {
	if t.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = t.conn.Close(ctx)
	}
}

// warnUnjudgedFilters logs, once per table and Run, that UnwatchedFields
// cannot judge the updates of a table without REPLICA IDENTITY FULL.
func (c *Client) warnUnjudgedFilters(ctx context.Context, cat *catalog) {
	regs, _ := c.reg.snapshot()
	for _, r := range regs {
		if r.all || len(r.filters.UnwatchedFields) == 0 || c.warned[r.table] {
			continue
		}
		ident, err := cat.replicaIdentity(ctx, r.table)
		if err != nil {
			c.logger().Warn("walex could not read the replica identity of a table", "table", r.table.String(), "err", err)
			continue
		}
		if ident != "f" {
			c.logger().Warn("walex: UnwatchedFields cannot judge updates of this table, so they are all kept: Postgres sends no old values without REPLICA IDENTITY FULL",
				"table", r.table.String(), "fix", "ALTER TABLE "+sqlquote.Ident(r.table.Schema)+"."+sqlquote.Ident(r.table.Table)+" REPLICA IDENTITY FULL")
		}
		c.warned[r.table] = true
	}
}

// replicaIdentity returns pg_class.relreplident of a table: d, n, f or i.
func (t *catalog) replicaIdentity(ctx context.Context, tbl tableName) (string, error) {
	rows, err := t.query(ctx, `SELECT c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`, tbl.Schema, tbl.Table)
	if err != nil {
		return "", err
	}
	if len(rows) != 1 {
		return "", fmt.Errorf("table %s does not exist", tbl)
	}
	return string(rows[0][0]), nil
}

// ResolveType implements decoder.TypeResolver with a catalog query.
func (t *catalog) ResolveType(oid uint32) (decoder.TypeInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := t.connect(ctx); err != nil {
		return decoder.TypeInfo{}, err
	}
	var info decoder.TypeInfo
	cur := oid
	for depth := 0; depth < 32; depth++ {
		res := t.conn.ExecParams(ctx,
			`SELECT t.typtype, t.typbasetype, CASE WHEN n.nspname = 'pg_catalog' THEN t.typname ELSE n.nspname || '.' || t.typname END
			   FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1`,
			[][]byte{[]byte(strconv.FormatUint(uint64(cur), 10))}, nil, nil, nil).Read()
		if res.Err != nil {
			return decoder.TypeInfo{}, res.Err
		}
		if len(res.Rows) != 1 {
			return decoder.TypeInfo{}, fmt.Errorf("type %d not found in pg_type", cur)
		}
		row := res.Rows[0]
		if info.Name == "" {
			info.Name = string(row[2])
		}
		if string(row[0]) != "d" {
			info.BaseOID = cur
			return info, nil
		}
		base, err := strconv.ParseUint(string(row[1]), 10, 32)
		if err != nil {
			return decoder.TypeInfo{}, fmt.Errorf("type %d: bad typbasetype %q", cur, row[1])
		}
		cur = uint32(base)
	}
	return decoder.TypeInfo{}, fmt.Errorf("type %d: domain nesting too deep", oid)
}

// binaryReady reports whether every column of the tables has a type the
// decoder reads in binary itself (decoder.BinarySafe, through domains), and
// names the types that keep it from being so.
func (t *catalog) binaryReady(ctx context.Context, tables []tableName) (bool, []string, error) {
	var others []string
	for _, tbl := range tables {
		rows, err := t.query(ctx, `SELECT a.atttypid FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped`, tbl.Schema, tbl.Table)
		if err != nil {
			return false, nil, fmt.Errorf("walex: read the columns of %s: %w", tbl, err)
		}
		for _, r := range rows {
			oid, err := strconv.ParseUint(string(r[0]), 10, 32)
			if err != nil {
				return false, nil, fmt.Errorf("walex: column type of %s: bad OID %q", tbl, r[0])
			}
			if decoder.BinarySafe(uint32(oid)) {
				continue // a built-in type: no need to ask for its base type
			}
			info, err := t.ResolveType(uint32(oid))
			if err != nil {
				return false, nil, err
			}
			if !decoder.BinarySafe(info.BaseOID) && !slices.Contains(others, info.Name) {
				others = append(others, info.Name)
			}
		}
	}
	return len(others) == 0, others, nil
}

// TextOf converts the binary form of a value to its text form: the server
// reads it with the type's receive function and prints it with its output
// function. It implements decoder.Options.TextOf.
func (t *catalog) TextOf(typeOID uint32, binary []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := t.connect(ctx); err != nil {
		return nil, err
	}
	res := t.conn.ExecParams(ctx, "SELECT $1", [][]byte{binary}, []uint32{typeOID}, []int16{pgtype.BinaryFormatCode}, []int16{pgtype.TextFormatCode}).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 || res.Rows[0][0] == nil {
		return nil, fmt.Errorf("walex: the server printed no value for a binary value of type %d", typeOID)
	}
	return res.Rows[0][0], nil
}
