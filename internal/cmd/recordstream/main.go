// Command recordstream records real pgoutput streams from a live PostgreSQL
// server into decoder/testdata/<scenario>/ (PostgreSQL 15) or
// decoder/testdata/pg<major>/<scenario>/ (other versions), for the
// decoder's golden tests, fuzz seeds and benchmarks. From PostgreSQL 16 on
// the scenarios use protocol 4 and stream with streaming 'parallel' (see
// forServer).
//
// For each scenario it creates a fresh database, runs the setup SQL,
// creates the publication walex_rec and the logical slot walex_rec
// (pgoutput), runs the scenario's steps, then reads the slot with
// START_REPLICATION and the scenario's plugin options until everything the
// steps wrote has been decoded, and writes:
//
//   - stream.bin: every XLogData payload (one pgoutput message each), framed
//     as a uint32 big-endian length followed by the message bytes;
//   - scenario.sql: the SQL that produced the stream;
//   - meta.json: server version, protocol version and plugin options.
//
// The slot is read while the steps run, and after each step the recorder
// waits until the walsender has decoded everything the step wrote, so that
// the stream does not depend on timing (a transaction is streamed before the
// next step aborts it; catalog changes of a step do not race with the
// decoding of the previous ones). The wait uses a non-transactional logical
// message (prefix walex-recordstream-sync) emitted on a separate connection:
// it is done when the message arrives (with messages 'true'; such messages
// are not recorded) or when a keepalive reports that the walsender has
// decoded past it. A last one ends the recording.
//
// Run from the repository root (starts a throwaway PostgreSQL with
// internal/pgtest; -pg, WALEX_PG_VERSION or WALEX_PG_BIN choose the
// binaries; -h lists the flags):
//
//	go run ./internal/cmd/recordstream
//	go run ./internal/cmd/recordstream -pg 17
//	go run ./internal/cmd/recordstream -run 'stream_.*' -url postgres://postgres@localhost:5432/postgres
//
// then rewrite the golden files with go test ./decoder -run Golden -update
// and read their changes before committing them (decoder/testdata/README.md).
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/walex-go/walex/internal/pgtest"
)

const (
	slotName    = "walex_rec"
	syncPrefix  = "walex-recordstream-sync"
	streamMem   = "64kB"
	syncTimeout = time.Minute
	pingPeriod  = 50 * time.Millisecond
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		out    = flag.String("out", "", "output directory (one sub-directory per scenario); default: decoder/testdata for PostgreSQL 15, decoder/testdata/pg<major> for other versions")
		url    = flag.String("url", "", "PostgreSQL URL of an existing server (superuser, wal_level=logical); default: start a throwaway server with internal/pgtest")
		pg     = flag.Int("pg", 0, "major version of the throwaway server (e.g. 17, fetched with npm and cached like WALEX_PG_VERSION); 0: the binaries internal/pgtest finds")
		only   = flag.String("run", "", "record only the scenarios whose name matches this regular expression")
		list   = flag.Bool("list", false, "list the scenarios and exit")
		prefix = flag.String("db-prefix", "walex_rec_", "prefix of the databases created (and dropped) per scenario")
	)
	flag.Usage = usage
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("recordstream: ")
	if flag.NArg() > 0 {
		log.Printf("unexpected arguments %q (see -h)", flag.Args())
		return 2
	}
	if *pg != 0 && *url != "" {
		log.Print("-pg and -url exclude each other: -pg chooses the throwaway server's version")
		return 2
	}

	if *list {
		for _, sc := range scenarios {
			p17 := sc.forServer(170000)
			fmt.Printf("%-22s proto %d (%d from PostgreSQL 16)  %s\n", sc.Name, sc.Proto, p17.Proto, sc.Doc)
		}
		return 0
	}
	var re *regexp.Regexp
	if *only != "" {
		var err error
		if re, err = regexp.Compile(*only); err != nil {
			log.Printf("-run: %v", err)
			return 2
		}
	}
	var todo []scenario
	for _, sc := range scenarios {
		if re == nil || re.MatchString(sc.Name) {
			todo = append(todo, sc)
		}
	}
	if len(todo) == 0 {
		log.Printf("no scenario matches -run %q (see -list)", *only)
		return 2
	}

	ctx := context.Background()
	base := *url
	if base == "" {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		srv, err := pgtest.Start(sctx, pgtest.Options{Version: *pg})
		cancel()
		if err != nil {
			log.Print(err)
			return 1
		}
		defer func() {
			if err := srv.Stop(); err != nil {
				log.Print(err)
			}
		}()
		base = srv.URL("postgres")
		log.Printf("started PostgreSQL %d from %s", srv.Version, srv.BinDir)
	}

	versionNum, err := serverVersionNum(ctx, base)
	if err != nil {
		log.Print(err)
		return 1
	}
	dir := *out
	if dir == "" {
		dir = filepath.Join("decoder", "testdata")
		if major := versionNum / 10000; major != 15 {
			dir = filepath.Join(dir, fmt.Sprintf("pg%d", major))
		}
	}
	for _, sc := range todo {
		sc := sc.forServer(versionNum)
		r := &recorder{base: base, db: *prefix + sc.Name, sc: &sc}
		if err := r.record(ctx, filepath.Join(dir, sc.Name)); err != nil {
			log.Printf("scenario %s: %v", sc.Name, err)
			return 1
		}
	}
	log.Printf("recorded %d scenarios; now run: go test ./decoder -run Golden -update", len(todo))
	return 0
}

