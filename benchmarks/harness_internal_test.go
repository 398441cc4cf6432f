package benchmarks

import (
	"context"
	"testing"
	"time"
)

// The benchmarks' figures are only as good as these helpers: they get fast
// tests that run with go test ./...

func TestPercentileIsNearestRank(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0.001, time.Millisecond}} {
		if got := percentile(ds, tc.q); got != tc.want {
			t.Errorf("percentile(1..100 ms, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := percentile(ds[:10], 0.99); got != 10*time.Millisecond {
		t.Errorf("p99 of 10 samples = %v, want the largest", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
}

// followTime finds when the traffic left a backend for good, reports
// never when it did not, and does not count requests before the switch.
func TestFollowTime(t *testing.T) {
	ms := time.Millisecond
	mk := func(backends ...int) []sample {
		out := make([]sample, len(backends))
		for i, be := range backends {
			out[i] = sample{start: time.Duration(i) * ms, backend: be}
		}
		return out
	}
	// 0 keeps every second request until t=9ms, then none.
	var seq []int
	for i := range 40 {
		if i < 10 && i%2 == 0 {
			seq = append(seq, 0)
		} else {
			seq = append(seq, 1)
		}
	}
	if d, ok := followTime(mk(seq...), 0, 0, 10, 0.1); !ok || d != 8*ms {
		t.Errorf("followTime = %v, %v; want 8ms (the last request to 0 in a bad window), true", d, ok)
	}
	// Before the switch does not count.
	if d, ok := followTime(mk(seq...), 10*ms, 0, 10, 0.1); !ok || d != 0 {
		t.Errorf("followTime after the switch = %v, %v; want 0, true", d, ok)
	}
	// Every fifth request to 0 forever: it never follows.
	seq = seq[:0]
	for i := range 40 {
		seq = append(seq, min(1, i%5))
	}
	if _, ok := followTime(mk(seq...), 0, 0, 10, 0.1); ok {
		t.Error("followTime found a follow where 20% keep going to the slow backend")
	}
}

func TestSharesCountFailuresApart(t *testing.T) {
	share, failed := shares([]sample{{backend: 0}, {backend: 1}, {backend: 1}, {backend: 1}, {backend: -1}}, 2)
	if failed != 1 || share[0] != 0.25 || share[1] != 0.75 {
		t.Errorf("shares = %v, %d failed; want [0.25 0.75], 1", share, failed)
	}
}

// The oracle sends every request to the fastest backend, and follows a
// latency change at once.
func TestOracleSendsToTheFastest(t *testing.T) {
	e := newEnv(t, 3, time.Millisecond, 0)
	e.setLatency(1, 0)
	o := e.oracle()
	defer o.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	samples, switched := drive(ctx, []target{{rt: o, url: "http://api/"}}, 2, 40, func() {
		e.setLatency(1, time.Millisecond)
		e.setLatency(2, 0)
	})
	before := 0
	for _, s := range samples {
		switch {
		case s.start > switched && s.backend != 2:
			t.Errorf("request at %v, after the change at %v, went to b%d, want b2", s.start, switched, s.backend)
		case s.start < switched && s.backend != 1:
			before++ // picked while the change was being made
		}
	}
	if before > 2 {
		t.Errorf("%d requests before the change did not go to b1, the fastest", before)
	}
}
