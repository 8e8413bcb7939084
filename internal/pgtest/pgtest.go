package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Options configures a server started by [Start] or [Main].
type Options struct {
	// Extra server settings passed as -c name=value, e.g.
	// {"wal_level": "replica"} or {"wal_sender_timeout": "2s"}; they
	// override the defaults.
	Settings map[string]string
	// Version asks for a PostgreSQL major version (e.g. 17): the binaries
	// found as described in the package documentation if they are of that
	// version, else that version fetched with npm (as WALEX_PG_VERSION
	// does). 0: the binaries found.
	Version int
	// TLS, when set, turns on TLS with this certificate and key (see
	// [NewCerts]). Connections may then use TLS or not: sslmode decides.
	TLS *Certs
}

// Server is a running throwaway PostgreSQL server. Create one with [Start]
// (or [Main] and [Shared]) and release it with [Server.Stop].
type Server struct {
	Host    string // "127.0.0.1"
	Port    int    // TCP port on Host
	User    string // superuser name created by initdb ("postgres")
	Version int    // server major version, e.g. 15
	BinDir  string // directory holding the initdb and postgres binaries used
	DataDir string // the cluster's data directory (inside a temporary directory removed by Stop)

	dir  string     // temporary directory holding DataDir, the socket and server.log
	as   *runAs     // OS user running postgres; nil for the current user
	args []string   // -c name=value arguments
	sent *sentinel  // reaper used if the test process dies
	mu   sync.Mutex // guards the fields below; held for whole Stop/Restart operations

	proc    *pgProc
	stopped bool
	stopErr error
}

// pgProc is one run of the postmaster.
type pgProc struct {
	cmd       *exec.Cmd
	done      chan struct{} // closed when the process has exited
	err       error         // from cmd.Wait, valid after done
	logOffset int64         // size of server.log when this run started
}

func (p *pgProc) exited(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

const (
	superuser    = "postgres"
	readyTimeout = 60 * time.Second
)

// defaultSettings are the server settings used unless Options.Settings
// overrides them. listen_addresses and unix_socket_directories are added by
// Start.
var defaultSettings = map[string]string{
	"wal_level":             "logical",
	"max_replication_slots": "40",
	"max_wal_senders":       "40",
	"max_connections":       "200",
	"fsync":                 "off",
	"synchronous_commit":    "off",
	"full_page_writes":      "off",
	"shared_buffers":        "128MB",
	"log_min_messages":      "warning",
	// The default before PostgreSQL 14 is md5, which the scram-sha-256
	// lines for walex_pw in pg_hba.conf would reject.
	"password_encryption": "scram-sha-256",
}

// hbaConf allows trust authentication on 127.0.0.1 and the local socket for
// everyone except the role walex_pw, which must use a password, so that
// tests can exercise authentication failures.
const hbaConf = `# Written by pgtest: for throwaway test servers only.
# TYPE  DATABASE     USER       ADDRESS          METHOD
host    all          walex_pw   127.0.0.1/32     scram-sha-256
host    replication  walex_pw   127.0.0.1/32     scram-sha-256
local   all          all                         trust
local   replication  all                         trust
host    all          all        127.0.0.1/32     trust
host    replication  all        127.0.0.1/32     trust
`

// errAddrInUse marks a start that failed because the port was taken.
var errAddrInUse = errors.New("pgtest: port already in use")

// Start creates a fresh cluster in a new temporary directory and starts a
// server on it, returning once the server accepts connections.
//
// The cluster is created with initdb (superuser "postgres", trust
// authentication, UTF8, no locale), and the postgres binary runs directly as
// a child process listening on a free port of 127.0.0.1, with the settings
// described in the package documentation plus opts.Settings. If the server
// does not come up within 60 s, or exits, the error includes the end of the
// server log. The caller must call [Server.Stop]; if the test process dies
// first, a sentinel process stops the server and removes its files.
func Start(ctx context.Context, opts Options) (*Server, error) {
	as, err := serverUser()
	if err != nil {
		return nil, err
	}
	bins, err := findBinaries(ctx, as, opts.Version)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tempBase(as), "walex-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	sent, err := startSentinel(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{
		Host:    "127.0.0.1",
		User:    superuser,
		Version: bins.version,
		BinDir:  bins.dir,
		DataDir: filepath.Join(dir, "data"),
		dir:     dir,
		as:      as,
		sent:    sent,
	}
	if err := s.start(ctx, opts); err != nil {
		s.mu.Lock()
		s.abort()
		s.mu.Unlock()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, opts Options) error {
	if err := s.as.chown(s.dir); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if err := s.initdb(ctx); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.DataDir, "pg_hba.conf"), []byte(hbaConf), 0o600); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}

	settings := maps.Clone(defaultSettings)
	settings["listen_addresses"] = s.Host
	settings["unix_socket_directories"] = s.dir
	if opts.TLS != nil {
		cert, key := filepath.Join(s.dir, "server.crt"), filepath.Join(s.dir, "server.key")
		for path, data := range map[string][]byte{cert: opts.TLS.ServerCertPEM, key: opts.TLS.ServerKeyPEM} {
			// The server refuses a key that others may read.
			if err := os.WriteFile(path, data, 0o600); err != nil {
				return fmt.Errorf("pgtest: %w", err)
			}
			if err := s.as.chown(path); err != nil {
				return fmt.Errorf("pgtest: %w", err)
			}
		}
		settings["ssl"] = "on"
		settings["ssl_cert_file"] = cert
		settings["ssl_key_file"] = key
	}
	maps.Copy(settings, opts.Settings)
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		s.args = append(s.args, "-c", k+"="+settings[k])
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range 5 {
		var port int
		if port, err = freePort(); err != nil {
			return fmt.Errorf("pgtest: find a free port: %w", err)
		}
		if err = s.launch(ctx, port); !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return err
}

