package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/internal/demo"
	"github.com/walex-go/walex/internal/pgtest"
	"github.com/walex-go/walex/walextest"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// TestExample runs the example against a throwaway server.
func TestExample(t *testing.T) { demo.Test(t, setup, teardown, run) }

// TestHandler unit-tests the example's handler with walextest: the same
// changes as the example, built without a database, and the same three
// events printed.
func TestHandler(t *testing.T) {
	client, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "filters", Publication: "walex_filters", Subscriptions: []string{"walex_filters_users"}})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	delivered := 0
	register(client, &out, func() { delivered++ })

	s := walextest.NewStream()
	users := s.Table("walex_filters_users", walextest.Key("id", "int4"), walextest.Col("email", "text"),
		walextest.Col("event_subscribe", "bool"), walextest.Col("login_count", "int4"), walextest.Col("updated_at", "timestamptz")).Full()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ada := walextest.Row{"id": 1, "email": "ada@example.com", "event_subscribe": true, "login_count": 0}
	logged := walextest.Row{"id": 1, "email": "ada@example.com", "event_subscribe": true, "login_count": 1, "updated_at": at}
	renamed := walextest.Row{"id": 1, "email": "ada@lovelace.org", "event_subscribe": true, "login_count": 2, "updated_at": at}
	_, err = walextest.New(client).Deliver(context.Background(),
		s.Begin().Insert(users, ada).Commit(),
		s.Begin().Insert(users, walextest.Row{"id": 2, "email": "bob@example.com", "event_subscribe": false, "login_count": 0}).Commit(),
		s.Begin().Update(users, ada, logged).Commit(),
		s.Begin().Update(users, logged, renamed).Commit(),
		s.Begin().Delete(users, renamed).Commit(),
	)
	if err != nil {
		t.Fatal(err)
	}
	got := regexp.MustCompile(`event \S+: `).ReplaceAllString(out.String(), "")
	want := "insert id=1 changes=[]\nupdate id=1 changes=[email login_count]\ndelete id=1 changes=[]\n"
	if got != want || delivered != 3 {
		t.Errorf("printed:\n%swant:\n%s", got, want)
	}
}
