package walex

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/walex-go/walex/decoder/pgvalue"
	"github.com/walex-go/walex/internal/logkey"
	"github.com/walex-go/walex/internal/pgconnect"
	"github.com/walex-go/walex/internal/sqlquote"
	"github.com/walex-go/walex/replication"
)

// Limits of the catalog connection. Its queries read only system catalogs
// and take no lock on any user table, so they should never wait; these are
// the backstop for what still does (publication DDL with
// Config.CreatePublication locks the table it adds).
const (
	// catalogLockTimeout is the catalog connection's lock_timeout.
	catalogLockTimeout = 5 * time.Second
	// catalogStatementTimeout is its statement_timeout.
	catalogStatementTimeout = time.Minute
	// lockReportAfter is how long a catalog query may run before walex
	// looks for the sessions that block it, and names them in a warning.
	lockReportAfter = time.Second
)

// catalog runs catalog queries (table and publication checks, type
// lookups, value conversions) on a normal connection, opened on first use.
// It is used by one goroutine at a time.
type catalog struct {
	cfg      *pgconn.Config
	password pgconnect.PasswordFunc // Config.PasswordFunc
	log      *slog.Logger

	conn    *pgconn.PgConn
	version int // server major version
}

func newCatalog(cfg *validated) *catalog {
	return &catalog{cfg: cfg.conn, password: cfg.PasswordFunc, log: cfg.Logger}
}

func (t *catalog) connect(ctx context.Context) error {
	if t.conn != nil && !t.conn.IsClosed() {
		return nil
	}
	cc := t.cfg.Copy()
	cc.RuntimeParams = replication.OutputSettings() // values converted by TextOf print as on the replication connection
	for k, v := range t.cfg.RuntimeParams {
		if _, pinned := cc.RuntimeParams[k]; !pinned {
			cc.RuntimeParams[k] = v
		}
	}
	cc.RuntimeParams["lock_timeout"] = strconv.FormatInt(catalogLockTimeout.Milliseconds(), 10)
	cc.RuntimeParams["statement_timeout"] = strconv.FormatInt(catalogStatementTimeout.Milliseconds(), 10)
	conn, err := pgconnect.ConnectWithPassword(ctx, cc, "catalog queries", t.password)
	if err != nil {
		return fmt.Errorf("walex: %w", err)
	}
	t.conn = conn
	t.version = serverMajor(conn)
	return nil
}

// serverMajor is the server's major version as the connection reports it.
func serverMajor(conn *pgconn.PgConn) int {
	v := conn.ParameterStatus("server_version")
	major, _, _ := strings.Cut(v, ".")
	n, _ := strconv.Atoi(strings.TrimFunc(major, func(r rune) bool { return r < '0' || r > '9' }))
	return n
}

func (t *catalog) close() {
	if t.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = t.conn.Close(ctx)
		t.conn = nil
	}
}

// query runs one statement with text parameters and returns its rows. A
// statement that runs longer than lockReportAfter gets a warning naming
// the sessions it waits for; one that waited catalogLockTimeout for a lock
// fails with a transient error that names the lock_timeout.
func (t *catalog) query(ctx context.Context, sql string, args ...string) ([][][]byte, error) {
	if err := t.connect(ctx); err != nil {
		return nil, err
	}
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	stop := t.watchLocks(ctx, t.conn.PID())
	res := t.conn.ExecParams(ctx, sql, params, nil, nil, nil).Read()
	stop()
	if res.Err != nil {
		var pgErr *pgconn.PgError
		if errors.As(res.Err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available
			return nil, fmt.Errorf("walex: a catalog query waited %v (its lock_timeout) for a lock another session holds: %w", catalogLockTimeout, res.Err)
		}
		return nil, res.Err
	}
	return res.Rows, nil
}