func (s *Server) initdb(ctx context.Context) error {
	initdb := filepath.Join(s.BinDir, "initdb")
	cmd := exec.CommandContext(ctx, initdb,
		"-D", s.DataDir, "-U", superuser, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	cmd.Dir = s.dir
	cmd.Env = Environ()
	s.as.apply(cmd)
	setPdeathsig(cmd, syscall.SIGKILL)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := startLocked(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		msg := fmt.Sprintf("pgtest: %s failed: %v\n%s", initdb, err, strings.TrimSpace(out.String()))
		if libs := missingLibs(initdb, filepath.Join(s.BinDir, "postgres")); libs != "" {
			msg += "\nmissing shared libraries (ldd):\n" + libs
		}
		return errors.New(msg)
	}
	return nil
}

// Environ is the environment for PostgreSQL programs started by tests
// and tools (initdb, postgres, pgbench): this process's own, minus libpq
// variables (PG*) that could redirect them.
func Environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

func (s *Server) logPath() string { return filepath.Join(s.dir, "server.log") }

// logTail returns up to the last 4 KiB of the server log written since
// offset.
func (s *Server) logTail(offset int64) string {
	f, err := os.Open(s.logPath())
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	const max = 4 << 10
	if fi.Size()-offset > max {
		offset = fi.Size() - max
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, fi.Size()-offset))
	return strings.TrimSpace(string(b))
}

// launch starts the postmaster on port and waits until it accepts
// connections. s.mu must be held. On failure nothing is left running.
func (s *Server) launch(ctx context.Context, port int) error {
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close()
	fi, err := logf.Stat()
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}

	args := append([]string{"-D", s.DataDir, "-p", strconv.Itoa(port)}, s.args...)
	cmd := exec.Command(filepath.Join(s.BinDir, "postgres"), args...)
	cmd.Dir = s.dir
	cmd.Env = Environ()
	cmd.Stdout, cmd.Stderr = logf, logf
	s.as.apply(cmd)
	// Own process group, so that the whole server can be signalled at once
	// and a ^C aimed at the test does not hit it; SIGQUIT (immediate
	// shutdown) if the test process dies.
	cmd.SysProcAttr.Setpgid = true
	setPdeathsig(cmd, syscall.SIGQUIT)
	if err := startLocked(cmd); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	p := &pgProc{cmd: cmd, done: make(chan struct{}), logOffset: fi.Size()}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p
	if s.Port != port { // Restart reuses the port: no write, so no race with readers of Port
		s.Port = port
	}
	s.sent.watch(cmd.Process.Pid)

	if err := s.waitReady(ctx, p); err != nil {
		s.shutdown(context.Background(), syscall.SIGQUIT)
		return err
	}
	return nil
}

// waitReady polls until the server accepts connections, the process exits,
// ctx ends or readyTimeout passes.
func (s *Server) waitReady(ctx context.Context, p *pgProc) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var lastErr error
	for {
		select {
		case <-p.done:
			tail := s.logTail(p.logOffset)
			if strings.Contains(tail, "already in use") || strings.Contains(tail, "could not bind") {
				return fmt.Errorf("%w: %d\n%s", errAddrInUse, s.Port, tail)
			}
			return fmt.Errorf("pgtest: postgres exited during startup (%v); server log:\n%s", p.err, tail)
		default:
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(cctx, s.URL("postgres"))
		ccancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgtest: postgres did not accept connections (%v; last error: %v); server log:\n%s",
				ctx.Err(), lastErr, s.logTail(p.logOffset))
		case <-p.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// shutdown stops the current postmaster with sig (SIGTERM smart, SIGINT
// fast, SIGQUIT immediate), escalating to SIGQUIT and then SIGKILL for the
// whole process group if it does not exit in time or ctx ends. s.mu must be
// held.
func (s *Server) shutdown(ctx context.Context, sig syscall.Signal) {
	p := s.proc
	if p == nil {
		return
	}
	pid := p.cmd.Process.Pid
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
	}
	if !p.exited(0) {
		_ = syscall.Kill(-pid, syscall.SIGQUIT)
		if !p.exited(5 * time.Second) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-p.done
		}
	}
	if sig != syscall.SIGINT && sig != syscall.SIGTERM {
		// After an immediate shutdown, make sure no backend outlives the
		// postmaster (they normally exit with it).
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	s.proc = nil
	s.sent.watch(0)
}

