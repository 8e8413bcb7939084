package pgtime

import (
	"testing"
	"time"
)

func TestEpochAndRoundTrip(t *testing.T) {
	if got := Time(0); !got.Equal(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) || got.Location() != time.UTC {
		t.Errorf("Time(0) = %v, want 2000-01-01 UTC", got)
	}
	for _, us := range []int64{0, 1, -1, 123_456_789_012, -946_684_800_000_000} {
		if got := Micros(Time(us)); got != us {
			t.Errorf("Micros(Time(%d)) = %d", us, got)
		}
	}
	if got := Micros(time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)); got != -EpochUnixMicro {
		t.Errorf("Micros(Unix epoch) = %d, want %d", got, -EpochUnixMicro)
	}
}
