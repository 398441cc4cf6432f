package client

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// peakEWMA is the latency estimate of one endpoint, as Finagle's PeakEwma
// and Linkerd's balancer keep it: a sample above the estimate replaces it at
// once (latency spikes are believed immediately), a sample below pulls it
// down with an exponentially weighted moving average whose time constant is
// tau (the estimate forgets fast recoveries slowly, on purpose).
//
// Readers see the estimate decayed towards zero by the time since the last
// sample. An endpoint nobody has sent to for long thus looks cheaper and
// cheaper until it is picked again and its estimate refreshed: the built-in
// exploration that keeps estimates of idle endpoints fresh.
//
// observe takes a per-endpoint lock (it runs once per request, not per
// pick); cost is lock-free. A reader may pair a new value with an old stamp;
// the error is one decay step, harmless for a heuristic.
type peakEWMA struct {
	mu      sync.Mutex
	cost    atomic.Uint64 // float64 bits, nanoseconds
	stamp   atomic.Int64  // nanotime of the last sample
	samples atomic.Uint64 // passive samples seen
}

// seed sets the estimate before any passive sample (from the probe RTT or
// the default RTT). It does nothing once real samples arrived. Only the
// first seed sets the stamp: later probe results refresh the guess but do
// not stop it from decaying, so an endpoint no request has measured looks
// cheaper and cheaper until one does, even when its probe RTT (a new
// connection per check) is above the others' request latency.
func (e *peakEWMA) seed(rtt time.Duration, now int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.samples.Load() > 0 {
		return
	}
	e.cost.Store(math.Float64bits(float64(rtt)))
	if e.stamp.Load() == 0 {
		e.stamp.Store(now)
	}
}

// observe adds one latency sample taken at now (nanotime).
func (e *peakEWMA) observe(rtt time.Duration, now int64, tau time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cost := math.Float64frombits(e.cost.Load())
	sample := float64(rtt)
	if sample > cost || e.samples.Load() == 0 {
		// A spike replaces the estimate at once; so does the first real
		// sample, which replaces the seed (a guess, not a measurement).
		cost = sample
	} else {
		td := float64(max(now-e.stamp.Load(), 0))
		w := math.Exp(-td / float64(tau))
		cost = cost*w + sample*(1-w)
	}
	e.cost.Store(math.Float64bits(cost))
	e.stamp.Store(now)
	e.samples.Add(1)
}

// decayFloor is the idle time below which the decay towards zero is not
// computed: under a millisecond the factor is 1 to better than 1e-4 with any
// sane tau, and skipping math.Exp keeps the pick path short for busy
// endpoints.
const decayFloor = int64(time.Millisecond)

// value returns the estimate at now, decayed by the idle time.
func (e *peakEWMA) value(now int64, tau time.Duration) float64 {
	cost := math.Float64frombits(e.cost.Load())
	td := now - e.stamp.Load()
	if td <= decayFloor {
		return cost
	}
	return cost * decay(float64(td)/float64(tau))
}

// decay approximates exp(-x) for x >= 0 by the reciprocal of its Taylor
// polynomial of degree 4: within 0.5% for x < 1 and always decreasing, which
// is all a cost ranking needs, at a fraction of math.Exp's price on the
// pick path (it runs once per endpoint scanned).
func decay(x float64) float64 {
	return 1 / (1 + x*(1+x*(0.5+x*(1.0/6+x*(1.0/24)))))
}

// raw returns the estimate without idle decay, as shown to people.
func (e *peakEWMA) raw() time.Duration {
	return time.Duration(math.Float64frombits(e.cost.Load()))
}
