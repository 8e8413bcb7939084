package walex

import (
	"errors"
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
		return c.ConnConfig.Copy(), nil
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
