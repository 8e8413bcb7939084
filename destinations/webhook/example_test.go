package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/destinations/webhook"
)

// Send every change of the subscribed tables to a receiver.
func ExampleNew() {
	s, err := webhook.New(webhook.Options{
		URL:                 "https://orders.example.com/hooks/walex",
		Secret:              os.Getenv("WEBHOOK_SECRET"), // whsec_..., shared with the receiver
		MaxEventsPerRequest: 500,
		Retry:               webhook.RetryPolicy{MaxAttempts: -1}, // wait out the receiver's outages
		Logger:              slog.Default(),                       // a warning per retry
	})
	if err != nil {
		log.Fatal(err)
	}
	c, err := walex.New(walex.Config{
		URL: os.Getenv("DATABASE_URL"), Name: "orders-hook", Publication: "events",
		Subscriptions: []string{"orders", "order_lines"},
		DurableSlot:   true, // redeliver after a restart
	})
	if err != nil {
		log.Fatal(err)
	}
	c.OnEvent(walex.AllTables, s.Handler())
	if err := c.Run(context.Background()); err != nil {
		log.Fatal(err) // e.g. the receiver answered 400: a *walex.HandlerError
	}
}

// Check a request against the secret, with the specification's test
// vector. Its timestamp is from 2021: with the default tolerance of 5
// minutes it is refused as a possible replay.
func ExampleVerify() {
	header := http.Header{}
	header.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	header.Set("webhook-timestamp", "1614265330")
	header.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	body := []byte(`{"test": 2432232314}`)
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	err := webhook.Verify(secret, header, body, 0)
	fmt.Println(errors.Is(err, webhook.ErrTimestamp))

	// Without the timestamp check (negative tolerance: only for recordings).
	fmt.Println(webhook.Verify(secret, header, body, -1))

	// A changed body does not match.
	err = webhook.Verify(secret, header, []byte(`{"test": 2432232315}`), -1)
	fmt.Println(errors.Is(err, webhook.ErrSignature))
	// Output:
	// true
	// <nil>
	// true
}

// Sign a message as the sender does: the specification's test vector.
func ExampleSign() {
	sig, err := webhook.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
		time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sig)
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}

// A receiver: verify, drop batches already handled, decode, answer 2xx
// once handled.
func ExampleVerifier_Middleware() {
	secret, err := webhook.NewSecret()
	if err != nil {
		log.Fatal(err)
	}
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		log.Fatal(err)
	}
	handled := map[string]bool{} // in production: a table with a unique key
	receive := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(webhook.HeaderID)
		if handled[id] {
			return // a redelivery: 200, nothing to do
		}
		var p webhook.Payload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, raw := range p.Events {
			var e struct {
				ID        string         `json:"id"`
				Type      string         `json:"type"`
				NewRecord map[string]any `json:"new_record"`
			}
			if err := json.Unmarshal(raw, &e); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Println(e.ID, e.Type, e.NewRecord["id"])
		}
		handled[id] = true
	})
	srv := httptest.NewServer(v.Middleware(receive))
	defer srv.Close()

	s, err := webhook.New(webhook.Options{URL: srv.URL, Secret: secret})
	if err != nil {
		log.Fatal(err)
	}
	events := []walex.Event{
		{Name: "orders", Type: walex.Insert, NewRecord: map[string]any{"id": 1}, CommitLSN: 0x16B3748, Index: 0},
		{Name: "orders", Type: walex.Insert, NewRecord: map[string]any{"id": 2}, CommitLSN: 0x16B3748, Index: 1},
	}
	for range 2 { // the second time, as after a redelivery
		if err := s.Send(context.Background(), events); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// 0/16B3748:0 insert 1
	// 0/16B3748:1 insert 2
}