const usageText = `usage: go run ./internal/cmd/recordstream [flags]

Records what a real PostgreSQL server sends over logical replication
(pgoutput) for scripted changes, one directory per scenario: stream.bin
(per message a uint32 big-endian length, then the message), scenario.sql,
meta.json. See decoder/testdata/README.md.

Regenerate, from the repository root:

	go run ./internal/cmd/recordstream           # PostgreSQL 15 -> decoder/testdata
	go run ./internal/cmd/recordstream -pg 17    # PostgreSQL 17 -> decoder/testdata/pg17
	go test ./decoder -run Golden -update        # rewrite golden.txt and the fuzz seeds

then read the golden.txt changes (git diff) before committing them.

Flags:
`

func usage() {
	fmt.Fprint(flag.CommandLine.Output(), usageText)
	flag.PrintDefaults()
}

// serverVersionNum returns the server_version_num of the server at url.
func serverVersionNum(ctx context.Context, url string) (int, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&n); err != nil {
		return 0, fmt.Errorf("server version: %w", err)
	}
	return n, nil
}

type recorder struct {
	base string // URL of the server's postgres database
	db   string
	sc   *scenario
}

// meta is written to meta.json.
type meta struct {
	Scenario               string   `json:"scenario"`
	Description            string   `json:"description"`
	ServerVersion          string   `json:"server_version"`
	ServerVersionNum       int      `json:"server_version_num"`
	ProtoVersion           int      `json:"proto_version"`
	PluginOptions          []string `json:"plugin_options"`
	Publication            string   `json:"publication"`
	LogicalDecodingWorkMem string   `json:"logical_decoding_work_mem,omitempty"`
	ReadAfterSteps         bool     `json:"read_after_steps,omitempty"`
	Messages               int      `json:"messages"`
	Bytes                  int      `json:"bytes"`
	Format                 string   `json:"format"`
}

func (r *recorder) url(db string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(r.base)
	if err != nil {
		return nil, err
	}
	cfg.Database = db
	return cfg, nil
}

func (r *recorder) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := r.url(db)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

