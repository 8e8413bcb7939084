// Package pgconnect opens walex's connections to PostgreSQL and says what
// went wrong when it cannot: every connection walex makes (replication,
// catalog, heartbeat) goes through [Connect], so that each gets the same
// TLS settings and the same clear, classified errors.
//
// An error that retrying cannot fix is an [*Error] whose Permanent method
// reports true: a refused password, a database or privilege that does not
// exist, a server that will not speak TLS when the configuration requires
// it, a server certificate that fails verification. Anything else (the
// server is down or restarting, the network broke) is transient.
package pgconnect

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/walex-go/walex/internal/sqlquote"
)

// Error is a connection failure with its classification.
type Error struct {
	// Reason says what happened and what to do, without the password.
	Reason string
	// Err is pgconn's error.
	Err       error
	permanent bool
}

// Error implements the error interface.
func (e *Error) Error() string { return e.Reason + ": " + e.Err.Error() }

// Unwrap returns pgconn's error.
func (e *Error) Unwrap() error { return e.Err }

// Permanent reports whether retrying cannot fix the failure.
func (e *Error) Permanent() bool { return e.permanent }

// Connect opens a connection with a copy of cfg, which must come from
// pgconn.ParseConfig. what names the connection in errors ("replication",
// "catalog queries").
func Connect(ctx context.Context, cfg *pgconn.Config, what string) (*pgconn.PgConn, error) {
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn, nil
	}
	return nil, classify(ctx, cfg, what, err)
}

// PasswordFunc returns the password for one connection attempt.
type PasswordFunc func(ctx context.Context) (string, error)

// ConnectWithPassword is Connect with the password that password returns,
// asked for right before connecting, in place of cfg's; a nil password
// keeps cfg's. An error of password is transient (unless it says of
// itself that it is permanent): the caller retries as for a connection
// failure.
func ConnectWithPassword(ctx context.Context, cfg *pgconn.Config, what string, password PasswordFunc) (*pgconn.PgConn, error) {
	if password == nil {
		return Connect(ctx, cfg, what)
	}
	pw, err := password(ctx)
	if err != nil {
		return nil, &Error{Reason: "connect for " + what + ": the password function (Config.PasswordFunc) failed; retrying", Err: err}
	}
	cc := cfg.Copy()
	cc.Password = pw
	return Connect(ctx, cc, what)
}

func classify(ctx context.Context, cfg *pgconn.Config, what string, err error) error {
	permanent := func(format string, args ...any) error {
		return &Error{Reason: fmt.Sprintf("connect for %s: ", what) + fmt.Sprintf(format, args...), Err: err, permanent: true}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return permanent("authentication failed: check the user, the password and pg_hba.conf (a replication connection needs a 'replication' line, or 'all' in PostgreSQL 16+)")
		case "3D000": // invalid_catalog_name
			return permanent("the database does not exist: check the database name")
		case "42501": // insufficient_privilege
			if fix := privilegeFix(cfg, what, pgErr); fix != "" {
				return permanent("%s", fix)
			}
		}
		switch pgErr.Code[:2] {
		case "22", "42": // data_exception, syntax_error_or_access_rule_violation: a bad startup setting
			return permanent("the server rejected the connection settings (check the options and runtime parameters of the URL or ConnConfig)")
		}
	}
	var (
		hostErr    x509.HostnameError
		authErr    x509.UnknownAuthorityError
		invalidErr x509.CertificateInvalidError
		verifyErr  *tls.CertificateVerificationError
	)
	if errors.As(err, &hostErr) || errors.As(err, &authErr) || errors.As(err, &invalidErr) || errors.As(err, &verifyErr) {
		return permanent("the server's TLS certificate failed verification: check sslrootcert (the CA that signed the server's certificate) and that the host name matches the certificate, or use a weaker sslmode knowingly")
	}
	if requiresTLS(cfg) && refusesTLS(ctx, cfg) {
		return permanent("the server does not accept TLS connections, and sslmode requires TLS: turn ssl on in the server's configuration, or set sslmode=prefer (or disable) if plaintext is acceptable on this network")
	}
	return &Error{Reason: "connect for " + what, Err: err}
}

// privilegeFix says which privilege a connection refused with
// insufficient_privilege lacks, and the statement that grants it, or ""
// when the refusal is about a setting of the connection (the generic
// message of a rejected setting then applies). It tells the cases apart
// by the server function that raised the error, which is not translated
// as the message is: CheckMyDatabase checks the CONNECT privilege,
// InitPostgres a replication connection's REPLICATION attribute, and
// set_config_option a parameter the role may not set.
func privilegeFix(cfg *pgconn.Config, what string, pgErr *pgconn.PgError) string {
	role := sqlquote.Ident(cfg.User)
	switch {
	case pgErr.Routine == "CheckMyDatabase":
		return fmt.Sprintf("the role lacks the CONNECT privilege on the database: run GRANT CONNECT ON DATABASE %s TO %s;", sqlquote.Ident(cfg.Database), role)
	case strings.HasPrefix(pgErr.Routine, "set_config"):
		return ""
	case what == "replication":
		return fmt.Sprintf("the role lacks the REPLICATION attribute, which a replication connection needs: run ALTER ROLE %s REPLICATION; (on Amazon RDS and Aurora: GRANT rds_replication TO %s;)", role, role)
	}
	return "the role may not connect this way (insufficient privilege)"
}

// requiresTLS reports whether cfg never falls back to a plaintext TCP
// connection (sslmode require, verify-ca, verify-full).
func requiresTLS(cfg *pgconn.Config) bool {
	if cfg.TLSConfig == nil || isSocket(cfg.Host) {
		return false
	}
	for _, f := range cfg.Fallbacks {
		if f.TLSConfig == nil && !isSocket(f.Host) {
			return false
		}
	}
	return true
}

func isSocket(host string) bool { return len(host) > 0 && host[0] == '/' }

// refusesTLS asks the server at cfg's first address whether it accepts TLS,
// the way a client starts TLS: an SSLRequest, to which the server answers
// 'S' or 'N'. It reports true only for an answer of 'N'.
func refusesTLS(ctx context.Context, cfg *pgconn.Config) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	dial := cfg.DialFunc
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	if err != nil {
		return false
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:], 8)
	binary.BigEndian.PutUint32(req[4:], 80877103) // SSLRequest
	if _, err := conn.Write(req[:]); err != nil {
		return false
	}
	var resp [1]byte
	if _, err := io.ReadFull(conn, resp[:]); err != nil {
		return false
	}
	return resp[0] == 'N'
}
