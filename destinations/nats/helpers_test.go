package nats_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// natsServer is an in-process NATS server with JetStream, its store in a
// temporary directory of the test.
type natsServer struct {
	tb   testing.TB
	opts *server.Options
	srv  *server.Server
}

// startNATS starts a NATS server with JetStream; edit, if not nil,
// changes its options first. The server is shut down at the end of the
// test.
func startNATS(tb testing.TB, edit func(*server.Options)) *natsServer {
	tb.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  tb.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	if edit != nil {
		edit(opts)
	}
	s := &natsServer{tb: tb, opts: opts}
	s.start()
	// A restart takes the same port, so that clients reconnect to it.
	s.opts.Port = s.srv.Addr().(*net.TCPAddr).Port
	tb.Cleanup(func() { s.shutdown() })
	return s
}

func (s *natsServer) start() {
	s.tb.Helper()
	srv, err := server.NewServer(s.opts)
	if err != nil {
		s.tb.Fatalf("NATS server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		s.tb.Fatal("NATS server not ready for connections within 10 s")
	}
	s.srv = srv
}

func (s *natsServer) shutdown() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// restart shuts the server down, waits down, and starts it again on the
// same port with the same store.
func (s *natsServer) restart(down time.Duration) {
	s.tb.Helper()
	s.shutdown()
	time.Sleep(down)
	s.start()
}

func (s *natsServer) url() string {
	return "nats://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
}

// connect connects to s and returns the connection and a JetStream of it,
// both closed at the end of the test.
func (s *natsServer) connect(tb testing.TB, nopts []natsgo.Option, jsopts ...jetstream.JetStreamOpt) (*natsgo.Conn, jetstream.JetStream) {
	tb.Helper()
	nopts = append([]natsgo.Option{natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50 * time.Millisecond)}, nopts...)
	nc, err := natsgo.Connect(s.url(), nopts...)
	if err != nil {
		tb.Fatalf("connect to NATS: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc, append([]jetstream.JetStreamOpt{jetstream.WithPublishAsyncTimeout(5 * time.Second)}, jsopts...)...)
	if err != nil {
		tb.Fatalf("jetstream.New: %v", err)
	}
	return nc, js
}

// streamContents reads every message of the stream: the number of
// messages, and per Nats-Msg-Id how often it is there. It checks that
// each message is an event whose "id" is its Nats-Msg-Id without prefix,
// and returns the events' NewRecord "id" values.
func streamContents(tb testing.TB, js jetstream.JetStream, stream, idPrefix string) (total int, perID map[string]int, rows map[int64]bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatalf("stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	want := int(info.State.Msgs)
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	perID, rows = map[string]int{}, map[int64]bool{}
	for total < want {
		batch, err := cons.Fetch(min(want-total, 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			id := m.Headers().Get(jetstream.MsgIDHeader)
			perID[id]++
			var ev struct {
				ID        string         `json:"id"`
				NewRecord map[string]any `json:"new_record"`
			}
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				tb.Fatalf("message %s: %v", id, err)
			}
			if idPrefix+ev.ID != id {
				tb.Fatalf("message with Nats-Msg-Id %q has event id %q", id, ev.ID)
			}
			if v, ok := ev.NewRecord["id"].(float64); ok {
				rows[int64(v)] = true
			}
		}
		if batch.Error() != nil {
			tb.Fatal(batch.Error())
		}
		if n == 0 {
			tb.Fatalf("read %d of the stream's %d messages, then nothing", total, want)
		}
		total += n
	}
	return total, perID, rows
}

// setupTable makes a fresh database with table t (id serial, v text) and
// publication pub for it, and returns the database's URL and a connection.
func setupTable(tb testing.TB) (string, *pgx.Conn) {
	tb.Helper()
	srv := pgtest.Shared()
	db := srv.NewDatabase(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sql := range []string{
		`CREATE TABLE t (id bigserial PRIMARY KEY, v text)`,
		`CREATE PUBLICATION pub FOR TABLE t`,
	} {
		if err := srv.Exec(ctx, db, sql); err != nil {
			tb.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, srv.URL(db))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return srv.URL(db), conn
}

// insertRows inserts n rows into t in one transaction.
func insertRows(tb testing.TB, conn *pgx.Conn, n int) {
	tb.Helper()
	if _, err := conn.Exec(context.Background(), `INSERT INTO t (v) SELECT md5(i::text) FROM generate_series(1, $1) i`, n); err != nil {
		tb.Fatal(err)
	}
}

// newClient makes a walex client of table t with a durable slot named
// after name.
func newClient(tb testing.TB, url, name string, edit func(*walex.Config)) *walex.Client {
	tb.Helper()
	cfg := walex.Config{
		URL:           url,
		Name:          name,
		Publication:   "pub",
		Subscriptions: []string{"t"},
		DurableSlot:   true,
		RetryPolicy:   walex.RetryPolicy{MaxAttempts: 3, InitialDelay: 10 * time.Millisecond},
		Logger:        testLogger(tb),
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := walex.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// run runs c until ctx ends; its result comes on the channel.
func run(ctx context.Context, c *walex.Client) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return done
}

// waitFor calls cond every 10 ms until it is true; it fails tb after
// timeout, or when Run (runErr, if not nil) ends first.
func waitFor(tb testing.TB, timeout time.Duration, what string, runErr <-chan error, cond func() bool) {
	tb.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		case err := <-runErr:
			tb.Fatalf("Run ended while waiting for %s: %v", what, err)
		case <-tick.C:
		}
	}
}

// streamMsgs returns the number of messages in the stream.
func streamMsgs(tb testing.TB, js jetstream.JetStream, stream string) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return -1 // not there (yet), or the server restarts
	}
	info, err := st.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

func describe(perID map[string]int) string {
	dups := 0
	for _, n := range perID {
		if n > 1 {
			dups += n - 1
		}
	}
	return fmt.Sprintf("%d distinct ids, %d duplicates", len(perID), dups)
}

// exampleDir makes a temporary directory for an example's NATS store.
func exampleDir() (string, func()) {
	dir, err := os.MkdirTemp("", "walex-nats-example-*")
	if err != nil {
		panic(err)
	}
	return dir, func() { _ = os.RemoveAll(dir) }
}