// watchLocks logs, once the query of backend pid has run for
// lockReportAfter, which sessions block it (pg_blocking_pids), over a
// connection of its own. stop cancels the watch and waits for it.
func (t *catalog) watchLocks(ctx context.Context, pid uint32) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if !sleepCtx(ctx, lockReportAfter) {
			return
		}
		conn, err := pgconnect.ConnectWithPassword(ctx, t.cfg, "lock diagnostics", t.password)
		if err != nil {
			return
		}
		defer conn.Close(context.WithoutCancel(ctx))
		// A role sees the state and query of another role's session
		// only with pg_read_all_stats (or membership of that role).
		res := conn.ExecParams(ctx, `SELECT a.pid, coalesce(a.usename, ''), coalesce(a.state, ''), coalesce(round(extract(epoch FROM now() - a.xact_start))::text, '?'), left(coalesce(a.query, ''), 200),
				a.usesysid IS NOT NULL AND (pg_has_role(a.usesysid, 'USAGE') OR pg_has_role('pg_read_all_stats', 'USAGE'))
			FROM pg_stat_activity a WHERE a.pid = ANY (pg_blocking_pids($1))`,
			[][]byte{[]byte(strconv.FormatUint(uint64(pid), 10))}, nil, nil, nil).Read()
		if res.Err != nil || len(res.Rows) == 0 {
			return
		}
		var blockers []string
		fix := "end or commit the blocking transaction, or wait for it"
		hidden := false
		for _, r := range res.Rows {
			if string(r[5]) != "t" {
				hidden = true
				blockers = append(blockers, fmt.Sprintf("pid %s (user %s; its state and query are hidden from this role)", r[0], r[1]))
				continue
			}
			blockers = append(blockers, fmt.Sprintf("pid %s (user %s, %s, transaction open %ss: %s)", r[0], r[1], r[2], r[3], r[4]))
		}
		if hidden {
			fix += "; to see other roles' queries here, GRANT pg_read_all_stats TO " + sqlquote.Ident(t.cfg.User) + ";"
		}
		t.log.Warn("walex: a catalog query waits for a lock held by another session; it gives up after the lock_timeout and walex retries with backoff",
			logkey.Blockers, strings.Join(blockers, "; "), logkey.Timeout, catalogLockTimeout,
			logkey.Fix, fix)
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// tableState is what the start-up checks know of a subscribed table.
type tableState struct {
	exists    bool
	published bool   // the publication publishes its changes
	identity  string // pg_class.relreplident: d, n, f or i
	// partitioned: a partitioned table, whose changes are its
	// partitions' (see publication.viaRoot).
	partitioned bool
}

// tables looks up the subscribed tables and whether the publication
// publishes them. It reads pg_class, pg_inherits and the publication
// catalogs directly instead of the pg_publication_tables view, which on
// PostgreSQL 16 and later locks every table of the publication (and so
// waits behind any ALTER TABLE, TRUNCATE or VACUUM FULL of an unrelated
// table of a FOR ALL TABLES publication). A table is published when the
// publication is FOR ALL TABLES (and the table is not unlogged or
// temporary), lists the table or one of its partition ancestors, or, on
// PostgreSQL 15 and later, names the schema of one of them.
func (t *catalog) tables(ctx context.Context, pub string, tables []tableName) (map[tableName]tableState, error) {
	if err := t.connect(ctx); err != nil {
		return nil, err
	}
	schemas := "false"
	if t.version >= 15 {
		schemas = `EXISTS (SELECT 1 FROM pg_publication_namespace pn JOIN pg_class k ON k.relnamespace = pn.pnnspid
			WHERE pn.pnpubid = p.oid AND k.oid IN (SELECT relid FROM anc))`
	}
	sql := `WITH RECURSIVE anc(relid) AS (
			SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			 WHERE n.nspname = $2 AND c.relname = $3 AND c.relkind IN ('r', 'p')
			UNION
			SELECT i.inhparent FROM pg_inherits i JOIN anc ON i.inhrelid = anc.relid
			  JOIN pg_class k ON k.oid = i.inhrelid AND k.relispartition
		)
		SELECT c.relreplident, c.relkind = 'p',
		       coalesce((SELECT (p.puballtables AND c.relpersistence = 'p')
		                     OR EXISTS (SELECT 1 FROM pg_publication_rel pr WHERE pr.prpubid = p.oid AND pr.prrelid IN (SELECT relid FROM anc))
		                     OR ` + schemas + `
		                   FROM pg_publication p WHERE p.pubname = $1), false)
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = $2 AND c.relname = $3 AND c.relkind IN ('r', 'p')`
	out := make(map[tableName]tableState, len(tables))
	for _, tbl := range tables {
		rows, err := t.query(ctx, sql, pub, tbl.Schema, tbl.Table)
		if err != nil {
			return nil, fmt.Errorf("walex: look up table %s: %w", tbl, err)
		}
		if len(rows) == 0 {
			out[tbl] = tableState{}
			continue
		}
		out[tbl] = tableState{exists: true, identity: string(rows[0][0]), partitioned: string(rows[0][1]) == "t", published: string(rows[0][2]) == "t"}
	}
	return out, nil
}

// publication is what the checks need of the publication.
type publication struct {
	exists    bool
	allTables bool
	ops       map[EventType]bool // the operations it publishes
	// viaRoot: publish_via_partition_root, the changes of a partition
	// are sent under the name of its partitioned table (the topmost
	// published one); otherwise under the partition's.
	viaRoot bool
}

