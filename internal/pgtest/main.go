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
	sharedMu sync.Mutex
	shared   *Server
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
	shared = s
	sharedMu.Unlock()

	code := m.Run()

	if err := s.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: stop PostgreSQL: %v\n", err)
		if code == 0 {
			code = 1
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
