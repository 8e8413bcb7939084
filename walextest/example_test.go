package walextest_test

import (
	"context"
	"fmt"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/walextest"
)

func ExampleHarness_Deliver() {
	client, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "app", Publication: "events", Subscriptions: []string{"users"}})
	if err != nil {
		panic(err)
	}
	client.OnUpdate("users", func(ctx context.Context, events []walex.Event) error {
		for _, e := range events {
			fmt.Printf("%s: email %v → %v\n", e.ID(), e.Changes["email"].OldValue, e.Changes["email"].NewValue)
		}
		return nil
	})

	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"), walextest.Col("email", "text")).Full()
	tx := s.Begin().Update(users,
		walextest.Row{"id": 1, "email": "a@example.com"},
		walextest.Row{"id": 1, "email": "b@example.com"}).Commit()
	calls, err := walextest.New(client).Deliver(context.Background(), tx)
	fmt.Println(len(calls), "call:", calls[0].Handler[:len(`OnUpdate("public.users")`)], err)
	// Output:
	// 0/1000078:0: email a@example.com → b@example.com
	// 1 call: OnUpdate("public.users") <nil>
}

func ExampleHarness_DeliverTwice() {
	client, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "app", Publication: "events", Subscriptions: []string{"users"}})
	if err != nil {
		panic(err)
	}
	applied := map[string]bool{} // an idempotent consumer: remembers the IDs it applied
	client.OnInsert("users", func(ctx context.Context, events []walex.Event) error {
		for _, e := range events {
			if applied[e.ID()] {
				fmt.Println("duplicate dropped:", e.ID())
				continue
			}
			applied[e.ID()] = true
			fmt.Println("applied:", e.ID())
		}
		return nil
	})
	s := walextest.NewStream()
	users := s.Table("users", walextest.Key("id", "int4"))
	if _, err := walextest.New(client).DeliverTwice(context.Background(), s.Begin().Insert(users, walextest.Row{"id": 1}).Commit()); err != nil {
		panic(err)
	}
	// Output:
	// applied: 0/1000078:0
	// duplicate dropped: 0/1000078:0
}