func (r *recorder) record(ctx context.Context, dir string) (err error) {
	sc := r.sc
	admin, err := r.connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	ident := pgx.Identifier{r.db}.Sanitize()
	if err := r.dropDB(ctx, admin); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident+" TEMPLATE template0"); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	defer func() {
		if derr := r.dropDB(context.Background(), admin); derr != nil && err == nil {
			err = derr
		}
	}()

	var version string
	var versionNum int
	if err := admin.QueryRow(ctx, "SELECT current_setting('server_version'), current_setting('server_version_num')::int").Scan(&version, &versionNum); err != nil {
		return err
	}

	// Setup, publication and slot, so that the stream holds only the steps.
	sessions := map[int]*pgx.Conn{}
	defer func() {
		for _, c := range sessions {
			c.Close(context.Background())
		}
	}()
	session := func(n int) (*pgx.Conn, error) {
		if c := sessions[n]; c != nil {
			return c, nil
		}
		c, err := r.connect(ctx, r.db)
		if err != nil {
			return nil, err
		}
		sessions[n] = c
		return c, nil
	}
	c, err := session(1)
	if err != nil {
		return err
	}
	if _, err := c.Exec(ctx, sc.Setup); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if _, err := c.Exec(ctx, "CREATE PUBLICATION walex_rec "+sc.Publication); err != nil {
		return fmt.Errorf("create publication: %w", err)
	}
	if _, err := c.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slotName); err != nil {
		return fmt.Errorf("create slot: %w", err)
	}

	workMem := ""
	if sc.Streaming {
		workMem = streamMem
	}
	marker, err := session(0) // for the sync markers only
	if err != nil {
		return err
	}
	var rd *reader
	start := func() error {
		var err error
		rd, err = r.startReading(ctx, workMem)
		return err
	}
	if !sc.ReadAfter {
		if err := start(); err != nil {
			return err
		}
		defer rd.close()
	}

	for i, st := range sc.Steps {
		c, err := session(st.Session)
		if err != nil {
			return err
		}
		_, err = c.Exec(ctx, st.SQL)
		switch {
		case st.ExpectError == "" && err != nil:
			return fmt.Errorf("step %d (%s): %w", i+1, st.SQL, err)
		case st.ExpectError != "" && err == nil:
			return fmt.Errorf("step %d (%s) succeeded, want an error containing %q", i+1, st.SQL, st.ExpectError)
		case st.ExpectError != "" && !strings.Contains(err.Error(), st.ExpectError):
			return fmt.Errorf("step %d (%s): error %q does not contain %q", i+1, st.SQL, err, st.ExpectError)
		}
		if rd != nil {
			if err := rd.sync(ctx, marker); err != nil {
				return fmt.Errorf("after step %d: %w", i+1, err)
			}
		}
	}
	for n, c := range sessions {
		if c.PgConn().TxStatus() != 'I' {
			return fmt.Errorf("session %d left a transaction open", n)
		}
	}
	if sc.ReadAfter {
		if err := start(); err != nil {
			return err
		}
		defer rd.close()
	}
	if err := rd.sync(ctx, marker); err != nil {
		return fmt.Errorf("end of the stream: %w", err)
	}
	msgs := rd.messages()

	// Write the files.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var bin []byte
	for _, m := range msgs {
		bin = binary.BigEndian.AppendUint32(bin, uint32(len(m)))
		bin = append(bin, m...)
	}
	md := meta{
		Scenario:               sc.Name,
		Description:            sc.Doc,
		ServerVersion:          version,
		ServerVersionNum:       versionNum,
		ProtoVersion:           sc.Proto,
		PluginOptions:          sc.pluginArgs(),
		Publication:            "CREATE PUBLICATION walex_rec " + sc.Publication,
		LogicalDecodingWorkMem: workMem,
		ReadAfterSteps:         sc.ReadAfter,
		Messages:               len(msgs),
		Bytes:                  len(bin),
		Format:                 "stream.bin: per pgoutput message (XLogData payload), a uint32 big-endian length then the message bytes",
	}
	mj, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"stream.bin":   bin,
		"scenario.sql": []byte(sc.script(workMem)),
		"meta.json":    append(mj, '\n'),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	log.Printf("%-22s %5d messages, %7d bytes -> %s", sc.Name, len(msgs), len(bin), dir)
	return nil
}

// reader reads the slot in a goroutine and collects every XLogData
// payload except the sync markers.
type reader struct {
	conn   *pgconn.PgConn
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	msgs     [][]byte
	progress pglogrepl.LSN   // the highest WAL end reported by a keepalive
	seen     map[string]bool // contents of the sync markers received
	seq      int             // sync markers emitted
	err      error
}

