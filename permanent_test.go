package walex_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/walex-go/walex"
	"github.com/walex-go/walex/walextest"
)

// refused is a handler error that retrying cannot fix (a destination that
// answered "forbidden", say).
type refused struct{}

func (refused) Error() string   { return "the destination refused the events" }
func (refused) Permanent() bool { return true }

// TestPermanentHandlerError: a handler error that says it is permanent
// stops at once with a *HandlerError, without retries, even under a
// policy that retries forever; an ordinary error is retried.
func TestPermanentHandlerError(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		attempts int // calls before the handler gives up
	}{
		{"permanent", refused{}, 1},
		{"wrapped permanent", errors.Join(errors.New("publishing"), refused{}), 1},
		{"transient", errors.New("timeout"), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := walex.New(walex.Config{URL: "postgres://localhost/app", Name: "perm", Publication: "pub", Subscriptions: []string{"users"},
				RetryPolicy: walex.RetryPolicy{MaxAttempts: -1, InitialDelay: time.Millisecond, MaxDelay: time.Millisecond},
				Logger:      slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			calls := 0
			c.OnInsert("users", func(context.Context, []walex.Event) error {
				calls++
				if calls < 3 || walex.IsPermanent(tc.err) {
					return tc.err
				}
				return nil
			})
			s := walextest.NewStream()
			users := s.Table("users", walextest.Key("id", "integer"))
			h := walextest.New(c)
			// Under an unlimited policy a retried permanent error would
			// never return: the deadline turns that into a failure.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = h.Deliver(ctx, s.Begin().Insert(users, walextest.Row{"id": 1}).Commit())
			if calls != tc.attempts {
				t.Errorf("handler called %d times, want %d", calls, tc.attempts)
			}
			var he *walex.HandlerError
			switch {
			case !walex.IsPermanent(tc.err):
				if err != nil || c.Stats().Retries != 2 {
					t.Errorf("Deliver = %v with %d retries, want nil after 2 retries", err, c.Stats().Retries)
				}
			case !errors.As(err, &he) || he.Attempts != 1 || !errors.Is(err, refused{}):
				t.Errorf("Deliver = %v, want a *HandlerError after 1 attempt wrapping the handler's error", err)
			case c.Stats().Retries != 0:
				t.Errorf("Stats.Retries = %d, want 0", c.Stats().Retries)
			}
		})
	}
}
