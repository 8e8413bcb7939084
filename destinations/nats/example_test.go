package nats_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/walex-go/walex"
	walexnats "github.com/walex-go/walex/destinations/nats"
)

// Example publishes two events, as a walex client calls the handler for
// a transaction, into a stream the Publisher creates, and reads them back.
func Example() {
	dir, cleanup := exampleDir()
	defer cleanup()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		panic(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		panic("NATS is not ready")
	}
	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		panic(err)
	}

	p, err := walexnats.New(js, walexnats.Options{CreateStream: true})
	if err != nil {
		panic(err)
	}
	// With a walex client: c.OnEvent(walex.AllTables, p.Handle).
	events := []walex.Event{
		{Name: "users", Type: walex.Insert, Source: walex.Source{Schema: "public", Table: "users"}, CommitLSN: 0x16B3748, Index: 0},
		{Name: "order items", Type: walex.Delete, Source: walex.Source{Schema: "shop", Table: "order items"}, CommitLSN: 0x16B3748, Index: 1},
	}
	ctx := context.Background()
	if err := p.Handle(ctx, events); err != nil {
		panic(err)
	}

	stream, err := js.Stream(ctx, "WALEX")
	if err != nil {
		panic(err)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			panic(err)
		}
		fmt.Println(m.Subject, m.Header.Get("Nats-Msg-Id"))
	}
	// Output:
	// walex.public.users.insert 0/16B3748:0
	// walex.shop.order%20items.delete 0/16B3748:1
}