func (t *catalog) publication(ctx context.Context, pub string) (publication, error) {
	if err := t.connect(ctx); err != nil {
		return publication{}, err
	}
	truncate, viaRoot := "true", "false"
	if t.version >= 11 {
		truncate = "pubtruncate"
	}
	if t.version >= 13 {
		viaRoot = "pubviaroot"
	}
	rows, err := t.query(ctx, `SELECT puballtables, pubinsert, pubupdate, pubdelete, `+truncate+`, `+viaRoot+` FROM pg_publication WHERE pubname = $1`, pub)
	if err != nil {
		return publication{}, fmt.Errorf("walex: look up publication %q: %w", pub, err)
	}
	if len(rows) == 0 {
		return publication{}, nil
	}
	r := rows[0]
	return publication{exists: true, allTables: string(r[0]) == "t", ops: map[EventType]bool{
		Insert: string(r[1]) == "t", Update: string(r[2]) == "t", Delete: string(r[3]) == "t", Truncate: string(r[4]) == "t",
	}, viaRoot: string(r[5]) == "t"}, nil
}

// partitions returns the leaf partitions of a partitioned table.
func (t *catalog) partitions(ctx context.Context, tbl tableName) ([]tableName, error) {
	rows, err := t.query(ctx, `SELECT n.nspname, c.relname FROM pg_partition_tree($1::regclass) p
		JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.isleaf ORDER BY 1, 2`, tbl.quoted())
	if err != nil {
		return nil, fmt.Errorf("walex: list the partitions of %s: %w", tbl, err)
	}
	out := make([]tableName, len(rows))
	for i, r := range rows {
		out[i] = tableName{Schema: string(r[0]), Table: string(r[1])}
	}
	return out, nil
}

// ensurePublication creates the publication for the tables, or adds the
// ones it does not publish. Identifiers are quoted.
func (t *catalog) ensurePublication(ctx context.Context, pub string, tables []tableName) error {
	p, err := t.publication(ctx, pub)
	if err != nil {
		return err
	}
	if !p.exists {
		var names []string
		for _, tbl := range tables {
			names = append(names, tbl.quoted())
		}
		sql := "CREATE PUBLICATION " + sqlquote.Ident(pub) + " FOR TABLE " + strings.Join(names, ", ")
		if t.version >= 13 {
			// A subscribed partitioned table gets its partitions'
			// changes under its own name.
			states, err := t.tables(ctx, pub, tables)
			if err != nil {
				return err
			}
			for _, tbl := range tables {
				if states[tbl].partitioned {
					sql += " WITH (publish_via_partition_root = true)"
					break
				}
			}
		}
		if _, err := t.query(ctx, sql); err != nil {
			return t.publicationDDLError(ctx, fmt.Sprintf("create publication %q", pub), pub, tables, true, err)
		}
		t.log.Info("walex: created publication", logkey.Publication, pub, logkey.Tables, joinTables(tables))
		return nil
	}
	if p.allTables {
		return nil
	}
	states, err := t.tables(ctx, pub, tables)
	if err != nil {
		return err
	}
	for _, tbl := range tables {
		if st := states[tbl]; !st.exists || st.published {
			continue
		}
		sql := "ALTER PUBLICATION " + sqlquote.Ident(pub) + " ADD TABLE " + tbl.quoted()
		if _, err := t.query(ctx, sql); err != nil {
			return t.publicationDDLError(ctx, fmt.Sprintf("add table %s to publication %q", tbl, pub), pub, []tableName{tbl}, false, err)
		}
		t.log.Info("walex: added table to publication", logkey.Publication, pub, logkey.Table, tbl.String())
	}
	return nil
}

// publicationDDLError classifies a failed CREATE PUBLICATION (creating)
// or ALTER PUBLICATION ... ADD TABLE of the tables: a lock wait is
// transient, anything else (privileges, ownership) permanent. A missing
// privilege (insufficient_privilege) gets the statements that fix it.
func (t *catalog) publicationDDLError(ctx context.Context, what, pub string, tables []tableName, creating bool, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
		return fmt.Errorf("walex: %s (Config.CreatePublication): %w", what, err)
	}
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		if fix := t.publicationFix(ctx, pub, tables, creating); fix != "" {
			return permanentf("walex: %s (Config.CreatePublication): %w; %s", what, err, fix)
		}
	}
	return permanentf("walex: %s (Config.CreatePublication): %w", what, err)
}

