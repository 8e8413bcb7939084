package walex

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// connConfig builds the pgconn configuration from URL or the discrete fields.
func (c Config) connConfig() (*pgconn.Config, error) {
	if c.URL != "" {
		if c.Host != "" || c.Port != 0 || c.User != "" || c.Password != "" || c.Database != "" {
			return nil, &ConfigError{Field: "URL", Reason: "is set together with Host/Port/User/Password/Database; use one or the other"}
		}
		cc, err := pgconn.ParseConfig(c.URL)
		if err != nil {
			// pgconn's parse errors can contain the connection string; do not
			// wrap them, so the password cannot leak.
			return nil, &ConfigError{Field: "URL", Reason: "cannot be parsed: " + redactURL(parseErrorReason(err)) + " (expected postgres://user:password@host:port/database?sslmode=disable or a key=value DSN)"}
		}
		if cc.Database == "" {
			return nil, &ConfigError{Field: "URL", Reason: "names no database; add /dbname to the URL"}
		}
		return cc, nil
	}
	cc, err := pgconn.ParseConfig("")
	if err != nil {
		return nil, &ConfigError{Field: "Host", Reason: "default connection settings (PG* environment variables) cannot be parsed: " + parseErrorReason(err)}
	}
	if c.Host != "" {
		cc.Host = c.Host
		cc.Fallbacks = nil
		if cc.TLSConfig != nil {
			cc.TLSConfig.ServerName = c.Host
		}
	}
	if c.Port != 0 {
		cc.Port = c.Port
		for _, f := range cc.Fallbacks {
			f.Port = c.Port
		}
	}
	if c.User != "" {
		cc.User = c.User
	}
	if c.Password != "" {
		cc.Password = c.Password
	}
	if c.Database != "" {
		cc.Database = c.Database
	}
	if cc.Database == "" {
		return nil, &ConfigError{Field: "Database", Reason: "is empty; name the database to stream from"}
	}
	return cc, nil
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
