package backoff

import (
	"testing"
	"time"
)

func TestDelayGrowsAndIsCapped(t *testing.T) {
	e := Exponential{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.1}
	cases := []struct {
		attempt int
		want    time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 200 * time.Millisecond},
		{3, 800 * time.Millisecond},
		{4, time.Second},
		{1000, time.Second},
	}
	for _, c := range cases {
		for range 50 {
			got := e.Delay(c.attempt)
			lo, hi := time.Duration(float64(c.want)*0.9), time.Duration(float64(c.want)*1.1)
			if got < lo || got > hi {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", c.attempt, got, lo, hi)
			}
		}
	}
}

func TestZeroValueUsesDefaults(t *testing.T) {
	var e Exponential
	if got := e.Delay(0); got < 80*time.Millisecond || got > 120*time.Millisecond {
		t.Fatalf("zero value Delay(0) = %v, want about %v", got, DefaultInitial)
	}
	if got := e.Delay(100); got > time.Duration(float64(DefaultMax)*1.2) {
		t.Fatalf("zero value Delay(100) = %v, want capped near %v", got, DefaultMax)
	}
}