// abort tears down a server whose Start failed. s.mu must be held.
func (s *Server) abort() {
	s.stopped = true
	s.shutdown(context.Background(), syscall.SIGQUIT)
	err := os.RemoveAll(s.dir)
	s.sent.dismiss(err == nil)
}

// Stop stops the server and removes all its files (the data directory, the
// socket and the log). It asks for a fast shutdown and, if the server does
// not exit within 30 s, falls back to an immediate shutdown and then to
// SIGKILL for the server's whole process group.
//
// Stop is idempotent and safe to call concurrently: later calls wait for the
// first and return its result. Stop waits for a concurrent [Server.Restart]
// to finish.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return s.stopErr
	}
	s.stopped = true
	s.shutdown(context.Background(), syscall.SIGINT)
	err := os.RemoveAll(s.dir)
	if err != nil {
		err = fmt.Errorf("pgtest: remove %s: %w", s.dir, err)
	}
	s.sent.dismiss(err == nil) // on failure the sentinel tries rm -rf as well
	s.stopErr = err
	return err
}

// Restart shuts the server down with the given pg_ctl shutdown mode, "fast"
// or "immediate" ("smart" works too), and starts it again on the same port
// and data directory, returning once it accepts connections. It is meant for
// fault-injection tests: existing connections are broken, and an immediate
// shutdown forces crash recovery on the next start (remember that
// synchronous_commit is off by default).
//
// The shutdown signal is sent to the postmaster directly (SIGTERM, SIGINT or
// SIGQUIT, as pg_ctl would). Restart and [Server.Stop] are serialized;
// Restart on a stopped server is an error.
func (s *Server) Restart(ctx context.Context, mode string) error {
	var sig syscall.Signal
	switch mode {
	case "smart":
		sig = syscall.SIGTERM
	case "fast":
		sig = syscall.SIGINT
	case "immediate":
		sig = syscall.SIGQUIT
	default:
		return fmt.Errorf("pgtest: Restart: unknown shutdown mode %q (want fast, immediate or smart)", mode)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("pgtest: Restart: server is stopped")
	}
	s.shutdown(ctx, sig)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pgtest: Restart: %w", err)
	}
	if err := s.launch(ctx, s.Port); err != nil {
		return fmt.Errorf("pgtest: Restart: %w", err)
	}
	return nil
}

// URL returns a postgres:// URL for database db as user s.User, without a
// password and with sslmode=disable, such as
// postgres://postgres@127.0.0.1:41234/db?sslmode=disable. Append
// "&replication=database" for a logical replication connection.
//
// pg_hba.conf trusts every role on 127.0.0.1, for normal and replication
// connections, except the role walex_pw, which must authenticate with its
// password (scram-sha-256) so that tests can provoke authentication errors.
// Tests create that role themselves, e.g.
// CREATE ROLE walex_pw LOGIN REPLICATION PASSWORD 'secret'.
func (s *Server) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(s.User),
		Host:     net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Exec runs sql on database db as the superuser, over a new connection that
// it closes again; args are the query's parameters ($1, $2, ...). Without
// args, sql may hold several statements separated by semicolons.
func (s *Server) Exec(ctx context.Context, db string, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, s.URL(db))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// NewDatabase creates an empty database with a unique name, such as
// walex_test_0123456789ab, and returns the name. It fails tb if it cannot.
//
// A tb.Cleanup terminates the database's backends (walsenders included),
// drops the replication slots of that database only, which are the ones the
// test created there, and drops the database. A failed cleanup is reported
// with tb.Errorf; if the server has been stopped meanwhile, nothing is left
// to clean up.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "walex_test_" + hex.EncodeToString(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if err := s.dropDatabase(name); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return name
}

// dropDatabase terminates the backends of db, drops its replication slots
// and drops it, retrying while walsenders are still going away.
func (s *Server) dropDatabase(db string) error {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	drop := "DROP DATABASE IF EXISTS " + pgx.Identifier{db}.Sanitize()
	if s.Version >= 13 {
		drop += " WITH (FORCE)"
	}
	for {
		err = s.tryDropDatabase(ctx, conn, db, drop)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Server) tryDropDatabase(ctx context.Context, conn *pgx.Conn, db, drop string) error {
	if _, err := conn.Exec(ctx,
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", db); err != nil {
		return err
	}
	rows, err := conn.Query(ctx, "SELECT slot_name FROM pg_replication_slots WHERE database = $1", db)
	if err != nil {
		return err
	}
	slots, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, slot := range slots {
		// Fails while the slot's walsender is still exiting; retried.
		if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
			return fmt.Errorf("drop replication slot %s: %w", slot, err)
		}
	}
	_, err = conn.Exec(ctx, drop)
	return err
}

// pid returns the postmaster's process id, or 0 if it is not running.
func (s *Server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}
