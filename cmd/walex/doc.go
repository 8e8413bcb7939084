// Command walex is the operators' command line for PostgreSQL change data
// capture with walex: watch the changes of tables as they are committed,
// check that a server is ready for walex, and look after replication
// slots.
//
// Install it with
//
//	go install github.com/walex-go/walex/cmd/walex@latest
//
// # Commands
//
//	walex tail --publication events --tables users,todos   # print each change (JSON lines, or pretty on a terminal)
//	walex check --publication events --tables users,todos  # OK / WARNING / PROBLEM per check, with the SQL that fixes it
//	walex slots                                           # logical slots: lag, retained WAL, wal_status
//	walex slots drop myapp_walex                          # asks first on a terminal; --yes otherwise
//
// walex help lists them, and walex <command> --help shows each one's
// flags and examples.
//
// # Connection
//
// Every command takes --url, a postgres:// URL or a key=value DSN with
// any libpq option (sslmode, sslrootcert, connect_timeout, ...). Without
// it, DATABASE_URL is used, and without that, libpq's environment
// variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE,
// ...) and ~/.pgpass, as pgconn.ParseConfig("") reads them. Passwords are
// never printed, in output or in errors.
//
// # Exit status
//
// 0 on success; 1 when the command failed (walex check: when it found a
// problem; warnings alone exit 0); 2 on a usage error (walex check: also
// when it cannot connect). walex tail stops cleanly, with status 0, on
// SIGINT or SIGTERM.
package main
