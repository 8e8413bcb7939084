package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/walex-go/walex/internal/pgconnect"
)

// Limits of the connections of check and slots: they read catalogs and
// should never wait long.
const (
	defaultConnectTimeout = 10 * time.Second
	lockTimeout           = 5 * time.Second
	statementTimeout      = 30 * time.Second
)

// connFlags is the --url flag every command has.
type connFlags struct{ url string }

func (f *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "url", "", "the server: a postgres:// `URL` or a key=value DSN (default $DATABASE_URL, else the PG* variables)")
}

// target is where a command connects, with what it must never print.
type target struct {
	cfg     *pgconn.Config
	secrets []string // passwords, as given and as they may appear encoded
}

// resolve parses the connection settings: --url, else DATABASE_URL, else
// libpq's PG* variables, as pgconn.ParseConfig("") reads them. A parse
// error names where the settings came from, never the password.
func (f connFlags) resolve(getenv func(string) string) (*target, error) {
	raw, source := f.url, "--url"
	if raw == "" {
		raw, source = getenv("DATABASE_URL"), "DATABASE_URL"
	}
	if raw == "" {
		source = "the PG* environment variables"
	}
	t := &target{secrets: passwordsIn(raw)}
	cc, err := pgconn.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("cannot parse the connection settings from %s: %s (expected postgres://user:password@host:port/database?sslmode=... or host=... dbname=...)",
			source, t.scrub(parseReason(err)))
	}
	if cc.Database == "" {
		return nil, fmt.Errorf("the connection settings from %s name no database: add /dbname to the URL, dbname=... to the DSN, or set PGDATABASE", source)
	}
	t.cfg = cc
	t.secrets = append(t.secrets, passwordsOf(cc)...)
	return t, nil
}

// parseReason is pgconn's reason for rejecting a connection string,
// without the string itself.
func parseReason(err error) string {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return "invalid connection string"
	}
	s := pe.Error() // "cannot parse `<string>`: <reason>[ (<inner error>)]"
	if i := strings.Index(s, "`: "); i >= 0 {
		s = s[i+3:]
	}
	if inner := errors.Unwrap(pe); inner != nil {
		s = strings.TrimSuffix(s, " ("+inner.Error()+")")
		var ue *url.Error
		if errors.As(inner, &ue) {
			s += " (" + ue.Err.Error() + ")" // without the URL
		} else {
			s += " (" + inner.Error() + ")"
		}
	}
	return s
}

// passwordsIn returns what may be a password in a connection string that
// pgconn could not parse: the userinfo password of a URL and the value of
// a password key, as written and decoded.
func passwordsIn(raw string) []string {
	var out []string
	add := func(s string) {
		s = strings.Trim(s, `'"`)
		if s == "" {
			return
		}
		out = append(out, s)
		if d, err := url.QueryUnescape(s); err == nil && d != s {
			out = append(out, d)
		}
	}
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
				add(pw)
			}
		}
	}
	for _, sep := range []string{" ", "&", "?"} {
		for _, part := range strings.Split(raw, sep) {
			k, v, ok := strings.Cut(part, "=")
			if ok && strings.HasSuffix(strings.ToLower(strings.TrimLeft(k, "?&")), "password") {
				add(v)
			}
		}
	}
	return out
}

func passwordsOf(cc *pgconn.Config) []string {
	return []string{cc.Password, url.QueryEscape(cc.Password), url.PathEscape(cc.Password)}
}

// scrub replaces every password in s by xxxxx. Everything a command prints
// that comes from outside walex (server and driver errors) goes through it.
func (t *target) scrub(s string) string {
	for _, pw := range t.secrets {
		if len(pw) >= 2 { // a one-character password would mangle every message
			s = strings.ReplaceAll(s, pw, "xxxxx")
		}
	}
	return s
}

// String describes the target without the password: user@host:port/database.
func (t *target) String() string {
	return fmt.Sprintf("%s@%s/%s", t.cfg.User, hostPort(t.cfg.Host, t.cfg.Port), t.cfg.Database)
}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") { // a Unix socket directory
		return host + ":" + strconv.Itoa(int(port))
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(int(port))
	}
	return host + ":" + strconv.Itoa(int(port))
}

// db is a catalog connection of check and slots.
type db struct {
	conn    *pgconn.PgConn
	version int // server major version
	release string
}

// connect opens a normal connection with short lock and statement
// timeouts, named walex-cli in pg_stat_activity.
func (t *target) connect(ctx context.Context, what string) (*db, error) {
	cc := t.cfg.Copy()
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = defaultConnectTimeout
	}
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["application_name"] = "walex-cli"
	cc.RuntimeParams["lock_timeout"] = strconv.FormatInt(lockTimeout.Milliseconds(), 10)
	cc.RuntimeParams["statement_timeout"] = strconv.FormatInt(statementTimeout.Milliseconds(), 10)
	conn, err := pgconnect.Connect(ctx, cc, what)
	if err != nil {
		return nil, errors.New(t.scrub(err.Error()))
	}
	release, _, _ := strings.Cut(conn.ParameterStatus("server_version"), " ") // 15.18, not 15.18 (Debian 15.18-0+deb12u1)
	return &db{conn: conn, version: majorVersion(release), release: release}, nil
}

func majorVersion(v string) int {
	major, _, _ := strings.Cut(v, ".")
	n, _ := strconv.Atoi(strings.TrimFunc(major, func(r rune) bool { return r < '0' || r > '9' }))
	return n
}

func (d *db) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.conn.Close(ctx)
}

// row is one result row by column name; a NULL is absent.
type row map[string]string

// has reports whether the column is not NULL.
func (r row) has(col string) bool { _, ok := r[col]; return ok }

// bool is a boolean column; NULL is false.
func (r row) bool(col string) bool { return r[col] == "t" }

// int is an integer column; NULL and a fraction are cut to an integer.
func (r row) int(col string) int64 {
	s, _, _ := strings.Cut(r[col], ".")
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// query runs one statement with text parameters.
func (d *db) query(ctx context.Context, sql string, args ...string) ([]row, error) {
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	res := d.conn.ExecParams(ctx, sql, params, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	rows := make([]row, len(res.Rows))
	for i, vals := range res.Rows {
		r := make(row, len(vals))
		for j, v := range vals {
			if v != nil {
				r[res.FieldDescriptions[j].Name] = string(v)
			}
		}
		rows[i] = r
	}
	return rows, nil
}

// queryRow runs a statement that returns one row.
func (d *db) queryRow(ctx context.Context, sql string, args ...string) (row, error) {
	rows, err := d.query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("expected one row, got %d", len(rows))
	}
	return rows[0], nil
}
