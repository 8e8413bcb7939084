package nats_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	walexnats "github.com/walex-go/walex/destinations/nats"
)

func TestOptionsInvalid(t *testing.T) {
	ns := startNATS(t, nil)
	_, js := ns.connect(t, nil)
	for _, c := range []struct {
		name string
		o    walexnats.Options
		want string
	}{
		{"empty token", walexnats.Options{Prefix: "a..b"}, "Options.Prefix"},
		{"trailing dot", walexnats.Options{Prefix: "a."}, "empty token"},
		{"wildcard", walexnats.Options{Prefix: "a.*"}, "wildcard"},
		{"full wildcard", walexnats.Options{Prefix: ">"}, "wildcard"},
		{"space", walexnats.Options{Prefix: "a b"}, "white space"},
		{"max in flight", walexnats.Options{MaxInFlight: -1}, "Options.MaxInFlight"},
		{"ack timeout", walexnats.Options{AckTimeout: -time.Second}, "Options.AckTimeout"},
		{"stream without CreateStream", walexnats.Options{Stream: jetstream.StreamConfig{Name: "X"}}, "CreateStream is false"},
		{"duplicates", walexnats.Options{CreateStream: true, Stream: jetstream.StreamConfig{Duplicates: -time.Second}}, "Duplicates"},
	} {
		if _, err := walexnats.New(js, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New() = %v, want an error about %q", c.name, err, c.want)
		}
	}
	if _, err := walexnats.New(nil, walexnats.Options{}); err == nil || !strings.Contains(err.Error(), "jetstream.New") {
		t.Errorf("New(nil) = %v, want an error saying how to make a JetStream", err)
	}
}

func TestOptionsDefaults(t *testing.T) {
	ns := startNATS(t, nil)
	_, js := ns.connect(t, nil)
	p, err := walexnats.New(js, walexnats.Options{CreateStream: true, Prefix: "app.cdc-1"})
	if err != nil {
		t.Fatal(err)
	}
	o := p.Options()
	if o.MaxInFlight != walexnats.DefaultMaxInFlight || o.AckTimeout != walexnats.DefaultAckTimeout {
		t.Errorf("MaxInFlight, AckTimeout = %d, %s; want the defaults", o.MaxInFlight, o.AckTimeout)
	}
	s := o.Stream
	if s.Name != "APP_CDC-1" || len(s.Subjects) != 1 || s.Subjects[0] != "app.cdc-1.>" || s.Storage != jetstream.FileStorage || s.Duplicates != walexnats.DefaultDuplicates {
		t.Errorf("Stream = name %q, subjects %q, storage %v, duplicates %s; want APP_CDC-1, [app.cdc-1.>], file, 2m", s.Name, s.Subjects, s.Storage, s.Duplicates)
	}
	p, err = walexnats.New(js, walexnats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Options().Prefix; got != "walex" {
		t.Errorf("default Prefix = %q, want walex", got)
	}
}
