package walex

import (
	"errors"
	"iter"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// connConfig builds the pgconn configuration from ConnConfig, URL or the
// discrete fields. The discrete fields make exactly the configuration the
// equivalent key/value DSN would: libpq's environment variables (PGSSLMODE,
// PGSSLROOTCERT, ...) and defaults fill what they leave empty, sslmode
// defaults to prefer, and TLS is configured for every host tried.
func (c Config) connConfig() (*pgconn.Config, error) {
	discrete := c.Host != "" || c.Port != 0 || c.User != "" || c.Password != "" || c.Database != ""
	if c.ConnConfig != nil {
		if c.URL != "" || discrete {
			return nil, &ConfigError{Field: "ConnConfig", Reason: "is set together with URL or Host/Port/User/Password/Database; use one of them (set the password on ConnConfig)"}
		}
		if !madeByParseConfig(c.ConnConfig) {
			return nil, &ConfigError{Field: "ConnConfig", Reason: "was not made by pgconn.ParseConfig (pgconn connects only with such a configuration): parse a URL or DSN, then change the result"}
		}
		if c.ConnConfig.Database == "" {
			return nil, &ConfigError{Field: "ConnConfig", Reason: "names no database; set Database"}
		}
		if c.PasswordFunc != nil && c.ConnConfig.Password != "" {
			return nil, &ConfigError{Field: "PasswordFunc", Reason: "is set together with a password in ConnConfig; use one of them (set ConnConfig.Password to \"\", which pgconn.ParseConfig may have filled from PGPASSWORD or a password file)"}
		}
		return c.ConnConfig.Copy(), nil
	}
	if c.PasswordFunc != nil {
		if c.Password != "" {
			return nil, &ConfigError{Field: "PasswordFunc", Reason: "is set together with Password; use one of them"}
		}
		if hasPassword(c.URL) {
			return nil, &ConfigError{Field: "PasswordFunc", Reason: "is set together with a password in URL; use one of them (remove the password from the URL)"}
		}
	}
	field, dsn := "URL", c.URL
	if dsn == "" {
		field, dsn = "Host", c.dsn()
	} else if discrete {
		return nil, &ConfigError{Field: "URL", Reason: "is set together with Host/Port/User/Password/Database; use one or the other"}
	}
	cc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		// pgconn's parse errors can contain the connection string; do not
		// wrap them, so the password cannot leak.
		if field == "URL" {
			return nil, &ConfigError{Field: "URL", Reason: "cannot be parsed: " + redactURL(parseErrorReason(err)) + " (expected postgres://user:password@host:port/database?sslmode=disable or a key=value DSN)"}
		}
		return nil, &ConfigError{Field: field, Reason: "the connection settings (the fields and the PG* environment variables) cannot be parsed: " + redactURL(parseErrorReason(err))}
	}
	if cc.Database == "" {
		if field == "URL" {
			return nil, &ConfigError{Field: "URL", Reason: "names no database; add /dbname to the URL"}
		}
		return nil, &ConfigError{Field: "Database", Reason: "is empty; name the database to stream from"}
	}
	return cc, nil
}

// hasPassword reports whether a connection URL or key/value DSN sets a
// password: in the URL's user information, or as a password parameter.
func hasPassword(dsn string) bool {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return false // ParseConfig reports it
		}
		if _, ok := u.User.Password(); ok {
			return true
		}
		return u.Query().Get("password") != ""
	}
	for st := range dsnSettingSpans(dsn) {
		if st.key == "password" && st.val != "" {
			return true
		}
	}
	return false
}

// dsnSetting is one key=value setting of a key/value DSN: the key, the
// value as libpq reads it, and where the value is written in the DSN (with
// its quotes).
type dsnSetting struct {
	key, val         string
	valStart, valEnd int
}

// dsnSettingSpans yields the settings of a key/value DSN as libpq reads
// them: "key = value" or "key='quoted \' value'". It stops at what it
// cannot read (ParseConfig reports it).
func dsnSettingSpans(dsn string) iter.Seq[dsnSetting] {
	return func(yield func(dsnSetting) bool) {
		pos := 0
		skipSpace := func() {
			for pos < len(dsn) && isDSNSpace(dsn[pos]) {
				pos++
			}
		}
		for {
			skipSpace()
			eq := strings.IndexByte(dsn[pos:], '=')
			if eq <= 0 {
				return
			}
			key := strings.TrimSpace(dsn[pos : pos+eq])
			if key == "" || strings.IndexFunc(key, func(r rune) bool { return r < 128 && isDSNSpace(byte(r)) }) >= 0 {
				return
			}
			pos += eq + 1
			skipSpace()
			st := dsnSetting{key: key, valStart: pos}
			var val strings.Builder
			quoted := pos < len(dsn) && dsn[pos] == '\''
			if quoted {
				pos++
			}
			for ; pos < len(dsn); pos++ {
				ch := dsn[pos]
				if quoted && ch == '\'' || !quoted && isDSNSpace(ch) {
					break
				}
				if ch == '\\' && pos+1 < len(dsn) {
					pos++
					ch = dsn[pos]
				}
				val.WriteByte(ch)
			}
			if quoted {
				if pos >= len(dsn) {
					return // unterminated quote
				}
				pos++
			}
			st.val, st.valEnd = val.String(), pos
			if !yield(st) {
				return
			}
		}
	}
}

func isDSNSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'
}

// dsn writes the discrete fields as a key/value connection string.
func (c Config) dsn() string {
	var kv []string
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, k+"="+dsnQuote(v))
		}
	}
	add("host", c.Host)
	if c.Port != 0 {
		add("port", strconv.Itoa(int(c.Port)))
	}
	add("user", c.User)
	add("password", c.Password)
	add("dbname", c.Database)
	return strings.Join(kv, " ")
}

// dsnQuote quotes a value of a key/value connection string.
func dsnQuote(v string) string {
	return `'` + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + `'`
}

// madeByParseConfig reports whether cfg came from pgconn.ParseConfig (or a
// Copy of such a configuration), which pgconn.ConnectConfig requires and
// otherwise panics about. pgconn keeps that in an unexported field; when a
// later pgconn no longer has it, the check passes.
func madeByParseConfig(cfg *pgconn.Config) bool {
	f := reflect.ValueOf(cfg).Elem().FieldByName("createdByParseConfig")
	return !f.IsValid() || f.Kind() != reflect.Bool || f.Bool()
}

// parseErrorReason extracts pgconn's reason without the connection string.
func parseErrorReason(err error) string {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		// The text is "cannot parse `<redacted string>`: <reason>"; keep the reason.
		s := pe.Error()
		if i := strings.LastIndex(s, "`: "); i >= 0 {
			return s[i+3:]
		}
	}
	return "invalid connection string"
}
