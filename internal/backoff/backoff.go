// Package backoff computes capped exponential backoff with jitter, as gRPC's
// connection backoff does (A6/connection-backoff.md), for retry loops that
// must never give up but must not hammer a recovering server.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Defaults follow gRPC's connection backoff, scaled down for control-plane
// writes that should resume quickly once etcd is back.
const (
	DefaultInitial    = 100 * time.Millisecond
	DefaultMax        = 5 * time.Second
	DefaultMultiplier = 1.6
	DefaultJitter     = 0.2
)

// Exponential is a backoff policy. The zero value uses the defaults.
type Exponential struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64 // share of the delay randomised either way, 0..1
}

// Delay returns how long to wait before retry number attempt (0 for the
// first retry).
func (e Exponential) Delay(attempt int) time.Duration {
	initial, max, mult, jitter := e.Initial, e.Max, e.Multiplier, e.Jitter
	if initial <= 0 {
		initial = DefaultInitial
	}
	if max <= 0 {
		max = DefaultMax
	}
	if max < initial {
		max = initial
	}
	if mult < 1 {
		mult = DefaultMultiplier
	}
	if jitter <= 0 || jitter > 1 {
		jitter = DefaultJitter
	}
	d := float64(initial)
	for i := 0; i < attempt && d < float64(max); i++ {
		d *= mult
	}
	if d > float64(max) {
		d = float64(max)
	}
	d *= 1 + jitter*(rand.Float64()*2-1)
	return time.Duration(d)
}