// startReading opens a replication connection and starts streaming the
// slot.
func (r *recorder) startReading(ctx context.Context, workMem string) (*reader, error) {
	cfg, err := r.url(r.db)
	if err != nil {
		return nil, err
	}
	pcfg := cfg.Config.Copy()
	pcfg.RuntimeParams["replication"] = "database"
	if workMem != "" {
		pcfg.RuntimeParams["logical_decoding_work_mem"] = workMem
	}
	conn, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("replication connection: %w", err)
	}
	if err := pglogrepl.StartReplication(ctx, conn, slotName, 0, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: r.sc.pluginArgs(),
	}); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("START_REPLICATION: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	rd := &reader{conn: conn, cancel: cancel, done: make(chan struct{}), seen: map[string]bool{}}
	go func() {
		defer close(rd.done)
		err := rd.loop(ctx)
		rd.mu.Lock()
		rd.err = err
		rd.mu.Unlock()
	}()
	return rd, nil
}

// loop reads until ctx ends or an error.
func (rd *reader) loop(ctx context.Context) error {
	var lastPing time.Time
	for ctx.Err() == nil {
		// Ask for a keepalive now and then: it reports how far the walsender
		// has decoded. Positions stay 0 so that the slot does not move.
		if time.Since(lastPing) >= pingPeriod {
			if err := pglogrepl.SendStandbyStatusUpdate(ctx, rd.conn, pglogrepl.StandbyStatusUpdate{ReplyRequested: true}); err != nil {
				return fmt.Errorf("standby status update: %w", err)
			}
			lastPing = time.Now()
		}
		rctx, cancel := context.WithTimeout(ctx, pingPeriod)
		raw, err := rd.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if pgconn.Timeout(err) || ctx.Err() != nil {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		switch m := raw.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return err
				}
				rd.mu.Lock()
				rd.progress = max(rd.progress, ka.ServerWALEnd)
				rd.mu.Unlock()
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return err
				}
				rd.mu.Lock()
				if content, ok := syncMarker(xld.WALData); ok {
					rd.seen[content] = true
				} else {
					rd.msgs = append(rd.msgs, append([]byte(nil), xld.WALData...))
				}
				rd.mu.Unlock()
			}
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(m)
		case *pgproto3.NoticeResponse:
		default:
			return fmt.Errorf("unexpected message %T", raw)
		}
	}
	return nil
}

// sync emits a sync marker on conn and waits until the walsender has
// decoded it: everything written before it has been sent and received.
func (rd *reader) sync(ctx context.Context, conn *pgx.Conn) error {
	rd.mu.Lock()
	rd.seq++
	content := strconv.Itoa(rd.seq)
	rd.mu.Unlock()
	var lsnText string
	if err := conn.QueryRow(ctx, "SELECT pg_logical_emit_message(false, $1, $2)::text", syncPrefix, content).Scan(&lsnText); err != nil {
		return fmt.Errorf("sync marker: %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(lsnText)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(syncTimeout)
	for {
		rd.mu.Lock()
		ok := rd.progress >= lsn || rd.seen[content]
		rd.mu.Unlock()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the walsender did not decode up to %s within %s", lsn, syncTimeout)
		}
		select {
		case <-rd.done:
			return fmt.Errorf("reading the slot stopped: %w", rd.error())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (rd *reader) messages() [][]byte {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.msgs
}

func (rd *reader) error() error {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.err
}

func (rd *reader) close() {
	rd.cancel()
	<-rd.done
	rd.conn.Close(context.Background())
}

// syncMarker tells a sync marker, a non-transactional logical message
// outside a stream block: 'M', flags 0, LSN, prefix, content length,
// content. It returns the content.
func syncMarker(b []byte) (string, bool) {
	const head = 1 + 1 + 8
	p := syncPrefix + "\x00"
	if len(b) < head+len(p)+4 || b[0] != 'M' || b[1] != 0 || string(b[head:head+len(p)]) != p {
		return "", false
	}
	return string(b[head+len(p)+4:]), true
}

func (r *recorder) dropDB(ctx context.Context, admin *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := r.tryDropDB(ctx, admin)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop database %s: %w", r.db, errors.Join(err, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *recorder) tryDropDB(ctx context.Context, admin *pgx.Conn) error {
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", r.db); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", r.db); err != nil {
		return err
	}
	_, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{r.db}.Sanitize())
	return err
}
