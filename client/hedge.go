package client

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// Hedging sends a second attempt of an idempotent request to another
// endpoint when the first has not answered after a delay; the first answer
// wins and the other attempt is cancelled. It cuts the tail latency that a
// slow endpoint or a lost packet adds, at the price of some extra load,
// which the retry budget bounds. Zero fields take the defaults.
type Hedging struct {
	// Delay sends the hedge after a fixed delay. When 0, the delay is the
	// Percentile of recent request latencies.
	Delay time.Duration `json:"delay,omitempty"`
	// Percentile of recent latencies after which to hedge, in (0, 1)
	// (default 0.95: about one request in twenty is hedged).
	Percentile float64 `json:"percentile,omitempty"`
	// MinDelay is the shortest percentile-based delay (default 1 ms), so
	// that a very fast service is not hedged on noise.
	MinDelay time.Duration `json:"minDelay,omitempty"`
	// MaxHedges is the number of extra attempts (default 1).
	MaxHedges int `json:"maxHedges,omitempty"`
}

// Defaults of Hedging.
const (
	DefaultHedgePercentile = 0.95
	DefaultHedgeMinDelay   = time.Millisecond
	DefaultMaxHedges       = 1
	// hedgeMinSamples is how many latencies the window needs before a
	// percentile-based delay is trusted; until then nothing is hedged.
	hedgeMinSamples = 20
)

func (h Hedging) withDefaults() Hedging {
	if h.Percentile == 0 {
		h.Percentile = DefaultHedgePercentile
	}
	if h.MinDelay == 0 {
		h.MinDelay = DefaultHedgeMinDelay
	}
	if h.MaxHedges == 0 {
		h.MaxHedges = DefaultMaxHedges
	}
	return h
}

func (h Hedging) validate() error {
	switch {
	case h.Delay < 0:
		return fmt.Errorf("client: hedging: delay %v must not be negative", h.Delay)
	case h.Percentile <= 0 || h.Percentile >= 1:
		return fmt.Errorf("client: hedging: percentile %v must be within (0, 1)", h.Percentile)
	case h.MaxHedges < 1 || h.MaxHedges > maxAttempts-1:
		return fmt.Errorf("client: hedging: maxHedges %d must be within [1, %d]", h.MaxHedges, maxAttempts-1)
	}
	return nil
}

// latencyWindow is a lock-free histogram of recent request latencies on
// exponential buckets, kept over two alternating windows so that a
// percentile always covers between one and two window lengths.
type latencyWindow struct {
	width   int64 // window length, ns
	windows [2]latencyHist
}

type latencyHist struct {
	epoch  atomic.Int64
	counts [latencyBuckets]atomic.Uint64
}

// Buckets grow by 10% from 10 µs: 180 buckets reach past 300 s, and a
// percentile read from them is within 10% of the true value.
const (
	latencyBuckets   = 180
	latencyBucketMin = 10 * time.Microsecond
	latencyGrowth    = 1.1
)

var logGrowth = math.Log(latencyGrowth)

func newLatencyWindow(width time.Duration) *latencyWindow {
	return &latencyWindow{width: int64(width)}
}

func bucketOf(d time.Duration) int {
	if d <= latencyBucketMin {
		return 0
	}
	b := int(math.Log(float64(d)/float64(latencyBucketMin))/logGrowth) + 1
	return min(b, latencyBuckets-1)
}

// bucketUpper returns the upper bound of bucket b.
func bucketUpper(b int) time.Duration {
	return time.Duration(float64(latencyBucketMin) * math.Pow(latencyGrowth, float64(b)))
}

func (w *latencyWindow) hist(now int64) *latencyHist {
	epoch := now / w.width
	h := &w.windows[epoch%2]
	if old := h.epoch.Load(); old != epoch && h.epoch.CompareAndSwap(old, epoch) {
		for i := range h.counts {
			h.counts[i].Store(0)
		}
	}
	return h
}

func (w *latencyWindow) observe(d time.Duration, now int64) {
	w.hist(now).counts[bucketOf(d)].Add(1)
}

// quantile returns the q-quantile of the current and previous windows, and
// false with fewer than hedgeMinSamples samples.
func (w *latencyWindow) quantile(q float64, now int64) (time.Duration, bool) {
	epoch := now / w.width
	var counts [latencyBuckets]uint64
	var total uint64
	for i := range w.windows {
		h := &w.windows[i]
		if e := h.epoch.Load(); e != epoch && e != epoch-1 {
			continue
		}
		for b := range h.counts {
			c := h.counts[b].Load()
			counts[b] += c
			total += c
		}
	}
	if total < hedgeMinSamples {
		return 0, false
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for b, c := range counts {
		seen += c
		if seen >= rank {
			return bucketUpper(b), true
		}
	}
	return bucketUpper(latencyBuckets - 1), true
}