// publicationFix finds out which privileges the role lacks to create the
// publication for the tables (creating) or to add them to it: CREATE on
// the database to create one, ownership of the publication to alter it,
// and ownership of every table (through membership of its owner's role,
// too) either way. It says how to grant each, or how an admin does
// without: creating the publication, or adding the tables, as their
// owner. It is "" when the lookup fails or finds nothing missing.
func (t *catalog) publicationFix(ctx context.Context, pub string, tables []tableName, creating bool) string {
	role := sqlquote.Ident(t.cfg.User)
	var fixes []string
	if creating {
		rows, err := t.query(ctx, `SELECT has_database_privilege(current_database(), 'CREATE'), current_database()`)
		if err != nil || len(rows) != 1 {
			return ""
		}
		if string(rows[0][0]) != "t" {
			fixes = append(fixes, "GRANT CREATE ON DATABASE "+sqlquote.Ident(string(rows[0][1]))+" TO "+role+";")
		}
	} else {
		rows, err := t.query(ctx, `SELECT pg_has_role(p.pubowner, 'USAGE'), r.rolname, r.rolsuper
			FROM pg_publication p JOIN pg_roles r ON r.oid = p.pubowner WHERE p.pubname = $1`, pub)
		if err != nil || len(rows) != 1 {
			return ""
		}
		if string(rows[0][0]) != "t" {
			fixes = append(fixes, "ALTER PUBLICATION "+sqlquote.Ident(pub)+" OWNER TO "+role+";"+memberFix(rows[0][1], rows[0][2], role))
		}
	}
	for _, tbl := range tables {
		rows, err := t.query(ctx, `SELECT pg_has_role(c.relowner, 'USAGE'), r.rolname, r.rolsuper
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles r ON r.oid = c.relowner
			WHERE n.nspname = $1 AND c.relname = $2`, tbl.Schema, tbl.Table)
		if err != nil {
			return ""
		}
		if len(rows) == 1 && string(rows[0][0]) != "t" {
			fixes = append(fixes, "ALTER TABLE "+tbl.quoted()+" OWNER TO "+role+";"+memberFix(rows[0][1], rows[0][2], role))
		}
	}
	if len(fixes) == 0 {
		return ""
	}
	admin := "CREATE PUBLICATION " + sqlquote.Ident(pub) + " FOR TABLE "
	if !creating {
		admin = "ALTER PUBLICATION " + sqlquote.Ident(pub) + " ADD TABLE "
	}
	var all []string
	for _, tbl := range tables {
		all = append(all, tbl.quoted())
	}
	return "the role " + role + " lacks privileges; run " + strings.Join(fixes, " ") +
		" A publication of a table needs its owner: alternatively, have the tables' owner (or a superuser) run " + admin + strings.Join(all, ", ") + "; and turn Config.CreatePublication off"
}

// memberFix is the other way to own what owner owns: membership of its
// role; never offered for a superuser's, which would make the role one.
func memberFix(owner, super []byte, role string) string {
	if string(super) == "t" {
		return ""
	}
	return " (or GRANT " + sqlquote.Ident(string(owner)) + " TO " + role + ";)"
}

// ResolveType implements pgvalue.TypeResolver with a catalog query.
func (t *catalog) ResolveType(ctx context.Context, oid uint32) (pgvalue.TypeInfo, error) {
	if err := t.connect(ctx); err != nil {
		return pgvalue.TypeInfo{}, err
	}
	var info pgvalue.TypeInfo
	cur := oid
	for depth := 0; depth < 32; depth++ {
		res := t.conn.ExecParams(ctx,
			`SELECT t.typtype, t.typbasetype, CASE WHEN n.nspname = 'pg_catalog' THEN t.typname ELSE n.nspname || '.' || t.typname END
			   FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1`,
			[][]byte{[]byte(strconv.FormatUint(uint64(cur), 10))}, nil, nil, nil).Read()
		if res.Err != nil {
			return pgvalue.TypeInfo{}, res.Err
		}
		if len(res.Rows) != 1 {
			return pgvalue.TypeInfo{}, fmt.Errorf("type %d not found in pg_type", cur)
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
			return pgvalue.TypeInfo{}, fmt.Errorf("type %d: bad typbasetype %q", cur, row[1])
		}
		cur = uint32(base)
	}
	return pgvalue.TypeInfo{}, fmt.Errorf("type %d: domain nesting too deep", oid)
}

// binaryReady reports whether every column of the tables has a type the
// decoder reads in binary itself (pgvalue.BinarySafe, through domains), and
// names the types that keep it from being so. Tables that do not exist are
// passed over.
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
			if pgvalue.BinarySafe(uint32(oid)) {
				continue // a built-in type: no need to ask for its base type
			}
			info, err := t.ResolveType(ctx, uint32(oid))
			if err != nil {
				return false, nil, err
			}
			if !pgvalue.BinarySafe(info.BaseOID) && !slices.Contains(others, info.Name) {
				others = append(others, info.Name)
			}
		}
	}
	return len(others) == 0, others, nil
}

// TextOf converts the binary form of a value to its text form: the server
// reads it with the type's receive function and prints it with its output
// function. It implements pgvalue.TextOf.
func (t *catalog) TextOf(ctx context.Context, typeOID uint32, binary []byte) ([]byte, error) {
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
