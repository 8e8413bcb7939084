package walextest_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/pgtest"
	"github.com/walex-go/walex/walextest"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// TestRecord records changes from a real server and replays them: the
// handlers get the events and the message the server sent.
func TestRecord(t *testing.T) {
	srv := pgtest.Shared()
	db := srv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Exec(ctx, db, `CREATE TABLE users (id int PRIMARY KEY, email text); CREATE PUBLICATION pub FOR TABLE users`); err != nil {
		t.Fatal(err)
	}
	url := srv.URL(db)
	var rec bytes.Buffer
	err := walextest.Record(ctx, url, "pub", &rec, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, `BEGIN; INSERT INTO users VALUES (1, 'a@example.com'); SELECT pg_logical_emit_message(true, 'outbox', 'hello');
UPDATE users SET email = 'b@example.com'; COMMIT`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := walex.New(walex.Config{URL: url, Name: "rec", Publication: "pub", Subscriptions: []string{"users"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	c.OnEvent("users", func(_ context.Context, events []walex.Event) error {
		for _, e := range events {
			got = append(got, fmt.Sprintf("%s %v", e.Type, e.NewRecord["email"]))
		}
		return nil
	})
	c.OnMessage("outbox", func(_ context.Context, m walex.Message) error {
		got = append(got, "message "+string(m.Content))
		return nil
	})
	if _, err := walextest.New(c).Replay(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(got, ", "); s != "insert a@example.com, message hello, update b@example.com" {
		t.Fatalf("replayed: %s", s)
	}
}
